"""What a person sees while `hi-moe run` works and after it: the run's id and where it is
journaled, a spinner on a terminal, quiet when asked, one run shown, a killed run listed as
interrupted and resumable; the mock notice on `complete`; the tiny model's ready config."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hi_moe.cli import app
from hi_moe.cli.display import RunDisplay
from hi_moe.config import Settings
from hi_moe.pipeline import Event, Journal, Task
from tests.support import requires

runner = CliRunner()


@pytest.fixture(autouse=True)
def journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "journal.sqlite"
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(path))
    monkeypatch.setenv("HI_MOE_PIPELINE__METRICS", str(tmp_path / "metrics.jsonl"))
    return path


def test_a_run_says_its_id_how_to_resume_it_and_where_it_is_journaled(journal: Path) -> None:
    result = runner.invoke(app, ["run", "Sort a list"])
    assert result.exit_code == 0, result.output
    run_id = Journal(journal).runs()[0].run_id
    assert f"run {run_id} started" in result.stderr
    assert f"hi-moe run --resume {run_id}" in result.stderr
    assert f"journal: {journal}" in result.stderr
    assert f"metrics: {journal.parent / 'metrics.jsonl'}" in result.stderr
    assert "hi-moe[openai]" in result.stderr  # the mock notice, its markup-like text intact


def test_quiet_prints_the_answer_and_nothing_else() -> None:
    result = runner.invoke(app, ["run", "Sort a list", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.strip()


def test_runs_run_id_shows_one_run_and_its_steps(journal: Path) -> None:
    first = json.loads(runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"]).stdout)
    shown = runner.invoke(app, ["runs", first["run_id"]], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"run {first['run_id']}: succeeded" in shown.stdout
    for step in ("s1", "s2", "s3"):
        assert step in shown.stdout
    as_json = json.loads(runner.invoke(app, ["runs", first["run_id"], "--json"]).stdout)
    assert as_json["state"] == "succeeded"
    assert [s["step_id"] for s in as_json["finished_steps"]] == ["s1", "s2", "s3"]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_whose_process_is_gone_is_interrupted_and_one_alive_is_running(
    journal: Path,
) -> None:
    book = Journal(journal)
    book.start_run("mine", Task(prompt="a"))
    book.start_run("killed", Task(prompt="b"))
    with sqlite3.connect(journal) as db:
        db.execute("UPDATE runs SET owner_pid = ? WHERE run_id = 'killed'", (dead_pid(),))
    states = {
        r["run_id"]: r["state"] for r in json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    }
    assert states == {"mine": "running", "killed": "interrupted"}
    listed = runner.invoke(app, ["runs"], env={"COLUMNS": "200"})
    assert "interrupted" in listed.stdout
    # This process owns "mine": resuming it from here would run it twice.
    again = runner.invoke(app, ["run", "--resume", "mine"])
    assert again.exit_code == 2
    assert "still running" in again.stderr


def test_a_library_resume_takes_the_run_over_and_refuses_one_another_process_runs(
    tmp_path: Path,
) -> None:
    import asyncio

    from hi_moe.errors import ConfigError
    from hi_moe.pipeline import ProgressMonitor
    from hi_moe.pipeline.journal import _started
    from hi_moe.providers import MockProvider

    path = tmp_path / "journal.sqlite"
    book = Journal(path)
    book.start_run("theirs", Task(prompt="a"))
    book.start_run("killed", Task(prompt="b"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(path) as db:
            db.execute(
                "UPDATE runs SET owner_pid = ?, owner_start = ? WHERE run_id = 'theirs'",
                (other.pid, _started(other.pid)),
            )
            db.execute("UPDATE runs SET owner_pid = ? WHERE run_id = 'killed'", (dead_pid(),))
        monitor = ProgressMonitor(MockProvider(), journal=book)
        with pytest.raises(ConfigError, match=f"still running \\(pid {other.pid}"):
            asyncio.run(monitor.resume("theirs"))
        result = asyncio.run(monitor.resume("killed"))
        assert result.status == "succeeded", result.reason
        record = book.load_run("killed")
        assert record is not None
        assert record.owner_pid == os.getpid()
    finally:
        other.kill()
        other.wait()


def test_a_journal_from_before_owners_gets_the_columns_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE runs (run_id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT "
            "NULL, plan TEXT, plan_version INTEGER NOT NULL DEFAULT 0, answer TEXT, summary "
            "TEXT, created REAL NOT NULL, updated REAL NOT NULL);"
        )
        db.execute(
            "INSERT INTO runs VALUES ('old', ?, 'running', NULL, 0, NULL, NULL, 1.0, 1.0)",
            (Task(prompt="x").model_dump_json(),),
        )
    records = Journal(path).runs()
    assert [(r.run_id, r.state, r.owner_pid) for r in records] == [("old", "running", None)]
    Journal(path)  # opening it again finds the columns there


def test_a_killed_run_is_listed_interrupted_and_resumes(journal: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    env.update(
        HI_MOE_PIPELINE__JOURNAL=str(journal),
        HI_MOE_PIPELINE__METRICS=str(tmp_path / "metrics.jsonl"),
        HI_MOE_MOCK__LATENCY_S="2",
    )
    command = [sys.executable, "-m", "hi_moe", "run", "Sort a list"]
    child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    deadline = time.monotonic() + 60
    while "step_finished s1" not in (line := child.stderr.readline()):
        assert line, "the run ended before its first step"
        assert time.monotonic() < deadline, "the run did not get to its first step"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    (record,) = Journal(journal).runs()
    assert record.state == "interrupted"
    resumed = subprocess.run(
        [*command[:-1], "--resume", record.run_id, "--json", "--quiet"],
        env={**env, "HI_MOE_MOCK__LATENCY_S": "0"}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "s1" in json.loads(resumed.stdout)["resumed_steps"]
    assert Journal(journal).runs()[0].state == "succeeded"


def test_on_a_terminal_a_spinner_says_what_the_run_does() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=120)
    plan = {"steps": [{"id": "s1", "goal": "g", "domain": "math"}]}
    with RunDisplay(console, journal="j.sqlite") as display:
        display(Event(kind="run_started", run_id="r1"))
        time.sleep(0.3)
        assert display.headline == "planning"
        display(Event(kind="planned", run_id="r1", data={"plan": plan}))
        display(Event(kind="step_started", run_id="r1", step_id="s1", data={"attempt": 1}))
        assert display.headline == "steps: 0/1 done, 1 running"
        time.sleep(0.3)
        display(Event(kind="step_finished", run_id="r1", step_id="s1", data={"tokens": 3}))
    text = out.getvalue()
    assert "run r1 started" in text
    assert "planning" in text
    assert "1 running" in text
    assert "journal: j.sqlite" in text


def test_complete_on_the_mock_says_so_on_stderr() -> None:
    result = runner.invoke(app, ["complete", "hello", "--choice", "hi,bye"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() in {"hi", "bye"}
    assert "offline mock provider" in result.stderr


def test_the_tiny_model_gets_a_ready_config_that_fits_its_context(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve-local", "--tiny", "--port", "8123", "--print-config"])
    assert result.exit_code == 0, result.output
    config = tmp_path / "hi_moe.toml"
    config.write_text(result.stdout)
    tomllib.loads(result.stdout)
    settings = Settings.load(config)
    assert settings.provider == "vllm"
    assert settings.modal.endpoint == "http://127.0.0.1:8123"
    pipeline = settings.pipeline
    assert set(pipeline.adapters.values()) == {"python-lora", "math-lora"}
    assert max(pipeline.plan_max_tokens, *pipeline.step_max_tokens.values()) <= 512
    assert settings.prices.providers["vllm"].free  # this machine's server costs nothing per request


def test_write_config_does_not_overwrite_another_file(tmp_path: Path) -> None:
    mine = tmp_path / "hi_moe.toml"
    mine.write_text('provider = "openai"\n')
    result = runner.invoke(app, ["serve-local", "--tiny", "--write-config", str(mine)])
    assert result.exit_code == 2
    assert "exists" in result.stderr
    assert mine.read_text() == 'provider = "openai"\n'


@requires("openai", "openai")
def test_health_wait_asks_again_until_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_PROVIDER", "vllm")
    monkeypatch.setenv("HI_MOE_MODAL__ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    result = runner.invoke(app, ["health", "--wait", "2"])
    assert result.exit_code == 1
    assert result.stdout.startswith("vllm: down")
    assert time.monotonic() - started >= 2
