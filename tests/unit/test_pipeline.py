"""The pipeline, driven through MockProvider scripts: plan, dispatch, execute, check."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from hi_moe import constraints
from hi_moe.errors import ConfigError, ProviderUnavailable, RequestRejected
from hi_moe.pipeline import (
    Budget,
    Event,
    Journal,
    MetricsLog,
    PipelineSettings,
    ProgressMonitor,
    Route,
    Task,
)
from hi_moe.pipeline.architect import Architect
from hi_moe.pipeline.plan import plan_problems
from hi_moe.pipeline.sandbox import SandboxSettings
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest, Grammar, JsonSchema
from tests.unit.pipeline_support import is_plan_request, plan_of, scripted, step_of

ADAPTERS = ["python-lora", "math-lora", "algorithms-lora", "data-structures-lora"]
THREE_WAY = plan_of(
    ("s1", "work out the formula", "math", (), "text"),
    ("s2", "pick a data structure", "data_structures", (), "text"),
    ("s3", "write the code", "python", ("s1", "s2"), "code"),
)


def monitor(
    provider: MockProvider | dict[str, MockProvider], **settings: object
) -> tuple[ProgressMonitor, list[Event]]:
    events: list[Event] = []
    chosen = ProgressMonitor(
        provider,
        PipelineSettings.model_validate(settings),
        on_event=events.append,
    )
    return chosen, events


def step_requests(provider: MockProvider, step_id: str) -> list[CompletionRequest]:
    return [r for r in provider.requests if step_of(r) == step_id]


# -- Architect --------------------------------------------------------------------------------


async def test_a_good_plan_is_used_as_given() -> None:
    mock = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    outcome = await Architect(domains=["math", "python", "data_structures"]).plan(
        mock, Task(prompt="Sum of squares")
    )
    assert outcome.plan == THREE_WAY
    assert outcome.attempts == 1
    assert not outcome.fell_back
    request = mock.requests[0]
    assert isinstance(request.constraint, JsonSchema)
    assert request.adapter is None  # planning runs on the base model


async def test_a_bad_plan_is_asked_again_with_the_reason() -> None:
    cyclic = plan_of(("s1", "a", "python", ("s2",), "text"), ("s2", "b", "python", ("s1",), "text"))
    mock = MockProvider(respond=scripted([cyclic, THREE_WAY]))
    outcome = await Architect(domains=["math", "python", "data_structures"]).plan(
        mock, Task(prompt="t")
    )
    assert outcome.plan == THREE_WAY
    assert outcome.attempts == 2
    assert outcome.problems == ("steps s1 -> s2 -> s1 form a cycle (each depends on the next)",)
    repair = mock.requests[1].messages
    assert repair[-2].role == "assistant"
    assert "cycle" in repair[-1].content


async def test_a_model_that_never_plans_well_gets_a_one_step_plan_and_it_is_said() -> None:
    unknown = plan_of(("s1", "a", "python", ("s7",), "text"))
    mock = MockProvider(respond=scripted(unknown))
    run, events = monitor(mock, max_plan_repairs=2)
    result = await run.run(Task(prompt="Write fizzbuzz"))
    plan_requests = [r for r in mock.requests if is_plan_request(r)]
    assert len(plan_requests) == 3
    assert result.plan is not None
    assert [s.goal for s in result.plan.steps] == ["Write fizzbuzz"]
    assert result.status == "succeeded"
    assert any("fell back to one step" in note for note in result.notes)
    assert "plan_fell_back" in [e.kind for e in events]


async def test_output_that_is_not_a_plan_is_repaired_like_a_bad_plan() -> None:
    mock = MockProvider(respond=scripted(['{"steps": "no"}', THREE_WAY]))
    outcome = await Architect(domains=["math", "python", "data_structures"]).plan(
        mock, Task(prompt="t")
    )
    assert outcome.attempts == 2
    assert "not a valid plan" in outcome.problems[0]


async def test_a_plan_given_to_run_skips_the_architect_and_is_journaled(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    mock = MockProvider(respond=scripted("not asked", {"s3": "print(3)"}))
    events: list[Event] = []
    chosen = ProgressMonitor(mock, journal=journal, on_event=events.append)
    result = await chosen.run("Sum of squares", run_id="given", plan=THREE_WAY)
    assert result.status == "succeeded"
    assert not any(is_plan_request(r) for r in mock.requests)
    assert sorted(step_of(r) or "" for r in mock.requests) == ["s1", "s2", "s3"]
    planned = [e for e in events if e.kind == "planned"]
    assert [e.detail for e in planned] == ["3 steps, as given"]
    record = journal.load_run("given")
    assert record is not None
    assert record.plan == THREE_WAY


async def test_a_given_plan_that_cannot_run_is_refused_before_any_request() -> None:
    mock = MockProvider(respond=scripted(THREE_WAY))
    cyclic = plan_of(
        ("a", "one", "math", ("b",), "text"),
        ("b", "two", "telepathy", ("a",), "text"),
    )
    with pytest.raises(ConfigError, match="unknown domain 'telepathy'"):
        await ProgressMonitor(mock).run("t", plan=cyclic)
    assert mock.requests == []


def test_plan_problems_name_what_is_wrong() -> None:
    bad = plan_of(
        ("s1", "a", "cooking", (), "text"),
        ("s1", "b", "python", ("s1",), "text"),
        ("s3", "c", "python", ("s9",), "text"),
    )
    problems = plan_problems(bad, domains=["python"], max_steps=2)
    assert any("at most 2" in p for p in problems)
    assert any("repeated: s1" in p for p in problems)
    assert any("unknown domain 'cooking'" in p for p in problems)
    assert any("depends on itself" in p for p in problems)
    assert any("unknown step 's9'" in p for p in problems)
    with_tests = plan_problems(
        plan_of(("s1", "a", "python", (), "text")),
        domains=["python"],
        max_steps=2,
        task=Task(prompt="t", tests="assert True"),
    )
    assert with_tests == ["the task has tests, so the final step (s1) must output code"]


async def test_every_sampled_plan_parses_and_runs_on_the_mock() -> None:
    # No script: the mock samples plans from the schema; repaired or replaced, the run ends.
    for seed in range(5):
        run, _ = monitor(MockProvider(seed=seed, adapters=ADAPTERS), max_steps=3, max_goal_chars=30)
        result = await run.run("Anything")
        assert result.plan is not None
        assert result.status == "succeeded", result.reason


# -- Dispatcher -------------------------------------------------------------------------------


async def test_each_step_goes_to_its_domains_adapter_with_its_system_prompt() -> None:
    mock = MockProvider(respond=scripted(THREE_WAY, {"s3": "print(1)"}), adapters=ADAPTERS)
    run, _ = monitor(mock)
    result = await run.run("Sum of squares")
    assert result.status == "succeeded"
    assert step_requests(mock, "s1")[0].adapter == "math-lora"
    assert step_requests(mock, "s2")[0].adapter == "data-structures-lora"
    code = step_requests(mock, "s3")[0]
    assert code.adapter == "python-lora"
    assert "Python specialist" in code.messages[0].content
    assert isinstance(code.constraint, Grammar)
    assert result.answer == "print(1)"
    assert result.steps["s3"].adapter == "python-lora"


async def test_a_missing_adapter_falls_back_to_the_base_model_and_says_why() -> None:
    mock = MockProvider(respond=scripted(THREE_WAY), adapters=["python-lora"])
    run, events = monitor(mock)
    result = await run.run("t")
    assert result.status == "succeeded"
    assert step_requests(mock, "s1")[0].adapter is None
    assert result.steps["s1"].notes == ("mock lacks adapter math-lora: base model instead",)
    fell_back = [e for e in events if e.kind == "fell_back"]
    assert {e.step_id for e in fell_back} == {"s1", "s2"}


async def test_a_provider_without_grammars_gets_code_as_json() -> None:
    mock = MockProvider(
        respond=scripted(THREE_WAY, {"s3": "x = 1"}),
        adapters=ADAPTERS,
        constraint_kinds=["json_schema"],
    )
    run, _ = monitor(mock)
    result = await run.run("t")
    request = step_requests(mock, "s3")[0]
    assert isinstance(request.constraint, JsonSchema)
    assert request.constraint.name == "code"
    assert result.answer == "x = 1"
    assert "code asked for as JSON" in result.steps["s3"].notes[0]


async def test_routes_send_steps_to_the_configured_provider() -> None:
    main = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    maths = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    run, _ = monitor(
        {"main": main, "maths": maths}, routes=[Route(provider="maths", domains=("math",))]
    )
    result = await run.run("t")
    assert result.steps["s1"].provider == "maths"
    assert result.steps["s3"].provider == "main"
    assert [step_of(r) for r in maths.requests] == ["s1"]


async def test_steps_move_to_the_fallback_provider_when_the_primary_is_down() -> None:
    down = MockProvider(
        respond=lambda request: ProviderUnavailable("connection refused"),
        adapters=ADAPTERS,
    )
    backup = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    run, events = monitor({"primary": down, "backup": backup}, fallbacks=["backup"])
    result = await run.run("t")
    assert result.status == "succeeded", result.reason
    assert {r.provider for r in result.steps.values()} == {"backup"}
    assert any("planning on backup" in e.detail for e in events if e.kind == "fell_back")
    # The first requests find it down; after three failures it is skipped while cooling down.
    for step in result.steps.values():
        assert any(n.startswith(("primary unavailable", "primary skipped")) for n in step.notes)
    assert len(down.requests) == 3


# -- Fleet ------------------------------------------------------------------------------------


async def test_independent_steps_overlap_and_dependents_wait() -> None:
    spans: dict[str, list[float]] = {}

    async def slow(request: CompletionRequest) -> str:
        step = step_of(request) or "?"
        spans[step] = [time.monotonic()]
        await asyncio.sleep(0.2)
        spans[step].append(time.monotonic())
        return "done"  # text steps: no constraint to shape for

    plan = plan_of(
        ("s1", "a", "math", (), "text"),
        ("s2", "b", "math", (), "text"),
        ("s3", "c", "math", (), "text"),
        ("s4", "d", "python", ("s1", "s2", "s3"), "text"),
    )
    answers = {s: slow for s in ("s1", "s2", "s3", "s4")}
    run, _ = monitor(MockProvider(respond=scripted(plan, answers)), max_parallel=2)
    await run.run("t")
    starts = sorted(spans[s][0] for s in ("s1", "s2", "s3"))
    assert starts[1] - starts[0] < 0.1  # two at once...
    assert starts[2] - starts[0] >= 0.18  # ...and no more than two
    assert spans["s4"][0] >= max(spans[s][1] for s in ("s1", "s2", "s3"))


async def test_dependency_outputs_reach_their_dependents() -> None:
    mock = MockProvider(
        respond=scripted(THREE_WAY, {"s1": "n(n+1)(2n+1)/6", "s2": "a list"}), adapters=ADAPTERS
    )
    run, _ = monitor(mock)
    await run.run("t")
    prompt = step_requests(mock, "s3")[0].messages[1].content
    assert "Result of step s1:\nn(n+1)(2n+1)/6" in prompt
    assert "Result of step s2:\na list" in prompt
    assert prompt.index("Overall task") < prompt.index("Result of step s1")


async def test_a_failed_step_stops_its_dependents_not_its_siblings() -> None:
    plan = plan_of(
        ("s1", "a", "math", (), "text"),
        ("s2", "b", "math", (), "text"),
        ("s3", "c", "python", ("s2",), "text"),
        ("s4", "d", "python", ("s1", "s3"), "text"),
    )
    mock = MockProvider(respond=scripted(plan, {"s2": RequestRejected("bad request")}))
    run, events = monitor(mock, budget=Budget(max_replans=0))
    result = await run.run("t")
    assert result.status == "failed"
    assert result.steps["s1"].status == "done"
    assert result.steps["s2"].status == "failed"
    assert result.steps["s3"].status == "skipped"
    assert result.steps["s4"].status == "skipped"
    assert len(step_requests(mock, "s2")) == 1  # a rejected request is not retried
    assert {e.step_id for e in events if e.kind == "step_skipped"} == {"s3", "s4"}


async def test_a_step_past_its_timeout_fails() -> None:
    async def hang(request: CompletionRequest) -> str:
        await asyncio.sleep(30)
        return "late"

    plan = plan_of(("s1", "a", "math", (), "text"))
    run, _ = monitor(
        MockProvider(respond=scripted(plan, {"s1": hang})),
        step_timeout_s=0.2,
        budget=Budget(max_replans=0),
    )
    started = time.monotonic()
    result = await run.run("t")
    assert time.monotonic() - started < 5
    # The provider knows the step's deadline and ends with its own typed error, in time.
    error = result.steps["s1"].error or ""
    assert error.startswith("ProviderTimeout: no answer within the call's deadline"), error


async def test_cancelling_a_run_leaves_no_step_running() -> None:
    entered = asyncio.Event()

    async def hang(request: CompletionRequest) -> str:
        entered.set()
        await asyncio.sleep(30)
        return "late"

    plan = plan_of(("s1", "a", "math", (), "text"), ("s2", "b", "math", (), "text"))
    run, _ = monitor(MockProvider(respond=scripted(plan, {"s1": hang, "s2": hang})))
    task = asyncio.create_task(run.run("t"))
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- checks, retries, budget ------------------------------------------------------------------


async def test_a_json_step_gets_a_schema_and_its_parsed_value() -> None:
    plan = plan_of(("s1", "a", "math", (), "json"))
    run, _ = monitor(MockProvider(respond=scripted(plan, {"s1": "42"})))
    result = await run.run("t")
    assert result.steps["s1"].parsed == {"answer": "42"}
    assert json.loads(result.answer or "") == {"answer": "42"}


async def test_an_output_that_breaks_its_format_is_retried_with_the_reason() -> None:
    plan = plan_of(("s1", "a", "python", (), "code"))
    # The first answer is unfenced (the grammar rejects it); the second is right.
    mock = MockProvider(
        respond=scripted(plan, {"s1": [lambda r: "print(1)", "print(2)"]}), adapters=ADAPTERS
    )
    run, events = monitor(mock)
    result = await run.run("t")
    assert result.answer == "print(2)"
    assert result.steps["s1"].attempts == 2
    retry = step_requests(mock, "s1")[1].messages
    assert retry[-2].content == "print(1)"
    assert "broke its format" in retry[-1].content
    assert [e.kind for e in events].count("step_retried") == 1


async def test_attempts_are_bounded_then_the_run_fails_with_a_report() -> None:
    plan = plan_of(("s1", "a", "python", (), "code"))
    mock = MockProvider(respond=scripted(plan, {"s1": lambda r: "no fence"}))
    run, _ = monitor(mock, budget=Budget(step_attempts=3, max_replans=1))
    result = await run.run("t")
    assert result.status == "failed"
    assert "broke its format" in result.reason
    assert len(step_requests(mock, "s1")) == 6  # 3 attempts, re-planned once, 3 more
    assert len([r for r in mock.requests if is_plan_request(r)]) == 2
    assert (
        "An earlier attempt failed"
        in [r for r in mock.requests if is_plan_request(r)][1].messages[1].content
    )


async def test_the_token_budget_stops_the_run() -> None:
    plan = plan_of(
        *[(f"s{i}", "x", "math", (f"s{i - 1}",) if i > 1 else (), "text") for i in range(1, 6)]
    )
    mock = MockProvider(respond=scripted(plan, default="word " * 200))
    run, _ = monitor(mock, budget=Budget(max_tokens=300))
    result = await run.run("t")
    assert result.status == "failed"
    assert "token budget spent" in result.reason
    assert len([r for r in mock.requests if not is_plan_request(r)]) < 5
    skipped = [r for r in result.steps.values() if r.status == "skipped"]
    assert skipped


async def test_events_tell_the_story_of_a_run_and_metrics_record_each_request(
    tmp_path: Path,
) -> None:
    mock = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    metrics = MetricsLog(tmp_path / "m.jsonl")
    events: list[Event] = []
    run = ProgressMonitor(mock, on_event=[events.append, metrics])
    result = await run.run("t")
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["run_started", "request", "planned"]
    assert kinds[-1] == "run_finished"
    assert kinds.count("step_started") == kinds.count("step_finished") == 3
    assert {e.run_id for e in events} == {result.run_id}
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    requests = [line for line in lines if line["kind"] == "request"]
    assert [r["domain"] for r in requests[:1]] == ["plan"]
    assert {r["step"] for r in requests[1:]} == {"s1", "s2", "s3"}
    assert {r["adapter"] for r in requests[1:]} == {
        "math-lora",
        "data-structures-lora",
        "python-lora",
    }
    assert all(r["provider"] == "mock" and r["completion_tokens"] > 0 for r in requests)
    assert lines[-1]["kind"] == "run_finished"


# -- journal ----------------------------------------------------------------------------------


async def test_finished_steps_are_journaled_and_a_resume_does_not_ask_again(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    first = MockProvider(respond=scripted(THREE_WAY, {"s3": RequestRejected("crash")}))
    run = ProgressMonitor(first, PipelineSettings(budget=Budget(max_replans=0)), journal=journal)
    failed = await run.run("t", run_id="r1")
    assert failed.status == "failed"
    # Pretend the run was killed before it finished: mark it running again.
    journal.finish_run("r1", "running", None, {})
    second = MockProvider(respond=scripted(THREE_WAY, {"s3": "print(3)"}))
    resumed = await ProgressMonitor(second, journal=journal).resume("r1")
    assert resumed.status == "succeeded"
    assert resumed.answer == "print(3)"
    assert [step_of(r) for r in second.requests] == ["s3"]
    assert resumed.resumed_steps == ("s1", "s2")
    record = journal.load_run("r1")
    assert record is not None
    assert record.status == "succeeded"
    assert journal.integrity_ok()


async def test_code_is_run_against_the_tests_and_a_failure_is_fed_back() -> None:
    plan = plan_of(("s1", "write add", "python", (), "code"))
    wrong, right = "def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"
    mock = MockProvider(respond=scripted(plan, {"s1": [wrong, right]}), adapters=ADAPTERS)
    run, _ = monitor(mock)
    task = Task(
        prompt="Write add(a, b).",
        tests="def check(f):\n    assert f(2, 3) == 5, 'add(2, 3) should be 5'\n",
        entry_point="add",
    )
    result = await run.run(task)
    assert result.status == "succeeded", result.reason
    assert result.answer == right
    feedback = step_requests(mock, "s1")[1].messages[-1].content
    assert "the tests failed" in feedback
    assert "add(2, 3) should be 5" in feedback
    assert "def check(f)" in step_requests(mock, "s1")[0].messages[1].content


async def test_generated_code_cannot_hang_the_run() -> None:
    plan = plan_of(("s1", "loop", "python", (), "code"))
    mock = MockProvider(respond=scripted(plan, {"s1": "while True:\n    pass"}))
    run, _ = monitor(
        mock, sandbox=SandboxSettings(timeout_s=0.5), budget=Budget(step_attempts=1, max_replans=0)
    )
    result = await run.run(Task(prompt="t", tests="assert True"))
    assert result.status == "failed"
    assert "timed out after 0.5 s" in result.reason


async def test_a_sandbox_that_cannot_isolate_stops_the_run_before_any_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("hi_moe.pipeline.sandbox.bubblewrap.bubblewrap_problem", lambda: "no bwrap")
    mock = MockProvider(respond=scripted(plan_of(("s1", "add", "python", (), "code"))))
    run, _ = monitor(mock, sandbox=SandboxSettings(require_isolation=True))
    with pytest.raises(ConfigError, match="require_isolation"):
        await run.run(Task(prompt="t", tests="assert True"))
    assert mock.requests == []
    plain = await run.run(Task(prompt="no tests, no sandbox"))  # nothing to run: no refusal
    assert plain.status == "succeeded"


async def test_the_failure_fed_back_is_the_runner_s_report_not_the_program_s_output() -> None:
    loud = "print('SECRET-LOOKING ' * 50)\nimport sys\nprint('to stderr', file=sys.stderr)\n"
    plan = plan_of(("s1", "add", "python", (), "code"))
    mock = MockProvider(
        respond=scripted(plan, {"s1": [loud + "def add(a, b):\n    return 0", "x"]})
    )
    run, _ = monitor(mock, budget=Budget(step_attempts=2, max_replans=0))
    await run.run(Task(prompt="t", tests="assert add(1, 2) == 3, 'add(1, 2) is 3'"))
    feedback = step_requests(mock, "s1")[1].messages[-1].content
    assert "AssertionError: add(1, 2) is 3" in feedback
    assert "SECRET-LOOKING" not in feedback
    assert "to stderr" not in feedback


async def test_the_time_budget_stops_the_run() -> None:
    chain = [(f"s{i}", "x", "math", (f"s{i - 1}",) if i > 1 else (), "text") for i in range(1, 6)]
    mock = MockProvider(respond=scripted(plan_of(*chain)), latency_s=0.15)  # type: ignore[arg-type]
    run, _ = monitor(mock, budget=Budget(max_wall_s=0.4))
    constraints.validate(run.architect.constraint)  # compile the plan schema outside the clock
    started = time.monotonic()
    result = await run.run("t")
    assert time.monotonic() - started < 2
    assert result.status == "failed"
    assert "time budget spent" in result.reason
    assert result.steps["s5"].status == "skipped"
