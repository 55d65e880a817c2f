"""The Modal sandbox backend, checked offline like the deployment: Modal's own objects are
built (no token, no network), and the run path is driven through a stand-in for
`modal.Sandbox` that runs the same command on this machine."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hi_moe.pipeline.sandbox import Limits, ModalSandboxBackend, SandboxSettings, check_solution
from hi_moe.pipeline.sandbox.launch import child_source
from tests.support import refuse_connections, requires

pytestmark = requires("modal", "modal")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    return refuse_connections(monkeypatch)


def test_the_sandbox_is_created_isolated_and_limited(no_network: list[object]) -> None:
    import modal

    backend = ModalSandboxBackend(app_name="hi-moe-test", cpu=0.5)
    options = backend.create_options(Limits(timeout_s=12.5, memory_mb=768))
    assert isinstance(options["image"], modal.Image)
    assert options["block_network"] is True
    assert options["timeout"] == 13 + 10  # Modal's backstop, past the harness's own deadline
    assert (options["cpu"], options["memory"]) == ((0.5, 0.5), (768, 768))  # hard limits
    assert "secrets" not in options  # nothing of the harness goes in
    assert "volumes" not in options
    command = backend.command()
    assert command[:5] == ["python", "-I", "-B", "-u", "-c"]
    assert command[5] == child_source()
    assert backend.isolation == frozenset({"secrets", "files", "network", "processes", "harness"})
    assert no_network == []


def test_load_backend_builds_it_from_settings(no_network: list[object]) -> None:
    from hi_moe.pipeline.sandbox import load_backend

    chosen = load_backend(SandboxSettings(backend="modal", modal_app="grader", modal_cpu=2.0))
    assert isinstance(chosen, ModalSandboxBackend)
    assert (chosen.app_name, chosen.cpu) == ("grader", 2.0)
    assert no_network == []


class _Aio:
    """`f.aio(...)`, as Modal's synchronicity wrappers spell the async variant."""

    def __init__(self, function: Any) -> None:
        self.aio = function


class _Writer:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.drain = _Aio(self._drain)

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)

    def write_eof(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write_eof()

    async def _drain(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.drain()


class _Reader:
    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.stream = stream

    async def __aiter__(self) -> AsyncIterator[str]:
        while chunk := await self.stream.read(65536):
            yield chunk.decode("utf-8", "replace")  # text, as Modal's readers give it


class FakeSandbox:
    """Runs the command here, as a local process, with Modal's method names."""

    created: ClassVar[list[dict[str, Any]]] = []
    workdir: ClassVar[str] = "."

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        self.stdin = _Writer(process)
        self.stdout = _Reader(process.stdout)
        self.stderr = _Reader(process.stderr)
        self.wait = _Aio(self._wait)
        self.terminate = _Aio(self._terminate)

    @classmethod
    async def _create(cls, *command: str, app: Any, **options: Any) -> FakeSandbox:
        cls.created.append({"command": command, "app": app, **options})
        process = await asyncio.create_subprocess_exec(
            sys.executable if command[0] == "python" else command[0],
            *command[1:],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cls.workdir,  # Modal's /sandbox: the child writes the program's files there
        )
        return cls(process)

    async def _wait(self, raise_on_termination: bool = True) -> None:
        await self.process.wait()

    async def _terminate(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        for stream in (self.process.stdout, self.process.stderr):
            assert stream is not None
            while await stream.read(65536):  # asyncio's wait() needs the pipes drained
                pass
        await self.process.wait()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


class FakeModal:
    class App:
        looked_up: ClassVar[list[str]] = []

        @staticmethod
        async def _lookup(name: str, *, create_if_missing: bool = False) -> str:
            FakeModal.App.looked_up.append(name)
            return f"app:{name}"

        lookup = _Aio(_lookup)

    class Sandbox:
        create = _Aio(FakeSandbox._create)


@pytest.fixture
def offline_modal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModalSandboxBackend:
    backend = ModalSandboxBackend(app_name="hi-moe-test")
    monkeypatch.setattr(backend, "_modal", FakeModal)
    monkeypatch.setattr(FakeSandbox, "workdir", str(tmp_path))
    FakeSandbox.created.clear()
    FakeModal.App.looked_up.clear()
    return backend


async def test_a_verdict_comes_back_through_a_modal_sandbox(
    offline_modal: ModalSandboxBackend, no_network: list[object]
) -> None:
    solution = "def add(a, b):\n    return a + b\n"
    passed = await check_solution(offline_modal, solution, "assert add(2, 3) == 5")
    assert passed.passed, passed.summary
    failed = await check_solution(offline_modal, solution, "assert add(2, 3) == 6, 'six'")
    assert not failed.passed
    assert failed.summary.startswith("AssertionError: six")
    faked = await check_solution(offline_modal, "import os\nos._exit(0)", "assert add(2, 3)")
    assert not faked.passed
    assert FakeModal.App.looked_up == ["hi-moe-test"]  # looked up once, reused
    assert len(FakeSandbox.created) == 3
    assert all(c["block_network"] and c["app"] == "app:hi-moe-test" for c in FakeSandbox.created)
    assert no_network == []


async def test_a_modal_run_is_stopped_at_the_deadline_and_the_output_limit(
    offline_modal: ModalSandboxBackend,
) -> None:
    from hi_moe.pipeline.sandbox import Program

    slow = await offline_modal.run(Program.script("import time\ntime.sleep(30)"), Limits(1.0))
    assert slow.timed_out
    assert slow.duration_s < 5
    flood = await offline_modal.run(
        Program.script("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)"),
        Limits(timeout_s=20, output_bytes=20_000),
    )
    assert flood.output_exceeded
    assert len(flood.stdout) <= 20_000
    assert flood.duration_s < 10
