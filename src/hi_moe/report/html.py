"""The report page: one self-contained HTML file. Its style, its drawings (inline SVG) and its
one small script are inside it; it loads nothing (a Content-Security-Policy says so too), so it
can be mailed, archived, or opened offline."""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape

from hi_moe.report.data import PLANNING, ReportData, StepRow, usd
from hi_moe.report.svg import (
    COLD_FILL,
    COLD_STROKE,
    FAILED_STROKE,
    STATUS_COLOURS,
    adapter_colours,
    dag,
    seconds,
    timeline,
)

__all__ = ["render"]

STATE_COLOURS = {
    "succeeded": "#2b8a3e",
    "failed": "#c92a2a",
    "interrupted": "#e8590c",
    "running": "#1c7ed6",
}

CSS = """
:root { color-scheme: light; --ink: #212529; --muted: #6c757d; --line: #e9ecef;
  --card: #ffffff; --page: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 32px 48px; }
header { display: flex; align-items: baseline; gap: 14px; flex-wrap: wrap; margin-bottom: 16px; }
header + .reason { margin: -8px 0 16px; }
h1 { font-size: 22px; margin: 0; font-weight: 650; letter-spacing: -0.01em; }
h1 .label { color: var(--muted); font-weight: 500; }
h2 { font-size: 15px; margin: 0 0 12px; font-weight: 650; }
h2 .hint { color: var(--muted); font-weight: 400; font-size: 13px; margin-left: 6px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas,
  "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; color: #fff;
  font-size: 12px; font-weight: 600; letter-spacing: 0.02em; text-transform: uppercase; }
.reason { color: var(--muted); margin: 6px 0 0; }
.when { color: var(--muted); font-size: 13px; margin-left: auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin: 0 0 16px; }
.card, section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
.card { padding: 12px 16px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.05em; }
.card .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .s { color: var(--muted); font-size: 12px; }
section { padding: 18px 20px; margin: 0 0 16px; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; }
.grid2 > section { margin: 0 0 16px; }
.scroll { overflow-x: auto; }
svg.dag, svg.timeline { display: block; max-width: 100%; height: auto; }
.prompt { max-height: 180px; overflow: auto; }
svg text { font-family: inherit; }
.node-id { font-size: 14px; font-weight: 650; fill: var(--ink); }
.node-domain { font-size: 12px; fill: var(--muted); }
.node-status { font-size: 11px; font-weight: 600; }
.row-id { font-size: 13px; font-weight: 650; fill: var(--ink); }
.row-domain { font-size: 12px; fill: var(--muted); }
.tick { font-size: 11px; fill: var(--muted); }
.grid { stroke: #dee2e6; stroke-dasharray: 2 3; }
.bar-label { font-size: 10.5px; fill: #495057; }
.bar-label-failed { fill: #c92a2a; }
.cold-label { font-size: 10px; fill: #1864ab; font-weight: 600; }
.attempt .bar { transition: opacity 0.15s; }
.attempt:hover .bar { filter: brightness(0.9); }
svg.dimmed .attempt:not(.hl) { opacity: 0.25; }
svg.dimmed .dag-node:not(.hl) { opacity: 0.35; }
.dag-node { cursor: default; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 10px 0 0; color: #495057;
  font-size: 12.5px; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.legend em { font-style: normal; color: var(--muted); width: 64px; font-size: 12px;
  text-transform: uppercase; letter-spacing: 0.05em; }
.sw { width: 14px; height: 12px; border-radius: 3px; display: inline-block; }
.sw.failed { background: repeating-linear-gradient(45deg, #adb5bd 0 3px, #e9ecef 3px 6px);
  outline: 1.6px solid #e03131; outline-offset: -1.6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 7px 9px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase;
  letter-spacing: 0.04em; }
td.n, th.n { text-align: right; }
tr:last-child td { border-bottom: none; }
.pill { display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; border: 1px solid; }
.note { color: var(--muted); font-size: 12.5px; }
.prompt { white-space: pre-wrap; margin: 0; font-size: 15px; }
pre { background: #f8f9fa; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  margin: 0; overflow: auto; max-height: 520px; white-space: pre-wrap; word-break: break-word; }
.empty { color: var(--muted); font-style: italic; margin: 0; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
"""

# Hovering a step (its DAG node or timeline row) picks out its requests and its node.
SCRIPT = """
(function () {
  var svgs = document.querySelectorAll("svg.dag, svg.timeline");
  function mark(step, on) {
    svgs.forEach(function (svg) { svg.classList.toggle("dimmed", on); });
    document.querySelectorAll(".attempt, .dag-node").forEach(function (el) {
      el.classList.toggle("hl", on && el.getAttribute("data-step") === step);
    });
  }
  document.querySelectorAll(".dag-node, .tl-row").forEach(function (el) {
    var step = el.getAttribute("data-step");
    el.addEventListener("mouseenter", function () { mark(step, true); });
    el.addEventListener("mouseleave", function () { mark(step, false); });
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def render(data: ReportData, *, generated: float | None = None) -> str:
    """The page for `data`, as one string of HTML."""
    colours = adapter_colours(data.adapters)
    title = f"hi-moe run {data.run_id}"
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
            _header(data),
            _section("Task", "", f'<p class="prompt" id="task">{_e(data.prompt)}</p>'),
            _cards(data),
            '<div class="grid2">',
            _section(
                "Plan", "one node per step; arrows point to the steps that use it", _plan(data)
            ),
            _section("Providers", "", _providers(data)),
            "</div>",
            _section(
                "Timeline",
                "one bar per provider request, from the run's first request; hover for details",
                f'<div class="scroll">{timeline(data, colours)}</div>{_timeline_legend(colours)}',
            ),
            _section(
                "Steps", "every request of each step, retries and fallbacks included", _steps(data)
            ),
            _notes(data),
            _section("Answer", "", _answer(data)),
            f"<footer>hi-moe report · written {_e(_when(generated or time.time()))}</footer>",
            f"</main><script>{SCRIPT}</script></body></html>\n",
        ]
    )


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _section(title: str, hint: str, body: str) -> str:
    hint_html = f'<span class="hint">{_e(hint)}</span>' if hint else ""
    return f"<section><h2>{_e(title)}{hint_html}</h2>{body}</section>"


def _header(data: ReportData) -> str:
    colour = STATE_COLOURS.get(data.state, "#495057")
    reason = data.reason
    if data.state == "interrupted" and not reason:
        reason = (
            "The run's process is gone: this is what the journal holds. "
            f"Continue it with: hi-moe run --resume {data.run_id}"
        )
    return (
        f'<header><h1><span class="label">run</span> {_e(data.run_id)}</h1>'
        f'<span class="badge" id="state" style="background:{colour}">{_e(data.state)}</span>'
        f'<span class="when">started {_e(_when(data.created))}</span></header>'
        + (f'<p class="reason" id="reason">{_e(reason)}</p>' if reason else "")
    )


def _card(key: str, value: str, sub: str = "", ident: str = "") -> str:
    attr = f' id="{ident}"' if ident else ""
    small = f'<div class="s">{_e(sub)}</div>' if sub else ""
    return (
        f'<div class="card"><div class="k">{_e(key)}</div>'
        f'<div class="v"{attr}>{_e(value)}</div>{small}</div>'
    )


def _cards(data: ReportData) -> str:
    failed = sum(1 for r in data.requests if r.failed)
    retried = sum(1 for r in data.requests if r.attempt > 1)
    cost_sub = [f"{data.unpriced} requests unpriced" if data.unpriced else ""]
    if data.retry_usd:
        cost_sub.append(f"{usd(data.retry_usd)} on retries")
    done = sum(1 for s in data.steps if s.status == "done")
    request_sub = ", ".join(
        part
        for part in (
            f"{failed} failed" if failed else "",
            f"{retried} {'retry' if retried == 1 else 'retries'}" if retried else "",
        )
        if part
    )
    cards = [
        _card("Cost", usd(data.cost_usd), "; ".join(p for p in cost_sub if p), "cost"),
        _card(
            "Wall time",
            seconds(data.wall_s),
            "" if data.answer or data.state != "interrupted" else "until the last request",
            "wall",
        ),
        _card("Steps", f"{done} / {len(data.steps)}", "done"),
        _card("Requests", str(len(data.requests)), request_sub),
        _card("Tokens", f"{data.tokens:,}"),
    ]
    if data.gpu_s:
        cards.append(_card("GPU time", f"{data.gpu_s:.1f} s", "GPU-seconds charged"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _plan(data: ReportData) -> str:
    legend = "".join(
        f'<span><i class="sw" style="background:{fill};border:1.6px '
        f'{"dashed" if status in ("skipped", "not run") else "solid"} {stroke}"></i>'
        f"{_e(status)}</span>"
        for status, (fill, stroke) in STATUS_COLOURS.items()
        if status != "unfinished" or any(s.status == "unfinished" for s in data.steps)
    )
    return f'<div class="scroll">{dag(data)}</div><div class="legend">{legend}</div>'


def _timeline_legend(colours: dict[str | None, str]) -> str:
    adapters = [
        f'<span><i class="sw" style="background:{colour}"></i>{_e(adapter)}</span>'
        for adapter, colour in colours.items()
        if adapter is not None
    ]
    adapters.append(f'<span><i class="sw" style="background:{colours[None]}"></i>base model</span>')
    marks = [
        f'<span><i class="sw" style="background:{COLD_FILL};border:1px dashed {COLD_STROKE}">'
        "</i>cold start</span>",
        f'<span><i class="sw failed" style="outline-color:{FAILED_STROKE}"></i>'
        "failed call (its error on hover)</span>",
        "<span><b>retry N</b>&nbsp;the step's attempt N</span>",
        "<span><b>fallback A → B</b>&nbsp;B answered when A failed</span>",
    ]
    return (
        f'<div class="legend"><em>adapter</em>{"".join(adapters)}</div>'
        f'<div class="legend"><em>marks</em>{"".join(marks)}</div>'
    )


def _cost(value: float, unpriced: int) -> str:
    return usd(value) + (f' <span class="note">+ {unpriced} unpriced</span>' if unpriced else "")


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int]) -> str:
    th = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    table = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _status(step: StepRow) -> str:
    fill, stroke = STATUS_COLOURS.get(step.status, STATUS_COLOURS["not run"])
    style = f"background:{fill};border-color:{stroke};color:{stroke}"
    return f'<span class="pill" style="{style}">{_e(step.status)}</span>'


def _steps(data: ReportData) -> str:
    if not data.steps:
        return '<p class="empty">No steps.</p>'
    head = [
        "step",
        "domain",
        "status",
        "provider",
        "adapter",
        "attempts",
        "requests",
        "tokens",
        "latency",
        "cost",
    ]
    rows = [
        [
            f"<b>{_e(step.id)}</b>" if step.id != PLANNING else "<b>plan</b>",
            _e(step.domain) if step.id != PLANNING else "Architect",
            _status(step),
            _e(step.provider or "—"),
            _e(step.adapter or ("base model" if step.provider else "—")),
            str(step.attempts),
            str(step.requests),
            f"{step.tokens:,}",
            _e(seconds(step.latency_s)),
            _cost(step.cost_usd, step.unpriced) if step.requests else "—",
        ]
        for step in ([data.planning] if data.planning else []) + list(data.steps)
    ]
    return _table(head, rows, {5, 6, 7, 8, 9})


def _providers(data: ReportData) -> str:
    if not data.providers:
        return '<p class="empty">No requests.</p>'
    head = ["provider", "requests", "failed", "tokens", "cost", "GPU time"]
    rows = [
        [
            f"<b>{_e(p.provider)}</b>",
            str(p.requests),
            str(p.failed),
            f"{p.tokens:,}",
            _cost(p.cost_usd, p.unpriced),
            f"{p.gpu_s:.2f} s",
        ]
        for p in data.providers
    ]
    return _table(head, rows, {1, 2, 3, 4, 5})


def _notes(data: ReportData) -> str:
    items = [f"<li>{_e(note)}</li>" for note in data.notes]
    if data.resumed_steps:
        items.append(f"<li>resumed with {_e(', '.join(data.resumed_steps))} from the journal</li>")
    for step in data.steps:
        items += [f"<li><b>{_e(step.id)}</b>: {_e(note)}</li>" for note in step.notes]
        if step.error:
            items.append(f"<li><b>{_e(step.id)}</b> failed: {_e(step.error)}</li>")
    if not items:
        return ""
    return _section("Notes", "fallbacks taken and why", f'<ul class="note">{"".join(items)}</ul>')


def _answer(data: ReportData) -> str:
    if data.answer is not None:
        return f'<pre id="answer">{_e(data.answer)}</pre>'
    why = {
        "interrupted": "No answer: the run was interrupted.",
        "running": "No answer yet: the run is still running.",
        "failed": "No answer: the run failed.",
    }.get(data.state, "No answer.")
    return f'<p class="empty" id="answer">{_e(why)}</p>'
