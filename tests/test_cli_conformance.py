"""``kcore conformance`` reports per suite and remembers; ``kcore plugins`` shows what each
loaded plugin passed in this installation's last run.

The command runs as a user runs it (the console script, a data directory of the test's own);
the recorder underneath is checked on small pytest runs of its own (pytester)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import kcore
from kcore.conformance.report import (
    SuiteRecorder,
    SuiteResult,
    format_summary,
    load_results,
    record_results,
    suites_cell,
    suites_of,
)

TESTS = Path(__file__).resolve().parent
BROKEN = "sample_plugins.broken_store"
# Only these tests of the store suite for the broken store: quick, and each kind of outcome.
BROKEN_SELECTION = "stale or compact or list_at"


def kcore_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    script = shutil.which("kcore")
    cmd = [script] if script else [sys.executable, "-m", "kcore.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(TESTS), str(TESTS / "conformance"), env.get("PYTHONPATH")])
    )
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=TESTS
    )


def summary(proc: subprocess.CompletedProcess) -> list[str]:
    """The lines of the per-suite summary at the end of the output."""
    lines = proc.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("== kcore conformance summary")]
    assert starts, f"no summary in:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return lines[starts[-1] :]


def plugins_table(data_dir: Path, *global_args: str) -> dict[str, list[str]]:
    proc = kcore_cli("--data-dir", str(data_dir), *global_args, "plugins")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "SLOTS", "SUITES", "HOOKS"]
    return {line.split()[0]: line.split() for line in lines[1:] if line and " " in line.strip()}


# -- a real run on store_sqlite ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    junit = tmp_path_factory.mktemp("junit") / "store.xml"
    started = time.time()
    proc = kcore_cli(
        "--plugins=store_sqlite",
        "--data-dir",
        str(data_dir),
        "conformance",
        "--plugin",
        "store_sqlite",
        "--junitxml",
        str(junit),
    )
    return proc, data_dir, junit, started


def test_a_passing_run_prints_a_summary_per_suite(sqlite_run):
    proc, _, junit, _ = sqlite_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    total = len(ET.parse(junit).getroot().findall(".//testcase"))
    assert total > 20
    head, verdict, *reasons = summary(proc)
    assert head == f"== kcore conformance summary: store_sqlite {kcore.__version__} =="
    skipped = sum(int(line.split()[1].rstrip(":")) for line in reasons)
    assert verdict == f"store  passed   {total - skipped} passed, 0 failed, {skipped} skipped"
    # Only the checks that need the test module's fixtures or pins skip (a crash, a failed
    # write, damaged data, a newer format, bad options, exclusive_backend): they come from
    # store_sqlite's own test module, which kcore conformance does not load.
    assert skipped == 7, reasons
    lacking = {
        re.fullmatch(r"    skipped \d+: store lacks capability (\w+): .*", r)[1] for r in reasons
    }
    assert lacking == {
        "crash_faults",
        "write_faults",
        "damage_faults",
        "version_faults",
        "options",
        "exclusive_backend",
    }, reasons


def test_the_junit_xml_report_parses_and_counts_every_test(sqlite_run):
    _, _, junit, _ = sqlite_run
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) > 20
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert all(c.get("classname", "").endswith("test_store.TestStore") for c in cases)
    assert "test_watch_events_carry_prev" in {c.get("name") for c in cases}


def test_the_run_is_recorded_in_the_data_dir(sqlite_run):
    _, data_dir, junit, started = sqlite_run
    total = len(ET.parse(junit).getroot().findall(".//testcase"))
    data = json.loads((data_dir / "conformance" / "results.json").read_text())
    entry = data["plugins"]["store_sqlite"]
    assert entry["version"] == kcore.__version__
    store = entry["suites"]["store"]
    assert {k: store[k] for k in ("result", "passed", "failed", "partial")} == {
        "result": "passed",
        "passed": total - store["skipped"],
        "failed": 0,
        "partial": False,
    }
    assert store["skipped"] == 7  # as in the summary
    when = time.mktime(time.strptime(store["when"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert started - 5 <= when <= time.time() + 5
    assert list(data["plugins"]) == ["store_sqlite"]


def test_kcore_plugins_shows_the_suites_each_plugin_passed(sqlite_run):
    _, data_dir, _, _ = sqlite_run
    rows = plugins_table(data_dir, "--plugins=store_sqlite,volumes")
    assert rows["store_sqlite"][3] == "store:passed"
    assert rows["volumes"][3] == "-"
    proc = kcore_cli(
        "--data-dir", str(data_dir), "--plugins=store_sqlite,volumes", "plugins", "--json"
    )
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["store_sqlite"]["suites"]["store"]["result"] == "passed"
    assert entries["volumes"]["suites"] == {}


def test_another_installation_has_no_results(sqlite_run, tmp_path):
    rows = plugins_table(tmp_path, "--plugins=store_sqlite")
    assert rows["store_sqlite"][3] == "-"


# -- a broken store ------------------------------------------------------------------------------


def test_a_broken_store_is_reported_failed_with_reasons_and_skips(tmp_path):
    junit = tmp_path / "broken.xml"
    proc = kcore_cli(
        "--plugins", BROKEN, "--data-dir", str(tmp_path), "conformance", "--plugin", BROKEN,
        "--junitxml", str(junit), "-k", BROKEN_SELECTION,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    head, verdict, *details = summary(proc)
    assert head == f"== kcore conformance summary: {BROKEN} unknown =="
    counts = re.fullmatch(r"store  FAILED   0 passed, (\d+) failed, (\d+) skipped", verdict)
    assert counts, verdict
    failed, skipped = int(counts[1]), int(counts[2])
    assert failed >= 2 and skipped >= 2
    skips = [line for line in details if line.startswith("    skipped ")]
    failures = [line for line in details if line.startswith("    FAILED ")]
    assert skips == sorted(skips, key=lambda line: -int(line.split()[1].rstrip(":")))
    assert {line.split(": ", 1)[1] for line in skips} == {
        "store lacks capability compaction",
        "store lacks capability list_at_revision",
    }
    assert sum(int(line.split()[1].rstrip(":")) for line in skips) == skipped
    assert len(failures) == failed
    # pytest names the exception class in full or by its name, depending on its version.
    assert any(
        re.fullmatch(
            r"    FAILED test_update_with_stale_revision_raises_conflict: Failed: DID NOT RAISE "
            r"(<class 'kcore\.errors\.Conflict'>|Conflict)",
            line,
        )
        for line in failures
    ), failures
    root = ET.parse(junit).getroot()
    assert len(root.findall(".//testcase/failure")) == failed

    store = load_results(tmp_path)["plugins"][BROKEN]["suites"]["store"]
    assert (store["result"], store["failed"], store["skipped"], store["partial"]) == (
        "failed",
        failed,
        skipped,
        True,
    )
    rows = plugins_table(tmp_path, f"--plugins={BROKEN}")
    assert rows[BROKEN][3] == "store:FAILED(partial)"


# -- the recorder on its own ---------------------------------------------------------------------

SAMPLE_SUITE = """
    import pytest

    @pytest.fixture
    def broken():
        raise RuntimeError("the fixture broke")

    def test_ok():
        pass

    def test_fails():
        assert 1 == 2, "one is not two"

    @pytest.mark.parametrize("cap", ["a", "b", "c"])
    def test_needs(cap):
        if cap != "c":
            pytest.skip("lacks capability " + ("x" if cap == "a" else "y"))

    def test_also_needs_x():
        pytest.skip("lacks capability x")

    def test_setup_error(broken):
        pass

    class TestTeardown:
        @pytest.fixture
        def leaky(self):
            yield
            raise OSError("left a mount behind")

        def test_teardown_fails(self, leaky):
            pass
"""


def test_recorder_files_outcomes_by_suite_with_one_line_reasons(pytester: pytest.Pytester):
    pytester.makepyfile(test_sample=textwrap.dedent(SAMPLE_SUITE), test_other="def test_x(): pass")
    recorder = SuiteRecorder({"test_sample": "sample"})
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", plugins=[recorder]
    )
    result.assert_outcomes(passed=4, failed=1, skipped=3, errors=2)
    sample = recorder.results["sample"]
    assert (sample.passed, sample.failed, sample.skipped) == (2, 3, 3)
    assert sample.result == "failed"
    assert sample.skip_reasons() == [("lacks capability x", 2), ("lacks capability y", 1)]
    assert dict(sample.failures()) == {
        "test_fails": "AssertionError: one is not two",
        "test_setup_error": "error in setup: RuntimeError: the fixture broke",
        "test_teardown_fails": "error in teardown: OSError: left a mount behind",
    }
    others = [r for name, r in recorder.results.items() if name != "sample"]
    assert [(r.passed, r.failed) for r in others] == [(1, 0)]


def test_summary_lists_suites_in_order_with_grouped_skips():
    store = SuiteResult("store", {"t1": "passed", "t2": "skipped", "t3": "skipped"})
    store.reasons = {"t2": "lacks durable", "t3": "lacks durable"}
    empty = SuiteResult("network", {"n1": "skipped"}, {"n1": "lacks pod_addresses"})
    text = format_summary([empty, store], {"p": "1.0"}, ["store", "network"])
    assert text.splitlines() == [
        "== kcore conformance summary: p 1.0 ==",
        "store    passed   1 passed, 0 failed, 2 skipped",
        "    skipped 2: lacks durable",
        "network  skipped  0 passed, 0 failed, 1 skipped",
        "    skipped 1: lacks pod_addresses",
    ]


def test_results_merge_per_suite_and_start_afresh_for_a_new_version(tmp_path):
    passed = SuiteResult("store", {"a": "passed"})
    failed = SuiteResult("volume_sources", {"b": "failed"}, {"b": "boom"})
    record_results(tmp_path, {"p": ("1", ["store"])}, [passed])
    record_results(tmp_path, {"p": ("1", ["volume_sources"]), "q": ("2", [])}, [failed])
    data = load_results(tmp_path)
    assert sorted(data["plugins"]) == ["p"], "a plugin offering no suite run is not recorded"
    assert suites_cell(suites_of(data, "p", "1")) == "store:passed,volume_sources:FAILED"
    assert suites_of(data, "p", "0.9") == {}
    record_results(tmp_path, {"p": ("2", ["store"])}, [passed], partial=True)
    data = load_results(tmp_path)
    assert suites_cell(suites_of(data, "p", "2")) == "store:passed(partial)"
    assert suites_of(data, "p", "1") == {}


def test_an_unreadable_results_file_counts_as_none(tmp_path):
    path = tmp_path / "conformance" / "results.json"
    path.parent.mkdir()
    path.write_text("{not json")
    assert load_results(tmp_path) == {"plugins": {}}
    rows = plugins_table(tmp_path, "--plugins=store_sqlite")
    assert rows["store_sqlite"][3] == "-"
