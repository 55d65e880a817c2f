"""The report's two drawings, as inline SVG: the plan's DAG and the timeline of requests.

DOM hooks (what tests and the page's script look for): each DAG node is a `g.dag-node` with
`data-step`; each request is a `g.attempt` with `data-step` (`(plan)` for planning),
`data-attempt`, `data-provider` and `data-adapter`, and the classes `failed`, `retry`,
`fallback` and `cold` where they apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from hi_moe.report.data import PLANNING, ReportData, Request, StepRow, usd

__all__ = ["ADAPTER_COLOURS", "BASE_COLOUR", "STATUS_COLOURS", "adapter_colours", "dag", "timeline"]

STATUS_COLOURS: dict[str, tuple[str, str]] = {
    # status: (fill, stroke)
    "done": ("#e6f4ea", "#2b8a3e"),
    "failed": ("#fdecec", "#c92a2a"),
    "skipped": ("#f1f3f5", "#868e96"),
    "unfinished": ("#fff4e0", "#e8590c"),
    "not run": ("#ffffff", "#adb5bd"),
}
ADAPTER_COLOURS = (
    "#4c6ef5", "#12b886", "#f59f00", "#be4bdb", "#15aabf", "#fd7e14", "#82c91e", "#e64980",
    "#7950f2", "#20c997",
)  # fmt: skip
BASE_COLOUR = "#7c8a99"
"""The base model's requests (planning, and steps without an adapter)."""
FAILED_STROKE = "#e03131"
COLD_FILL = "#d0ebff"
COLD_STROKE = "#1c7ed6"

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 168, 54, 64, 18, 16
LABEL_W, PLOT_RIGHT, WIDTH = 150, 130, 1120
LANE_H, BAR_H, ROW_PAD, AXIS_H = 24, 14, 6, 30
CHAR_W = 6.0  # an estimate of the label font's average advance, for lane packing
MIN_BAR_W = 3.0
COLD_LABEL_W = 64.0  # a cold-start segment this wide holds its label


def adapter_colours(adapters: Sequence[str | None]) -> dict[str | None, str]:
    """A colour per adapter, in the order given; the base model (None) is always grey."""
    colours: dict[str | None, str] = {None: BASE_COLOUR}
    named = [a for a in adapters if a is not None]
    for i, adapter in enumerate(named):
        colours[adapter] = ADAPTER_COLOURS[i % len(ADAPTER_COLOURS)]
    return colours


def _a(value: object) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def seconds(value: float | None) -> str:
    """A duration for people: `420 ms`, `3.22 s`, `2 min 5 s`."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


# -- the plan -----------------------------------------------------------------------------------


def _depths(steps: Sequence[StepRow]) -> dict[str, int]:
    """Each step's layer: the longest chain of dependencies before it (cycles cut)."""
    by_id = {step.id: step for step in steps}
    depth: dict[str, int] = {}

    def visit(step_id: str, seen: frozenset[str]) -> int:
        if step_id in depth:
            return depth[step_id]
        step = by_id[step_id]
        parents = [d for d in step.depends_on if d in by_id and d not in seen]
        found = 1 + max((visit(d, seen | {step_id}) for d in parents), default=-1)
        depth[step_id] = found
        return found

    for step in steps:
        visit(step.id, frozenset())
    return depth


def dag(data: ReportData) -> str:
    """The plan as layers left to right, one column per depth; edges are `depends_on`."""
    planned = {step.id for step in data.plan.steps} if data.plan else set()
    steps = [step for step in data.steps if step.id in planned]
    if not steps:
        return '<p class="empty">No plan was made.</p>'
    depth = _depths(steps)
    columns: list[list[StepRow]] = [[] for _ in range(max(depth.values()) + 1)]
    for step in steps:
        columns[depth[step.id]].append(step)
    row_of: dict[str, float] = {}
    for column in columns:  # parents' mean row first, so edges cross less
        column.sort(
            key=lambda s: sum(row_of.get(d, 0.0) for d in s.depends_on) / max(len(s.depends_on), 1)
        )
        for row, step in enumerate(column):
            row_of[step.id] = row
    tallest = max(len(column) for column in columns)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * ROW_GAP
    width = PAD * 2 + len(columns) * NODE_W + (len(columns) - 1) * COL_GAP
    where: dict[str, tuple[float, float]] = {}
    for c, column in enumerate(columns):
        offset = (height - (len(column) * NODE_H + (len(column) - 1) * ROW_GAP)) / 2
        for r, step in enumerate(column):
            where[step.id] = (PAD + c * (NODE_W + COL_GAP), offset + r * (NODE_H + ROW_GAP))
    parts = [
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="The plan: one node per step, arrows from a step to those that '
        'depend on it">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#868e96"/></marker></defs>',
    ]
    for step in steps:
        x2, y2 = where[step.id]
        for parent in step.depends_on:
            if parent not in where:
                continue
            x1, y1 = where[parent]
            ax, ay, bx, by = x1 + NODE_W, y1 + NODE_H / 2, x2 - 2, y2 + NODE_H / 2
            mid = (ax + bx) / 2
            parts.append(
                f'<path class="dag-edge" data-from="{_a(parent)}" data-to="{_a(step.id)}" '
                f'd="M{_n(ax)},{_n(ay)} C{_n(mid)},{_n(ay)} {_n(mid)},{_n(by)} {_n(bx)},{_n(by)}" '
                'fill="none" stroke="#adb5bd" stroke-width="1.6" marker-end="url(#arrow)"/>'
            )
    for step in steps:
        parts.append(_node(step, *where[step.id]))
    parts.append("</svg>")
    return "".join(parts)


def _node(step: StepRow, x: float, y: float) -> str:
    fill, stroke = STATUS_COLOURS.get(step.status, STATUS_COLOURS["not run"])
    dash = ' stroke-dasharray="4 3"' if step.status in ("skipped", "not run") else ""
    tip = f"{step.id} ({step.domain}): {step.status}" + (f"\n{step.goal}" if step.goal else "")
    if step.error:
        tip += f"\n{step.error}"
    domain = step.domain if len(step.domain) <= 20 else step.domain[:19] + "…"
    return (
        f'<g class="dag-node status-{_a(step.status.replace(" ", "-"))}" data-step="{_a(step.id)}" '
        f'data-status="{_a(step.status)}" transform="translate({_n(x)},{_n(y)})">'
        f"<title>{escape(tip)}</title>"
        f'<rect width="{NODE_W}" height="{NODE_H}" rx="9" fill="{fill}" stroke="{stroke}" '
        f'stroke-width="1.6"{dash}/>'
        f'<rect x="0" y="0" width="6" height="{NODE_H}" rx="3" fill="{stroke}"/>'
        f'<text x="18" y="23" class="node-id">{escape(step.id)}</text>'
        f'<text x="18" y="41" class="node-domain">{escape(domain)}</text>'
        f'<text x="{NODE_W - 10}" y="23" text-anchor="end" class="node-status" '
        f'fill="{stroke}">{escape(step.status)}</text>'
        "</g>"
    )


# -- the timeline -------------------------------------------------------------------------------


def _tick_step(span: float) -> float:
    """A round interval giving five to ten ticks over `span` seconds."""
    raw = span / 8
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _cold_w(request: Request, scale: float, width: float) -> float:
    return min(request.cold_wait_s * scale, width) if request.cold_wait_s > 0 else 0.0


def _label(request: Request, cold_w: float) -> str:
    """What is said next to a bar: a retry, a fallback, a failure, a narrow cold start."""
    parts = ["cold start"] if 0 < cold_w < COLD_LABEL_W else []
    if request.attempt > 1:
        parts.append(f"retry {request.attempt}")
    if request.fallback_from:
        parts.append(f"fallback {request.fallback_from} → {request.provider}")
    if request.error:
        parts.append(
            {
                "ConstraintViolation": "✕ rejected",
                "ProviderUnavailable": "✕ unavailable",
                "ProviderTimeout": "✕ timed out",
                "Cancelled": "✕ cancelled",
            }.get(request.error, f"✕ {request.error}")
        )
    return " · ".join(parts)


def _tip(request: Request) -> str:
    where = f"{request.provider} ({request.adapter or 'base model'})"
    what = "planning" if request.step is None else f"step {request.step} ({request.domain})"
    cost = (
        usd(request.cost_usd)
        if request.cost_usd is not None
        else "unpriced"
        if request.tokens
        else "nothing"
    )
    lines = [
        f"{what}, attempt {request.attempt} on {where}",
        f"{seconds(request.latency_s)}; {request.prompt_tokens} + {request.completion_tokens} "
        f"tokens; cost {cost}",
    ]
    if request.model or request.constraint:
        lines.append(
            "; ".join(
                part
                for part in (
                    f"model {request.model}" if request.model else "",
                    f"constraint {request.constraint}" if request.constraint else "",
                )
                if part
            )
        )
    if request.cold_wait_s:
        charged = f" (its share of the server's time: {seconds(request.cold_share_s)})"
        shared = request.cold_share_s < 0.95 * request.cold_wait_s
        lines.append(
            f"cold start: waited {seconds(request.cold_wait_s)}{charged if shared else ''}"
        )
    if request.fallback_from:
        lines.append(f"fallback: {request.fallback_from} failed ({request.fallback_error})")
    if request.error:
        lines.append(f"failed: {request.error}")
    return "\n".join(lines)


def timeline(data: ReportData, colours: dict[str | None, str]) -> str:
    """One row per step (planning first), one bar per request, x = seconds from the first."""
    if not data.requests:
        return '<p class="empty">The run made no requests.</p>'
    rows = [PLANNING, *(step.id for step in data.steps)]
    by_row: dict[str, list[Request]] = {row: [] for row in rows}
    for request in sorted(data.requests, key=lambda r: (r.started_at, r.index)):
        by_row.setdefault(request.row, []).append(request)
    rows = [row for row in by_row if by_row[row] or row != PLANNING]
    span = max(data.span_s, 1e-3)
    plot_w = WIDTH - LABEL_W - PLOT_RIGHT
    scale = plot_w / span
    domains = {step.id: step.domain for step in data.steps}
    step = _tick_step(span)
    xs = [LABEL_W + i * step * scale for i in range(int(span / step + 1e-9) + 1)]
    body: list[str] = []
    y = 0.0
    for number, row in enumerate(rows):
        lanes = _lanes(by_row[row], data.origin, scale)
        height = max(len(lanes), 1) * LANE_H + 2 * ROW_PAD
        grid = "".join(  # under the bars, not over them
            f'<line x1="{_n(x)}" y1="0" x2="{_n(x)}" y2="{_n(height)}" class="grid"/>' for x in xs
        )
        body.append(
            f'<g class="tl-row" data-step="{_a(row)}" transform="translate(0,{_n(y)})">'
            f'<rect class="tl-band" x="0" y="0" width="{WIDTH}" height="{_n(height)}" '
            f'fill="{"#f8f9fb" if number % 2 == 0 else "#ffffff"}"/>'
            + grid
            + _row_label(row, domains.get(row, ""), height)
        )
        for lane, placed in enumerate(lanes):
            for request in placed:
                body.append(_bar(request, data.origin, scale, ROW_PAD + lane * LANE_H, colours))
        body.append("</g>")
        y += height
    plot_h = y
    ticks = []
    for i, x in enumerate(xs):
        at = round(i * step, 9)
        text = f"{at:g} s" if span >= 1 or i == 0 else f"{at * 1000:g} ms"
        ticks.append(
            f'<text x="{_n(x)}" y="{_n(plot_h + 18)}" text-anchor="middle" class="tick">'
            f"{text}</text>"
        )
    total_h = plot_h + AXIS_H
    return (
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {_n(total_h)}" width="{WIDTH}" '
        f'height="{_n(total_h)}" role="img" aria-label="Timeline: one bar per provider request">'
        + _patterns()
        + "".join(body)
        + "".join(ticks)
        + f'<line x1="{LABEL_W}" y1="{_n(plot_h)}" x2="{WIDTH - PLOT_RIGHT}" y2="{_n(plot_h)}" '
        'stroke="#868e96"/>' + "</svg>"
    )


def _patterns() -> str:
    """The hatching laid over a failed call's bar."""
    return (
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="3" height="6" fill="#ffffff" '
        'fill-opacity="0.65"/></pattern></defs>'
    )


def _row_label(row: str, domain: str, height: float) -> str:
    middle = height / 2
    if row == PLANNING:
        return (
            f'<text x="14" y="{_n(middle + 4)}" class="row-id">plan</text>'
            f'<text x="52" y="{_n(middle + 4)}" class="row-domain">Architect</text>'
        )
    return (
        f'<text x="14" y="{_n(middle + 4)}" class="row-id">{escape(row)}</text>'
        f'<text x="{14 + 9 * len(row) + 8}" y="{_n(middle + 4)}" class="row-domain">'
        f"{escape(domain[:14])}</text>"
    )


def _extent(request: Request, origin: float, scale: float) -> tuple[float, float, float]:
    """(x, bar width, right end with its label) in the plot's coordinates."""
    x = LABEL_W + (request.started_at - origin) * scale
    width = max((request.latency_s or 0.0) * scale, MIN_BAR_W)
    label = _label(request, _cold_w(request, scale, width))
    return x, width, x + width + (6 + CHAR_W * len(label) if label else 2)


def _lanes(requests: list[Request], origin: float, scale: float) -> list[list[Request]]:
    """Requests packed into lanes so that no two bars (with their labels) overlap."""
    lanes: list[list[Request]] = []
    ends: list[float] = []
    for request in requests:
        x, _, end = _extent(request, origin, scale)
        for i, last in enumerate(ends):
            if last <= x:
                lanes[i].append(request)
                ends[i] = end
                break
        else:
            lanes.append([request])
            ends.append(end)
    return lanes


def _bar(
    request: Request, origin: float, scale: float, top: float, colours: dict[str | None, str]
) -> str:
    x, width, _ = _extent(request, origin, scale)
    colour = colours.get(request.adapter, BASE_COLOUR)
    classes = ["attempt"]
    if request.failed:
        classes.append("failed")
    if request.attempt > 1:
        classes.append("retry")
    if request.fallback_from:
        classes.append("fallback")
    cold_w = _cold_w(request, scale, width)
    if cold_w:
        classes.append("cold")
    y = top + (LANE_H - BAR_H) / 2
    parts = [
        f'<g class="{" ".join(classes)}" data-step="{_a(request.row)}" '
        f'data-attempt="{request.attempt}" data-provider="{_a(request.provider)}" '
        f'data-adapter="{_a(request.adapter or "")}" data-index="{request.index}">'
        f"<title>{escape(_tip(request))}</title>",
        f'<rect class="bar" x="{x:.2f}" y="{_n(y)}" width="{width:.2f}" height="{BAR_H}" '
        f'rx="2.5" fill="{colour}"/>',
    ]
    if cold_w:
        parts.append(
            f'<rect class="cold-start" x="{x:.2f}" y="{_n(y)}" width="{cold_w:.2f}" '
            f'height="{BAR_H}" rx="2.5" fill="{COLD_FILL}" stroke="{COLD_STROKE}" '
            'stroke-width="1" stroke-dasharray="3 2"/>'
        )
        if cold_w >= COLD_LABEL_W:
            parts.append(
                f'<text x="{x + cold_w / 2:.2f}" y="{_n(y + BAR_H - 3.5)}" text-anchor="middle" '
                'class="cold-label">cold start</text>'
            )
    if request.failed:
        parts.append(
            f'<rect class="failed-mark" x="{x:.2f}" y="{_n(y)}" width="{width:.2f}" '
            f'height="{BAR_H}" rx="2.5" fill="url(#hatch)" stroke="{FAILED_STROKE}" '
            'stroke-width="1.6"/>'
        )
    label = _label(request, cold_w)
    if label:
        parts.append(
            f'<text x="{x + width + 5:.2f}" y="{_n(y + BAR_H - 3)}" class="bar-label'
            f'{" bar-label-failed" if request.failed else ""}">{escape(label)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)
