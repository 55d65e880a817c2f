"""Shared test set-up.

With HI_MOE_FORBID_SKIPS=1 (as `.ci/run` sets) a skipped test fails the run: CI installs every
extra, so a skip there means something is missing, not optional.
"""

from __future__ import annotations

import os

import pytest

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("HI_MOE_FORBID_SKIPS") == "1" and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"HI_MOE_FORBID_SKIPS=1 and {len(_skipped)} test(s) skipped: "
                + ", ".join(_skipped),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
