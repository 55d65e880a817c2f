"""`python -m hi_moe.ops.deployment_check`: prove a deployed server works, through the library's
own provider: health (waiting out a cold start), the adapters it serves, one request per
adapter and one grammar-constrained request. Exit status 0 only when every check passes.

It reads the usual settings (HI_MOE_MODAL__ENDPOINT, the keys); `test_deployment.sh` runs it.
"""

from __future__ import annotations

import asyncio
import sys

from hi_moe import CompletionRequest, Grammar, load_provider
from hi_moe.errors import HiMoeError

GRAMMAR = Grammar('root ::= "The answer is " [0-9] [0-9]? "."')


def say(ok: bool, what: str) -> bool:
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return ok


async def check() -> bool:
    passed = True
    async with load_provider() as provider:
        wait = getattr(provider, "wait_until_ready", None)
        if wait is not None:
            print("waiting for the server (a cold start takes minutes)...", flush=True)
            await wait()
        health = await provider.health()
        passed &= say(health.ok, f"health: {health.status} {health.detail or ''}".rstrip())
        names = await provider.adapters()
        passed &= say(True, f"adapters: {', '.join(names) or 'none'}")
        for adapter in [None, *names]:
            try:
                done = await provider.complete(
                    CompletionRequest.from_prompt("Say hello.", adapter=adapter, max_tokens=16)
                )
            except HiMoeError as error:
                passed &= say(False, f"{adapter or 'base model'}: {type(error).__name__}: {error}")
            else:
                passed &= say(
                    True, f"{adapter or 'base model'}: {done.text[:40]!r} ({done.latency_s:.2f} s)"
                )
        try:
            done = await provider.complete(
                CompletionRequest.from_prompt("What is 6 x 7?", constraint=GRAMMAR, max_tokens=16)
            )
        except HiMoeError as error:
            passed &= say(False, f"grammar: {type(error).__name__}: {error}")
        else:
            passed &= say(True, f"grammar: {done.text!r}")
    return passed


def main() -> int:
    try:
        return 0 if asyncio.run(check()) else 1
    except HiMoeError as error:
        print(f"FAIL {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
