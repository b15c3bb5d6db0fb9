"""Which routes the pod-routes node service wants: other nodes' pod CIDRs via their
InternalIPs, only on directly connected subnets."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from kcore.plugins.net_bridge import kcore_node_services
from kcore.plugins.net_bridge.routes import PodRoutes, desired_routes
from kcore.settings import Settings

CLUSTER = IPv4Network("10.250.0.0/16")
LINKS = [IPv4Interface("10.251.7.1/24"), IPv4Interface("127.0.0.1/8")]


def node(name, cidr=None, ip=None):
    obj = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidr:
        obj["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    if ip:
        obj["status"]["addresses"] = [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ]
    return obj


def want(nodes, own_pod_cidr="10.250.0.0/24"):
    return desired_routes(
        nodes,
        own_node="me",
        cluster_cidr=CLUSTER,
        own_pod_cidr=IPv4Network(own_pod_cidr) if own_pod_cidr else None,
        connected=LINKS,
    )


def test_routes_to_the_other_nodes_on_a_shared_link():
    nodes = [
        node("me", "10.250.0.0/24", "10.251.7.1"),
        node("b", "10.250.1.0/24", "10.251.7.2"),
        node("c", "10.250.2.0/24", "10.251.7.3"),
    ]
    assert want(nodes) == {
        IPv4Network("10.250.1.0/24"): IPv4Address("10.251.7.2"),
        IPv4Network("10.250.2.0/24"): IPv4Address("10.251.7.3"),
    }


def test_no_route_that_would_leave_through_a_gateway_or_make_no_sense():
    nodes = [
        node("no-cidr", None, "10.251.7.2"),
        node("no-ip", "10.250.3.0/24", None),
        node("far-away", "10.250.4.0/24", "192.168.1.5"),  # not on a connected subnet
        node("outside-cluster", "10.99.0.0/24", "10.251.7.4"),
        node("overlaps-mine", "10.250.0.0/25", "10.251.7.5"),
        node("claims-my-ip", "10.250.6.0/24", "10.251.7.1"),
        node("loopback", "10.250.7.0/24", "127.0.0.2"),
        node("me", "10.250.8.0/24", "10.251.7.9"),  # my own Node, whatever it says
    ]
    assert want(nodes) == {}


def test_net_bridge_runs_pod_routes_on_every_node(tmp_path):
    services = kcore_node_services(Settings(data_dir=tmp_path))
    assert any(isinstance(s, PodRoutes) and s.name == "pod-routes" for s in services)


async def test_the_service_syncs_on_every_node_change(api):
    import asyncio
    from types import SimpleNamespace

    seen: list[dict[str, str | None]] = []

    class Recording(PodRoutes):
        async def sync(self, nodes, own_node, cluster, own_pod_cidr):
            seen.append({n["metadata"]["name"]: n["spec"].get("podCIDR") for n in nodes})

    config = SimpleNamespace(cluster_cidr=CLUSTER, pod_cidr=IPv4Network("10.250.0.0/24"))
    ctx = SimpleNamespace(api=api, node_name="me", network=SimpleNamespace(config=config))
    stop = asyncio.Event()
    task = asyncio.create_task(Recording().run(ctx, stop))
    try:
        await _until(lambda: seen)
        await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}})
        await _until(lambda: seen and "b" in seen[-1])
        await api.patch("v1", "Node", "b", {"spec": {"podCIDR": "10.250.1.0/24"}})
        await _until(lambda: seen[-1].get("b") == "10.250.1.0/24")
        await api.delete("v1", "Node", "b")
        await _until(lambda: "b" not in seen[-1])
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _until(check, timeout: float = 5.0) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the pod-routes service did not sync in time"
        await asyncio.sleep(0.02)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")
async def test_sync_adds_replaces_and_removes_its_own_routes_only(tmp_path):
    import secrets
    import subprocess

    ns = f"kctest-{secrets.token_hex(4)}-routes"

    def ip(*args):
        return subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, check=True)

    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip("addr", "add", "10.251.7.1/24", "dev", "d0")
        ip("link", "set", "d0", "up")
        ip("route", "add", "10.250.9.0/24", "via", "10.251.7.9")  # someone else's
        routes = PodRoutes(netns=ns)
        me = node("me", "10.250.0.0/24", "10.251.7.1")
        await routes.sync([me, node("b", "10.250.1.0/24", "10.251.7.2")], "me", CLUSTER, None)
        await routes.sync([me, node("b", "10.250.1.0/24", "10.251.7.3"),
                           node("c", "10.250.2.0/24", "10.251.7.4")], "me", CLUSTER, None)  # fmt: skip
        shown = json.loads(ip("-j", "route", "show", "proto", "75").stdout)
        assert {(r["dst"], r["gateway"]) for r in shown} == {
            ("10.250.1.0/24", "10.251.7.3"),
            ("10.250.2.0/24", "10.251.7.4"),
        }
        await routes.sync([me], "me", CLUSTER, None)
        assert json.loads(ip("-j", "route", "show", "proto", "75").stdout) == []
        assert "10.250.9.0/24 via 10.251.7.9" in ip("route", "show").stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
