"""`hi-moe doctor`: prove, in seconds, that the configured provider does what it claims.

A server that ignores constraint fields answers 200 with unconstrained text (vLLM did exactly
that with the removed `guided_*` fields): every output check would then fail, one retry at a
time, and a harness would learn it only from its retry counts. The doctor asks directly:

- the provider is healthy, and a plain request gets through (authentication works);
- for each constraint kind it claims, a canary request whose constraint an unconstrained
  answer would not meet (the doctor checks that first) comes back satisfying it;
- each adapter it serves answers, and differently from the base model (an adapter that is
  silently not applied gives the base model's answer).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hi_moe import constraints
from hi_moe.errors import AuthenticationError, ConstraintViolation, HiMoeError
from hi_moe.providers.base import InferenceProvider
from hi_moe.types import Choice, CompletionRequest, Constraint, Grammar, JsonSchema, Regex

__all__ = ["CANARIES", "Check", "diagnose"]

PROMPT = "Write one short sentence about the sea."
CANARIES: dict[str, Constraint] = {
    "choice": Choice(["qv-canary-7", "zx-canary-3"]),
    "regex": Regex(r"canary-[0-9]{3}-[a-z]{2}"),
    "json_schema": JsonSchema(
        {
            "type": "object",
            "properties": {"canary": {"const": "qz-19"}},
            "required": ["canary"],
            "additionalProperties": False,
        },
        name="canary",
    ),
    "grammar": Grammar('root ::= "canary-" [0-9] [0-9] "!"'),
}
"""One request per kind, each constraint chosen so that free text does not satisfy it."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail} ({self.seconds:.2f} s)"


def _request(constraint: Constraint | None = None, adapter: str | None = None) -> CompletionRequest:
    return CompletionRequest.from_prompt(
        PROMPT, constraint=constraint, adapter=adapter, max_tokens=24, temperature=0.0, seed=7
    )


async def diagnose(
    provider: InferenceProvider, *, on_check: Callable[[Check], None] | None = None
) -> list[Check]:
    """Run every check against `provider`; `on_check` sees each as it finishes."""
    results: list[Check] = []

    async def run(name: str, probe: Callable[[], Awaitable[tuple[bool, str]]]) -> Check:
        started = time.perf_counter()
        try:
            ok, detail = await probe()
        except AuthenticationError as error:
            ok, detail = False, f"authentication failed: {error}"
        except HiMoeError as error:
            ok, detail = False, f"{type(error).__name__}: {error}"
        check = Check(name, ok, detail, time.perf_counter() - started)
        results.append(check)
        if on_check is not None:
            on_check(check)
        return check

    async def health() -> tuple[bool, str]:
        found = await provider.health()
        return found.ok, f"{found.status} {found.detail}".strip()

    baseline: dict[str, str] = {}

    async def plain() -> tuple[bool, str]:
        done = await provider.complete(_request())
        baseline["text"] = done.text
        return True, f"{done.model or provider.name} answered {done.text[:40]!r}"

    await run("health", health)
    if not (await run("plain request (auth)", plain)).ok:
        return results  # nothing else can get through
    free = baseline["text"]
    for kind, canary in CANARIES.items():
        if not provider.capabilities.supports(kind):  # type: ignore[arg-type]
            continue

        async def enforced(canary: Constraint = canary) -> tuple[bool, str]:
            try:
                constraints.check(canary, free)
            except ConstraintViolation:
                pass
            else:
                return True, "inconclusive: the unconstrained answer already satisfies it"
            try:
                done = await provider.complete(_request(canary))
            except ConstraintViolation as violation:
                return False, (
                    f"the server ignored the constraint: it answered {violation.text[:60]!r}"
                )
            return True, f"enforced ({done.text[:40]!r})"

        await run(f"{kind} enforced", enforced)
    for adapter in await provider.adapters():

        async def changes(adapter: str = adapter) -> tuple[bool, str]:
            done = await provider.complete(_request(adapter=adapter))
            if done.text == free:
                return False, "answers exactly as the base model: is the adapter applied?"
            return (
                True,
                f"served, and its answer differs from the base model's ({done.text[:30]!r})",
            )

        await run(f"adapter {adapter}", changes)
    return results
