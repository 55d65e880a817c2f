"""`hi-moe report RUN_ID`: one run from the journal as one self-contained HTML page (its plan,
a bar per provider request, its steps, providers, cost and answer), for finished, failed and
interrupted runs; and `hi-moe runs` listing each run's cost and report."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hi_moe.cli import app
from hi_moe.cost import Prices, ProviderPrice, current_request
from hi_moe.errors import ProviderUnavailable, RequestRejected
from hi_moe.pipeline import Budget, Journal, PipelineSettings, ProgressMonitor, Task
from hi_moe.providers import MockProvider
from hi_moe.report import gather, render, report_path, write_report
from hi_moe.types import CompletionRequest
from tests.unit.pipeline_support import plan_of, scripted, shaped, step_of

runner = CliRunner()

ADAPTERS = ["python-lora", "math-lora", "algorithms-lora", "data-structures-lora"]
THREE_WAY = plan_of(
    ("s1", "bound the n-th prime", "math", (), "text"),
    ("s2", "pick a sieve", "algorithms", (), "text"),
    ("s3", "write nth_prime(n)", "python", ("s1", "s2"), "code"),
)
ANSWER = 'def nth_prime(n):\n    return [2, 3, 5][n - 1] if 0 < n < 4 else "<&>"'


class Page(HTMLParser):
    """Every element of a page: its tag and attributes, in document order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def with_class(self, *names: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if set(names) <= set(a.get("class", "").split())]

    def bars(self, *marks: str) -> list[dict[str, str]]:
        """The timeline's request bars, those with all of `marks` (failed, retry, ...)."""
        return self.with_class("attempt", *marks)


def page_of(journal: Journal, run_id: str) -> str:
    data = gather(journal, run_id)
    assert data is not None, f"no run {run_id}"
    return render(data)


def answer_of(page: str) -> str:
    found = re.search(r'<pre id="answer">(.*?)</pre>', page, flags=re.DOTALL)
    assert found, "no <pre id=answer>"
    return html.unescape(found.group(1))


def run_with_retry_and_fallback(journal: Journal) -> str:
    """A finished run: s2's provider is down (backup answers it), s3's first answer breaks its
    format (retried), and the final answer holds characters HTML must escape."""
    primary = MockProvider(
        respond=scripted(
            THREE_WAY,
            {"s2": ProviderUnavailable("503 no replica"), "s3": [lambda r: "no fence", ANSWER]},
        ),
        adapters=ADAPTERS,
    )
    backup = MockProvider(respond=scripted(THREE_WAY), adapters=ADAPTERS)
    monitor = ProgressMonitor(
        {"primary": primary, "backup": backup},
        PipelineSettings(fallbacks=["backup"]),
        journal=journal,
    )
    result = asyncio.run(monitor.run(Task(prompt="Write nth_prime(n) <fast>"), run_id="mixed"))
    assert result.status == "succeeded", result.reason
    assert result.steps["s3"].attempts == 2
    return result.run_id


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite")


def test_the_page_loads_nothing(journal: Journal) -> None:
    page = page_of(journal, run_with_retry_and_fallback(journal))
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, flags=re.I)
    assert "<link" not in page.lower()
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, flags=re.I)
    assert "@import" not in page
    assert "url(http" not in page
    assert "http://" not in page
    assert "https://" not in page
    assert "default-src 'none'" in page  # and the browser is told so


def test_one_bar_per_request_and_one_node_per_step(journal: Journal) -> None:
    run_id = run_with_retry_and_fallback(journal)
    page = Page(page_of(journal, run_id))
    requests = journal.requests(run_id)
    bars = page.bars()
    assert len(bars) == len(requests)
    assert sorted(int(b["data-index"]) for b in bars) == list(range(len(requests)))
    assert [b["data-step"] for b in bars].count("(plan)") == 1
    nodes = page.with_class("dag-node")
    assert [n["data-step"] for n in nodes] == ["s1", "s2", "s3"]
    assert {n["data-status"] for n in nodes} == {"done"}
    assert len(page.with_class("dag-edge")) == 2  # s3 depends on s1 and s2
    rows = page.with_class("tl-row")
    assert [r["data-step"] for r in rows] == ["(plan)", "s1", "s2", "s3"]


def test_retries_and_fallbacks_are_marked_with_the_failure_on_hover(journal: Journal) -> None:
    text = page_of(journal, run_with_retry_and_fallback(journal))
    page = Page(text)
    (down,) = [b for b in page.bars("failed") if b["data-step"] == "s2"]
    assert down["data-provider"] == "primary"
    (fallback,) = page.bars("fallback")
    assert (fallback["data-step"], fallback["data-provider"]) == ("s2", "backup")
    assert "fallback primary → backup" in text
    (retry,) = page.bars("retry")
    assert (retry["data-step"], retry["data-attempt"]) == ("s3", "2")
    assert "retry 2" in text
    rejected = [b for b in page.bars("failed") if b["data-step"] == "s3"]
    assert [b["data-attempt"] for b in rejected] == ["1"]
    titles = re.findall(r"<title>(.*?)</title>", text, flags=re.DOTALL)
    assert any("failed: ProviderUnavailable" in t for t in titles)
    assert any("failed: ConstraintViolation" in t for t in titles)


def test_the_header_tables_and_answer_say_what_the_run_did(journal: Journal) -> None:
    run_id = run_with_retry_and_fallback(journal)
    text = page_of(journal, run_id)
    record = journal.load_run(run_id)
    assert record is not None
    assert record.summary is not None
    assert answer_of(text) == ANSWER  # escaped in the page, the same text once parsed
    assert '"<&>"' not in text
    assert "Write nth_prime(n) &lt;fast&gt;" in text
    assert 'id="state"' in text
    assert ">succeeded<" in text
    unpriced = record.summary["cost"]["unpriced_requests"]
    assert unpriced > 0  # these mocks' labels have no price
    assert f"{unpriced} requests unpriced" in text
    assert '<div class="v" id="cost">$0.0000</div>' in text
    for provider in ("primary", "backup"):
        assert f"<td><b>{provider}</b></td>" in text
    steps_at = text.index("<h2>Steps")
    steps_table = text[steps_at : text.index("</section>", steps_at)]
    assert steps_table.count("<tr>") == 1 + 1 + 3  # the head, planning, the steps
    assert "503 no replica" in text  # the step's note


def cold_then_answer(plan_text: str) -> MockProvider:
    """A GPU server that is cold at its first request: it waits, then says the wait is over."""
    woken: list[bool] = []

    async def respond(request: CompletionRequest) -> str:
        if not woken:
            woken.append(True)
            await asyncio.sleep(0.2)
            flight = current_request()
            assert flight is not None
            flight.cold_start_over()
        await asyncio.sleep(0.05)
        if step_of(request) is None:
            return plan_text
        return shaped(request, "print(1)")

    return MockProvider(respond=respond, adapters=ADAPTERS)


def test_a_cold_start_is_the_bars_leading_segment_and_gpu_time_is_costed(
    journal: Journal,
) -> None:
    from hi_moe.pipeline.architect import plan_json

    plan = plan_of(("s1", "write it", "python", (), "code"))
    monitor = ProgressMonitor(
        {"gpu": cold_then_answer(plan_json(plan))},
        journal=journal,
        prices=Prices(providers={"gpu": ProviderPrice(usd_per_s=0.01)}),
    )
    result = asyncio.run(monitor.run(Task(prompt="t"), run_id="cold"))
    assert result.status == "succeeded", result.reason
    text = page_of(journal, "cold")
    page = Page(text)
    (cold,) = page.bars("cold")
    assert cold["data-step"] == "(plan)"
    assert len(page.with_class("cold-start")) == 1
    assert "cold start" in text
    assert f'id="cost">${result.cost.usd:.4f}<' in text
    assert "GPU time" in text
    assert "requests unpriced" not in text


def test_a_failed_run_shows_its_reason_and_which_steps_failed_or_were_skipped(
    journal: Journal,
) -> None:
    mock = MockProvider(respond=scripted(THREE_WAY, {"s1": RequestRejected("bad request")}))
    monitor = ProgressMonitor(mock, PipelineSettings(budget=Budget(max_replans=0)), journal=journal)
    result = asyncio.run(monitor.run(Task(prompt="t"), run_id="broken"))
    assert result.status == "failed"
    text = page_of(journal, "broken")
    page = Page(text)
    status = {n["data-step"]: n["data-status"] for n in page.with_class("dag-node")}
    assert status == {"s1": "failed", "s2": "done", "s3": "skipped"}
    assert ">failed<" in text
    assert html.escape(result.reason) in text
    assert '<p class="empty" id="answer">No answer: the run failed.</p>' in text
    assert len(page.bars()) == len(journal.requests("broken"))


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_interrupted_run_shows_what_the_journal_has(journal: Journal) -> None:
    hanging = asyncio.Event()

    async def hang(request: CompletionRequest) -> str:
        hanging.set()
        await asyncio.sleep(30)
        return "late"

    async def interrupted() -> None:
        mock = MockProvider(respond=scripted(THREE_WAY, {"s3": hang}), adapters=ADAPTERS)
        task = asyncio.create_task(ProgressMonitor(mock, journal=journal).run("t", run_id="cut"))
        await asyncio.wait_for(hanging.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    with sqlite3.connect(journal.path) as db:  # as if its process had been killed
        db.execute("UPDATE runs SET owner_pid = ? WHERE run_id = 'cut'", (dead_pid(),))
    record = journal.load_run("cut")
    assert record is not None
    assert record.state == "interrupted"
    assert record.summary is None
    data = gather(journal, "cut")
    assert data is not None
    text = render(data)
    page = Page(text)
    status = {n["data-step"]: n["data-status"] for n in page.with_class("dag-node")}
    # s3's request was cancelled in flight: booked (it held the server), its step unfinished.
    assert status == {"s1": "done", "s2": "done", "s3": "unfinished"}
    assert len(page.bars()) == len(journal.requests("cut")) == 4
    assert journal.requests("cut")[-1]["error"] == "Cancelled"
    assert ">interrupted<" in text
    assert "hi-moe run --resume cut" in text
    assert "No answer: the run was interrupted." in text
    assert data.wall_s is not None
    assert data.wall_s > 0


def test_a_run_with_no_plan_and_no_requests_still_renders(journal: Journal) -> None:
    journal.start_run("bare", Task(prompt="t"))
    text = page_of(journal, "bare")
    assert "No plan was made." in text
    assert "The run made no requests." in text
    assert 'class="attempt' not in text


def test_an_unknown_run_has_no_report(journal: Journal, tmp_path: Path) -> None:
    assert gather(journal, "nope") is None
    assert write_report(journal, "nope", tmp_path / "x.html") is None
    assert not (tmp_path / "x.html").exists()


def test_the_default_path_is_beside_the_journal_and_a_run_id_cannot_leave_it() -> None:
    assert report_path(Path("/j/runs.sqlite"), "r1") == Path("/j/reports/r1.html")
    assert report_path(Path("/j/runs.sqlite"), "../../etc/x").parent == Path("/j/reports")


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli_journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("HI_MOE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "journal.sqlite"
    monkeypatch.setenv("HI_MOE_PIPELINE__JOURNAL", str(path))
    return path


def test_hi_moe_report_writes_the_page_beside_the_journal_and_prints_where(
    cli_journal: Path,
) -> None:
    first = json.loads(runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"]).stdout)
    result = runner.invoke(app, ["report", first["run_id"]])
    assert result.exit_code == 0, result.output
    written = cli_journal.parent / "reports" / f"{first['run_id']}.html"
    assert result.stdout.strip() == str(written)
    page = written.read_text(encoding="utf-8")
    assert answer_of(page) == first["answer"]
    assert len(Page(page).bars()) == 4  # the plan and three steps
    elsewhere = cli_journal.parent / "out" / "r.html"
    again = runner.invoke(app, ["report", first["run_id"], "--out", str(elsewhere)])
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == str(elsewhere)
    assert elsewhere.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_hi_moe_report_on_an_unknown_run_is_one_line_and_status_2(cli_journal: Path) -> None:
    result = runner.invoke(app, ["report", "no-such-run"])
    assert result.exit_code == 2  # bad usage, as `hi-moe runs no-such-run` is
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "no-such-run" in lines[0]
    assert str(cli_journal) in lines[0]
    assert result.stdout == ""
    assert not (cli_journal.parent / "reports").exists()


def test_runs_lists_each_runs_cost_and_its_report(cli_journal: Path) -> None:
    first = json.loads(runner.invoke(app, ["run", "Sort a list", "--json", "--quiet"]).stdout)
    Journal(cli_journal).start_run("unfinished", Task(prompt="b"))
    listed = {r["run_id"]: r for r in json.loads(runner.invoke(app, ["runs", "--json"]).stdout)}
    assert listed[first["run_id"]]["cost_usd"] == 0.0  # the mock is free
    assert listed["unfinished"]["cost_usd"] is None
    assert listed[first["run_id"]]["report"] == f"hi-moe report {first['run_id']}"
    table = runner.invoke(app, ["runs"], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "$0.0000" in table.stdout
    assert "—" in table.stdout
    assert f"hi-moe report {first['run_id']}" in table.stdout
    runner.invoke(app, ["report", first["run_id"]])
    listed = {r["run_id"]: r for r in json.loads(runner.invoke(app, ["runs", "--json"]).stdout)}
    written = cli_journal.parent / "reports" / f"{first['run_id']}.html"
    assert listed[first["run_id"]]["report"] == str(written)


HOSTILE = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>"\' onmouseover="alert(2)'


def test_hostile_text_from_the_task_the_model_and_the_server_stays_text(journal: Journal) -> None:
    """Everything the page shows came from somewhere else: the task, the model's answers and
    the servers' error messages. None of it may become markup, whatever it holds."""
    hostile_plan = plan_of(
        ("s1", HOSTILE[:40], "math", (), "text"),
        ("s2", "write it", "python", ("s1",), "code"),
    )
    down = MockProvider(
        respond=scripted(hostile_plan, {"s1": ProviderUnavailable(HOSTILE)}), adapters=ADAPTERS
    )
    backup = MockProvider(
        respond=scripted(hostile_plan, {"s1": HOSTILE, "s2": HOSTILE}), adapters=ADAPTERS
    )
    settings = PipelineSettings(fallbacks=["backup"], adapters={"math": HOSTILE[:30]})
    monitor = ProgressMonitor({"down": down, "backup": backup}, settings, journal=journal)
    result = asyncio.run(monitor.run(Task(prompt=HOSTILE), run_id="hostile"))
    page = page_of(journal, result.run_id)
    parsed = Page(page)
    assert [tag for tag, _ in parsed.elements].count("script") == 1  # the page's own
    assert not [tag for tag, _ in parsed.elements if tag == "img"]
    handlers = [(tag, name) for tag, attrs in parsed.elements for name in attrs if name[:2] == "on"]
    assert handlers == []
    assert html.escape(HOSTILE) in page or html.escape(HOSTILE, quote=False) in page
