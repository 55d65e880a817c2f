"""`ModalSandboxBackend`: each program in a `modal.Sandbox`, a gVisor-isolated container on
Modal, for checking thousands of programs in parallel away from the harness's machine.

Each run is one sandbox: network blocked, CPU and memory reserved and capped, a lifetime a
little over the timeout (Modal kills it then even if the harness is gone), and the harness's
own deadline on top, after which it is terminated. The same child code as the local backends
runs inside (passed with `python -c`, the program and any secret on stdin), so verdicts are
read the same way. Nothing of the harness's environment or files is sent.

Needs the `modal` extra and a Modal token; `hi_moe.ops.deploy`-style offline tests check the
objects it builds without either.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from typing import Any, ClassVar

from hi_moe.errors import ConfigError
from hi_moe.pipeline.sandbox.base import ISOLATING, Limits, Program, SandboxBackend, SandboxRun
from hi_moe.pipeline.sandbox.launch import Capture, child_command, encode_request, rlimits

__all__ = ["ModalSandboxBackend"]

WORKDIR = "/sandbox"
LIFETIME_SLACK_S = 10
"""Modal's own kill comes this long after the harness's deadline: a backstop, not the limit."""
_PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def _modal() -> Any:
    try:
        import modal
    except ImportError:
        raise ConfigError(
            "the modal sandbox backend needs the modal package: pip install 'hi-moe[modal]'",
            setting="HI_MOE_PIPELINE__SANDBOX__BACKEND",
        ) from None
    return modal


class ModalSandboxBackend(SandboxBackend):
    name: ClassVar[str] = "modal"
    isolation = ISOLATING

    def __init__(
        self,
        *,
        app_name: str = "hi-moe-sandbox",
        image: Any = None,
        cpu: float = 1.0,
        max_concurrency: int = 256,
        python_version: str | None = None,
    ) -> None:
        self._modal = _modal()
        self.app_name = app_name
        version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
        if version not in _PYTHON_VERSIONS:
            version = "3.11"
        self.image = image if image is not None else self._modal.Image.debian_slim(version)
        self.cpu = cpu
        self._gate = asyncio.Semaphore(max_concurrency)
        self._app: Any = None

    def create_options(self, limits: Limits) -> dict[str, Any]:
        """Keyword arguments for `modal.Sandbox.create`: the isolation and limits of one run."""
        return {
            "image": self.image,
            "timeout": math.ceil(limits.timeout_s) + LIFETIME_SLACK_S,
            # (request, limit): a bare number is only a request, which Modal lets a sandbox
            # burst past when the host has room.
            "cpu": (self.cpu, self.cpu),
            "memory": (limits.memory_mb, limits.memory_mb),
            "block_network": True,
            "workdir": WORKDIR,
        }

    def command(self) -> list[str]:
        return child_command("python")

    async def _get_app(self) -> Any:
        if self._app is None:
            self._app = await self._modal.App.lookup.aio(self.app_name, create_if_missing=True)
        return self._app

    async def run(self, program: Program, limits: Limits) -> SandboxRun:
        async with self._gate:
            app = await self._get_app()
            started = time.monotonic()
            sandbox = await self._modal.Sandbox.create.aio(
                *self.command(), app=app, **self.create_options(limits)
            )
            capture = Capture(limits.output_bytes)
            timed_out = False
            try:
                request = encode_request(program, limits, rlimits=rlimits(limits, processes=
                                         limits.max_processes + 16))  # fmt: skip
                sandbox.stdin.write(request)
                sandbox.stdin.write_eof()
                await sandbox.stdin.drain.aio()
                readers = [
                    asyncio.create_task(_read(sandbox.stdout, "stdout", capture)),
                    asyncio.create_task(_read(sandbox.stderr, "stderr", capture)),
                ]
                try:
                    await asyncio.wait_for(
                        _until_done(sandbox, readers, capture), timeout=limits.timeout_s
                    )
                except TimeoutError:
                    timed_out = True
                finally:
                    for reader in readers:
                        reader.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
            finally:
                with contextlib.suppress(Exception):  # already gone is fine
                    await sandbox.terminate.aio()
            return SandboxRun(
                backend=self.name,
                returncode=None if timed_out else sandbox.returncode,
                stdout=capture.text("stdout"),
                stderr=capture.text("stderr"),
                duration_s=time.monotonic() - started,
                timed_out=timed_out,
                output_exceeded=capture.exceeded,
                timeout_s=limits.timeout_s,
            )


async def _read(stream: Any, name: str, capture: Capture) -> None:
    async for chunk in stream:
        data = chunk.encode("utf-8", "replace") if isinstance(chunk, str) else bytes(chunk)
        if not capture.add(name, data):
            return


async def _until_done(sandbox: Any, readers: list[asyncio.Task[None]], capture: Capture) -> None:
    """Until the sandbox exited and its output is read, or the output limit was hit."""
    waiter = asyncio.create_task(sandbox.wait.aio(raise_on_termination=False))
    pending: set[asyncio.Task[Any]] = {waiter, *readers}
    try:
        while pending and not capture.exceeded:
            _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
