"""A vLLM provider's readiness: one shared wait for `/health` through a cold start.

A Modal app scaled to zero answers its first request only after a container starts and loads
the model, which takes minutes. Every caller of a provider shares one poll loop bounded by the
provider's startup deadline; each waits at most what its own call's deadline leaves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hi_moe import deadline
from hi_moe.errors import ProviderError, ProviderNotReady

if TYPE_CHECKING:
    from hi_moe.providers.modal_vllm import VLLMProvider

__all__ = ["Readiness", "is_loopback", "retrieve", "unreachable"]

log = logging.getLogger("hi_moe.providers.modal_vllm")  # where operators have seen these

_POLL_INTERVAL_S = (0.5, 5.0)  # first and longest pause between readiness probes
_PROGRESS_EVERY_S = 30.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a readiness task's error as seen: its waiters may all have given up on it."""
    if not task.cancelled():
        task.exception()


def unreachable(error: ProviderError, endpoint: str) -> str | None:
    """Why the endpoint cannot be a server that is starting, or None when it may be."""
    host = urlsplit(endpoint).hostname or ""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host} ({cause.strerror or cause})"
        if isinstance(cause, ConnectionRefusedError) and is_loopback(host):
            return "nothing listens there (connection refused): is the server running?"
        cause = cause.__cause__ or cause.__context__
    return None


class Readiness:
    """Whether a provider's server answered /health, and the wait shared until it does."""

    def __init__(self, provider: VLLMProvider) -> None:
        self._provider = provider
        self.ready = False
        """Set by a 200 from /health; cleared by a failure that may be a scale-to-zero."""
        self._task: asyncio.Task[None] | None = None

    async def wait(self, timeout_s: float | None = None) -> None:
        """`VLLMProvider.wait_until_ready`."""
        if self.ready:
            return
        provider = self._provider
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._task = loop.create_task(self._become_ready())
            task.add_done_callback(retrieve)
        limit = deadline.seconds_left()
        if timeout_s is not None:
            limit = min(limit, timeout_s)
        started = time.monotonic()
        waiting = asyncio.timeout(None if math.isinf(limit) else limit)
        try:
            async with waiting:
                await asyncio.shield(task)
        except TimeoutError:
            if not waiting.expired():
                raise
            raise ProviderNotReady(
                f"{provider.endpoint} is still starting; stopped waiting after "
                f"{time.monotonic() - started:.1f} s (the call's deadline)",
                provider=provider.name,
            ) from None

    async def _become_ready(self) -> None:
        """The shared readiness task: poll /health until it answers 200 or the startup
        deadline passes."""
        provider = self._provider
        budget = provider.startup_timeout_s
        started = time.monotonic()
        until = started + budget
        pause, last_report = _POLL_INTERVAL_S[0], None
        while True:
            left = until - time.monotonic()
            health = await provider._probe(timeout_s=max(min(60.0, left), 0.1), fail_fast=True)
            now = time.monotonic()
            if health.ok:
                self.ready = True
                if last_report is not None:
                    log.warning("%s is ready after %.0f s", provider.endpoint, now - started)
                return
            if last_report is None:
                log.warning(
                    "waiting up to %.0f s for %s to start (%s): a scaled-to-zero Modal app "
                    "starts a container and loads its model first",
                    budget, provider.endpoint, health.detail,
                )  # fmt: skip
                last_report = now
            elif now - last_report >= _PROGRESS_EVERY_S:
                log.warning(
                    "still waiting for %s after %.0f s of %.0f s",
                    provider.endpoint, now - started, budget,
                )  # fmt: skip
                last_report = now
            if now + pause >= until:
                raise ProviderNotReady(
                    f"{provider.endpoint} was not ready within the startup deadline of "
                    f"{budget:.0f} s (last: {health.status}, {health.detail})",
                    provider=provider.name,
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, _POLL_INTERVAL_S[1])
