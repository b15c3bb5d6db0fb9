"""What ``kcore conformance`` tells and remembers: per-suite outcomes of one run, the
summary printed after it, and the results file that ``kcore plugins`` reads.

:class:`SuiteRecorder` is a pytest plugin object (``pytest.main(args, plugins=[recorder])``)
that files every test's outcome under its suite, by the module the test came from. After
the run, :func:`format_summary` renders one block per suite (counts, skip reasons grouped,
each failure on one line) and :func:`record_results` merges the run into
``<data-dir>/conformance/results.json``::

    {"plugins": {"store_sqlite": {"version": "0.1.0", "suites": {"store": {
        "result": "passed", "passed": 55, "failed": 0, "skipped": 0,
        "partial": false, "when": "2026-05-01T12:00:00Z"}}}}}

A run replaces the entries of the suites it ran and keeps the plugin's others; a plugin
whose version changed since starts afresh. This module imports no pytest at import time:
``kcore plugins`` reads results without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_FILE = Path("conformance") / "results.json"
"""Where the results live, relative to the data directory."""

MAX_FAILURES_SHOWN = 40
MAX_REASON = 200


@dataclass
class SuiteResult:
    """The outcomes of one suite's tests in one run."""

    suite: str
    outcomes: dict[str, str] = field(default_factory=dict)
    """Test name -> ``passed``, ``failed`` or ``skipped``."""
    reasons: dict[str, str] = field(default_factory=dict)
    """Test name -> why it failed or was skipped (one line)."""

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    @property
    def passed(self) -> int:
        return self.count("passed")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def result(self) -> str:
        """``failed`` when any test failed, ``passed`` when some passed and none failed,
        else ``skipped`` (nothing ran: every check needs a capability the plugin lacks)."""
        if self.failed:
            return "failed"
        return "passed" if self.passed else "skipped"

    def skip_reasons(self) -> list[tuple[str, int]]:
        """Each distinct skip reason with how many tests it skipped, most first."""
        counts = Counter(self.reasons[t] for t, o in self.outcomes.items() if o == "skipped")
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def failures(self) -> list[tuple[str, str]]:
        return [(t, self.reasons.get(t, "")) for t, o in self.outcomes.items() if o == "failed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
        }


class SuiteRecorder:
    """A pytest plugin object collecting per-test outcomes by suite.

    ``suites`` maps a suite's test module (``kcore.conformance.suites.test_store``) to the
    suite's name (``store``); tests from other modules (extra arguments given to pytest)
    are filed under their module's name."""

    def __init__(self, suites: Mapping[str, str]) -> None:
        self.results: dict[str, SuiteResult] = {s: SuiteResult(s) for s in suites.values()}
        self._module_suite = dict(suites)
        self._files: dict[str | None, str] | None = None
        self._suite_of: dict[str, str] = {}

    def _result(self, suite: str) -> SuiteResult:
        return self.results.setdefault(suite, SuiteResult(suite))

    def _suite_for(self, path: Any, nodeid: str) -> str:
        if self._files is None:
            # pytest may import a module under another name than kcore's (its rootdir
            # decides), so a test's suite is found by its module's file. Looked up once
            # collection has begun: importing the suites earlier would keep pytest from
            # rewriting their asserts.
            self._files = {_module_file(m): s for m, s in self._module_suite.items()}
        if path is not None:
            suite = self._files.get(os.path.realpath(path))
            if suite is not None:
                return suite
        return nodeid.split("::", 1)[0] or "?"

    # -- pytest hooks ------------------------------------------------------------------------

    def pytest_itemcollected(self, item: Any) -> None:
        self._suite_of[item.nodeid] = self._suite_for(getattr(item, "path", None), item.nodeid)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            suite = self._suite_for(getattr(report, "fspath", None), report.nodeid)
            name = f"<collection of {report.nodeid.split('/')[-1] or 'the suite'}>"
            result = self._result(suite)
            result.outcomes[name] = "failed"
            result.reasons[name] = one_line(report)

    def pytest_runtest_logreport(self, report: Any) -> None:
        suite = self._suite_of.get(report.nodeid) or self._suite_for(None, report.nodeid)
        result = self._result(suite)
        name = report.nodeid.rsplit("::", 1)[-1]
        before = result.outcomes.get(name)
        if report.failed:
            if before != "failed":
                result.outcomes[name] = "failed"
                prefix = "" if report.when == "call" else f"error in {report.when}: "
                result.reasons[name] = prefix + one_line(report)
        elif report.skipped:
            if before is None:
                result.outcomes[name] = "skipped"
                result.reasons[name] = skip_reason(report)
        elif report.when == "call" and before is None:
            result.outcomes[name] = "passed"


def _module_file(module: str) -> str | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return os.path.realpath(origin) if origin else None


def one_line(report: Any) -> str:
    """The first line of why a test failed: the exception's message where pytest has it."""
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", ""):
        text = crash.message
    elif isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
    else:
        text = str(longrepr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _truncate(lines[0] if lines else "failed")


def skip_reason(report: Any) -> str:
    if hasattr(report, "wasxfail"):
        return _truncate(f"expected to fail: {report.wasxfail}".rstrip(": "))
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return _truncate(text.removeprefix("Skipped: ").strip() or "skipped")


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


# -- the summary ---------------------------------------------------------------------------------


def format_summary(
    results: Iterable[SuiteResult], plugins: Mapping[str, str], suites: Iterable[str] = ()
) -> str:
    """The per-suite summary: ``plugins`` maps name -> version; ``suites`` orders the
    suites (others follow)."""
    by_name = {r.suite: r for r in results}
    order = [s for s in suites if s in by_name] + [s for s in by_name if s not in suites]
    tested = ", ".join(f"{name} {version}" for name, version in plugins.items())
    lines = [f"== kcore conformance summary: {tested} =="]
    width = max((len(s) for s in order), default=0)
    for suite in order:
        r = by_name[suite]
        verdict = {"failed": "FAILED", "passed": "passed", "skipped": "skipped"}[r.result]
        lines.append(
            f"{suite.ljust(width)}  {verdict:<7}  "
            f"{r.passed} passed, {r.failed} failed, {r.skipped} skipped"
        )
        for reason, count in r.skip_reasons():
            lines.append(f"    skipped {count}: {reason}")
        failures = r.failures()
        for name, reason in failures[:MAX_FAILURES_SHOWN]:
            lines.append(f"    FAILED {name}: {reason}")
        if len(failures) > MAX_FAILURES_SHOWN:
            lines.append(f"    ... and {len(failures) - MAX_FAILURES_SHOWN} more failures")
    if not order:
        lines.append("no suite ran")
    return "\n".join(lines)


# -- the results file ----------------------------------------------------------------------------


def results_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / RESULTS_FILE


def load_results(data_dir: Path | str) -> dict[str, Any]:
    """The results file's content; empty when there is none or it cannot be read."""
    try:
        data = json.loads(results_path(data_dir).read_text())
    except (OSError, ValueError):
        return {"plugins": {}}
    if not isinstance(data, dict) or not isinstance(data.get("plugins"), dict):
        return {"plugins": {}}
    return data


def record_results(
    data_dir: Path | str,
    plugins: Mapping[str, tuple[str, Iterable[str]]],
    results: Iterable[SuiteResult],
    *,
    partial: bool = False,
    when: float | None = None,
) -> Path:
    """Merge one run into the results file. ``plugins`` maps each plugin under test to its
    version and the suites it offers: a suite's result is recorded for the plugins that
    offer it. Returns the file's path."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    data = load_results(data_dir)
    by_suite = {r.suite: r for r in results}
    for name, (version, offered) in plugins.items():
        entry = data["plugins"].get(name)
        if not isinstance(entry, dict) or entry.get("version") != version:
            entry = {"version": version, "suites": {}}
        for suite in offered:
            r = by_suite.get(suite)
            if r is not None and r.outcomes:
                entry["suites"][suite] = {**r.as_dict(), "partial": partial, "when": stamp}
        if entry["suites"]:
            data["plugins"][name] = entry
    path = results_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def suites_of(data: Mapping[str, Any], name: str, version: str) -> dict[str, dict[str, Any]]:
    """The recorded suite results of plugin ``name`` at ``version`` (none for another
    version: those results say nothing about this one)."""
    entry = (data.get("plugins") or {}).get(name)
    if not isinstance(entry, dict) or entry.get("version") != version:
        return {}
    suites = entry.get("suites")
    return dict(suites) if isinstance(suites, dict) else {}


def suites_cell(suites: Mapping[str, Mapping[str, Any]]) -> str:
    """``store:passed,volume_sources:FAILED`` for the ``kcore plugins`` table (``-`` for
    none; ``(partial)`` when only some tests were selected)."""
    cells = []
    for suite, r in sorted(suites.items()):
        verdict = str(r.get("result", "?"))
        verdict = "FAILED" if verdict == "failed" else verdict
        cells.append(f"{suite}:{verdict}{'(partial)' if r.get('partial') else ''}")
    return ",".join(cells) or "-"


__all__ = [
    "RESULTS_FILE",
    "SuiteRecorder",
    "SuiteResult",
    "format_summary",
    "load_results",
    "record_results",
    "results_path",
    "suites_cell",
    "suites_of",
]
