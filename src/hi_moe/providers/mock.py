"""`MockProvider`: an offline, deterministic provider that behaves like a real one.

It keeps every rule a real provider keeps (constraints validated and checked, unknown adapters
rejected, timeouts honoured), so code tested against it takes the same paths it will take
against vLLM or OpenAI. Three ways to answer::

    MockProvider()                                  # sample a valid output for any constraint
    MockProvider(replies=["first", RateLimited("slow down")])   # a script, one per request
    MockProvider(respond=lambda request: f"echo: {request.messages[-1].content}")

Every request that reaches it is recorded in `requests`, so tests can assert on what was asked.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from typing import TYPE_CHECKING, ClassVar, Self, TypeAlias

from hi_moe import constraints
from hi_moe.errors import (
    InvalidConstraint,
    ProviderTimeout,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers import sampling
from hi_moe.providers.base import ALL_CONSTRAINT_KINDS, Capabilities, Health, InferenceProvider
from hi_moe.providers.lora_slots import LoraSlots
from hi_moe.types import (
    Completion,
    CompletionRequest,
    Constraint,
    ConstraintKind,
    FinishReason,
    Usage,
)

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = ["MockProvider", "Reply", "ReplyFunction", "ScriptExhausted"]

Reply: TypeAlias = str | Completion | BaseException
"""Text to answer with (checked and truncated like a server's), a full `Completion`, or an
exception to raise."""
ReplyFunction: TypeAlias = Callable[[CompletionRequest], Reply | Awaitable[Reply | None] | None]
Latency: TypeAlias = float | Callable[[CompletionRequest], float]

# The mock counts a token as four characters, about what BPE tokenizers average on English.
CHARS_PER_TOKEN = 4
# What a chat template adds around each message (role markers, separators).
_MESSAGE_OVERHEAD_TOKENS = 4
_PURE_PYTHON_KINDS: frozenset[ConstraintKind] = frozenset(("json_schema", "choice"))


def _engine_kinds() -> frozenset[ConstraintKind]:
    # Without XGrammar the mock can still sample JSON schemas and choices in pure Python.
    return ALL_CONSTRAINT_KINDS if constraints.grammar_engine_available() else _PURE_PYTHON_KINDS


def validate_for_mock(constraint: Constraint) -> constraints.ConstraintReport:
    """The mock's question: can it produce an output for this constraint (one draw, fixed
    seed)? `UnsupportedConstraint` when that needs XGrammar and it is missing,
    `InvalidConstraint` when nothing satisfies it or no draw was found."""
    constraints.validate_local(constraint)
    try:
        sampling.sampleable(constraint)
    except sampling.NeedsGrammarEngine as needs:
        raise UnsupportedConstraint(
            constraint.kind,
            MockProvider.name,
            f"sampling {needs.what} needs XGrammar; {constraints.GRAMMAR_EXTRA_HINT}",
        ) from None
    except sampling.Unsatisfiable as nothing:
        raise InvalidConstraint(constraint.kind, f"no output can satisfy it: {nothing}") from None
    except sampling.SamplingFailed as failed:
        raise InvalidConstraint(
            constraint.kind, f"the mock cannot produce an output for it: {failed}"
        ) from None
    return constraints.ConstraintReport(constraint.kind, "mock")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class ScriptExhausted(AssertionError):
    """More requests arrived than the script had replies: the code under test asked more
    than the test said it would."""


class MockProvider(InferenceProvider):
    """Offline, deterministic, constraint-honouring provider. See the module docstring."""

    name = "mock"
    notice: ClassVar[str] = (
        "Running on the offline mock provider: no model, no network; its answers are valid "
        "samples of each step's format, not solutions. For a real model: pip install "
        "'hi-moe[openai]', then export HI_MOE_PROVIDER=vllm "
        "HI_MOE_MODAL__ENDPOINT=http://127.0.0.1:8000 (after `hi-moe serve-local --tiny`, or "
        "your Modal endpoint)."
    )
    """What a harness should tell its user when it runs on the mock (the CLI and the example
    print it), so nobody mistakes a sample for an answer."""
    capabilities = Capabilities(
        constraint_kinds=_engine_kinds(), adapters=True, runtime_adapters=True, streaming=True
    )

    def __init__(
        self,
        *,
        replies: Iterable[Reply] | None = None,
        respond: ReplyFunction | None = None,
        seed: int = 0,
        adapters: Iterable[str] = (),
        base_model: str = "mock-base",
        latency_s: Latency = 0.0,
        constraint_kinds: Iterable[ConstraintKind] | None = None,
        lora_slots: int | None = None,
        lora_load_s: float = 0.0,
    ) -> None:
        """
        Args:
            replies: answers consumed one per request; running out raises `ScriptExhausted`.
            respond: a function (sync or async) of the request returning the answer, or None
                to let the mock sample one as it would without a function.
            seed: with neither of the above, outputs are sampled deterministically from
                (seed, request): the same request always gets the same answer.
            adapters: the LoRA adapters this mock serves; others raise `UnknownAdapter`.
            latency_s: seconds to wait before answering, or a function of the request. Past
                the request's `timeout_s` the mock raises `ProviderTimeout`, as a client would.
            constraint_kinds: restrict what it enforces, e.g. `["json_schema"]` to stand in
                for the JSON-only OpenAI provider.
            lora_slots: model a server that holds this many adapters at once (vLLM's
                `--max-loras`): a request for an adapter not loaded waits for a slot free of
                running requests, then takes `lora_load_s` more (`lora_loads` counts them).
        """
        if replies is not None and respond is not None:
            raise ValueError("give MockProvider either replies or respond, not both")
        self._script: deque[Reply] | None = deque(replies) if replies is not None else None
        self._respond = respond
        self.seed = seed
        self.base_model = base_model
        self._adapters = dict.fromkeys(adapters, "")
        self._latency = latency_s
        self._slots = None if lora_slots is None else LoraSlots(lora_slots, lora_load_s)
        kinds = ALL_CONSTRAINT_KINDS if constraint_kinds is None else frozenset(constraint_kinds)
        self.capabilities = type(self).capabilities.model_copy(
            update={"constraint_kinds": kinds & _engine_kinds()}
        )
        self._wanted_kinds = kinds
        self.requests: list[CompletionRequest] = []
        """Every request that got past validation, in arrival order."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        mock = settings.mock
        return cls(seed=mock.seed, adapters=mock.adapters, latency_s=mock.latency_s)

    @property
    def lora_loads(self) -> int:
        """Adapters loaded into a slot so far, with `lora_slots` set (else 0)."""
        return 0 if self._slots is None else self._slots.loads

    def __repr__(self) -> str:
        return f"MockProvider(seed={self.seed}, adapters={list(self._adapters)})"

    def validate_constraint(self, constraint: Constraint) -> constraints.ConstraintReport:
        """A scripted mock answers from its script and only needs the constraint checkable;
        otherwise it must be able to sample an answer (`validate_for_mock`)."""
        if self._script is not None:
            return constraints.validate_local(constraint)
        return validate_for_mock(constraint)

    @property
    def dialect(self) -> Hashable:
        return (type(self), self._script is None)

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        if kind in self._wanted_kinds:
            return f"sampling {kind} constraints needs XGrammar; {constraints.GRAMMAR_EXTRA_HINT}"
        return "this MockProvider was configured without it"

    # -- InferenceProvider -------------------------------------------------------------------

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        self.requests.append(request)
        if request.adapter is not None and request.adapter not in self._adapters:
            raise UnknownAdapter(request.adapter, list(self._adapters), provider=self.name)
        if self._slots is None:
            await self._wait(request)
        else:
            async with self._slots.use(request.adapter):
                await self._wait(request)
        reply = await self._reply(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text, finish_reason = _fit(reply, request.max_tokens)
        return Completion(
            text=text,
            finish_reason=finish_reason,
            usage=Usage(
                prompt_tokens=sum(
                    estimate_tokens(m.content) + _MESSAGE_OVERHEAD_TOKENS for m in request.messages
                ),
                completion_tokens=estimate_tokens(text),
            ),
            provider=self.name,
            model=request.adapter or self.base_model,
            adapter=request.adapter,
            latency_s=time.perf_counter() - started,
            request_id=f"mock-{len(self.requests)}",
        )

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[str | Completion]:
        completion = await self._complete(request)
        for start in range(0, len(completion.text), CHARS_PER_TOKEN):
            await asyncio.sleep(0)
            yield completion.text[start : start + CHARS_PER_TOKEN]
        yield completion

    async def adapters(self) -> list[str]:
        return list(self._adapters)

    async def health(self) -> Health:
        return Health(provider=self.name, status="ok", detail="offline mock", latency_s=0.0)

    # -- runtime adapters, mirroring vLLM's load/unload endpoints --------------------------

    async def load_adapter(self, name: str, path: str = "", *, replace: bool = False) -> None:
        self._adapters[name] = path

    async def unload_adapter(self, name: str) -> None:
        if name not in self._adapters:
            raise UnknownAdapter(name, list(self._adapters), provider=self.name)
        del self._adapters[name]

    # -- answering ---------------------------------------------------------------------------

    async def _wait(self, request: CompletionRequest) -> None:
        delay = self._latency(request) if callable(self._latency) else self._latency
        if request.timeout_s is not None and delay > request.timeout_s:
            await asyncio.sleep(request.timeout_s)
            raise ProviderTimeout(f"no answer within {request.timeout_s} s", provider=self.name)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _reply(self, request: CompletionRequest) -> Reply:
        if self._respond is not None:
            reply = self._respond(request)
            reply = await reply if inspect.isawaitable(reply) else reply
            if reply is not None:
                return reply  # None: the function passes; sample as if there were none
        if self._script is not None:
            if not self._script:
                raise ScriptExhausted(
                    f"MockProvider's script ran out at request {len(self.requests)}: "
                    f"{request.messages[-1].content[:120]!r}"
                )
            return self._script.popleft()
        return self._sample(request)

    def _sample(self, request: CompletionRequest) -> str:
        # Seeded by content, not arrival order, so concurrent callers get stable answers.
        # How long the caller will wait does not change what is asked, so not the answer.
        asked = request.model_dump_json(exclude={"deadline_s"})
        rng = random.Random(f"{self.seed}:{asked}")
        max_chars = request.max_tokens * CHARS_PER_TOKEN
        constraint = request.constraint
        if constraint is None:
            return sampling.sample_text(rng, max_chars)
        try:
            return sampling.sample(constraint, rng, max_chars=max_chars)
        except sampling.NeedsGrammarEngine as needs:
            raise UnsupportedConstraint(
                constraint.kind,
                self.name,
                f"sampling {needs.what} needs XGrammar; {constraints.GRAMMAR_EXTRA_HINT}",
            ) from None
        except sampling.Unsatisfiable as nothing:
            raise InvalidConstraint(
                constraint.kind, f"no output can satisfy it: {nothing}"
            ) from None
        except sampling.SamplingFailed as failed:
            raise InvalidConstraint(
                constraint.kind, f"the mock found no output that satisfies it: {failed}"
            ) from None


def _fit(text: str, max_tokens: int) -> tuple[str, FinishReason]:
    """Cut text at max_tokens as a server would, and say so in the finish reason."""
    if estimate_tokens(text) <= max_tokens:
        return text, "stop"
    return text[: max_tokens * CHARS_PER_TOKEN], "length"
