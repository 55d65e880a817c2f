"""Readiness against real servers on 127.0.0.1: a cold start is waited for once however many
calls arrive during it, a server that scaled to zero is waited for again, a dead or unknown
endpoint fails at once, a call's own deadline bounds its wait, and a `FallbackProvider` cools
a dead member down and probes it again later."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hi_moe import Choice, Completion, CompletionRequest, constraints, errors
from hi_moe.errors import ProviderNotReady, ProviderTimeout, ProviderUnavailable
from hi_moe.ops.serving import free_port
from hi_moe.providers import MockProvider
from hi_moe.providers.fallback import Cooldown, FallbackProvider
from hi_moe.providers.modal_vllm import ModalVLLMProvider
from hi_moe.providers.retry import RetryPolicy
from hi_moe.types import Hop
from tests.support import requires

pytestmark = [pytest.mark.integration, requires("openai", "openai")]

YES_NO = Choice(["yes", "no"])
REQUEST = CompletionRequest.from_prompt("Yes or no?", constraint=YES_NO, max_tokens=2)
WAITERS = 64
LOGGER = "hi_moe.providers.modal_vllm"
FAST_RETRY = RetryPolicy(max_attempts=4, deadline_s=30.0, backoff_s=0.05, max_backoff_s=0.2)


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as answer:
        served: dict[str, Any] = json.loads(answer.read())
    return served


@contextmanager
def cold_server(*args: str) -> Iterator[str]:
    """Run tests/servers/cold_server.py on a free port and yield its URL as soon as it
    listens (its /stats answers), while it is still cold; stop it by its pid.
    (`serving()` would yield only once /health is 200, i.e. after the cold start.)"""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.cold_server", "--port", str(port), *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + 30
        while True:
            try:
                stats(url)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(
                        f"cold server did not start (exit {process.poll()})"
                    ) from None
                time.sleep(0.02)
        yield url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def checked(results: list[Completion | BaseException]) -> list[Completion]:
    """The completions, each valid under YES_NO; fails on the first error among them."""
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} of {len(results)} failed, first: {failures[0]!r}"
    completions = [r for r in results if isinstance(r, Completion)]
    for completion in completions:
        constraints.check(YES_NO, completion.text)
    return completions


def waiting_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER
        and record.levelno == logging.WARNING
        and record.getMessage().startswith("waiting up to")
    ]


def is_unavailable(hop: Hop) -> bool:
    """The hop records a `ProviderUnavailable` (or a subclass: `ProviderUnreachable`)."""
    kind = getattr(errors, hop.error, None)
    return isinstance(kind, type) and issubclass(kind, ProviderUnavailable)


async def test_64_calls_during_a_cold_start_share_one_wait_and_all_succeed() -> None:
    cold_s = 5.0
    with cold_server("--cold-s", str(cold_s)) as url:
        before = await asyncio.to_thread(stats, url)
        async with ModalVLLMProvider(url, startup_timeout_s=30.0, retry=FAST_RETRY) as provider:
            started = time.monotonic()
            async with asyncio.timeout(30):
                results = await asyncio.gather(
                    *(provider.complete(REQUEST) for _ in range(WAITERS)), return_exceptions=True
                )
            took = time.monotonic() - started
        served = await asyncio.to_thread(stats, url)

    completions = checked(results)
    print(f"\n{WAITERS} calls through a {cold_s} s cold start in {took:.2f} s; server: {served}")
    assert len(completions) == WAITERS
    assert before["warm"] is False  # the calls arrived during the cold start
    assert served["health_hits_cold"] >= 1  # and waited through it
    assert served["health_hits"] <= 15  # one poll loop, not one per caller
    assert served["completions_refused"] == 0  # nothing was sent while cold
    assert served["completions_ok"] == WAITERS
    assert served["cold_periods"] == 1


async def test_after_scaling_to_zero_the_next_call_waits_again_instead_of_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    # Idle longer than the poll loop's pauses (up to 1.7 s by then), or the server would scale
    # to zero again between two /health probes of one wait.
    cold_s, idle_s = 1.5, 3.0
    with cold_server("--cold-s", str(cold_s), "--idle-s", str(idle_s)) as url:
        async with ModalVLLMProvider(url, startup_timeout_s=30.0, retry=FAST_RETRY) as provider:
            async with asyncio.timeout(20):
                started = time.monotonic()
                first = await provider.complete(REQUEST)
                first_s = time.monotonic() - started
                await asyncio.sleep(idle_s + 0.5)  # no request: it scales to zero
                idle = await asyncio.to_thread(stats, url)
                warned_before = len(waiting_warnings(caplog))
                started = time.monotonic()
                second = await provider.complete(REQUEST)
                second_s = time.monotonic() - started
        served = await asyncio.to_thread(stats, url)

    checked([first, second])
    print(
        f"\nfirst call {first_s:.2f} s, second (after scale to zero) {second_s:.2f} s; "
        f"server: {served}"
    )
    assert idle["warm"] is False
    assert idle["cold_periods"] == 1
    assert served["cold_periods"] == 2
    assert second_s >= cold_s - 0.2  # it waited out the second cold start
    assert served["completions_ok"] == 2
    assert served["completions_refused"] == 1  # only the request that woke it up
    # One per cold start: the first may be over before the first call on a loaded machine.
    assert len(waiting_warnings(caplog)) == warned_before + 1


async def test_a_dead_loopback_port_fails_at_once() -> None:
    dead = ModalVLLMProvider(f"http://127.0.0.1:{free_port()}")  # default startup deadline
    async with dead:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="nothing listens") as raised:
            await dead.complete(REQUEST)
        complete_s = time.monotonic() - started

        started = time.monotonic()
        health = await dead.health()
        health_s = time.monotonic() - started

    print(f"\ncomplete() failed in {complete_s:.3f} s: {raised.value}")
    print(f"health() answered in {health_s:.3f} s: {health}")
    assert complete_s < 3.0
    assert health.status == "down"
    assert "nothing listens" in health.detail
    assert health_s < 3.0


async def test_an_unresolvable_host_fails_at_once() -> None:
    unknown = ModalVLLMProvider("https://no-such-host.invalid")
    async with unknown:
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable, match="cannot resolve") as raised:
            await unknown.complete(REQUEST)
        complete_s = time.monotonic() - started
        health = await unknown.health()

    print(f"\ncomplete() failed in {complete_s:.3f} s: {raised.value}; health: {health}")
    assert complete_s < 5.0
    assert health.status == "down"
    assert "cannot resolve" in health.detail


async def test_a_short_call_deadline_ends_the_wait_while_the_poll_loop_goes_on() -> None:
    cold_s, short_s = 3.0, 1.0
    with cold_server("--cold-s", str(cold_s)) as url:
        async with ModalVLLMProvider(url, startup_timeout_s=30.0, retry=FAST_RETRY) as provider:
            short = REQUEST.model_copy(update={"deadline_s": short_s})
            started = time.monotonic()
            try:
                await provider.complete(short)
            except ProviderTimeout as error:
                short_error: ProviderTimeout = error
            else:
                pytest.fail("a call with a 1 s deadline succeeded during a 3 s cold start")
            short_took = time.monotonic() - started
            async with asyncio.timeout(20):
                later = await provider.complete(REQUEST)
            later_took = time.monotonic() - started
        served = await asyncio.to_thread(stats, url)

    checked([later])
    print(
        f"\ndeadline {short_s} s: {type(short_error).__name__} after {short_took:.2f} s "
        f"({short_error}); the next call succeeded {later_took:.2f} s in; server: {served}"
    )
    assert short_took < short_s + 0.5
    assert served["health_hits"] <= 8  # the same poll loop served both calls
    assert served["cold_periods"] == 1
    assert served["completions_refused"] == 0
    assert served["completions_ok"] == 1
    # The wait ran out, not a request: the error says the server is still starting.
    assert isinstance(short_error, ProviderNotReady), (
        f"expected ProviderNotReady, got {type(short_error).__name__}: {short_error}"
    )


async def test_the_waiting_warning_is_logged_once_per_cold_start_for_64_waiters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with cold_server("--cold-s", "2.0") as url:
        async with ModalVLLMProvider(url, startup_timeout_s=30.0, retry=FAST_RETRY) as provider:
            async with asyncio.timeout(20):
                results = await asyncio.gather(
                    *(provider.complete(REQUEST) for _ in range(WAITERS)), return_exceptions=True
                )
        served = await asyncio.to_thread(stats, url)

    assert len(checked(results)) == WAITERS
    warnings = waiting_warnings(caplog)
    print(f"\nwarnings: {warnings}; server: {served}")
    assert len(warnings) == 1
    assert url.removeprefix("http://") in warnings[0]


async def test_a_dead_member_cools_down_and_is_probed_again_after_the_cooldown() -> None:
    cooldown_s = 1.0
    dead = ModalVLLMProvider(f"http://127.0.0.1:{free_port()}")
    fallback = FallbackProvider(
        dead, MockProvider(), cooldown=Cooldown(failures=2, window_s=60.0, cooldown_s=cooldown_s)
    )
    async with fallback:
        answers = [await fallback.complete(REQUEST) for _ in range(3)]
        await asyncio.sleep(cooldown_s + 0.2)
        answers.append(await fallback.complete(REQUEST))

    for number, answer in enumerate(answers, 1):
        passed_over = [(hop.error, hop.message) for hop in answer.hops]
        print(f"\ncall {number}: {answer.provider} after {passed_over}")
    checked(list(answers))
    assert [answer.provider for answer in answers] == ["mock"] * 4
    assert all(len(answer.hops) == 1 and answer.hops[0].provider == dead.name for answer in answers)
    first, second, third, probe = (answer.hops[0] for answer in answers)
    assert is_unavailable(first)
    assert "nothing listens" in first.message
    # Nothing listening opens the breaker at once (not after `failures`): the next calls skip
    # it, saying why.
    for cooling in (second, third):
        assert cooling.error == "skipped"
        assert "cooling down" in cooling.message
        assert "nothing listens" in cooling.message
    assert is_unavailable(probe)  # asked again once the cooldown was over
