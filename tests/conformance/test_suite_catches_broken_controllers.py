"""The controller conformance suite is tested too: it passes a correct controller, skips
what a controller does not declare, and fails each deliberately broken controller in the
checks of the promise that controller breaks (and in no others).

Each case runs the suite in a pytest run of its own (pytester, in process), the way a
plugin author would: a test class subclassing ``ControllerConformance`` with an overridden
``make_controllers``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import broken_controllers
import pytest
from suite_results import outcomes, skip_reasons, tail

import kcore.conformance.suites.controllers as controller_suite

HERE = Path(__file__).resolve().parent

CHECK_TESTS = {
    "converges": "test_converges_from_each_starting_state",
    "quiescent": "test_reconciling_a_converged_state_writes_nothing",
    "perturbations": "test_converges_back_after_its_objects_change",
    "foreign": "test_leaves_objects_of_others_alone",
    "two_copies": "test_two_copies_converge_without_a_write_storm",
    "owner_deletion": "test_owner_deletion",
    "flapping": "test_write_rate_stays_bounded_under_a_flapping_input",
    "backoff": "test_backs_off_while_its_writes_fail",
    "restart": "test_restart_mid_way_converges_to_the_same_end",
}

SUITE_TESTS = {n for n in dir(controller_suite.ControllerConformance) if n.startswith("test_")}

EXPECTED_FAILURES: dict[str, set[str]] = {
    "ChattyFleet": {"quiescent", "two_copies"},
    "GrabbyFleet": {"foreign"},
    "ForgetfulFleet": {"perturbations", "two_copies"},
    "ImpatientFleet": {"backoff"},
    "FixedRetryFleet": {"backoff"},
    "RestoringFleet": {"owner_deletion"},
    "AmnesiacFleet": {"restart"},
    "StampingFleet": {"quiescent", "two_copies"},
    "RebuildingFleet": {"flapping"},
}
"""Broken controller -> the checks it must fail, of those it runs (these and
:data:`BASICS`). Some faults show in two checks: what a converged world gets written
(ChattyFleet, StampingFleet's fresh identity) shows with two copies too, and so does a
forgotten child (ForgetfulFleet)."""


def write_suite(pytester: pytest.Pytester, controller_class: str, body: str = "") -> None:
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(HERE)!r})\n")
    pytester.makepyfile(
        test_controller_suite=textwrap.dedent(
            """\
            from broken_controllers import {cls}
            from kcore.conformance.suites.controllers import ControllerConformance


            class TestController(ControllerConformance):
                def make_controllers(self, plugins, settings):
                    return [{cls}()]
            {body}
            """
        ).format(cls=controller_class, body=textwrap.indent(textwrap.dedent(body), "    "))
    )


def by_check(result: pytest.RunResult) -> dict[str, set[str]]:
    """Test name without its parameters -> the outcomes of its cases."""
    out: dict[str, set[str]] = {}
    for name, outcome in outcomes(result).items():
        out.setdefault(name.split("[", 1)[0], set()).add(outcome)
    return out


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", "-rfEs", *args)


def test_the_honest_controller_passes_every_check(pytester: pytest.Pytester) -> None:
    write_suite(pytester, "FleetController")
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK, tail(result)
    assert by_check(result) == {name: {"passed"} for name in SUITE_TESTS}, tail(result)
    # one case per starting state, one per propagation policy
    got = outcomes(result)
    assert {n for n in got if n.startswith(CHECK_TESTS["converges"])} == {
        f"{CHECK_TESTS['converges']}[fleet-controller/fleet/{start}]"
        for start in ("seed", "missing", "extra", "half-updated")
    }
    assert {n for n in got if n.startswith(CHECK_TESTS["owner_deletion"])} == {
        f"{CHECK_TESTS['owner_deletion']}[fleet-controller/fleet-{policy}]"
        for policy in ("Background", "Foreground", "Orphan")
    }


BASICS = {"converges", "quiescent"}
"""Checks every broken controller runs besides those it must fail, and must pass unless
it breaks them."""


def test_each_broken_controller_fails_the_checks_of_its_fault(pytester: pytest.Pytester) -> None:
    """One run, one test class per broken controller; each runs the checks it must fail
    and the basics (all its starting states, quiescence)."""
    selected = {
        name: sorted(CHECK_TESTS[c] for c in checks | BASICS)
        for name, checks in EXPECTED_FAILURES.items()
    }
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\n\nSELECTED = {selected!r}\n\n"
        + textwrap.dedent(
            """
            def pytest_collection_modifyitems(config, items):
                items[:] = [
                    item
                    for item in items
                    if item.originalname in SELECTED[item.cls.__name__.removeprefix("Test")]
                ]
            """
        )
    )
    classes = "\n\n".join(
        f"class Test{name}(ControllerConformance):\n"
        f"    def make_controllers(self, plugins, settings):\n"
        f"        return [broken_controllers.{name}()]\n"
        for name in sorted(EXPECTED_FAILURES)
    )
    pytester.makepyfile(
        test_controller_suite="import broken_controllers\n"
        "from kcore.conformance.suites.controllers import ControllerConformance\n\n\n" + classes
    )
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, tail(result)
    failed: dict[str, set[str]] = {name: set() for name in EXPECTED_FAILURES}
    ran: dict[str, set[str]] = {name: set() for name in EXPECTED_FAILURES}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        cls = report.nodeid.split("::")[1].removeprefix("Test")
        test = report.nodeid.rsplit("::", 1)[-1].split("[", 1)[0]
        check = next(c for c, t in CHECK_TESTS.items() if t == test)
        ran[cls].add(check)
        if report.failed:
            failed[cls].add(check)
    for name, checks in EXPECTED_FAILURES.items():
        assert ran[name] == checks | BASICS, f"{name} ran {sorted(ran[name])}"
    assert failed == EXPECTED_FAILURES, tail(result)


def test_every_broken_controller_is_checked() -> None:
    assert set(EXPECTED_FAILURES) == set(broken_controllers.BROKEN_CONTROLLERS)


def test_a_controller_without_scenarios_is_skipped_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_controller_suite="""
        from kcore.conformance.suites.controllers import ControllerConformance
        from kcore.controllers import Reconciler


        class Plain(Reconciler):
            name = "plain-controller"
            kinds = [("v1", "ConfigMap")]

            async def reconcile(self, key):
                return None


        class TestController(ControllerConformance):
            def make_controllers(self, plugins, settings):
                return [Plain()]
        """
    )
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK, tail(result)
    reasons = set(skip_reasons(result).values())
    assert set(outcomes(result).values()) == {"skipped"}, tail(result)
    assert reasons == {
        "Skipped: plain-controller lacks capability conformance scenarios "
        "(it has no conformance() method)"
    }, reasons


def test_a_scenario_may_declare_a_check_missing(pytester: pytest.Pytester) -> None:
    """``Scenario.missing`` skips a check with the author's reason; a scenario without a
    flip skips the flapping check, naming what it lacks."""
    write_suite(
        pytester,
        "FleetController",
        body="""
        def make_controllers(self, plugins, settings):
            import dataclasses
            from broken_controllers import FleetController, fleet_scenario

            class Partial(FleetController):
                def conformance(self):
                    return dataclasses.replace(
                        fleet_scenario(),
                        flip=None,
                        missing={"restart": "no restarts in this test"},
                    )

            return [Partial()]
        """,
    )
    result = run(pytester, "-k", "flapping or restart")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    reasons = skip_reasons(result)
    assert reasons == {
        f"{CHECK_TESTS['flapping']}[fleet-controller/fleet]": (
            "Skipped: scenario 'fleet' lacks capability flip (declares none)"
        ),
        f"{CHECK_TESTS['restart']}[fleet-controller/fleet]": (
            "Skipped: scenario 'fleet' lacks capability restart: no restarts in this test"
        ),
    }, tail(result)


def test_without_controllers_the_suite_fails_clearly(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pyargs", "kcore.conformance.suites.test_controllers"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no controllers under test: pass --kcore-plugin NAME*"])


def test_an_unknown_check_in_missing_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown checks"):
        controller_suite.Scenario(
            name="x",
            seed=broken_controllers.seed,
            check=broken_controllers.check,
            missing={"convergence": "typo"},
        )
