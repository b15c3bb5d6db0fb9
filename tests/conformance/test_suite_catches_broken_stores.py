"""The store conformance suite is tested too: it passes correct stores, skips what a store
declares it lacks, and fails each deliberately broken store in the tests that check the
promise that store breaks.

Each case runs the suite in a pytest run of its own (pytester, in process), the way a
plugin author would: a test class subclassing ``StoreConformance`` with an overridden
``store_factory``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import broken_stores
import pytest
from suite_results import outcomes, tail

import kcore.conformance.asyncsupport as asyncsupport
import kcore.conformance.suites.store as store_suite

HERE = Path(__file__).resolve().parent

# A broken store may make watch tests wait for events that never come; a short wait keeps
# these runs quick (real runs wait longer). The model test runs derandomized and without
# shrinking, so its verdict on a broken store is stable and cheap.
FAST_EVENT_TIMEOUT = 2.0
FAST_MODEL_SETTINGS = """{
        "max_examples": 25,
        "stateful_step_count": 30,
        "derandomize": True,
        "phases": [Phase.explicit, Phase.generate],
    }"""

EXPECTED_FAILURES: dict[str, set[str]] = {
    "CasIgnoringStore": {
        "test_update_with_stale_revision_raises_conflict",
        "test_delete_with_stale_revision_raises_conflict",
        "test_revision_of_a_previous_life_raises_conflict",
        "test_failed_writes_change_nothing",
        "test_concurrent_cas_increments_lose_no_update",
        "test_behaves_like_the_model",
    },
    "LostUpdateStore": {"test_concurrent_cas_increments_lose_no_update"},
    "DroppingWatchStore": {
        "test_watch_yields_every_change_in_order_with_types",
        "test_watch_from_older_revision_replays_then_continues_live",
        "test_concurrent_watchers_see_the_same_sequence",
        "test_watch_started_during_a_burst_of_writes_loses_and_repeats_nothing",
        "test_behaves_like_the_model",
    },
    "DuplicatingWatchStore": {
        "test_watch_yields_every_change_in_order_with_types",
        "test_watch_from_older_revision_replays_then_continues_live",
        "test_concurrent_watchers_see_the_same_sequence",
        "test_watch_started_during_a_burst_of_writes_loses_and_repeats_nothing",
        "test_behaves_like_the_model",
    },
    "WatchGapStore": {
        "test_watch_from_older_revision_replays_then_continues_live",
        "test_watch_started_during_a_burst_of_writes_loses_and_repeats_nothing",
    },
    "ListIgnoresRevisionStore": {
        "test_list_at_older_revision_returns_that_snapshot",
        "test_list_at_revision_paginates_one_snapshot",
        "test_behaves_like_the_model",
    },
    "PatternPrefixStore": {
        "test_list_prefix_wildcards_are_literal",
        "test_behaves_like_the_model",
    },
    "NoOpCompactionStore": {
        "test_compact_expires_list_below_it",
        "test_compact_expires_watch_from_before_it",
        "test_compact_below_earlier_compaction_raises_expired",
        "test_behaves_like_the_model",
    },
    "FailedWriteBumpsRevisionStore": {
        "test_failed_writes_change_nothing",
        "test_behaves_like_the_model",
    },
    "StaleDeleteRevisionStore": {
        "test_delete_returns_last_value_with_delete_revision",
        "test_watch_deleted_event_carries_last_value",
        "test_behaves_like_the_model",
    },
    "SlowWatcherLosesEventsStore": {"test_a_watcher_that_falls_behind_never_skips"},
    "CloseLeavesWatchesOpenStore": {"test_close_ends_open_watches"},
    "AnswersAfterCloseStore": {"test_calls_after_close_raise_permanent_error"},
}

CAPABILITY_TESTS = {
    "list_at_revision": {
        "test_list_at_a_future_revision_is_invalid",
        "test_list_at_older_revision_returns_that_snapshot",
        "test_list_at_revision_paginates_one_snapshot",
        "test_compact_expires_list_below_it",
        "test_compact_keeps_list_at_and_after_it",
    },
    "compaction": {
        "test_compact_expires_list_below_it",
        "test_compact_keeps_list_at_and_after_it",
        "test_compact_keeps_current_values",
        "test_compact_expires_watch_from_before_it",
        "test_watch_from_compacted_revision_minus_one_still_works",
        "test_compact_future_revision_raises_invalid",
        "test_compact_below_earlier_compaction_raises_expired",
        "test_watch_through_history_compacted_under_it_never_skips",
    },
}

SUITE_TESTS = {name for name in dir(store_suite.StoreConformance) if name.startswith("test_")}

NEEDS_SETTINGS = {
    "test_a_reopened_store_is_the_same_store",
    "test_a_second_store_on_the_same_data_refuses_or_agrees",
    "test_a_full_disk_fails_writes_cleanly_and_they_work_again_after",
    "test_a_store_on_a_read_only_disk_fails_clearly",
    "test_data_on_a_disk_turned_read_only_is_read_right_or_refused",
}
"""Skipped ("lacks capability") with a ``store_factory`` that takes no settings."""

NEEDS_FAULT_FIXTURES = {
    "test_a_store_whose_backend_dies_says_so_on_every_call",
    "test_a_write_that_fails_half_way_changes_nothing",
    "test_damaged_data_is_refused_never_misread",
    "test_data_of_a_newer_version_is_refused",
    "test_options_it_cannot_take_are_refused",
    "test_options_at_the_edge_work",
}
"""Skipped ("lacks capability") without the plugin's own fault fixtures (a crash, damaged
data, options), which only its test module provides."""

WITHOUT_SETTINGS = {
    name: "skipped" if name in NEEDS_SETTINGS | NEEDS_FAULT_FIXTURES else "passed"
    for name in SUITE_TESTS
}


def write_suite(
    pytester: pytest.Pytester,
    store_class: str,
    *,
    import_line: str,
    fast: bool = True,
    asyncio_mode: str | None = "strict",
) -> None:
    """A test module that runs the suite on ``store_class()``, as a plugin author writes it
    (with pytest-asyncio configured in ``asyncio_mode``, or not at all for ``None``)."""
    if asyncio_mode is not None:
        pytester.makeini(
            f"[pytest]\nasyncio_mode = {asyncio_mode}\n"
            "asyncio_default_fixture_loop_scope = function\n"
        )
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(HERE)!r})\n")
    model = f"model_settings = {FAST_MODEL_SETTINGS}" if fast else ""
    pytester.makepyfile(
        test_store_suite=textwrap.dedent(
            """\
            import pytest
            from hypothesis import Phase

            {import_line}
            from kcore.conformance.suites.store import StoreConformance


            class TestStore(StoreConformance):
                exclusive_backend = True
                {model}

                @pytest.fixture
                def store_factory(self):
                    async def make():
                        return {store_class}

                    return make
            """
        ).format(import_line=import_line, model=model, store_class=store_class)
    )


@pytest.fixture
def fast_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_suite, "EVENT_TIMEOUT", FAST_EVENT_TIMEOUT)


# -- correct stores pass -------------------------------------------------------------------------


def test_reference_memory_store_passes_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """The in-memory reference passes every test; the suite needs no pytest-asyncio."""
    write_suite(
        pytester,
        "MemoryStore()",
        import_line="from broken_stores import MemoryStore",
        asyncio_mode=None,
    )
    result = pytester.runpytest("-p", "no:asyncio", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    assert outcomes(result) == WITHOUT_SETTINGS, tail(result)


def test_sqlite_store_passes_under_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    """The reference plugin's store passes every test, also when pytest-asyncio runs in
    auto mode (which must leave the suite's synchronous wrappers alone)."""
    write_suite(
        pytester,
        'SqliteStore(":memory:")',
        import_line="from kcore.plugins.store_sqlite.backend import SqliteStore",
        fast=False,
        asyncio_mode="auto",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "error::pytest.PytestWarning")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    assert outcomes(result) == WITHOUT_SETTINGS, tail(result)


def test_suite_runs_on_a_plugin_named_on_the_command_line(pytester: pytest.Pytester) -> None:
    """What ``kcore conformance`` runs: the shipped test module, with ``--kcore-plugin``."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "kcore.conformance.suites.test_store",
        "--kcore-plugin",
        "store_sqlite",
    )
    assert result.ret == pytest.ExitCode.OK, tail(result)
    # The shipped module pins nothing about the plugin's store: no exclusive_backend.
    skips = NEEDS_FAULT_FIXTURES | {"test_a_store_of_its_own_counts_from_zero_by_one"}
    expected = {n: "skipped" if n in skips else "passed" for n in SUITE_TESTS}
    assert outcomes(result) == expected, tail(result)


def test_suite_without_a_store_fails_clearly(pytester: pytest.Pytester) -> None:
    """No ``--kcore-plugin`` and no overridden factory: every test errors, saying why."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pyargs", "kcore.conformance.suites.test_store"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no store under test: pass --kcore-plugin NAME*"])


def test_missing_capabilities_are_skips_that_name_them(pytester: pytest.Pytester) -> None:
    """A store without optional capabilities gets a skip per test that needs one, naming
    the capability, and passes the rest: never a silent pass."""
    write_suite(pytester, "BareStore()", import_line="from broken_stores import BareStore")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    skipped = {name for name, outcome in outcomes(result).items() if outcome == "skipped"}
    want = set().union(*CAPABILITY_TESTS.values(), NEEDS_SETTINGS, NEEDS_FAULT_FIXTURES)
    assert skipped == want, tail(result)
    for capability in CAPABILITY_TESTS:
        result.stdout.fnmatch_lines([f"SKIPPED*store lacks capability {capability}"])
    assert "failed" not in outcomes(result).values()


# -- broken stores fail ----------------------------------------------------------------------------


@pytest.mark.parametrize("store_class", sorted(EXPECTED_FAILURES))
@pytest.mark.usefixtures("fast_events")
def test_broken_store_fails_the_suite(pytester: pytest.Pytester, store_class: str) -> None:
    """Each broken store fails the run, in (at least) the tests that check the promise it
    breaks, and still passes the basics (so those failures are about that promise)."""
    assert store_class in broken_stores.BROKEN_STORES
    write_suite(
        pytester, f"{store_class}()", import_line=f"from broken_stores import {store_class}"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, tail(result)
    got = outcomes(result)
    failed = {name for name, outcome in got.items() if outcome == "failed"}
    missing = EXPECTED_FAILURES[store_class] - failed
    assert not missing, f"{store_class} passed {sorted(missing)}\n{tail(result)}"
    for basic in ("test_create_returns_value_and_new_revision", "test_get_returns_current_value"):
        assert got[basic] == "passed", f"{store_class} failed {basic}\n{tail(result)}"


def test_every_broken_store_is_checked() -> None:
    assert set(EXPECTED_FAILURES) == set(broken_stores.BROKEN_STORES)


def test_a_hanging_store_times_out_and_is_still_closed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store call that never returns fails its test after the per-test timeout, with a
    message that says so, instead of hanging the run; the store is closed all the same."""
    monkeypatch.setattr(asyncsupport, "DEFAULT_TIMEOUT", 1.0)
    monkeypatch.setattr(broken_stores.HangingGetStore, "closed", [])
    write_suite(
        pytester, "HangingGetStore()", import_line="from broken_stores import HangingGetStore"
    )
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "-k",
        "test_get_returns_current_value or test_get_missing_raises_not_found",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, tail(result)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*AsyncTestTimeout*did not finish within 1 s*"])
    assert len(broken_stores.HangingGetStore.closed) == 2
