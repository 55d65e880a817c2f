"""`InferenceProvider`: the one seam between the harness and a backend.

A provider implements `_complete` (and optionally `_stream`), `adapters` and `health`. The
public `complete`, `stream` and `prepare` wrap them with the rules every provider keeps, so no
backend can forget one: an unsupported or malformed constraint fails before any network call,
and an output that breaks its constraint is raised as `ConstraintViolation`, never returned.
They are `@final`: mypy refuses a subclass that overrides them. What a provider may change are
the hooks they call: `validate_constraint` (its dialect), `_warm`, `_complete`/`_stream` (the
send), and, for a provider that only calls other providers which keep the rules themselves
(`FallbackProvider`), `_refuse`, `_admit`, `_accept` and `_stream_type`.

A backend validates in its own dialect (`validate_constraint`: what XGrammar compiles, what
OpenAI's strict mode expresses, what the mock can sample); the check after the answer is
always the whole constraint. Both run off the event loop where they can be slow, bounded by
`compile_timeout_s`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Self, final

from pydantic import BaseModel, ConfigDict, Field

from hi_moe import constraints, deadline
from hi_moe.cost.meter import SHARE_FIELDS, InFlight, InFlightMeter
from hi_moe.errors import (
    ConstraintViolation,
    HiMoeError,
    ProviderTimeout,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.types import Completion, CompletionRequest, Constraint, ConstraintKind

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = [
    "ALL_CONSTRAINT_KINDS",
    "Capabilities",
    "CompletionStream",
    "Health",
    "InferenceProvider",
    "checkable_kinds",
]

_BACKSTOP_GRACE_S = 0.25

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


def checkable_kinds(
    kinds: frozenset[ConstraintKind], trusted: frozenset[str] = frozenset()
) -> frozenset[ConstraintKind]:
    """The kinds a provider may accept: those whose outputs can be checked here, and those the
    user trusts the server to enforce (`trust_server_constraints`). Fail closed otherwise."""
    return frozenset(k for k in kinds if constraints.locally_checked(k) or k in trusted)


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
    _stream_type: ClassVar[type[CompletionStream]]
    """What `stream` returns (`CompletionStream`, which keeps the rules around `_stream`)."""
    _backstop_grace_s: ClassVar[float] = _BACKSTOP_GRACE_S
    """How long after the call's deadline `complete` ends a call that ignored it."""
    compile_timeout_s: float = constraints.COMPILE_TIMEOUT_S
    """Bound on validating one constraint (an XGrammar compile) and on checking one output."""
    deadline_s: float | None = None
    """This provider's worst case for one `complete()`, every stage included; a request's
    `deadline_s` or an enclosing `hi_moe.deadline.scope` shortens it. None: no own bound."""
    _metered: ClassVar[bool] = True
    """Whether `complete` meters this provider's time in flight (`meter`). Off for a provider
    that only calls others, which meter themselves."""
    _meter: InFlightMeter | None = None

    @property
    def meter(self) -> InFlightMeter:
        """This provider's time in flight, shared out among overlapping requests: each
        completion's `busy_share_s`, by which GPU time is charged (`hi_moe.cost`)."""
        if self._meter is None:
            self._meter = InFlightMeter()
        return self._meter

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build the provider from configuration; `load_provider()` calls this."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from settings")

    # -- the rules every provider keeps ---------------------------------------------------

    @final
    def prepare(self, request: CompletionRequest) -> None:
        """Refuse, before any network call, what this provider cannot do for `request`. (The
        async paths run the validation in a worker thread: this is the blocking form.)"""
        self._refuse(request)

    def _refuse(self, request: CompletionRequest) -> None:
        """`prepare`'s work: the capabilities, then the constraint in this backend's dialect."""
        self._refuse_unsupported(request)
        if request.constraint is not None:
            self.validate_constraint(request.constraint)

    def _refuse_unsupported(self, request: CompletionRequest) -> None:
        constraint = request.constraint
        if constraint is not None and not self.capabilities.supports(constraint.kind):
            raise UnsupportedConstraint(
                constraint.kind, self.name, self.unsupported_hint(constraint.kind)
            )
        if request.adapter is not None and not self.capabilities.adapters:
            raise UnknownAdapter(request.adapter, [], provider=self.name)

    def validate_constraint(self, constraint: Constraint) -> constraints.ConstraintReport:
        """This backend's question about a constraint (blocking; cached by content and
        `dialect` in the async paths). `InvalidConstraint` when it cannot take it. The base
        asks only whether outputs can be checked here; backends that compile or rewrite
        constraints say more."""
        return constraints.validate_local(constraint)

    def _prepare_constraint(self, constraint: Constraint) -> constraints.ConstraintReport:
        """In the worker thread: validate, then whatever per-constraint work a backend would
        otherwise do on the event loop for every request (`_warm`)."""
        report = self.validate_constraint(constraint)
        self._warm(constraint)
        return report

    def _warm(self, constraint: Constraint) -> None:  # noqa: B027 - optional hook
        """Precompute per-constraint request parts (a backend's encoded schema, say)."""

    @property
    def dialect(self) -> Hashable:
        """What `validate_constraint`'s answer depends on besides the constraint."""
        return type(self)

    async def _admit(self, request: CompletionRequest) -> None:
        """Before the call: `prepare`'s refusals, the validation in a worker thread."""
        self._refuse_unsupported(request)
        constraint = request.constraint
        if constraint is not None:
            await constraints.in_worker(
                (self.dialect, constraint),
                functools.partial(self._prepare_constraint, constraint),
                timeout_s=self.compile_timeout_s,
                kind=constraint.kind,
            )

    async def _accept(self, request: CompletionRequest, completion: Completion) -> Completion:
        """After the call: the completion to return if its output satisfies the request's
        constraint (`text` canonical, `parsed` set); `ConstraintViolation` carrying the tokens
        spent otherwise."""
        if request.constraint is None:
            return completion
        try:
            checked = await self._acheck(request.constraint, completion)
        except ConstraintViolation as violation:
            violation.usage = completion.usage  # the tokens were spent all the same
            violation.model = completion.model
            _occupied(violation, {name: getattr(completion, name) for name in SHARE_FIELDS})
            raise
        return completion.model_copy(update={"text": checked.text, "parsed": checked.parsed})

    async def _acheck(self, constraint: Constraint, completion: Completion) -> constraints.Checked:
        """Check an output, in a worker thread when it is long (bounded: past the time the
        output counts as not checked, which fails closed)."""
        text, finish = completion.text, completion.finish_reason
        if not constraints.heavy(constraint, text):
            return constraints.check_output(constraint, text, finish_reason=finish)
        return await constraints.check_in_worker(
            constraint, text, finish_reason=finish, timeout_s=self.compile_timeout_s
        )

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        """What to do instead when `kind` is unsupported; shown in `UnsupportedConstraint`."""
        return "route it to a provider that can (the modal/vLLM provider enforces every kind)"

    @final
    async def complete(self, request: CompletionRequest) -> Completion:
        """One checked completion. `parsed` holds the JSON value for `JsonSchema` requests;
        `text` is the output, or canonical JSON where raw control characters in its strings
        were the only fault.

        The call runs under one deadline (`request.deadline_s`, else `deadline_s`, never past
        an enclosing scope's) that every stage sees; past it the call ends with
        `ProviderTimeout`, whatever stage it was in."""
        limit = request.deadline_s or self.deadline_s
        with deadline.scope(limit) as at:
            left = None if at is None else max(at - time.monotonic(), 0.0)
            if left == 0.0:
                raise ProviderTimeout("the call's deadline had passed", provider=self.name)
            # The stages stop at the deadline with their own typed errors; this only catches
            # what ignores it, a moment later, so that it never pre-empts theirs.
            backstop = asyncio.timeout(None if left is None else left + self._backstop_grace_s)
            try:
                async with backstop:
                    return await self._checked_complete(request)
            except TimeoutError:
                if backstop.expired():
                    raise ProviderTimeout(
                        f"no answer within the call's deadline ({left or 0.0:.1f} s)",
                        provider=self.name,
                    ) from None
                raise

    async def _checked_complete(self, request: CompletionRequest) -> Completion:
        await self._admit(request)
        if not self._metered:
            return await self._accept(request, await self._complete(request))
        flight: InFlight | None = None
        try:
            with self.meter.request() as flight:
                completion = await self._complete(request)
        except HiMoeError as error:
            if flight is not None:  # a failed call occupied the server all the same
                _occupied(error, flight.shares())
            raise
        assert flight is not None
        return await self._accept(request, completion.model_copy(update=flight.shares()))

    @final
    def stream(self, request: CompletionRequest) -> CompletionStream:
        """Text chunks as they are generated; afterwards `.completion` holds the whole result.

        The constraint can only be checked once the text is complete: a violation is raised
        after the last chunk, so a consumer must not act on the text before the stream ends.
        Where the chunks were JSON with raw control characters in strings, `.completion.text`
        is the repaired, canonical JSON, and differs from the chunks joined.
        """
        return self._stream_type(self, request)

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
        await provider._admit(request)
        started = time.perf_counter()
        parts: list[str] = []
        final: Completion | None = None
        # Metered without `current_request()`: a stream's chunks may be read from other tasks.
        flight = provider.meter.begin() if provider._metered else None
        try:
            async for item in provider._stream(request):
                if isinstance(item, str):
                    parts.append(item)
                    yield item
                else:
                    final = item
        except HiMoeError as error:
            if flight is not None:
                provider.meter.finish(flight)
                _occupied(error, flight.shares())
            raise
        finally:
            if flight is not None:
                provider.meter.finish(flight)
        text = "".join(parts)
        if final is None:
            final = Completion(text=text, provider=provider.name, model="")
        shares = flight.shares() if flight is not None else {}
        final = final.model_copy(update={"text": text, **shares})
        checked = await provider._accept(request, final)
        self.completion = checked.model_copy(update={"latency_s": time.perf_counter() - started})


InferenceProvider._stream_type = CompletionStream


def _occupied(error: HiMoeError, shares: dict[str, float]) -> None:
    """Mark `error` as ending a call that was sent, with what it occupied of its server."""
    error.sent = True
    for name, value in shares.items():
        setattr(error, name, value)
