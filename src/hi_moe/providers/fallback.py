"""`FallbackProvider`: several providers behind one `InferenceProvider`, tried in order.

A call goes to the first member that can take it. It moves on to the next when the member's
error says another provider could help (`fallback_on`: by default a retryable `ProviderError`,
a readiness timeout included; `on_unavailable_or_rejected` adds an output that broke its
constraint after the member's own retries), and when the member cannot take the request at all
(the constraint kind, the constraint in its dialect, or the adapter), which costs no request.
Each member keeps every rule of its own: it validates, retries and checks. This class adds only
the order, the cooldowns and the record of each hop.

Cooldowns work as LiteLLM's do: a member that failed `failures` times within `window_s` is
skipped for `cooldown_s` (at once when nothing listens at its endpoint: `ProviderUnreachable`
is not a blip that the next call may miss); after that one call probes it (half-open) while
the others still skip it, and the probe's outcome closes or re-opens the breaker. When every
member that could take a request is cooling down the call fails at once with
`ProviderUnavailable` and a `retry_after`.

Every `Completion` names the member that answered (`provider`) and the members passed over
before it (`hops`, with the tokens a rejected output cost); an error raised carries the same
record in `error.hops`. `on_hop` sees each hop as it happens, for events and metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from typing import Self

from hi_moe import deadline
from hi_moe.errors import (
    ConstraintViolation,
    HiMoeError,
    InvalidConstraint,
    ProviderError,
    UnknownAdapter,
    UnsupportedConstraint,
)
from hi_moe.providers.base import Capabilities, CompletionStream, Health, InferenceProvider
from hi_moe.providers.cooldown import Breaker, Cooldown
from hi_moe.providers.hops import HopSink, Member, Trail
from hi_moe.types import Completion, CompletionRequest, ConstraintKind

__all__ = [
    "Cooldown",
    "FallbackProvider",
    "on_unavailable",
    "on_unavailable_or_rejected",
]


FallbackOn = Callable[[HiMoeError], bool]
RequestFor = Callable[[str, InferenceProvider], CompletionRequest | None]
"""Builds the request for one member (its label, the provider), or None to pass it over: how
a harness adapts a request to what each member can do (JSON where grammars are not enforced)."""

# Errors that say "this member cannot take this request", not "this member is failing": the
# next member is asked, and the member's health is not touched.
_CANNOT_TAKE = (UnsupportedConstraint, InvalidConstraint, UnknownAdapter)


def on_unavailable(error: HiMoeError) -> bool:
    """Fall back when another provider could help now: a retryable `ProviderError` (5xx,
    refused, reset, timeouts, a cold start that outlasted the wait, 429, malformed bodies)."""
    return isinstance(error, ProviderError) and error.retryable


def on_unavailable_or_rejected(error: HiMoeError) -> bool:
    """`on_unavailable`, and an output rejected by its constraint after the member's retries."""
    return on_unavailable(error) or isinstance(error, ConstraintViolation)


class _FallbackStream(CompletionStream):
    """The first member's stream that starts; a member that fails before its first chunk is
    passed over as in `complete`, one that fails later ends the stream with its error."""

    provider: FallbackProvider

    async def _run(self) -> AsyncGenerator[str, None]:
        fallback, request = self.provider, self.request
        trail = Trail(fallback.on_hop)
        for member in fallback._members:
            if not trail.admits(member, fallback._lacks(member, request)):
                continue
            stream = member.provider.stream(request)
            probe = member.breaker.begin()
            started = time.perf_counter()
            verdict: HiMoeError | bool | None = None
            try:
                try:
                    first: str | None = await stream.__anext__()
                except StopAsyncIteration:
                    first = None
                except _CANNOT_TAKE as error:
                    trail.cannot_take(member.label, error, started)
                    continue
                except HiMoeError as error:
                    verdict = error if isinstance(error, ProviderError) else None
                    if not fallback.fallback_on(error):
                        error.hops = trail.hops()
                        raise
                    trail.failed(member.label, error, started)
                    continue
                # Past the first chunk there is no going back: the consumer has text.
                if first is not None:
                    yield first
                async for chunk in stream:
                    yield chunk
                verdict = True
            except ProviderError as error:
                verdict = error
                raise
            finally:
                await stream.aclose()
                member.breaker.settle(verdict, probe)
            assert stream.completion is not None
            self.completion = stream.completion.model_copy(
                update={"provider": member.label, "hops": trail.hops()}
            )
            return
        raise trail.give_up(fallback.name)


class FallbackProvider(InferenceProvider):
    """Providers tried in order; itself a provider, so any harness can use it.

    `FallbackProvider(primary, *fallbacks)` labels members by their `name` (a repeated name
    gets a suffix: `modal`, `modal-2`); `FallbackProvider.of({"fast": a, "backup": b})` names
    them. `ordered(labels)` gives a view over the same members (and their breakers) in another
    order, which is how the pipeline's routes pick a first choice per step.
    """

    name = "fallback"

    def __init__(
        self,
        primary: InferenceProvider,
        *fallbacks: InferenceProvider,
        fallback_on: FallbackOn = on_unavailable,
        cooldown: Cooldown | None = None,
        on_hop: HopSink | None = None,
        labels: Sequence[str] | None = None,
    ) -> None:
        providers = (primary, *fallbacks)
        names = list(labels) if labels is not None else _unique([p.name for p in providers])
        if len(names) != len(providers) or len(set(names)) != len(names):
            raise ValueError("one distinct label per provider")
        policy = cooldown or Cooldown()
        members = [Member(n, p, Breaker(policy)) for n, p in zip(names, providers, strict=True)]
        self._setup(members, fallback_on=fallback_on, on_hop=on_hop)

    @classmethod
    def of(
        cls,
        providers: Mapping[str, InferenceProvider],
        *,
        fallback_on: FallbackOn = on_unavailable,
        cooldown: Cooldown | None = None,
        on_hop: HopSink | None = None,
    ) -> Self:
        """Members named by the mapping's keys, in its order."""
        if not providers:
            raise ValueError("a FallbackProvider needs at least one provider")
        first, *rest = providers.values()
        return cls(
            first,
            *rest,
            fallback_on=fallback_on,
            cooldown=cooldown,
            on_hop=on_hop,
            labels=list(providers),
        )

    def _setup(
        self, members: list[Member], *, fallback_on: FallbackOn, on_hop: HopSink | None
    ) -> None:
        self._members = members
        self.fallback_on = fallback_on
        self.on_hop = on_hop
        caps = [m.provider.capabilities for m in members]
        self.capabilities = Capabilities(
            constraint_kinds=frozenset().union(*(c.constraint_kinds for c in caps)),
            adapters=any(c.adapters for c in caps),
            runtime_adapters=any(c.runtime_adapters for c in caps),
            streaming=any(c.streaming for c in caps),
        )

    def ordered(self, labels: Iterable[str], *, on_hop: HopSink | None = None) -> Self:
        """A view trying the members `labels` names, in that order (sharing their breakers)."""
        by_label = {m.label: m for m in self._members}
        chosen = list(dict.fromkeys(labels))
        unknown = [label for label in chosen if label not in by_label]
        if unknown or not chosen:
            raise ValueError(f"no such members: {', '.join(unknown) or '(none given)'}")
        view = object.__new__(type(self))
        view._setup(
            [by_label[label] for label in chosen],
            fallback_on=self.fallback_on,
            on_hop=on_hop if on_hop is not None else self.on_hop,
        )
        return view

    @property
    def members(self) -> dict[str, InferenceProvider]:
        return {m.label: m.provider for m in self._members}

    def record_failure(self, label: str, error: HiMoeError) -> None:
        """Count a failure of member `label` seen outside a call through this chain (a health
        check or an adapter listing, say), so the cooldown knows it before the next call."""
        member = next((m for m in self._members if m.label == label), None)
        if member is None:
            raise ValueError(f"no such member: {label}")
        if isinstance(error, ProviderError):
            member.breaker.failed(probe=False, error=error)

    def __repr__(self) -> str:
        return f"FallbackProvider({', '.join(m.label for m in self._members)})"

    # -- which members, in which order ---------------------------------------------------------

    def _lacks(self, member: Member, request: CompletionRequest) -> HiMoeError | None:
        """Why `member` cannot take `request` by its capabilities alone (no call needed)."""
        caps = member.provider.capabilities
        constraint = request.constraint
        if constraint is not None and not caps.supports(constraint.kind):
            return UnsupportedConstraint(
                constraint.kind, member.label, member.provider.unsupported_hint(constraint.kind)
            )
        if request.adapter is not None and not caps.adapters:
            return UnknownAdapter(request.adapter, [], provider=member.label)
        return None

    def _refuse(self, request: CompletionRequest) -> None:
        """`prepare` refuses only what no member can take; the first member's reason is
        raised."""
        first: HiMoeError | None = None
        for member in self._members:
            try:
                member.provider.prepare(request)
            except _CANNOT_TAKE as error:
                first = first or error
            else:
                return
        assert first is not None
        raise first

    def unsupported_hint(self, kind: ConstraintKind) -> str:
        return f"none of {', '.join(m.label for m in self._members)} can"

    # -- calls ---------------------------------------------------------------------------------

    # `complete` and `stream` keep the deadline; the rules about constraints and adapters are
    # the members': each one admits, validates and checks for itself, in its own dialect, and
    # one that cannot take the request is passed over. So nothing more is done here.
    _stream_type = _FallbackStream
    _metered = False  # its members meter their own time
    # Past the deadline the members' own backstops fire first, so their typed errors (and the
    # hops) come out rather than this chain's.
    _backstop_grace_s = 2 * InferenceProvider._backstop_grace_s

    async def _admit(self, request: CompletionRequest) -> None:
        pass

    async def _accept(self, request: CompletionRequest, completion: Completion) -> Completion:
        return completion  # checked by the member that answered

    async def _complete(self, request: CompletionRequest) -> Completion:
        """The first member's checked answer that came (see the module docstring)."""
        return await self.complete_each(lambda label, provider: request)

    async def complete_each(
        self, request_for: RequestFor, *, on_hop: HopSink | None = None
    ) -> Completion:
        """Like `complete`, with a request built per member by `request_for`."""
        trail = Trail(on_hop or self.on_hop)
        for member in self._members:
            if trail.failed_with is not None and deadline.seconds_left() <= 0:
                break  # no time left to ask anyone else: the last failure stands
            request = request_for(member.label, member.provider)
            if request is None:
                trail.skip(member.label, "passed over for this request")
                continue
            if not trail.admits(member, self._lacks(member, request)):
                continue
            probe = member.breaker.begin()
            started = time.perf_counter()
            verdict: HiMoeError | bool | None = None
            try:
                completion = await member.provider.complete(request)
            except _CANNOT_TAKE as error:
                trail.cannot_take(member.label, error, started)
                continue
            except HiMoeError as error:
                if isinstance(error, ProviderError):
                    verdict = error
                if not self.fallback_on(error):
                    error.hops = trail.hops()
                    raise
                trail.failed(member.label, error, started)
                continue
            else:
                verdict = True
                return completion.model_copy(
                    update={"provider": member.label, "hops": trail.hops()}
                )
            finally:
                member.breaker.settle(verdict, probe)
        raise trail.give_up(self.name)

    # -- the rest of the interface -----------------------------------------------------------

    async def adapters(self) -> list[str]:
        """Every adapter some member serves (members that cannot say are left out)."""
        answers = await asyncio.gather(
            *(m.provider.adapters() for m in self._members if m.provider.capabilities.adapters),
            return_exceptions=True,
        )
        names: set[str] = set()
        errors = [a for a in answers if isinstance(a, BaseException)]
        for answer in answers:
            if isinstance(answer, list):
                names.update(answer)
        if errors and len(errors) == len(answers):
            for error in errors:
                if not isinstance(error, HiMoeError):
                    raise error  # a bug, not an outage
            raise errors[0]
        return sorted(names)

    async def health(self) -> Health:
        """OK when some member is; the detail lists each member's state."""
        states = await asyncio.gather(*(m.provider.health() for m in self._members))
        detail = "; ".join(
            f"{m.label}: {h.status}{f' ({h.detail})' if h.detail else ''}"
            for m, h in zip(self._members, states, strict=True)
        )
        status = (
            "ok"
            if any(h.ok for h in states)
            else "starting"
            if any(h.status == "starting" for h in states)
            else "down"
        )
        return Health(provider=self.name, status=status, detail=detail)

    async def aclose(self) -> None:
        for member in self._members:
            await member.provider.aclose()


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out: list[str] = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out
