"""net_host: the network conformance suite (what a plugin without pod networking can
pass, the rest skipped by capability), and its own promises: the node's address for every
pod, host ports only as the container port, nothing to tear down or collect."""

from __future__ import annotations

import asyncio
import os

import pytest

from kcore import Invalid, NotFound, NotSupported, Settings
from kcore.conformance.suites.network import NetworkConformance, check_answer
from kcore.netinfo import primary_address
from kcore.plugin_host import PluginHost
from kcore.plugins.net_host.network import HostNetwork


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
class TestNetHostConformance(NetworkConformance):
    @pytest.fixture
    def network_factory(self, kcore_settings_factory):
        host = PluginHost(["net_host"])

        async def make(settings: Settings | None = None):
            return await host.network(settings or kcore_settings_factory())

        return make


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def network(tmp_path) -> HostNetwork:
    return HostNetwork(Settings(data_dir=tmp_path))


NETNS = "/proc/self/ns/net"
"""A namespace path that exists; net_host never enters it."""


def mapping(container_port: int, host_port: int, protocol: str = "TCP") -> dict:
    return {
        "protocol": protocol,
        "container_port": container_port,
        "host_port": host_port,
        "host_ip": "",
    }


def test_the_plugin_fills_the_network_slot(tmp_path):
    host = PluginHost(["net_host"])
    assert host.slot_owner("network") == "net_host"
    assert isinstance(run(host.network(Settings(data_dir=tmp_path))), HostNetwork)


def test_every_pod_gets_the_node_address(network):
    interface, address = primary_address()
    first = run(network.setup_pod("a", NETNS, {"port_mappings": []}))
    second = run(network.setup_pod("b", NETNS, {}))
    check_answer(first)
    assert first == second
    assert first["ips"] == [address]
    assert first["interface"] == interface
    status = run(network.status())
    assert status["ready"] is True
    assert status["host_ip"] == address


def test_primary_address_follows_the_default_route(tmp_path):
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n"
        "lo\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    )
    assert primary_address(str(table)) == ("lo", "127.0.0.1")
    table.write_text("Iface\tDestination\n")
    assert primary_address(str(table)) == ("lo", "127.0.0.1")
    assert primary_address(str(tmp_path / "missing")) == ("lo", "127.0.0.1")


def test_host_port_equal_to_container_port_is_accepted(network):
    answer = run(network.setup_pod("a", NETNS, {"port_mappings": [mapping(8080, 8080)]}))
    check_answer(answer)
    run(network.setup_pod("b", NETNS, {"port_mappings": [mapping(8080, 0)]}))


def test_host_port_other_than_container_port_is_not_supported(network):
    with pytest.raises(NotSupported) as err:
        run(network.setup_pod("a", NETNS, {"port_mappings": [mapping(80, 8080)]}))
    message = str(err.value)
    assert "port_mappings[0]" in message
    assert "8080" in message and "80" in message
    assert "net_host" in message


def test_unknown_protocol_is_invalid(network):
    with pytest.raises(Invalid) as err:
        run(network.setup_pod("a", NETNS, {"port_mappings": [mapping(53, 53, "ICMP")]}))
    assert err.value.causes[0].field == "port_mappings[0].protocol"


def test_missing_namespace_is_not_found(network, tmp_path):
    missing = str(tmp_path / "no-such-netns")
    with pytest.raises(NotFound):
        run(network.setup_pod("a", missing, {}))
    with pytest.raises(NotFound):
        run(network.check_pod("a", missing))


def test_nothing_to_tear_down_or_collect(network):
    run(network.setup_pod("a", NETNS, {}))
    run(network.check_pod("a", NETNS))
    run(network.teardown_pod("a", NETNS))
    run(network.teardown_pod("a", None))
    run(network.teardown_pod("never-seen", "/nonexistent"))
    assert list(run(network.gc([]))) == []
    run(network.close())


def test_capabilities_are_what_it_can_keep(network):
    assert network.capabilities == frozenset({"survives_restart"})
