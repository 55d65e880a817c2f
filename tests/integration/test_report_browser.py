"""A run report in a real browser (headless Chromium, offline): after its script ran the DOM
has one bar per request and one node per step, and the page it draws is not blank."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pytest

from hi_moe.pipeline import Journal
from hi_moe.report import write_report
from hi_moe.report.svg import ADAPTER_COLOURS
from tests.unit.test_report import Page, run_with_retry_and_fallback

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_S = 90
# Root needs --no-sandbox; the rest keep it from reaching for the network it does not have.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, Journal, str]:
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = run_with_retry_and_fallback(journal)
    path = write_report(journal, run_id)
    assert path is not None
    return path, journal, run_id


def browse(chromium: str, *args: str) -> str:
    """Run Chromium with `args` in a fresh profile and return its stdout; past the timeout its
    process group (started here, led by its pid) is killed."""
    with tempfile.TemporaryDirectory() as profile:
        process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"chromium took over {TIMEOUT_S} s: killed pid {process.pid}")
        assert process.returncode == 0, err[-2000:]
        return out


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, one bytes object per pixel) of an 8-bit RGB or RGBA PNG, decoded with
    the standard library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat, header = 8, b"", b""
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            idat += data
        at += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0), (depth, interlace)
    assert colour in (2, 6), f"colour type {colour}: not RGB or RGBA"
    size = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * size
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - size] if i >= size else 0
            up = previous[i]
            corner = previous[i - size] if i >= size else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                guess = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + guess) & 0xFF
        rows.append(line)
        previous = line
    return width, height, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, size)]


def test_the_dom_after_its_script_has_a_bar_per_request_and_a_node_per_step(
    chromium: str, report: tuple[Path, Journal, str]
) -> None:
    path, journal, run_id = report
    dom = browse(chromium, "--dump-dom", path.as_uri())
    assert 'data-ready="1"' in dom  # the page's script ran
    page = Page(dom)
    bars = page.bars()
    assert len(bars) == len(journal.requests(run_id))
    assert {(b["data-step"], b["data-attempt"]) for b in page.bars("retry")} == {("s3", "2")}
    record = journal.load_run(run_id)
    assert record is not None
    assert record.plan is not None
    nodes = [n["data-step"] for n in page.with_class("dag-node")]
    assert nodes == [step.id for step in record.plan.steps]
    assert any(a.get("id") == "answer" for _, a in page.elements)


def test_the_screenshot_is_a_drawing_not_a_blank_page(
    chromium: str, report: tuple[Path, Journal, str], tmp_path: Path
) -> None:
    path, _, _ = report
    shot = tmp_path / "report.png"
    browse(chromium, f"--screenshot={shot}", "--window-size=1400,1000", path.as_uri())
    width, height, colours = pixels(shot.read_bytes())
    assert (width, height) == (1400, 1000)
    counts = Counter(colours)
    assert len(counts) > 200, f"only {len(counts)} colours"
    assert counts.most_common(1)[0][1] < 0.8 * len(colours)  # not one colour with specks
    # The timeline's bars are drawn in the adapters' colours (the first ones used here).
    drawn = {bytes.fromhex(c[1:]) for c in ADAPTER_COLOURS[:3]} & set(counts)
    assert drawn, "no bar in an adapter's colour"
