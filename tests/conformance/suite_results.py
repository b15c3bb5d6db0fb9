"""Reading the outcome of a conformance suite run in pytester, for the tests that prove a
suite fails broken implementations and passes honest ones."""

from __future__ import annotations

import pytest


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Test name -> "passed", "failed" or "skipped" (a failure in any phase wins)."""
    out: dict[str, str] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed:
            out[name] = "failed"
        elif report.skipped:
            out.setdefault(name, "skipped")
        elif report.when == "call":
            out.setdefault(name, "passed")
    return out


def skip_reasons(result: pytest.RunResult) -> dict[str, str]:
    """Test name -> the reason it was skipped."""
    reasons = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.skipped:
            reasons[report.nodeid.rsplit("::", 1)[-1]] = str(report.longrepr[-1])
    return reasons


def tail(result: pytest.RunResult) -> str:
    """The end of the run's output, for assertion messages."""
    return "\n".join(result.outlines[-60:])
