"""The network conformance suite is tested too: it passes an honest plugin on real
namespaces (``broken_networks.DummyNetwork``), skips (and names) every capability that
plugin lacks, and fails each deliberately broken plugin in the tests that check the promise
it breaks.

Each case runs the suite in a pytest run of its own (pytester, in process), the way a
plugin author would: a test class subclassing ``NetworkConformance`` with an overridden
``network_factory``. The namespaces these runs make are unique to them and removed by the
suite; the test below checks that none is left.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import broken_networks
import pytest
from suite_results import outcomes, skip_reasons, tail

import kcore.conformance.suites.network as network_suite
from kcore.conformance.netns import Footprint, Netns, Snapshot, leaks, live_namespaces

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

# Broken plugins make the suite wait for traffic that never flows; a short wait keeps these
# runs quick (real runs wait longer).
FAST_WAIT_TIMEOUT = 2.0

BASICS = (
    "test_capabilities_are_known",
    "test_setup_answers_in_the_contract_shape",
)

EXPECTED_FAILURES: dict[str, set[str]] = {
    "SameAddressNetwork": {
        "test_each_pod_gets_its_own_address_on_eth0",
        "test_concurrent_setups_get_distinct_addresses",
        "test_restart_keeps_pods",
    },
    "SetupNotIdempotentNetwork": {"test_setup_twice_gives_the_same_answer"},
    "MissingNetnsAcceptedNetwork": {"test_setup_of_missing_namespace_raises_not_found"},
    "StatusWithoutReadyNetwork": {"test_status_is_ready"},
    "TeardownNotIdempotentNetwork": {
        "test_teardown_is_idempotent",
        "test_teardown_of_unknown_pod_succeeds",
        "test_setup_of_missing_namespace_raises_not_found",
    },
    "TeardownLeavesInterfaceNetwork": {
        "test_teardown_removes_what_setup_made",
        "test_repeated_setup_and_teardown_leak_nothing",
        "test_restart_keeps_pods",
        "test_gc_releases_pods_not_live",
    },
    "TeardownKeepsAddressNetwork": {
        "test_repeated_setup_and_teardown_leak_nothing",
        "test_setup_in_a_full_pod_range_fails_temporarily_until_a_teardown",
    },
    "HostPortConflictIgnoredNetwork": {"test_duplicate_host_port_conflicts"},
    "HostPortKeptNetwork": {
        "test_duplicate_host_port_conflicts",
        "test_repeated_setup_and_teardown_leak_nothing",
        "test_teardown_after_the_namespace_is_gone",
    },
    "FailedSetupLeavesInterfaceNetwork": {"test_duplicate_host_port_conflicts"},
    "ClaimsTrafficNetwork": {"test_pod_to_pod_traffic", "test_host_to_pod_traffic"},
    "CheckAlwaysPassesNetwork": {
        "test_check_notices_missing_wiring",
        "test_teardown_is_idempotent",
        "test_setup_of_missing_namespace_raises_not_found",
    },
    "GcReleasesNothingNetwork": {"test_gc_releases_pods_not_live"},
    "GcReleasesLiveNetwork": {"test_gc_releases_pods_not_live"},
    "ForgetsOnRestartNetwork": {"test_restart_keeps_pods"},
    "ReusesFreedAddressNetwork": {"test_freed_addresses_rotate_before_reuse"},
    "RotationForgottenOnRestartNetwork": {"test_freed_addresses_rotate_before_reuse"},
}

CAPABILITY_SKIPS = {"pod_to_pod", "host_to_pod", "crash_network"}


def write_suite(pytester: pytest.Pytester, network: str) -> None:
    """A test module that runs the suite on ``network`` (``DummyNetwork`` for the honest
    one), as a plugin author writes it."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(HERE)!r})\n")
    pytester.makepyfile(
        test_network_suite=textwrap.dedent(
            """\
            import pytest

            import broken_networks
            from kcore.conformance.suites.network import NetworkConformance
            from kcore.settings import Settings


            class TestNetwork(NetworkConformance):
                @pytest.fixture
                def network_factory(self, kcore_settings_factory):
                    async def make(settings=None):
                        settings = settings or kcore_settings_factory()
                        pool = settings.options.get("dummy_pool")
                        return broken_networks.make({network!r}, settings.data_dir, pool)

                    return make

                @pytest.fixture
                def small_pod_range(self, kcore_settings_factory):
                    settings = kcore_settings_factory()
                    options = {{**settings.options, "dummy_pool": broken_networks.SMALL_POOL}}
                    return Settings(data_dir=settings.data_dir, options=options), 5
            """
        ).format(network=network)
    )


@pytest.fixture
def no_namespace_left():
    """The suite removes every namespace it made (the runs are in this process)."""
    before = live_namespaces()
    yield
    left = live_namespaces() - before
    assert not left, f"the suite left namespaces behind: {sorted(left)}"


@pytest.fixture
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network_suite, "WAIT_TIMEOUT", FAST_WAIT_TIMEOUT)


# -- the honest plugin passes ---------------------------------------------------------------


@pytest.mark.usefixtures("no_namespace_left")
def test_dummy_passes_and_skips_only_missing_capabilities(pytester: pytest.Pytester) -> None:
    """The honest plugin passes every test it can; every other test is a skip that names
    a capability it does not declare (and never a silent pass)."""
    write_suite(pytester, "DummyNetwork")
    result = pytester.runpytest("-p", "no:asyncio", "-p", "no:cacheprovider", "-rs")
    assert result.ret == pytest.ExitCode.OK, tail(result)
    got = outcomes(result)
    assert "failed" not in got.values(), tail(result)
    reasons = skip_reasons(result)
    named = {r.rsplit(" ", 1)[-1] for r in reasons.values()}
    assert all("network lacks capability " in r for r in reasons.values()), reasons
    assert named == CAPABILITY_SKIPS, named
    assert sum(1 for o in got.values() if o == "passed") >= 15


@pytest.mark.usefixtures("no_namespace_left")
def test_suite_runs_on_a_plugin_named_on_the_command_line(pytester: pytest.Pytester) -> None:
    """What ``kcore conformance --plugin net_host`` runs: the shipped module, with
    ``--kcore-plugin``."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--pyargs",
        "kcore.conformance.suites.test_network",
        "--kcore-plugin",
        "net_host",
    )
    assert result.ret == pytest.ExitCode.OK, tail(result)
    assert "failed" not in outcomes(result).values()


def test_suite_without_a_network_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pyargs", "kcore.conformance.suites.test_network"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no network under test: pass --kcore-plugin NAME*"])


# -- broken plugins fail --------------------------------------------------------------------


@pytest.mark.parametrize("network", sorted(EXPECTED_FAILURES))
@pytest.mark.usefixtures("fast_waits", "no_namespace_left")
def test_broken_network_fails_the_suite(pytester: pytest.Pytester, network: str) -> None:
    """Each broken plugin fails the run, in (at least) the tests that check the promise
    it breaks, and still passes the basics (so those failures are about that promise).
    Only those tests run, to keep this quick."""
    assert network in broken_networks.BROKEN_NETWORKS
    write_suite(pytester, network)
    selected = sorted(EXPECTED_FAILURES[network] | set(BASICS))
    result = pytester.runpytest(
        "-p", "no:cacheprovider", *(f"test_network_suite.py::TestNetwork::{t}" for t in selected)
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, tail(result)
    got = outcomes(result)
    failed = {name for name, outcome in got.items() if outcome == "failed"}
    missing = EXPECTED_FAILURES[network] - failed
    assert not missing, f"{network} passed {sorted(missing)}\n{tail(result)}"
    for basic in BASICS:
        assert got[basic] == "passed", f"{network} failed {basic}\n{tail(result)}"


def test_every_broken_network_is_checked() -> None:
    assert set(EXPECTED_FAILURES) == set(broken_networks.BROKEN_NETWORKS)


# -- the leak check on a shared host ------------------------------------------------------------


def _snap(interfaces, routes=(), nft=None, peers=None) -> Snapshot:
    return Snapshot(
        {k: frozenset(v) for k, v in interfaces.items()}, frozenset(routes), nft, peers or {}
    )


def test_leaks_in_a_pod_namespace_count_everything() -> None:
    before = _snap({"lo": ["127.0.0.1/8"]}, nft={})
    after = _snap(
        {"lo": ["127.0.0.1/8"], "eth0": ["10.0.0.2/24"]},
        routes=["unicast default via 10.0.0.1 dev eth0"],
        nft={"ip t": "table ip t {"},
    )
    assert leaks(before, after) == [
        "interface eth0 (10.0.0.2/24)",
        "route unicast default via 10.0.0.1 dev eth0",
        "nft table ip t grew by 1 lines or elements",
    ]


def test_leaks_on_the_host_count_only_what_touches_the_pods() -> None:
    """Another program's bridge, routes and table, made meanwhile, are not the plugin's
    leaks; a pod's address, route, peer or host port left behind is."""
    ours = Footprint()
    pod_ns = _snap({"lo": [], "eth0": ["10.9.1.5/24"]})
    ours.add(Netns("kcconf-0000000001"), ["10.9.1.5"], [31000], in_pod=pod_ns)
    table = "table ip mine {\nelements = { tcp . 31000 : 10.9.1.5 . 8080 }"
    before = _snap({"eth0": ["192.0.2.2/24"], "br0": ["10.9.1.1/24"]}, nft={"ip mine": ""})
    during = _snap({}, nft={"ip mine": table})
    unrelated = _snap(
        {"eth0": ["192.0.2.2/24"], "br0": ["10.9.1.1/24"], "other0": ["10.7.0.1/24"]},
        routes=["unicast 10.7.0.0/24 dev other0"],
        nft={"ip mine": "", "ip other": "table ip other {\nchain c {"},
    )
    assert leaks(before, unrelated, ours=ours, seen=[during]) == []
    leaked = _snap(
        {"eth0": ["192.0.2.2/24", "10.9.1.5/32"], "br0": ["10.9.1.1/24"], "veth1": []},
        routes=["unicast 10.9.1.5 dev br0"],
        nft={"ip mine": table},
        peers={"veth1": "kcconf-0000000001"},
    )
    assert leaks(before, leaked, ours=ours, seen=[during]) == [
        "interface veth1 (no address)",
        "address 10.9.1.5/32 on eth0",
        "route unicast 10.9.1.5 dev br0",
        "nft table ip mine grew by 2 lines or elements",
    ]
