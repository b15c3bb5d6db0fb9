"""net_bridge's address files, options and nft scripts, without touching the node."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from kcore import Invalid
from kcore.plugins.net_bridge.config import VETH_NAME, BridgeConfig
from kcore.plugins.net_bridge.ipam import Exhausted, HostLocalIpam
from kcore.plugins.net_bridge.nft import add_script, delete_script, table_script
from kcore.plugins.net_bridge.pods import HostPort, PodRecord, PodRecords, host_ports

SUBNET = IPv4Network("10.250.7.0/29")
GATEWAY = IPv4Address("10.250.7.1")


def ipam(tmp_path, subnet=SUBNET) -> HostLocalIpam:
    return HostLocalIpam(tmp_path / "ipam", subnet, {subnet.network_address + 1})


def test_allocation_skips_network_gateway_and_broadcast_and_goes_round(tmp_path):
    pool = ipam(tmp_path)
    got = [str(pool.allocate(f"pod-{i}")) for i in range(5)]
    assert got == [f"10.250.7.{n}" for n in range(2, 7)]
    with pytest.raises(Exhausted):
        pool.allocate("pod-5")
    assert pool.release("10.250.7.3", "pod-1")
    assert pool.allocate("pod-6") == IPv4Address("10.250.7.3")
    assert pool.release("10.250.7.2", "pod-0")
    assert pool.release("10.250.7.4", "pod-2")
    # After .3, the next free one: not the lowest.
    assert pool.allocate("pod-7") == IPv4Address("10.250.7.4")


def test_release_needs_the_owner_and_release_owner_finds_every_address(tmp_path):
    pool = ipam(tmp_path)
    a = pool.allocate("pod-a")
    pool.allocate("pod-b")
    assert not pool.release(a, "pod-b")
    assert pool.owner(a) == "pod-a"
    assert pool.claim(a, "pod-a")
    assert not pool.claim(a, "pod-b")
    assert pool.release_owner("pod-a") == [str(a)]
    assert set(pool.allocations().values()) == {"pod-b"}


def test_claim_takes_back_a_freed_address_but_never_anothers(tmp_path):
    """A pod whose address file went (a teardown that died after freeing it) claims it
    back while it is free, and not once another pod has it."""
    pool = ipam(tmp_path)
    a = pool.allocate("pod-a")
    b = pool.allocate("pod-b")
    assert pool.release(a, "pod-a")
    assert pool.claim(a, "pod-a")
    assert pool.owner(a) == "pod-a"
    assert pool.release(b, "pod-b")
    assert pool.claim(b, "pod-c")
    assert not pool.claim(b, "pod-b")
    assert not pool.release(b, "pod-b")
    assert pool.owner(b) == "pod-c"


def test_close_releases_the_lock_and_is_idempotent(tmp_path):
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        ipam(tmp_path).close()
    assert len(os.listdir("/proc/self/fd")) == fds
    pool = ipam(tmp_path)
    pool.close()
    pool.close()


def test_a_new_object_sees_what_the_files_say(tmp_path):
    first = ipam(tmp_path)
    held = {first.allocate(f"pod-{i}") for i in range(3)}
    first.close()
    second = ipam(tmp_path)
    assert {IPv4Address(a) for a in second.allocations()} == held
    assert second.allocate("pod-x") not in held


def test_threads_never_share_an_address(tmp_path):
    pool = ipam(tmp_path, IPv4Network("10.250.7.0/24"))
    got: list[IPv4Address] = []

    def work(n: int) -> None:
        for i in range(10):
            got.append(pool.allocate(f"pod-{n}-{i}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 200


def test_processes_never_share_an_address(tmp_path):
    """Two daemons on one data dir (or a daemon and a CLI) share the files and the flock."""
    code = (
        "import sys; from ipaddress import IPv4Network, IPv4Address; from pathlib import Path;"
        "from kcore.plugins.net_bridge.ipam import HostLocalIpam;"
        "p = HostLocalIpam(Path(sys.argv[1]), IPv4Network('10.250.7.0/24'), "
        "{IPv4Address('10.250.7.1')});"
        "[p.allocate(f'{sys.argv[2]}-{i}') for i in range(100)]"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ipam"), name])
        for name in ("a", "b")
    ]
    assert [p.wait() for p in procs] == [0, 0]
    owners = ipam(tmp_path, IPv4Network("10.250.7.0/24")).allocations()
    assert len(owners) == 200
    assert len(set(owners.values())) == 200


# --- options -------------------------------------------------------------------------------


def test_defaults():
    config = BridgeConfig.from_options({})
    assert config.bridge_name == "kcore0"
    assert config.cluster_cidr == IPv4Network("10.244.0.0/16")
    assert config.pod_cidr == IPv4Network("10.244.0.0/24")
    assert config.service_cidr == IPv4Network("10.96.0.0/12")
    assert config.nft_table == "kcore"
    assert config.gateway == IPv4Address("10.244.0.1")
    assert config.bridge_mac.startswith("02:")


def test_every_bad_option_is_named():
    with pytest.raises(Invalid) as info:
        BridgeConfig.from_options(
            {"bridge_name": "x" * 16, "pod_cidr": "10.245.0.0/24", "service_cidr": "10.244.0.0/20"}
        )
    assert {c.field for c in info.value.causes} == {
        "--bridge-name",
        "--pod-cidr",
        "--service-cidr",
    }


def test_veth_names_fit_and_differ_per_bridge():
    a = BridgeConfig.from_options({"bridge_name": "kca"})
    b = BridgeConfig.from_options({"bridge_name": "kcb"})
    assert len(a.veth_name("uid")) == 15
    assert VETH_NAME.fullmatch(a.veth_name("uid"))
    assert a.veth_name("uid") != b.veth_name("uid")
    assert a.veth_name("uid") == a.veth_name("uid")


# --- host ports, records, nft --------------------------------------------------------------


def test_host_ports_are_checked_and_normalized():
    ports = host_ports(
        {
            "port_mappings": [
                {"protocol": "UDP", "container_port": 53, "host_port": 5353, "host_ip": "0.0.0.0"},
                {"protocol": "TCP", "container_port": 80, "host_port": 0},
                {"container_port": 80, "host_port": 8080, "host_ip": "127.0.0.1"},
            ]
        }
    )
    assert ports == [HostPort("tcp", 8080, "127.0.0.1", 80), HostPort("udp", 5353, "", 53)]
    with pytest.raises(Invalid, match="ICMP"):
        host_ports({"port_mappings": [{"protocol": "ICMP", "host_port": 1}]})
    with pytest.raises(Invalid, match="host_ip"):
        host_ports({"port_mappings": [{"host_port": 1, "host_ip": "::1"}]})


def test_overlaps():
    any_ip = HostPort("tcp", 80, "", 8080)
    assert any_ip.overlaps(HostPort("tcp", 80, "127.0.0.1", 1))
    assert not any_ip.overlaps(HostPort("udp", 80, "", 1))
    assert not HostPort("tcp", 80, "10.0.0.1", 1).overlaps(HostPort("tcp", 80, "10.0.0.2", 1))


def test_records_round_trip(tmp_path):
    store = PodRecords(tmp_path)
    record = PodRecord(
        uid="8f0e-uid",
        ip="10.250.7.2",
        host_veth="veth0123456789a",
        netns_path="/run/netns/x",
        netns_id=(4, 4026532000),
        answer={"ips": ["10.250.7.2"]},
        ports=[HostPort("tcp", 80, "", 8080)],
    )
    store.save(record)
    assert store.load("8f0e-uid") == record
    assert store.load_all() == {"8f0e-uid": record}
    assert store.path("../../etc/passwd").parent == tmp_path
    (tmp_path / "broken.json").write_text("{")
    assert list(store.load_all()) == ["8f0e-uid"]
    store.remove("8f0e-uid")
    assert store.load("8f0e-uid") is None


def test_nft_scripts():
    ports = [HostPort("tcp", 80, "", 8080), HostPort("udp", 53, "127.0.0.1", 53)]
    assert add_script("t", "10.250.7.2", ports) == (
        "add element ip t hostports { tcp . 80 : 10.250.7.2 . 8080 }\n"
        "add element ip t hostports_ip { 127.0.0.1 . udp . 53 : 10.250.7.2 . 53 }\n"
    )
    assert delete_script("t", "10.250.7.2", ports).endswith(
        "delete element ip t hostports { tcp . 80 }\n"
        "delete element ip t hostports_ip { 127.0.0.1 . udp . 53 }\n"
    )
    script = table_script("t", SUBNET, IPv4Network("10.250.0.0/16"), [("10.250.7.2", ports[0])])
    assert "ip saddr 10.250.7.0/29 ip daddr != 10.250.0.0/16 masquerade" in script
    assert script.rstrip().endswith("add element ip t hostports { tcp . 80 : 10.250.7.2 . 8080 }")
