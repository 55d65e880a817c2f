"""`InferenceProvider`: the one seam between the harness and a backend.

A provider implements `_complete` (and optionally `_stream`), `adapters` and `health`. The
public `complete` and `stream` wrap them with the rules every provider keeps, so no backend can
forget one: an unsupported or malformed constraint fails before any network call, and an output
that breaks its constraint is raised as `ConstraintViolation`, never returned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from hi_moe import constraints
from hi_moe.errors import UnknownAdapter, UnsupportedConstraint
from hi_moe.types import Completion, CompletionRequest, ConstraintKind

if TYPE_CHECKING:
    from hi_moe.config import Settings

__all__ = ["ALL_CONSTRAINT_KINDS", "Capabilities", "Health", "InferenceProvider"]

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
        parsed = constraints.check(
            request.constraint, completion.text, finish_reason=completion.finish_reason
        )
        return completion.model_copy(update={"parsed": parsed})

    async def stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Text chunks as they are generated.

        The constraint can only be checked once the text is complete: a violation is raised
        after the last chunk, so a consumer must not act on the text before the stream ends.
        """
        self.prepare(request)
        parts: list[str] = []
        async for chunk in self._stream(request):
            parts.append(chunk)
            yield chunk
        if request.constraint is not None:
            constraints.check(request.constraint, "".join(parts))

    # -- what a backend implements ----------------------------------------------------------

    @abstractmethod
    async def _complete(self, request: CompletionRequest) -> Completion:
        """Produce the completion for a request that `prepare` accepted; no checking here."""

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[str]:
        """Stream text chunks. Backends without streaming answer in one chunk."""
        completion = await self._complete(request)
        yield completion.text

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
