"""kcore's own tests. With KCORE_NO_SKIPS=1 (as in CI) a skipped test fails, except a
conformance suite's skip for a capability the implementation declares it lacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcore.conformance.testimages import build_busybox_layout

# The conformance suites' own tests run a suite against broken stores with pytester.
pytest_plugins = ["pytester"]

ALLOWED_SKIP = "lacks capability"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if os.environ.get("KCORE_NO_SKIPS") == "1" and report.skipped:
        reason = (
            str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        )
        if ALLOWED_SKIP not in reason and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, which must not skip: {reason}"
    return report


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_layout(tmp_path_factory.mktemp("image") / "busybox")
