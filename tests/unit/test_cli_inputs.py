"""Every bad input a newcomer can give `hi-moe`: one line on stderr, the documented exit status
(2 = bad usage or configuration, 1 = a failed request or run), never a traceback."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hi_moe.cli import app

runner = CliRunner()

DIR = object()  # a file spec meaning "make a directory here"


@dataclass(frozen=True)
class Case:
    args: list[str]
    fragment: str
    """Text the one line must contain (case-insensitive): it says what is wrong."""
    status: int = 2
    files: dict[str, str | bytes | object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return " ".join(self.args)[:60]


TASK_CASES = [
    Case(["run", ""], "empty"),
    Case(["run", "   \n"], "empty"),
    Case(["run"], "TASK"),
    Case(["run", "x", "--task-file", "t.txt"], "not both", files={"t.txt": "Reverse a string"}),
    Case(["run", "x", "--resume", "r1"], "not both"),
    Case(["run", "--resume", "no-such-run"], "no-such-run"),
    Case(["run", "--resume", ""], "empty"),
    Case(["run", "--task-file", "t.json"], "not JSON", files={"t.json": "Reverse a string"}),
    Case(["run", "--task-file", "t.txt"], "JSON", files={"t.txt": '{"prompt": "Add two'}),
    Case(["run", "--task-file", "t.json"], "promt", files={"t.json": '{"promt": "Add"}'}),
    Case(["run", "--task-file", "t.json"], "prompt", files={"t.json": '{"tests": "x"}'}),
    Case(["run", "--task-file", "t.json"], "prompt", files={"t.json": '{"prompt": 5}'}),
    Case(["run", "--task-file", "t.json"], "prompt", files={"t.json": '{"prompt": ""}'}),
    Case(["run", "--task-file", "t.json"], "object", files={"t.json": '["Add two numbers"]'}),
    Case(
        ["run", "--task-file", "t.json"], "tests", files={"t.json": '{"prompt": "a", "tests": 5}'}
    ),
    Case(["run", "--task-file", "t.bin"], "binary", files={"t.bin": b"\x7fELF\x00\x01\x02\x00"}),
    Case(["run", "--task-file", "t.txt"], "UTF-8", files={"t.txt": b"caf\xe9 au lait"}),
    Case(["run", "--task-file", "t.txt"], "empty", files={"t.txt": "  \n"}),
    Case(["run", "--task-file", "t.txt"], "too large", files={"t.txt": "x" * (2 << 20)}),
    Case(["run", "--task-file", "tasks"], "directory", files={"tasks": DIR}),
    Case(["run", "--task-file", "missing.json"], "missing.json"),
    Case(
        ["run", "--task-file", "t.json"],
        "syntax",
        files={"t.json": json.dumps({"prompt": "add", "tests": "assert add(1, 2) ==="})},
    ),
    Case(
        ["run", "--task-file", "t.json"],
        "check(candidate)",
        files={"t.json": json.dumps({"prompt": "add", "tests": "assert 1", "entry_point": "add"})},
    ),
    Case(["run", "x", "--bogus"], "--bogus"),
    Case(["runs", "no-such-run"], "no-such-run"),
    Case(["runs", "--limit", "0"], "--limit"),
    Case(["runs", "--limit", "-3"], "--limit"),
]

COMPLETE_CASES = [
    Case(["complete"], "PROMPT"),
    Case(["complete", ""], "empty"),
    Case(["complete", "x", "--choice", ""], "--choice"),
    Case(["complete", "x", "--choice", " , ,"], "--choice"),
    Case(["complete", "x", "--choice", "a,a"], "distinct"),
    Case(["complete", "x", "--regex", "a("], "regex"),
    Case(["complete", "x", "--regex", "a", "--choice", "a"], "at most one of"),
    Case(["complete", "x", "--json-schema", "s.json"], "not JSON", files={"s.json": "{"}),
    Case(["complete", "x", "--json-schema", "s.json"], "type", files={"s.json": '{"type": "no"}'}),
    Case(["complete", "x", "--json-schema", "s.json"], "UTF-8", files={"s.json": b"\xff\xfe{}"}),
    Case(["complete", "x", "--json-schema", "d"], "directory", files={"d": DIR}),
    Case(["complete", "x", "--grammar", "g.ebnf"], "grammar", files={"g.ebnf": 'root ::= "a'}),
    Case(["complete", "x", "--grammar", "g.ebnf"], "empty", files={"g.ebnf": ""}),
    Case(["complete", "x", "--adapter", ""], "--adapter"),
    Case(["complete", "x", "--adapter", "nope"], "UnknownAdapter", status=1),
    Case(["complete", "x", "--provider", "mokc"], "--provider"),
    Case(["complete", "x", "--provider", ""], "--provider"),
    Case(["complete", "x", "--max-tokens", "-3"], "--max-tokens"),
    Case(["complete", "x", "--max-tokens", "0"], "--max-tokens"),
    Case(["complete", "x", "--max-tokens", "many"], "--max-tokens"),
    Case(["complete", "x", "--temperature", "5"], "--temperature"),
    Case(["complete", "x", "--temprature", "1"], "--temprature"),
]

CONFIG_CASES = [
    Case(["complete", "x", "--config", "c.toml"], "c.toml", files={"c.toml": "provider = \n"}),
    Case(["complete", "x", "--config", "c.toml"], "c.toml", files={"c.toml": b"provider = '\xff'"}),
    Case(["complete", "x", "--config", "missing.toml"], "missing.toml"),
    Case(["complete", "x", "--config", "conf"], "conf", files={"conf": DIR}),
    Case(["complete", "x"], "nope.toml", env={"HI_MOE_CONFIG": "nope.toml"}),
    Case(["complete", "x"], "hi_moe.toml", files={"hi_moe.toml": "[mock\n"}),
    Case(["complete", "x"], "provder", files={"hi_moe.toml": 'provder = "mock"\n'}),
    Case(["complete", "x"], "seed", files={"hi_moe.toml": '[mock]\nseed = "x"\n'}),
    Case(["run", "x"], "max_steps", env={"HI_MOE_PIPELINE__MAX_STEPS": "-1"}),
    Case(["run", "x"], "HI_MOE_PIPELINE__ROUTES", env={"HI_MOE_PIPELINE__ROUTES": "[{"}),
    Case(["complete", "x"], "HI_MOE_PROVIDER", env={"HI_MOE_PROVIDER": "mokc"}),
    Case(["--log-level", "loud", "providers"], "loud"),
]

OTHER_CASES = [
    Case(["nonesuch"], "nonesuch"),
    Case(["check-schema", "missing.json"], "missing.json"),
    Case(["check-schema", "d"], "directory", files={"d": DIR}),
    Case(["check-schema", "s.json"], "not JSON", files={"s.json": "{nope"}),
    Case(["check-schema", "s.json"], "binary", files={"s.json": b"\x00\xff"}),
    Case(["check-schema", "s.json"], "UTF-8", files={"s.json": b"{\xff}"}),
    Case(["load-adapter", "", "/tmp/a"], "NAME"),
    Case(["serve-local", "--port", "-1"], "--port"),
    Case(["serve-local", "--port", "70000"], "--port"),
    Case(["serve-local", "--print-config"], "--tiny"),
    Case(["bench", "humaneval", "--limit", "-1"], "--limit"),
    Case(["bench", "humaneval", "--mode", "sideways"], "--mode"),
    Case(["bench", "humaneval", "--concurrency", "0"], "--concurrency"),
    Case(["bench", "nonesuch"], "nonesuch"),
    Case(["health", "--wait", "-5"], "--wait"),
    Case(["report", "no-such-run"], "no-such-run"),
    Case(["report", ""], "RUN_ID"),
    Case(["report"], "RUN_ID"),
    Case(["runs", "no-such-run"], "no-such-run"),
    Case(["run", "x"], "unknown GPU type 'H1000'",
         files={"hi_moe.toml": '[prices.providers.vllm]\ngpu = "H1000"\n'}),
    Case(["run", "x"], "exactly one of",
         files={"hi_moe.toml": '[prices.providers.vllm]\ngpu = "H100"\nfree = true\n'}),
    Case(["run", "x"], "input",
         files={"hi_moe.toml": '[prices.models.m]\ninput = -1\noutput = 1\n'}),
    Case(["run", "x"], "max_cost", env={"HI_MOE_PIPELINE__BUDGET__MAX_COST": "-1"}),
    Case(["run", "x"], "exporter", files={"hi_moe.toml": '[otel]\nexporter = "zipkin"\n'}),
]  # fmt: skip


ONE_TASK = '{"prompt": "Add two numbers"}\n'
BATCH_CASES = [
    Case(["batch", "t.jsonl"], "line 2 is not JSON", files={"t.jsonl": ONE_TASK + "{nope\n"}),
    Case(["batch", "t.jsonl"], "line 1 is not JSON", files={"t.jsonl": "Add two numbers\n"}),
    Case(["batch", "t.jsonl"], "line 3: unknown key 'promt'",
         files={"t.jsonl": ONE_TASK + "\n" + '{"promt": "Sort"}\n'}),
    Case(["batch", "t.jsonl"], "line 1: prompt", files={"t.jsonl": '{"prompt": ""}\n'}),
    Case(["batch", "t.jsonl"], "line 2: the prompt is empty",
         files={"t.jsonl": ONE_TASK + '{"prompt": "  "}\n'}),
    Case(["batch", "t.jsonl"], "line 1 holds JSON but not an object",
         files={"t.jsonl": '["Add two numbers"]\n'}),
    Case(["batch", "t.jsonl"], "line 1: the tests have a syntax error",
         files={"t.jsonl": json.dumps({"prompt": "add", "tests": "assert add(1, 2) ==="})}),
    Case(["batch", "t.jsonl"], "line 1: the id is empty",
         files={"t.jsonl": '{"prompt": "a", "id": " "}\n'}),
    Case(["batch", "t.jsonl"], "line 2: the id 'x' is line 1's",
         files={"t.jsonl": '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n'}),
    Case(["batch", "t.jsonl"], "line 2: the id 'line-1'",
         files={"t.jsonl": ONE_TASK + '{"prompt": "b", "id": "line-1"}\n'}),
    Case(["batch", "t.jsonl"], "empty", files={"t.jsonl": "\n  \n"}),
    Case(["batch", "t.jsonl"], "binary", files={"t.jsonl": b"\x00\x01"}),
    Case(["batch", "missing.jsonl"], "missing.jsonl"),
    Case(["batch", "tasks"], "directory", files={"tasks": DIR}),
    Case(["batch"], "TASKS"),
    Case(["batch", "t.jsonl", "--concurrency", "0"], "--concurrency", files={"t.jsonl": ONE_TASK}),
    Case(["batch", "t.jsonl", "--resume", ""], "empty", files={"t.jsonl": ONE_TASK}),
    Case(["batch", "t.jsonl", "--resume", "no-such-batch"], "no-such-batch",
         files={"t.jsonl": ONE_TASK}),
    Case(["batch", "t.jsonl", "--out", "d"], "directory", files={"t.jsonl": ONE_TASK, "d": DIR}),
    Case(["batch", "t.jsonl", "--out", "r.jsonl"], "another batch",
         files={"t.jsonl": ONE_TASK, "r.jsonl": '{"run_id": "batch-0ther/line-1"}\n'}),
    Case(["batch", "t.jsonl", "--out", "r.jsonl"], "r.jsonl line 1 is not a result",
         files={"t.jsonl": ONE_TASK, "r.jsonl": "not a result\n"}),
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(tmp_path / "journal.sqlite"))
    monkeypatch.setenv("HI_MOE_PIPELINE__METRICS", str(tmp_path / "metrics.jsonl"))


@pytest.mark.parametrize(
    "case", [*TASK_CASES, *COMPLETE_CASES, *CONFIG_CASES, *OTHER_CASES, *BATCH_CASES], ids=str
)
def test_a_bad_input_is_one_line_and_its_exit_status(case: Case, tmp_path: Path) -> None:
    for name, content in case.files.items():
        path = tmp_path / name
        if content is DIR:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content), encoding="utf-8")
    result = runner.invoke(app, case.args, env=case.env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert len(lines) == 1, result.stderr
    assert case.fragment.lower() in lines[0].lower(), lines[0]
    assert result.exit_code == case.status, result.stderr
    assert result.stdout == ""


def test_no_arguments_at_all_prints_the_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "run" in result.output
    assert "Traceback" not in result.output


def test_a_keyboard_interrupt_is_one_line_and_status_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("hi_moe.cli.provider.load_provider", interrupted)
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 130
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
    assert "Traceback" not in result.output


def test_a_bug_is_one_line_naming_it_and_the_debug_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("an internal mistake")

    monkeypatch.setattr("hi_moe.cli.provider.load_provider", broken)
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "TypeError: an internal mistake" in lines[0]
    assert "--log-level debug" in lines[0]
