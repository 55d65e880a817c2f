"""Fault soak: 5,000 requests at concurrency 64 through ModalVLLMProvider against a real HTTP
server on 127.0.0.1 where a quarter of the responses are faults. Every request must end in a
valid Completion or a typed HiMoeError: no hang, no untyped exception, no invalid output
returned, and no more attempts than the retry policy allows."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter

import pytest

from hi_moe import Choice, CompletionRequest, constraints
from hi_moe.errors import HiMoeError
from hi_moe.providers.retry import RetryPolicy
from tests.servers.openai_stub import serving
from tests.support import requires

pytestmark = [pytest.mark.integration, requires("openai", "openai")]

REQUESTS = 5_000
CONCURRENCY = 64
MAX_ATTEMPTS = 3
GLOBAL_DEADLINE_S = 240
YES_NO = Choice(["yes", "no"])


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as answer:
        served: dict[str, int] = json.loads(answer.read())
    return served


async def test_every_request_ends_in_a_valid_completion_or_a_typed_error() -> None:
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    with serving("tests.servers.fault_server", "--fault-rate", "0.25", "--seed", "7") as url:
        outcomes: Counter[str] = Counter()
        gate = asyncio.Semaphore(CONCURRENCY)
        provider = ModalVLLMProvider(
            url,
            request_timeout_s=1.0,  # the server's stalls last 5 s
            retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, deadline_s=10.0, backoff_s=0.01,
                              max_backoff_s=0.05),
        )  # fmt: skip
        request = CompletionRequest.from_prompt("Yes or no?", constraint=YES_NO, max_tokens=2)

        async def one() -> None:
            async with gate:
                try:
                    completion = await provider.complete(request)
                except HiMoeError as error:
                    outcomes[type(error).__name__] += 1
                else:
                    constraints.check(YES_NO, completion.text)  # never invalid output
                    outcomes["ok"] += 1

        started = time.monotonic()
        async with asyncio.timeout(GLOBAL_DEADLINE_S):  # no hang
            await asyncio.gather(*(one() for _ in range(REQUESTS)))  # untyped errors propagate
        elapsed = time.monotonic() - started
        await provider.aclose()
        served = await asyncio.to_thread(stats, url)

    attempts = sum(served.values())
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s: outcomes {dict(outcomes)}")
    print(f"server saw {attempts} attempts: {served}")
    assert sum(outcomes.values()) == REQUESTS
    assert attempts <= REQUESTS * MAX_ATTEMPTS
    assert outcomes["ok"] >= REQUESTS * 0.9  # retries recover most transient faults
    assert set(served) == {"ok", "503", "429", "reset", "truncated", "malformed", "stall",
                           "violation"}  # fmt: skip
    # The violations are not retried by the provider: they reach the caller, typed.
    assert outcomes["ConstraintViolation"] == served["violation"]


FALLBACK_REQUESTS = 3_000


async def test_through_a_fallback_over_two_faulty_servers_more_requests_succeed() -> None:
    from hi_moe.providers.fallback import Cooldown, FallbackProvider
    from hi_moe.providers.modal_vllm import ModalVLLMProvider

    def member(url: str) -> ModalVLLMProvider:
        return ModalVLLMProvider(
            url,
            request_timeout_s=1.0,  # the server's stalls last 5 s
            retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, deadline_s=10.0, backoff_s=0.01,
                              max_backoff_s=0.05),
        )  # fmt: skip

    fault = ("tests.servers.fault_server", "--fault-rate", "0.25")
    with serving(*fault, "--seed", "7") as first_url, serving(*fault, "--seed", "8") as second_url:
        # A short cooldown: should the breaker open, the first server is probed again soon.
        fallback = FallbackProvider(
            member(first_url),
            member(second_url),
            cooldown=Cooldown(failures=5, window_s=10.0, cooldown_s=1.0),
        )
        first_label, second_label = labels = tuple(fallback.members)
        outcomes: Counter[str] = Counter()
        answered: Counter[str] = Counter()
        hops: Counter[str] = Counter()
        gate = asyncio.Semaphore(CONCURRENCY)
        request = CompletionRequest.from_prompt("Yes or no?", constraint=YES_NO, max_tokens=2)

        async def one() -> None:
            async with gate:
                try:
                    completion = await fallback.complete(request)
                except HiMoeError as error:
                    outcomes[type(error).__name__] += 1
                    hops.update(hop.error for hop in error.hops)
                else:
                    constraints.check(YES_NO, completion.text)  # never invalid output
                    assert completion.provider in labels, completion.provider
                    outcomes["ok"] += 1
                    answered[completion.provider] += 1
                    hops.update(hop.error for hop in completion.hops)

        started = time.monotonic()
        async with asyncio.timeout(GLOBAL_DEADLINE_S):  # no hang
            await asyncio.gather(*(one() for _ in range(FALLBACK_REQUESTS)))
        elapsed = time.monotonic() - started
        await fallback.aclose()
        served = [await asyncio.to_thread(stats, url) for url in (first_url, second_url)]

    attempts = [sum(counts.values()) for counts in served]
    print(
        f"\n{FALLBACK_REQUESTS} requests via fallback in {elapsed:.1f} s: outcomes {dict(outcomes)}"
    )
    print(f"answered by {dict(answered)} ({answered[second_label]} from the second server)")
    print(f"hops: {dict(hops)}")
    print(f"servers saw {attempts} attempts: {served}")
    assert sum(outcomes.values()) == FALLBACK_REQUESTS
    assert sum(answered.values()) == outcomes["ok"]
    assert set(answered) <= {first_label, second_label}
    assert sum(attempts) <= FALLBACK_REQUESTS * MAX_ATTEMPTS * 2
    assert outcomes["ok"] >= FALLBACK_REQUESTS * 0.9  # at least the single server's share
    # Violations are not fallen back on by default: each one reaches the caller, typed.
    assert outcomes["ConstraintViolation"] == sum(counts["violation"] for counts in served)
