"""`hi-moe doctor` as a specification: it passes on a provider that does what it claims and
names the check that fails on one that does not."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from hi_moe.cli import app
from hi_moe.ops.doctor import CANARIES, diagnose
from hi_moe.providers import MockProvider
from hi_moe.types import CompletionRequest

runner = CliRunner()


async def test_a_provider_that_enforces_everything_passes() -> None:
    mock = MockProvider(adapters=["python-lora", "math-lora"])
    checks = await diagnose(mock)
    assert all(c.ok for c in checks), [c.line() for c in checks if not c.ok]
    names = [c.name for c in checks]
    kinds = [k for k in CANARIES if mock.capabilities.supports(k)]  # type: ignore[arg-type]
    assert names == [
        "health",
        "plain request (auth)",
        *(f"{k} enforced" for k in kinds),
        "adapter python-lora",
        "adapter math-lora",
    ]


async def test_a_server_that_ignores_constraints_fails_each_kind_by_name() -> None:
    ignoring = MockProvider(respond=lambda request: "The sea is wide.")
    checks = {c.name: c for c in await diagnose(ignoring)}
    assert checks["health"].ok
    assert checks["plain request (auth)"].ok
    for kind in CANARIES:
        if ignoring.capabilities.supports(kind):  # type: ignore[arg-type]
            assert not checks[f"{kind} enforced"].ok
            assert "ignored the constraint" in checks[f"{kind} enforced"].detail
            assert "The sea is wide." in checks[f"{kind} enforced"].detail


async def test_an_adapter_that_changes_nothing_fails() -> None:
    def answer(request: CompletionRequest) -> str | None:
        return None if request.constraint is not None else "the same words"

    flat = MockProvider(adapters=["python-lora"], respond=answer)
    checks = {c.name: c for c in await diagnose(flat)}
    assert not checks["adapter python-lora"].ok
    assert "base model" in checks["adapter python-lora"].detail


async def test_a_canary_the_free_answer_already_meets_is_inconclusive_not_passed() -> None:
    def answer(request: CompletionRequest) -> str | None:
        return None if request.constraint is not None else "qv-canary-7"

    lucky = MockProvider(respond=answer)
    checks = {c.name: c for c in await diagnose(lucky)}
    assert checks["choice enforced"].detail.startswith("inconclusive")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]


@pytest.mark.usefixtures("clean_env")
def test_the_cli_prints_a_line_per_check_and_exits_0_on_the_mock() -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert all(line.startswith("ok ") for line in lines), lines
    assert any(line.startswith("ok   choice enforced") for line in lines)
    as_json = json.loads(runner.invoke(app, ["doctor", "--json"]).stdout)
    assert {c["name"] for c in as_json} >= {"health", "plain request (auth)"}
