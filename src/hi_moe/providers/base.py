"""`InferenceProvider`: the one seam between the harness and a backend.

A provider implements `_complete` (and optionally `_stream`), `adapters` and `health`. The
public `complete` and `stream` wrap them with the rules every provider keeps, so no backend can
forget one: an unsupported or malformed constraint fails before any network call, and an output
that breaks its constraint is raised as `ConstraintViolation`, never returned.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from hi_moe import constraints
from hi_moe.errors import ConstraintViolation, UnknownAdapter, UnsupportedConstraint
from hi_moe.types import Completion, CompletionRequest, ConstraintKind

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = [
    "ALL_CONSTRAINT_KINDS",
    "Capabilities",
    "CompletionStream",
    "Health",
    "InferenceProvider",
]

ALL_CONSTRAINT_KINDS: frozenset[ConstraintKind] = frozenset(
    ("json_schema", "grammar", "regex", "choice")
)


class Capabilities(BaseModel):
    """What a provider can do, so the harness can route without trial and error."""

    model_config = ConfigDict(frozen=True)

    constraint_kinds: frozenset[ConstraintKind] = ALL_CONSTRAINT_KINDS
    adapters: bool = False
    """Serves LoRA adapters chosen per request."""
    runtime_adapters: bool = False
    """Can load and unload adapters while running."""
    streaming: bool = True

    def supports(self, kind: ConstraintKind) -> bool:
        return kind in self.constraint_kinds


class Health(BaseModel):
    """A provider's readiness. `starting` is a cold Modal app still loading its model."""

    model_config = ConfigDict(frozen=True)

    provider: str
    status: Literal["ok", "starting", "down"]
    detail: str = ""
    latency_s: Annotated[float, Field(ge=0.0)] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class InferenceProvider(ABC):
    """Base class of every backend. Use as `async with provider:` to release connections."""

    name: ClassVar[str]
    capabilities: Capabilities

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the provider from configuration; `load_provider()` calls this."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from settings")

    # -- the rules every provider keeps ---------------------------------------------------

    def prepare(self, request: CompletionRequest) -> None:
        """Refuse, before any network call, what this provider cannot do for `request`."""
        constraint = request.constraint
        if constraint is not None:
            if not self.capabilities.supports(constraint.kind):
                raise UnsupportedConstraint(
                    constraint.kind, self.name, self.unsupported_hint(constraint.kind)
                )
            constraints.validate(constraint)
        if request.adapter is not None and not self.capabilities.adapters:
            raise UnknownAdapter(request.adapter, [], provider=self.name)

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        """What to do instead when `kind` is unsupported; shown in `UnsupportedConstraint`."""
        return "route it to a provider that can (the modal/vLLM provider enforces every kind)"

    async def complete(self, request: CompletionRequest) -> Completion:
        """One checked completion. `parsed` holds the JSON value for `JsonSchema` requests."""
        self.prepare(request)
        completion = await self._complete(request)
        if request.constraint is None:
            return completion
        try:
            parsed = constraints.check(
                request.constraint, completion.text, finish_reason=completion.finish_reason
            )
        except ConstraintViolation as violation:
            violation.usage = completion.usage  # the tokens were spent all the same
            raise
        return completion.model_copy(update={"parsed": parsed})

    def stream(self, request: CompletionRequest) -> CompletionStream:
        """Text chunks as they are generated; afterwards `.completion` holds the whole result.

        The constraint can only be checked once the text is complete: a violation is raised
        after the last chunk, so a consumer must not act on the text before the stream ends.
        """
        return CompletionStream(self, request)

    # -- what a backend implements ----------------------------------------------------------

    @abstractmethod
    async def _complete(self, request: CompletionRequest) -> Completion:
        """Produce the completion for a request that `prepare` accepted; no checking here."""

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[str | Completion]:
        """Yield text chunks, then optionally one `Completion` carrying the usage, finish
        reason and model (its text is ignored). Without streaming: one chunk."""
        completion = await self._complete(request)
        yield completion.text
        yield completion

    @abstractmethod
    async def adapters(self) -> list[str]:
        """Names of the LoRA adapters this provider serves (the base model excluded)."""

    @abstractmethod
    async def health(self) -> Health:
        """Readiness, without raising for an unreachable backend."""

    async def aclose(self) -> None:  # noqa: B027 - optional: most mocks hold nothing
        """Release connections. Safe to call more than once."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class CompletionStream(AsyncIterator[str]):
    """What `InferenceProvider.stream` returns: iterate it for text chunks; once exhausted,
    `completion` is the checked `Completion` (usage from the server's last chunk)."""

    def __init__(self, provider: InferenceProvider, request: CompletionRequest) -> None:
        self.provider = provider
        self.request = request
        self.completion: Completion | None = None
        self._chunks = self._run()

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> str:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    async def _run(self) -> AsyncGenerator[str, None]:
        provider, request = self.provider, self.request
        provider.prepare(request)
        started = time.perf_counter()
        parts: list[str] = []
        final: Completion | None = None
        async for item in provider._stream(request):
            if isinstance(item, str):
                parts.append(item)
                yield item
            else:
                final = item
        text = "".join(parts)
        if final is None:
            final = Completion(text=text, provider=provider.name, model="")
        parsed = None
        if request.constraint is not None:
            parsed = constraints.check(request.constraint, text, finish_reason=final.finish_reason)
        self.completion = final.model_copy(
            update={"text": text, "parsed": parsed, "latency_s": time.perf_counter() - started}
        )
