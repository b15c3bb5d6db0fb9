"""The runtime conformance suite is tested too: it passes the simulated runtime, skips (and
names) every capability that runtime lacks, and fails each deliberately broken runtime in
the tests that check the promise it breaks.

Each case runs the suite in a pytest run of its own (pytester, in process), the way a
plugin author would: a test class subclassing ``RuntimeConformance`` with an overridden
``runtime_factory``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import broken_runtimes
import pytest
from suite_results import outcomes, skip_reasons, tail

import kcore.conformance.suites.runtime as runtime_suite

HERE = Path(__file__).resolve().parent

# Broken runtimes make the suite wait for states and events that never come; a short wait
# keeps these runs quick (real runs wait longer).
FAST_WAIT_TIMEOUT = 2.0

BASICS = (
    "test_version_names_runtime_and_api_v1",
    "test_status_has_runtime_ready_and_network_ready",
    "test_stop_sandbox_makes_it_not_ready",
)

EXPECTED_FAILURES: dict[str, set[str]] = {
    "StopNotIdempotentRuntime": {"test_stop_and_remove_container_are_idempotent"},
    "StopReturnsEarlyRuntime": {
        "test_stop_container_without_grace_kills_it",
        "test_stop_container_with_grace_ends_it",
        "test_stop_and_remove_container_are_idempotent",
    },
    "LabelsAlteredRuntime": {
        "test_run_sandbox_is_ready_and_keeps_its_config",
        "test_create_container_is_created_and_keeps_its_config",
    },
    "SecondsTimestampsRuntime": {
        "test_run_sandbox_is_ready_and_keeps_its_config",
        "test_create_container_is_created_and_keeps_its_config",
    },
    "StatusOfUnknownReturnsRuntime": {
        "test_sandbox_status_of_unknown_id_raises_not_found",
        "test_removed_sandbox_is_gone",
        "test_remove_ready_sandbox_removes_it_and_its_containers",
        "test_status_and_start_of_unknown_container_raise_not_found",
        "test_remove_container_in_each_state[created]",
        "test_remove_container_in_each_state[running]",
        "test_remove_container_in_each_state[exited]",
    },
    "ListFilterIgnoredRuntime": {
        "test_list_sandboxes_filters_by_id_state_and_labels",
        "test_list_containers_filters",
    },
    "RemoveLeavesListedRuntime": {
        "test_remove_container_in_each_state[created]",
        "test_remove_container_in_each_state[running]",
        "test_remove_container_in_each_state[exited]",
        "test_container_events_follow_the_lifecycle",
    },
    "SandboxRemoveKeepsContainersRuntime": {
        "test_remove_ready_sandbox_removes_it_and_its_containers",
    },
    "FailedCreateLeavesContainerRuntime": {"test_create_from_absent_image_raises_not_found"},
    "LazyEventsRuntime": {"test_container_events_follow_the_lifecycle"},
    "EventsInSecondsRuntime": {"test_container_events_follow_the_lifecycle"},
    "ClaimsExecRuntime": {
        "test_exec_sync_returns_output_and_exit_code",
        "test_exec_sync_timeout_kills_the_process",
        "test_exec_streams_stdin_and_output",
        "test_exec_with_tty_runs_on_a_terminal",
    },
    "AbsentImageRaisesImages": {"test_status_of_absent_image_is_none"},
    "RemoveImageNotIdempotentImages": {"test_remove_image_then_absent_and_idempotent"},
}

CAPABILITY_SKIPS = {
    "processes",
    "exec",
    "logs",
    "isolation",
    "mounts",
    "oom",
    "stats",
    "survives_restart",
}


def write_suite(pytester: pytest.Pytester, runtime: str) -> None:
    """A test module that runs the suite on the sim with ``runtime`` broken (``SimRuntime``
    for the honest one), as a plugin author writes it."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(HERE)!r})\n")
    pytester.makepyfile(
        test_runtime_suite=textwrap.dedent(
            """\
            import pytest

            import broken_runtimes
            from kcore.conformance.suites.runtime import RuntimeConformance


            class TestRuntime(RuntimeConformance):
                @pytest.fixture
                def runtime_factory(self, kcore_settings_factory):
                    async def make(settings=None):
                        settings = settings or kcore_settings_factory()
                        return broken_runtimes.make({runtime!r}, settings.data_dir)

                    return make
            """
        ).format(runtime=runtime)
    )


@pytest.fixture
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_suite, "WAIT_TIMEOUT", FAST_WAIT_TIMEOUT)


# -- the honest runtime passes -------------------------------------------------------------------


def test_sim_passes_and_skips_only_missing_capabilities(pytester: pytest.Pytester) -> None:
    """The simulated runtime passes every test it can; every other test is a skip that
    names a capability the sim does not declare (and never a silent pass)."""
    write_suite(pytester, "SimRuntime")
    result = pytester.runpytest("-p", "no:asyncio", "-p", "no:cacheprovider", "-rs")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    got = outcomes(result)
    assert "failed" not in got.values(), tail(result)
    reasons = skip_reasons(result)
    named = {r.rsplit(" ", 1)[-1] for r in reasons.values()}
    assert all("runtime lacks capability " in r for r in reasons.values()), reasons
    assert named == CAPABILITY_SKIPS, named
    assert sum(1 for o in got.values() if o == "passed") >= 30


def test_suite_runs_on_a_plugin_named_on_the_command_line(pytester: pytest.Pytester) -> None:
    """What ``kcore conformance --plugin runtime_sim`` runs: the shipped module, with
    ``--kcore-plugin``."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "kcore.conformance.suites.test_runtime",
        "--kcore-plugin",
        "runtime_sim",
    )
    assert result.ret == pytest.ExitCode.OK, tail(result)
    assert "failed" not in outcomes(result).values()


def test_suite_without_a_runtime_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pyargs", "kcore.conformance.suites.test_runtime"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no runtime under test: pass --kcore-plugin NAME*"])


# -- broken runtimes fail ---------------------------------------------------------------------


@pytest.mark.parametrize("runtime", sorted(EXPECTED_FAILURES))
@pytest.mark.usefixtures("fast_waits")
def test_broken_runtime_fails_the_suite(pytester: pytest.Pytester, runtime: str) -> None:
    """Each broken runtime fails the run, in (at least) the tests that check the promise
    it breaks, and still passes the basics (so those failures are about that promise)."""
    assert runtime in broken_runtimes.BROKEN_RUNTIMES
    write_suite(pytester, runtime)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, tail(result)
    got = outcomes(result)
    failed = {name for name, outcome in got.items() if outcome == "failed"}
    missing = EXPECTED_FAILURES[runtime] - failed
    assert not missing, f"{runtime} passed {sorted(missing)}\n{tail(result)}"
    for basic in BASICS:
        assert got[basic] == "passed", f"{runtime} failed {basic}\n{tail(result)}"


def test_every_broken_runtime_is_checked() -> None:
    assert set(EXPECTED_FAILURES) == set(broken_runtimes.BROKEN_RUNTIMES)
