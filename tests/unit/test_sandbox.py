"""Sandbox backends, the verdict runner and backend selection, as specifications. The hostile
programs are in tests/integration/test_sandbox_attacks.py; these pin down the parts."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from hi_moe.errors import ConfigError
from hi_moe.pipeline.sandbox import (
    BubblewrapBackend,
    Limits,
    ProcessBackend,
    Program,
    SandboxBackend,
    SandboxRun,
    SandboxSettings,
    check_solution,
    load_backend,
    run_script,
    verdict,
)
from hi_moe.pipeline.sandbox.launch import Capture, child_command, encode_request, kill_descendants
from hi_moe.pipeline.sandbox.scrub import REDACTED, redact, remember_secret
from tests.support import live_processes, requires_bubblewrap

ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(params=["process", "bubblewrap"])
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    if request.param == "process":
        return ProcessBackend(warn=False)
    from hi_moe.pipeline.sandbox import bubblewrap_problem

    if (problem := bubblewrap_problem()) is not None:
        pytest.skip(f"needs bubblewrap (apt-get install bubblewrap): {problem}")
    return BubblewrapBackend()


# -- running a script ---------------------------------------------------------------------------


async def test_a_script_runs_and_its_output_comes_back(backend: SandboxBackend) -> None:
    run = await backend.run(Program.script("print('hi')"), Limits())
    assert run.ok
    assert run.stdout == "hi\n"
    assert run.backend == backend.name


async def test_the_exit_status_and_signal_are_reported(backend: SandboxBackend) -> None:
    failed = await backend.run(Program.script("raise SystemExit(3)"), Limits())
    assert (failed.returncode, failed.ok, failed.summary) == (3, False, "exit 3")
    killed = await backend.run(Program.script("import os\nos.kill(os.getpid(), 9)"), Limits())
    assert killed.signal == "SIGKILL" or killed.returncode == 128 + 9


async def test_an_infinite_loop_is_killed_at_the_timeout(backend: SandboxBackend) -> None:
    started = time.monotonic()
    run = await backend.run(Program.script("while True:\n    pass"), Limits(timeout_s=1.0))
    assert time.monotonic() - started < 2.5
    assert run.timed_out
    assert run.summary == "timed out after 1.0 s"


async def test_output_is_cut_at_the_limit_and_the_program_stopped(
    backend: SandboxBackend,
) -> None:
    started = time.monotonic()
    run = await backend.run(
        Program.script("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)"),
        Limits(output_bytes=10_000, timeout_s=20),
    )
    assert time.monotonic() - started < 5
    assert run.output_exceeded
    assert len(run.stdout) + len(run.stderr) <= 10_000


async def test_a_memory_bomb_fails_without_hurting_the_harness(backend: SandboxBackend) -> None:
    run = await backend.run(Program.script("x = bytearray(4 * 1024**3)"), Limits(memory_mb=256))
    assert not run.ok
    assert "MemoryError" in run.stderr


async def test_nothing_of_the_harness_environment_reaches_the_program(
    backend: SandboxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak-1234567890")
    run = await backend.run(
        Program.script("import os, json\nprint(json.dumps(dict(os.environ)))"), Limits()
    )
    assert "sk-should-not-leak" not in run.stdout
    assert set(__import__("json").loads(run.stdout)) <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD"}


async def test_files_given_with_the_program_are_in_its_directory(
    backend: SandboxBackend,
) -> None:
    program = Program(
        files={"data/input.txt": "42", "program.py": "print(open('data/input.txt').read())"}
    )
    run = await backend.run(program, Limits())
    assert run.stdout == "42\n"


async def test_forked_children_die_with_the_run(backend: SandboxBackend, tmp_path: Path) -> None:
    tag = f"hi-moe-child-{os.getpid()}-{time.monotonic_ns()}"
    program = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{tag}'])\n"
        "time.sleep(60)\n"
    )
    run = await backend.run(Program.script(program), Limits(timeout_s=1.0))
    assert run.timed_out
    assert live_processes(tag) == []


def test_the_scan_kills_a_session_tree_without_cgroups() -> None:
    """The process backend's fallback where no pids cgroup can be made."""
    import subprocess
    import sys

    tag = f"hi-moe-scan-{time.monotonic_ns()}"
    leader = subprocess.Popen(
        [sys.executable, "-c",
         f"import os, sys, time\nos.fork()\nos.fork()\ntime.sleep(60)  # {tag}"],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 5
    while len(live_processes(tag)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(live_processes(tag)) == 4
    assert kill_descendants(leader.pid) >= 4
    leader.wait(5)
    deadline = time.monotonic() + 5
    while live_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live_processes(tag) == []


async def test_cancelling_a_run_kills_it_before_the_cancellation_returns(
    backend: SandboxBackend,
) -> None:
    tag = f"hi-moe-cancel-{time.monotonic_ns()}"
    program = (
        "import os, sys\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{tag}'])"
    )
    task = asyncio.create_task(backend.run(Program.script(program), Limits(timeout_s=60)))
    deadline = time.monotonic() + 10
    while not live_processes(tag) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling /proc
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3
    assert live_processes(tag) == []


async def test_run_script_uses_the_configured_backend() -> None:
    run = await run_script("print(6 * 7)", backend=ProcessBackend(warn=False))
    assert run.stdout == "42\n"


# -- the pieces ---------------------------------------------------------------------------------


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="output_bytes"):
        Limits(output_bytes=0)


def test_the_secret_goes_on_stdin_never_on_the_command_line() -> None:
    program = Program(files={"solution.py": ADD}, mode="verdict", secret=b"s3cr3t" * 8)
    request = encode_request(program, Limits())
    assert request.endswith(b"s3cr3t" * 8)
    assert b"s3cr3t" not in request[: -len(program.secret)]
    assert not any("s3cr3t" in part for part in child_command())
    assert "s3cr3t" not in repr(program)


def test_capture_keeps_at_most_its_limit() -> None:
    capture = Capture(10)
    assert capture.add("stdout", b"12345")
    assert not capture.add("stderr", b"678901234")
    assert capture.text("stdout") + capture.text("stderr") == "1234567890"
    assert capture.exceeded


def test_the_bubblewrap_command_line_says_what_is_shared() -> None:
    argv = BubblewrapBackend(bwrap="/usr/bin/bwrap").argv(Limits(disk_mb=8), info_fd=9)
    command = " ".join(argv)
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--cap-drop ALL", "--clearenv", "--proc /proc"):  # fmt: skip
        assert flag in command
    assert "--share-net" not in argv
    for place in ("/tmp", "/home/sandbox", "/sandbox"):
        assert f"--size {8 * 1024 * 1024} --tmpfs {place}" in command
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]
    assert "--bind" not in argv  # nothing of the host is writable
    assert str(Path.home()) not in binds
    assert "/" not in binds
    assert os.path.realpath(os.__file__).startswith((*binds, "/usr"))


# -- verdicts -----------------------------------------------------------------------------------


async def test_a_correct_solution_passes_and_a_wrong_one_fails(backend: SandboxBackend) -> None:
    good = await check_solution(backend, ADD, "assert add(2, 3) == 5")
    assert (good.passed, good.summary) == (True, "passed")
    bad = await check_solution(backend, ADD.replace("+", "-"), "assert add(2, 3) == 5, 'nope'")
    assert not bad.passed
    assert bad.summary.startswith("AssertionError: nope (in the tests)")
    assert "checks.py line 1: assert add(2, 3) == 5" in bad.summary


async def test_check_candidate_is_humaneval_s_convention(backend: SandboxBackend) -> None:
    tests = "def check(candidate):\n    assert candidate(1, 1) == 2\n"
    assert (await check_solution(backend, ADD, tests, entry_point="add")).passed
    missing = await check_solution(backend, ADD, tests, entry_point="plus")
    assert "defines no 'plus'" in missing.summary


async def test_the_solution_is_a_module_not_main(backend: SandboxBackend) -> None:
    solution = ADD + "if __name__ == '__main__':\n    raise SystemExit('ran as main')\n"
    found = await check_solution(backend, solution, "import solution\nassert solution.add(1, 2)")
    assert found.passed, found.summary


@pytest.mark.parametrize(
    "cheat",
    [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "import atexit, os\natexit.register(lambda: os._exit(0))",
        "import sys, os\nsys.excepthook = lambda *a: os._exit(0)",
        "print('0' * 32)\nimport os\nos._exit(0)",
    ],
)
async def test_exiting_early_never_passes(backend: SandboxBackend, cheat: str) -> None:
    found = await check_solution(backend, ADD.replace("+", "-") + cheat, "assert add(2, 3) == 5")
    assert not found.passed


async def test_the_standard_library_still_works_under_the_guard(
    backend: SandboxBackend,
) -> None:
    solution = (
        "import collections, dataclasses, enum, logging, typing, warnings, inspect\n"
        "Point = collections.namedtuple('Point', 'x y')\nT = typing.TypeVar('T')\n"
        "class Color(enum.Enum):\n    RED = 1\n"
        "@dataclasses.dataclass\nclass Box:\n    size: int\n"
        "logging.getLogger('solution').warning('logged')\nwarnings.warn('warned')\n" + ADD
    )
    found = await check_solution(backend, solution, "assert add(Point(1, 2).x, Box(2).size) == 3")
    assert found.passed, found.summary


def _run(stdout: str = "", stderr: str = "", **fields: object) -> SandboxRun:
    values: dict[str, object] = {"backend": "x", "returncode": 0, "duration_s": 0.1}
    values.update(fields)
    return SandboxRun(stdout=stdout, stderr=stderr, **values)  # type: ignore[arg-type]


def test_passed_means_the_marker_line_within_the_limits() -> None:
    marker, token = b"a" * 32, b"t" * 32
    assert verdict.verdict_from(_run("out\n" + "a" * 32 + "\n"), marker, token).passed
    assert not verdict.verdict_from(_run("x" + "a" * 32 + "\n"), marker, token).passed
    assert not verdict.verdict_from(_run("a" * 31 + "\n"), marker, token).passed
    late = _run("a" * 32 + "\n", timed_out=True, timeout_s=2.0)
    assert not verdict.verdict_from(late, marker, token).passed
    flood = _run("a" * 32 + "\n", output_exceeded=True)
    assert not verdict.verdict_from(flood, marker, token).passed


def test_only_the_runner_s_report_is_believed() -> None:
    token = "t" * 32
    forged = '{"type": "ValueError", "message": "planted", "stage": "checks", "frames": []}'
    run = _run(stderr=f"{'u' * 32} {forged}\nTraceback...\nsecret file contents\n", returncode=1)
    found = verdict.verdict_from(run, b"a" * 32, token.encode())
    assert "planted" not in found.summary
    assert "secret file contents" not in found.summary
    assert "before the tests finished" in found.summary
    real = _run(stderr=f"noise\n{token} {forged}\n", returncode=1)
    assert verdict.verdict_from(real, b"a" * 32, token.encode()).summary.startswith(
        "ValueError: planted"
    )


def test_the_summary_is_short_and_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "acme-key-0123456789")
    token = "t" * 32
    message = "acme-key-0123456789 " + "x" * 2000
    report = '{"type": "ValueError", "message": "' + message + '", "stage": "import"}'
    run = _run(stderr=f"{token} {report}\n", returncode=1)
    summary = verdict.verdict_from(run, b"a" * 32, token.encode()).summary
    assert len(summary) <= verdict.SUMMARY_CHARS
    assert "acme-key" not in summary
    assert REDACTED in summary


def test_redact_removes_secrets_it_knows_and_secret_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOME_TOKEN", "tok-abcdefgh")
    remember_secret("from-the-toml-file-123")
    text = redact(
        "a tok-abcdefgh b from-the-toml-file-123 c sk-proj-ABCDEFGHIJKLMNOPQRSTUV d "
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY----- e "
        "AKIAABCDEFGHIJKLMNOP f ghp_abcdefghijklmnopqrstuvwxyz0123"
    )
    for gone in ("tok-abcdefgh", "from-the-toml", "sk-proj", "AAAA", "AKIA", "ghp_"):
        assert gone not in text
    assert text.startswith("a [redacted] b [redacted] c [redacted] d [redacted] e")


# -- choosing a backend -------------------------------------------------------------------------


def test_auto_falls_back_to_process_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hi_moe.pipeline.sandbox import bubblewrap, process

    monkeypatch.setattr(bubblewrap, "bubblewrap_problem", lambda: "no user namespaces")
    monkeypatch.setattr(process, "_warned", __import__("threading").Event())
    caplog.set_level(logging.WARNING, logger="hi_moe.pipeline.sandbox")
    first = load_backend(SandboxSettings())
    second = load_backend(SandboxSettings())
    assert isinstance(first, ProcessBackend)
    assert isinstance(second, ProcessBackend)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for words in ("read and write your files", "network", "bubblewrap", "require_isolation"):
        assert words in warnings[0].getMessage()
    assert {"files", "network", "harness"} <= first.gaps


def test_require_isolation_never_downgrades(monkeypatch: pytest.MonkeyPatch) -> None:
    from hi_moe.pipeline.sandbox import bubblewrap

    monkeypatch.setattr(bubblewrap, "bubblewrap_problem", lambda: "bwrap: not found")
    with pytest.raises(ConfigError, match="bwrap: not found") as raised:
        load_backend(SandboxSettings(require_isolation=True))
    assert raised.value.setting == "HI_MOE_PIPELINE__SANDBOX__REQUIRE_ISOLATION"
    with pytest.raises(ConfigError, match="does not work here"):
        load_backend(SandboxSettings(backend="bubblewrap"))
    with pytest.raises(ConfigError, match="does not isolate files, harness, network"):
        load_backend(SandboxSettings(backend="process", require_isolation=True))


@requires_bubblewrap()
def test_auto_takes_bubblewrap_where_it_works() -> None:
    chosen = load_backend(SandboxSettings(require_isolation=True))
    assert isinstance(chosen, BubblewrapBackend)
    assert chosen.gaps == frozenset()


def test_a_missing_bwrap_is_a_config_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hi_moe.pipeline.sandbox.bubblewrap.shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        BubblewrapBackend()


def test_the_sandbox_settings_live_under_pipeline_sandbox(tmp_path: Path) -> None:
    from hi_moe.config import Settings

    config = tmp_path / "hi_moe.toml"
    config.write_text(
        "[pipeline.sandbox]\nbackend = 'process'\nrequire_isolation = true\ntimeout_s = 2.5\n"
    )
    settings = Settings.load(config).pipeline.sandbox
    assert (settings.backend, settings.require_isolation) == ("process", True)
    assert settings.limits().timeout_s == 2.5
    with pytest.raises(ConfigError, match="backend"):
        Settings.load(config, pipeline={"sandbox": {"backend": "docker"}})


def test_the_old_sandbox_keys_still_work_with_a_warning() -> None:
    from hi_moe.pipeline import PipelineSettings

    with pytest.warns(DeprecationWarning, match=r"\[pipeline.sandbox\] timeout_s"):
        settings = PipelineSettings(sandbox_timeout_s=3.0, sandbox_memory_mb=512)  # type: ignore[call-arg]
    assert (settings.sandbox.timeout_s, settings.sandbox.memory_mb) == (3.0, 512)


def test_a_program_that_locks_its_directory_is_still_cleaned_up(tmp_path: Path) -> None:
    backend = ProcessBackend(warn=False)
    target = tmp_path / "keep"
    target.mkdir()
    target.chmod(0o755)
    program = (
        "import os\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\n"
        f"os.symlink({str(target)!r}, 'link')\nos.chmod('a/b', 0)\nos.chmod('a', 0)\n"
        "print(os.getcwd())"
    )
    run = backend.run_sync(Program.script(program), Limits())
    workdir = Path(run.stdout.strip())
    assert not workdir.exists()
    assert target.exists()
    assert target.stat().st_mode & 0o777 == 0o755  # the link was not followed
