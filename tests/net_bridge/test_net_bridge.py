"""net_bridge on the real kernel: namespaces, veths, the bridge, nftables and routes."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kcore import Conflict, Invalid, NotFound, PermanentError, TemporaryError
from kcore.interfaces import NETWORK_CAPABILITIES, NetworkPlugin
from kcore.settings import Settings

from .conftest import echo_from_netns, echo_from_node, ping, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="net_bridge needs root")


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def pod_links(net, *uids: str) -> set[str]:
    """Links on the node that these pods' wiring could have left: their veths and the
    bridge's ports (the whole link list would see other runs on the same machine)."""
    veths = {net.config.veth_name(uid) for uid in uids}
    return (veths & host_links()) | set(bridge_ports(net.names.bridge))


def bridge_ports(bridge: str) -> list[str]:
    out = sh("ip", "-j", "link", "show", "master", bridge).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


def ipam_files(net) -> dict[str, str]:
    found = {}
    for path in (net.state_dir / "ipam").iterdir():
        try:
            ipaddress.IPv4Address(path.name)
        except ValueError:
            continue
        found[path.name] = path.read_text()
    return found


def nft_elements(table: str) -> list[object]:
    out = sh("nft", "-j", "list", "table", "ip", table).stdout
    return [
        elem
        for item in json.loads(out)["nftables"]
        if "map" in item
        for elem in item["map"].get("elem", [])
    ]


def pod_json(netns_path: str, *args: str) -> list[dict]:
    return json.loads(sh("nsenter", f"--net={netns_path}", "ip", "-j", *args).stdout)


def hostport(host_port: int, container_port: int, protocol: str = "TCP", host_ip: str = ""):
    return {
        "protocol": protocol,
        "container_port": container_port,
        "host_port": host_port,
        "host_ip": host_ip,
    }


CONFIG = {"name": "web", "namespace": "default", "port_mappings": []}


# --- contract and options ------------------------------------------------------------------


async def test_is_a_network_plugin_with_every_capability(net):
    assert isinstance(net, NetworkPlugin)
    assert net.capabilities == NETWORK_CAPABILITIES
    assert await net.status() == {"ready": True, "reason": "", "message": ""}


def test_importing_the_plugin_does_not_import_pyroute2():
    code = "import sys, kcore.plugins.net_bridge; assert 'pyroute2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_contributed():
    from kcore.plugins import net_bridge

    names = {opt.name for opt in net_bridge.kcore_add_options()}
    assert names == {"bridge_name", "cluster_cidr", "pod_cidr", "service_cidr", "nft_table"}


async def test_the_hook_creates_the_plugin(tmp_path, make_names):
    from kcore.plugins import net_bridge

    names = make_names()
    net = await net_bridge.kcore_network(Settings(data_dir=tmp_path, options=names.options()))
    try:
        assert (await net.status())["ready"]
    finally:
        await net.remove_all()


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("bridge_name", "kc-name-too-long", "1 to 15 characters"),
        ("bridge_name", "kc/x", "no '/'"),
        ("cluster_cidr", "10.250.0.0/33", "not an IPv4 network"),
        ("pod_cidr", "10.250.0.1/24", "host bits set"),
        ("pod_cidr", "10.253.0.0/24", "not inside the cluster CIDR"),
        ("pod_cidr", "fd00::/64", "not an IPv4 network"),
        ("service_cidr", "banana", "not an IPv4 network"),
        ("nft_table", "kc table;", "letters, digits"),
    ],
)
async def test_invalid_options_are_refused_before_touching_the_node(
    tmp_path, make_names, option, value, words
):
    from kcore.plugins.net_bridge import create_network

    names = make_names()
    options = {**names.options(), option: value}
    with pytest.raises(Invalid) as info:
        await create_network(Settings(data_dir=tmp_path, options=options))
    assert words in str(info.value)
    assert f"--{option.replace('_', '-')}" in str(info.value)
    assert names.bridge not in host_links()
    assert sh("nft", "list", "table", "ip", names.table, check=False).returncode != 0


# --- one pod -------------------------------------------------------------------------------


async def test_setup_wires_eth0_lo_and_the_default_route(net, netns):
    path = netns.make()
    answer = await net.setup_pod("pod-a", path, CONFIG)
    ip = answer["ips"][0]
    gateway = str(net.names.pod.network_address + 1)
    assert ipaddress.IPv4Address(ip) in net.names.pod
    assert answer == {
        "ips": [ip],
        "interface": "eth0",
        "gateway": gateway,
        "routes": [{"dst": "0.0.0.0/0", "gateway": gateway}],
        "dns": {"servers": [], "searches": [], "options": []},
    }
    links = {link["ifname"]: link for link in pod_json(path, "addr")}
    assert set(links) == {"lo", "eth0"}
    assert "UP" in links["lo"]["flags"]
    assert "UP" in links["eth0"]["flags"]
    assert {
        (a["local"], a["prefixlen"]) for a in links["eth0"]["addr_info"] if a["family"] == "inet"
    } == {(ip, net.names.pod.prefixlen)}
    routes = pod_json(path, "route")
    assert {"dst": "default", "gateway": gateway, "dev": "eth0"}.items() <= routes[0].items()
    assert bridge_ports(net.names.bridge) == [net.config.veth_name("pod-a")]
    await net.check_pod("pod-a", path)


async def test_setup_is_idempotent(net, netns):
    path = netns.make()
    first = await net.setup_pod("pod-a", path, CONFIG)
    again = await net.setup_pod("pod-a", path, CONFIG)
    assert again == first
    assert pod_links(net, "pod-a") == {net.config.veth_name("pod-a")}
    assert len(ipam_files(net)) == 1


async def test_two_pods_and_the_node_reach_each_other(net, netns, processes):
    a, b = netns.make(), netns.make()
    ip_a = (await net.setup_pod("pod-a", a, CONFIG))["ips"][0]
    ip_b = (await net.setup_pod("pod-b", b, CONFIG))["ips"][0]
    assert ping(a, ip_b)
    assert ping(b, ip_a)
    assert ping(None, ip_a)
    processes.echo_server(a, 8080)
    assert echo_from_netns(b, ip_a, 8080) == f"echo:hello from:{ip_b}"
    assert await echo_from_node(ip_a, 8080) == f"echo:hello from:{net.names.pod[1]}"


async def test_teardown_releases_everything_and_is_idempotent(net, netns):
    path = netns.make()
    await net.setup_pod("pod-a", path, {**CONFIG, "port_mappings": [hostport(28080, 80)]})
    assert pod_links(net, "pod-a") == {net.config.veth_name("pod-a")}
    await net.teardown_pod("pod-a", path)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}
    assert nft_elements(net.names.table) == []
    assert [link["ifname"] for link in pod_json(path, "link")] == ["lo"]
    await net.teardown_pod("pod-a", path)
    await net.teardown_pod("never-set-up", None)
    with pytest.raises(NotFound):
        await net.check_pod("pod-a", path)


async def test_teardown_after_the_namespace_is_gone(net, netns):
    path = netns.make()
    await net.setup_pod("pod-a", path, {**CONFIG, "port_mappings": [hostport(28081, 80)]})
    netns.delete(path)
    await net.teardown_pod("pod-a", path)
    await net.teardown_pod("pod-a", None)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}
    assert nft_elements(net.names.table) == []


async def test_a_missing_namespace_is_not_found_and_leaves_nothing(net):
    with pytest.raises(NotFound):
        await net.setup_pod("pod-a", "/run/netns/kc-does-not-exist", CONFIG)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}


async def test_the_nodes_own_namespace_is_refused(net):
    with pytest.raises(Invalid, match="node's own network namespace"):
        await net.setup_pod("pod-a", f"/proc/{os.getpid()}/ns/net", CONFIG)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}


async def test_a_file_that_is_no_namespace_is_invalid(net, tmp_path):
    path = tmp_path / "not-a-netns"
    path.write_text("")
    with pytest.raises(Invalid, match="not a network namespace"):
        await net.setup_pod("pod-a", str(path), CONFIG)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}


async def test_check_pod_finds_broken_wiring(net, netns):
    path = netns.make()
    await net.setup_pod("pod-a", path, CONFIG)
    await net.check_pod("pod-a", path)
    with pytest.raises(PermanentError, match="not the namespace"):
        await net.check_pod("pod-a", netns.make())
    sh("ip", "link", "del", net.config.veth_name("pod-a"))
    with pytest.raises(PermanentError, match="gone"):
        await net.check_pod("pod-a", path)
    # Setting the pod up again repairs it, with the same address.
    first_ip = ipam_files(net)
    await net.setup_pod("pod-a", path, CONFIG)
    await net.check_pod("pod-a", path)
    assert ipam_files(net) == first_ip


async def test_a_new_namespace_for_the_same_pod_keeps_its_address(net, netns):
    first = await net.setup_pod("pod-a", netns.make(), CONFIG)
    second_ns = netns.make()
    second = await net.setup_pod("pod-a", second_ns, CONFIG)
    assert second == first
    await net.check_pod("pod-a", second_ns)
    assert len(bridge_ports(net.names.bridge)) == 1


# --- many pods -----------------------------------------------------------------------------


async def test_twenty_concurrent_setups_get_twenty_addresses(net, netns):
    paths = [netns.make() for _ in range(20)]
    uids = [f"pod-{i}" for i in range(20)]
    answers = await asyncio.gather(
        *(net.setup_pod(f"pod-{i}", p, CONFIG) for i, p in enumerate(paths))
    )
    ips = [a["ips"][0] for a in answers]
    assert len(set(ips)) == 20
    assert sorted(ipam_files(net).values()) == sorted(f"pod-{i}" for i in range(20))
    assert pod_links(net, *uids) == {net.config.veth_name(u) for u in uids}
    assert ping(paths[0], ips[19])
    await asyncio.gather(*(net.teardown_pod(f"pod-{i}", p) for i, p in enumerate(paths)))
    assert pod_links(net, *uids) == set()
    assert ipam_files(net) == {}


async def test_two_hundred_setups_and_teardowns_leak_nothing(net, netns):
    path = netns.make()
    await net.setup_pod("warm-up", path, CONFIG)
    await net.teardown_pod("warm-up", path)
    elements = nft_elements(net.names.table)
    files = sorted(p.name for p in net.state_dir.rglob("*"))
    seen = set()
    for i in range(200):
        ports = [hostport(29000 + i % 7, 80)] if i % 10 == 0 else []
        answer = await net.setup_pod(f"pod-{i}", path, {**CONFIG, "port_mappings": ports})
        seen.add(answer["ips"][0])
        await net.teardown_pod(f"pod-{i}", path)
    assert pod_links(net, *(f"pod-{i}" for i in range(200))) == set()
    assert nft_elements(net.names.table) == elements
    assert sorted(p.name for p in net.state_dir.rglob("*")) == files
    assert len(seen) > 100  # allocation goes round the range, not back to the same address
    assert [link["ifname"] for link in pod_json(path, "link")] == ["lo"]


async def test_an_exhausted_range_is_a_temporary_error_and_leaves_nothing(
    plugin_factory, make_names, netns
):
    net = await plugin_factory(make_names(pod_prefix=29))  # .1 gateway, .2 to .6 for pods
    paths = [netns.make() for _ in range(6)]
    for i, path in enumerate(paths[:5]):
        await net.setup_pod(f"pod-{i}", path, CONFIG)
    with pytest.raises(TemporaryError, match="exhausted"):
        await net.setup_pod("pod-5", paths[5], CONFIG)
    assert pod_links(net, "pod-5") == {net.config.veth_name(f"pod-{i}") for i in range(5)}
    assert [link["ifname"] for link in pod_json(paths[5], "link")] == ["lo"]
    assert len(ipam_files(net)) == 5
    await net.teardown_pod("pod-0", paths[0])
    answer = await net.setup_pod("pod-5", paths[5], CONFIG)
    assert answer["ips"] == [str(net.names.pod.network_address + 2)]


# --- restart and gc ------------------------------------------------------------------------


async def test_a_new_plugin_object_carries_on(plugin_factory, netns, tmp_path):
    data = tmp_path / "shared"
    old = await plugin_factory(data_dir=data)
    a, b, c = netns.make(), netns.make(), netns.make()
    ip_a = (await old.setup_pod("pod-a", a, {**CONFIG, "port_mappings": [hostport(28090, 80)]}))[
        "ips"
    ][0]
    ip_b = (await old.setup_pod("pod-b", b, CONFIG))["ips"][0]
    await old.close()

    new = await plugin_factory(names=old.names, data_dir=data)
    assert ping(a, ip_b)  # closing and starting again left the pods wired
    await new.check_pod("pod-a", a)
    assert (await new.setup_pod("pod-a", a, {**CONFIG, "port_mappings": [hostport(28090, 80)]}))[
        "ips"
    ] == [ip_a]
    with pytest.raises(Conflict):
        await new.setup_pod("pod-c", c, {**CONFIG, "port_mappings": [hostport(28090, 81)]})
    ip_c = (await new.setup_pod("pod-c", c, CONFIG))["ips"][0]
    assert ip_c not in (ip_a, ip_b)
    assert len(nft_elements(old.names.table)) == 1

    await new.teardown_pod("pod-a", a)
    assert sorted(await new.gc(["pod-c"])) == ["pod-b"]
    assert bridge_ports(old.names.bridge) == [new.config.veth_name("pod-c")]
    assert set(ipam_files(new).values()) == {"pod-c"}
    assert nft_elements(old.names.table) == []
    assert await new.gc(["pod-c"]) == []


async def test_gc_collects_what_a_crash_left(net, netns):
    path = netns.make()
    await net.setup_pod("pod-a", path, CONFIG)
    # A crash between allocating an address and writing the record; a stray veth.
    (net.state_dir / "ipam" / str(net.names.pod.network_address + 200)).write_text("lost")
    stray = net.config.veth_name("crashed-pod")
    foreign = "kcfg" + os.urandom(4).hex()  # someone else's port: gc leaves it alone
    for name in (stray, foreign):
        sh("ip", "link", "add", name, "master", net.names.bridge, "type", "veth")
    try:
        assert await net.gc(["pod-a"]) == ["lost"]
        assert sorted(bridge_ports(net.names.bridge)) == sorted(
            [net.config.veth_name("pod-a"), foreign]
        )
        assert set(ipam_files(net).values()) == {"pod-a"}
    finally:
        sh("ip", "link", "del", stray, check=False)
        sh("ip", "link", "del", foreign, check=False)
    await net.check_pod("pod-a", path)


# --- host ports ----------------------------------------------------------------------------


async def test_host_ports_reach_the_pod_from_the_node(net, netns, processes):
    path = netns.make()
    gateway = str(net.names.pod.network_address + 1)
    ports = [hostport(28100, 8080), hostport(28101, 8080, host_ip="127.0.0.1")]
    ip = (await net.setup_pod("pod-a", path, {**CONFIG, "port_mappings": ports}))["ips"][0]
    processes.echo_server(path, 8080)
    # DNAT-ed, and masqueraded so the pod can answer: the pod sees the gateway.
    assert await echo_from_node(gateway, 28100) == f"echo:hello from:{gateway}"
    assert await echo_from_node("127.0.0.1", 28100) == f"echo:hello from:{gateway}"
    assert await echo_from_node("127.0.0.1", 28101) == f"echo:hello from:{gateway}"
    # From another pod, through the node's address (hairpin).
    other = netns.make()
    await net.setup_pod("pod-b", other, CONFIG)
    assert echo_from_netns(other, gateway, 28100) == f"echo:hello from:{gateway}"
    # Only to the address it was given.
    with pytest.raises(OSError):
        await echo_from_node(gateway, 28101)
    await net.teardown_pod("pod-a", path)
    with pytest.raises(OSError):
        await echo_from_node("127.0.0.1", 28100)
    assert ip not in json.dumps(nft_elements(net.names.table))


async def test_host_ports_reach_the_pod_from_another_machine(net, netns, processes):
    """The other machine is a namespace on a link of its own to the node: its packets
    arrive on an interface other than the bridge and are forwarded, as from outside."""
    pod, outside = netns.make(), netns.make()
    link = "kco" + os.urandom(4).hex()
    node_side = ipaddress.IPv4Network(f"10.254.{random.randrange(256)}.0/30")
    node_ip, client_ip = str(node_side[1]), str(node_side[2])
    sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", outside)
    try:
        sh("ip", "addr", "add", f"{node_ip}/30", "dev", link)
        sh("ip", "link", "set", link, "up")
        for cmd in (
            ("ip", "link", "set", "lo", "up"),
            ("ip", "link", "set", "eth0", "up"),
            ("ip", "addr", "add", f"{client_ip}/30", "dev", "eth0"),
        ):
            sh("nsenter", f"--net={outside}", *cmd)
        await net.setup_pod("pod-a", pod, {**CONFIG, "port_mappings": [hostport(28150, 8080)]})
        processes.echo_server(pod, 8080)
        # Not masqueraded: the pod sees the client, and answers it through the node.
        assert echo_from_netns(outside, node_ip, 28150) == f"echo:hello from:{client_ip}"
    finally:
        sh("ip", "link", "del", link, check=False)


async def test_a_taken_host_port_is_a_conflict_and_leaves_nothing(net, netns):
    a, b = netns.make(), netns.make()
    await net.setup_pod("pod-a", a, {**CONFIG, "port_mappings": [hostport(28200, 80)]})
    links, files = pod_links(net, "pod-b"), ipam_files(net)
    for taken in (
        hostport(28200, 81),
        hostport(28200, 80, host_ip="127.0.0.1"),  # inside "every address"
    ):
        with pytest.raises(Conflict, match="28200/tcp"):
            await net.setup_pod("pod-b", b, {**CONFIG, "port_mappings": [taken]})
        assert pod_links(net, "pod-b") == links
        assert ipam_files(net) == files
    # Another protocol, or the port once it is free again, is fine.
    await net.setup_pod("pod-b", b, {**CONFIG, "port_mappings": [hostport(28200, 80, "UDP")]})
    await net.teardown_pod("pod-a", a)
    await net.teardown_pod("pod-b", b)
    await net.setup_pod("pod-b", b, {**CONFIG, "port_mappings": [hostport(28200, 80)]})


async def test_teardown_succeeds_when_the_nft_table_was_removed(net, netns):
    path = netns.make()
    await net.setup_pod("pod-a", path, {**CONFIG, "port_mappings": [hostport(28400, 80)]})
    sh("nft", "delete", "table", "ip", net.names.table)
    status = await net.status()
    assert not status["ready"] and "nft table" in status["message"]
    with pytest.raises(PermanentError, match="nft"):
        await net.setup_pod("pod-b", netns.make(), {**CONFIG, "port_mappings": [hostport(1, 1)]})
    assert pod_links(net, "pod-b") == {net.config.veth_name("pod-a")}
    await net.teardown_pod("pod-a", path)
    assert pod_links(net, "pod-a") == set()
    assert ipam_files(net) == {}


async def test_host_ports_within_one_pod_must_not_overlap(net, netns):
    ports = [hostport(28300, 80), hostport(28300, 81, host_ip="127.0.0.1")]
    with pytest.raises(Conflict):
        await net.setup_pod("pod-a", netns.make(), {**CONFIG, "port_mappings": ports})
    with pytest.raises(Invalid, match=r"port_mappings\[0\].host_port"):
        await net.setup_pod(
            "pod-a", netns.make(), {**CONFIG, "port_mappings": [hostport(70000, 80)]}
        )
    assert ipam_files(net) == {}


# --- the node ------------------------------------------------------------------------------


def unreachable_routes() -> set[str]:
    out = sh("ip", "-j", "route", "show", "type", "unreachable").stdout
    return {r["dst"] for r in json.loads(out or "[]")}


async def test_routes_table_and_bridge_exist_until_remove_all(plugin_factory, netns):
    net = await plugin_factory()
    names = net.names
    assert {str(names.cluster), str(names.service)} <= unreachable_routes()
    assert sh("nft", "list", "table", "ip", names.table, check=False).returncode == 0
    assert Path(f"/proc/sys/net/ipv4/conf/{names.bridge}/route_localnet").read_text() == "1\n"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == "1\n"
    # The node's own pod CIDR goes to the bridge; the rest of the cluster is refused.
    outside = names.service.network_address + 5
    assert sh("ip", "-j", "route", "get", str(outside), check=False).returncode != 0
    via = json.loads(sh("ip", "-j", "route", "get", str(names.pod[5])).stdout)[0]
    assert via["dev"] == names.bridge
    await net.setup_pod("pod-a", netns.make(), CONFIG)

    await net.remove_all()
    assert not {str(names.cluster), str(names.service)} & unreachable_routes()
    assert sh("nft", "list", "table", "ip", names.table, check=False).returncode != 0
    assert names.bridge not in host_links()
    assert not net.state_dir.exists()
    assert not [n for n in host_links() if n == net.config.veth_name("pod-a")]


async def test_a_lost_bridge_is_reported_and_made_again_by_the_next_setup(net, netns):
    a, b = netns.make(), netns.make()
    ip_a = (await net.setup_pod("pod-a", a, CONFIG))["ips"][0]
    assert (await net.status())["ready"]
    sh("ip", "link", "del", net.names.bridge)
    status = await net.status()
    assert status["ready"] is False
    assert "does not exist" in status["message"]
    with pytest.raises(PermanentError):
        await net.check_pod("pod-a", a)
    ip_b = (await net.setup_pod("pod-b", b, CONFIG))["ips"][0]
    assert (await net.status())["ready"]
    assert sorted(bridge_ports(net.names.bridge)) == sorted(
        net.config.veth_name(u) for u in ("pod-a", "pod-b")
    )
    await net.check_pod("pod-a", a)
    assert ping(b, ip_a)
    assert ping(None, ip_b)
