"""The node lifecycle and taint eviction controllers against an in-process API, on a clock
the tests move: Nodes, Leases and pods are made by hand (no node agent)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from kcore.controllers import ControllerManager
from kcore.plugins.controllers import kcore_add_options
from kcore.plugins.controllers.nodelifecycle import (
    NodeLifecycleController,
    TaintEvictionController,
    controllers,
    eviction_delay,
    with_default_tolerations,
)
from kcore.settings import Settings

from .helpers import eventually

NS = "default"
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def stamp(seconds: float, micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(seconds, UTC).strftime(fmt)


def conditions(now: float, ready: str = "True", **others: str) -> list[dict[str, Any]]:
    out = []
    for kind, status in {"MemoryPressure": "False", "DiskPressure": "False", **others}.items():
        out.append({"type": kind, "status": status, "lastHeartbeatTime": stamp(now)})
    out.append(
        {
            "type": "Ready",
            "status": ready,
            "reason": "KubeletReady",
            "lastHeartbeatTime": stamp(now),
            "lastTransitionTime": stamp(now - 600),
        }
    )
    return out


async def make_node(api, name: str, now: float, zone: str | None = None) -> None:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    await api.create(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}
    )
    await post_status(api, name, now)
    await api.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": stamp(now, micro=True)},
        }
    )


async def post_status(api, name: str, now: float, ready: str = "True", **others: str) -> None:
    status = {"conditions": conditions(now, ready, **others)}
    await api.patch("v1", "Node", name, {"status": status}, subresource="status")


async def renew(api, name: str, now: float) -> None:
    await api.patch(
        "coordination.k8s.io/v1",
        "Lease",
        name,
        {"spec": {"renewTime": stamp(now, micro=True)}},
        namespace="kube-node-lease",
    )


async def make_pod(api, name: str, node: str, tolerations: list | None = None) -> None:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
    )
    status = {
        "phase": "Running",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp(time.time() - 60)}
        ],
    }
    await api.patch("v1", "Pod", name, {"status": status}, namespace=NS, subresource="status")


def taints_of(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


@pytest.fixture
async def lifecycle(cluster):
    clock = Clock()
    nlc = NodeLifecycleController(grace_period=40)
    tec = TaintEvictionController(eviction_timeout=300)
    manager = ControllerManager(cluster.api, [nlc, tec], clock=clock, leader_election=None)
    manager.start()
    await eventually(lambda: len(manager.runners) == 2)
    nlc.clock, nlc.tec = clock, tec
    try:
        yield nlc
    finally:
        await manager.stop()


async def settle(nlc, *nodes: str) -> None:
    """Wait until the controller has seen the nodes' Leases and has nothing to do."""
    await eventually(
        lambda: (
            all(nlc.health.get(n) is not None and nlc.health[n].renew for n in nodes)
            and len(nlc.queue) == 0
            and not nlc.queue.processing()
        )
    )


async def tick(nlc, seconds: float, *nodes: str, alive: tuple[str, ...] = ()) -> None:
    """Move the clock, renew the Leases of the ``alive`` nodes (once the controller has seen
    them), and have both controllers look at ``nodes`` again."""
    nlc.clock.now += seconds
    for name in alive:
        await renew(nlc.api, name, nlc.clock.now)
    for name in alive:
        await eventually(lambda name=name: nlc.health[name].probe == nlc.clock.now)
    for name in nodes:
        nlc.enqueue(name)
        nlc.tec.enqueue(name)


# -- helpers -------------------------------------------------------------------------------


def test_default_tolerations_and_eviction_delays():
    unreachable = [{"key": UNREACHABLE, "effect": "NoExecute"}]
    defaults = with_default_tolerations([], 300)
    assert {(t["key"], t["tolerationSeconds"]) for t in defaults} == {
        (NOT_READY, 300),
        (UNREACHABLE, 300),
    }
    assert eviction_delay(unreachable, defaults) == 300
    own = [
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7}
    ]
    assert eviction_delay(unreachable, with_default_tolerations(own, 300)) == 7
    forever = [{"operator": "Exists"}]  # tolerates everything, for ever
    assert with_default_tolerations(forever, 300) == forever
    assert eviction_delay(unreachable, forever) is None
    assert eviction_delay([{"key": "other", "effect": "NoExecute"}], defaults) == 0


def test_options_reach_the_controllers():
    names = {opt.name for opt in kcore_add_options()}
    assert {"node_monitor_grace_period", "pod_eviction_timeout"} <= names
    nlc, tec = controllers(
        Settings(options={"node_monitor_grace_period": 4.0, "pod_eviction_timeout": 3.0})
    )
    assert (nlc.grace_period, tec.eviction_timeout) == (4.0, 3.0)
    nlc, tec = controllers(Settings())
    assert (nlc.grace_period, tec.eviction_timeout) == (40.0, 300.0)


# -- the controllers -----------------------------------------------------------------------


async def test_a_silent_node_becomes_unknown_and_its_pods_are_evicted(cluster, lifecycle):
    api, nlc = cluster.api, lifecycle
    t0 = nlc.clock.now
    for name in ("n1", "n2"):
        await make_node(api, name, t0)
    await settle(nlc, "n1", "n2")
    await make_pod(api, "plain", "n1")
    await make_pod(
        api,
        "quick",
        "n1",
        [
            {
                "key": UNREACHABLE,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 10,
            }
        ],
    )
    await make_pod(
        api, "daemon", "n1", [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]
    )
    await make_pod(api, "other", "n2")

    await tick(nlc, 30, alive=("n2",))  # n2 keeps heartbeating, n1 does not
    await tick(nlc, 11, "n1", "n2", alive=("n2",))

    async def unknown():
        node = await api.get("v1", "Node", "n1")
        return node if ("node.kubernetes.io/unreachable", "NoExecute") in taints_of(node) else None

    node = await eventually(unknown)
    by_type = {c["type"]: c for c in node["status"]["conditions"]}
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        assert by_type[kind]["status"] == "Unknown"
    assert by_type["Ready"]["reason"] == "NodeStatusUnknown"
    assert by_type["Ready"]["message"] == "Kubelet stopped posting node status."
    assert by_type["PIDPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert taints_of(node) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    (no_execute,) = [t for t in node["spec"]["taints"] if t["effect"] == "NoExecute"]
    assert no_execute["timeAdded"] == stamp(nlc.clock.now)
    n2 = await api.get("v1", "Node", "n2")
    assert not taints_of(n2) and n2["status"]["conditions"][-1]["status"] == "True"

    async def not_ready(name):
        pod = await api.get("v1", "Pod", name, NS)
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        return pod if ready[0]["status"] == "False" else None

    for name in ("plain", "quick", "daemon"):
        pod = await eventually(lambda name=name: not_ready(name))
        assert pod["status"]["phase"] == "Running"
    assert (await api.get("v1", "Pod", "other", NS))["status"]["conditions"][0]["status"] == "True"
    events, _ = await api.list("v1", "Event", NS)
    assert {e["involvedObject"]["name"] for e in events if e["reason"] == "NodeNotReady"} == {
        "n1",  # "Node n1 status is now: NodeNotReady"
        "plain",
        "quick",
        "daemon",
    }

    async def deleting():
        pods, _ = await api.list("v1", "Pod", NS)
        return sorted(p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp"))

    await tick(nlc, 9, "n1", alive=("n2",))
    await eventually(lambda: len(nlc.tec.queue) == 0 and not nlc.tec.queue.processing())
    assert await deleting() == []
    await tick(nlc, 2, "n1", alive=("n2",))  # the 10 s toleration ran out
    assert await eventually(deleting) == ["quick"]
    for _ in range(10):
        await tick(nlc, 29, alive=("n2",))
    await tick(nlc, 1, "n1", alive=("n2",))  # the default 300 s ran out
    assert await eventually(lambda: _equal(deleting(), ["plain", "quick"]))
    plain = await api.get("v1", "Pod", "plain", NS)
    assert plain["status"]["reason"] == "NodeLost"
    assert plain["status"]["message"] == "Node n1 which was running pod plain is unresponsive"
    target = [c for c in plain["status"]["conditions"] if c["type"] == "DisruptionTarget"]
    assert target[0]["reason"] == "DeletionByTaintManager"
    events, _ = await api.list("v1", "Event", NS)
    assert any(e["reason"] == "TaintManagerEviction" for e in events)
    await tick(nlc, 30, "n1", alive=("n2",))
    await eventually(lambda: len(nlc.tec.queue) == 0 and not nlc.tec.queue.processing())
    assert "deletionTimestamp" not in (await api.get("v1", "Pod", "daemon", NS))["metadata"]


async def _equal(value, expected):
    return (await value) == expected


async def test_the_node_comes_back(cluster, lifecycle):
    api, nlc = cluster.api, lifecycle
    for name in ("n1", "n2"):
        await make_node(api, name, nlc.clock.now)
    await settle(nlc, "n1", "n2")
    await tick(nlc, 41, "n1", alive=("n2",))

    async def taints(expected):
        node = await api.get("v1", "Node", "n1")
        return taints_of(node) == expected

    await eventually(lambda: taints({(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}))
    await renew(api, "n1", nlc.clock.now)
    await post_status(api, "n1", nlc.clock.now)  # the kubelet posts Ready again
    await eventually(lambda: taints(set()))


async def test_taints_follow_the_conditions_the_kubelet_posts(cluster, lifecycle):
    api, nlc = cluster.api, lifecycle
    for name in ("n1", "n2"):
        await make_node(api, name, nlc.clock.now)
    await settle(nlc, "n1", "n2")
    await api.patch("v1", "Node", "n1", {"spec": {"unschedulable": True}})
    await post_status(api, "n1", nlc.clock.now, ready="False", MemoryPressure="True")

    async def taints():
        return taints_of(await api.get("v1", "Node", "n1"))

    expected = {
        (NOT_READY, "NoSchedule"),
        (NOT_READY, "NoExecute"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    await eventually(lambda: _equal(taints(), expected))
    await tick(nlc, 41, "n1", alive=("n2",))  # n1 goes silent: unreachable replaces not-ready
    await eventually(
        lambda: _equal(
            taints(),
            {
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute"),
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
            },  # MemoryPressure is Unknown now: no memory-pressure taint
        )
    )


async def test_nothing_is_evicted_when_every_node_is_down(cluster, lifecycle):
    api, nlc = cluster.api, lifecycle
    await make_node(api, "n1", nlc.clock.now)
    await make_pod(api, "plain", "n1")
    await settle(nlc, "n1")
    await tick(nlc, 41, "n1")

    async def unknown():
        node = await api.get("v1", "Node", "n1")
        return node if node["spec"].get("taints") else None

    node = await eventually(unknown)
    assert taints_of(node) == {(UNREACHABLE, "NoSchedule")}  # the control plane blames itself
    await tick(nlc, 600, "n1")
    await eventually(lambda: len(nlc.tec.queue) == 0 and not nlc.tec.queue.processing())
    assert "deletionTimestamp" not in (await api.get("v1", "Pod", "plain", NS))["metadata"]


async def test_new_no_execute_taints_are_rate_limited_per_zone(cluster, lifecycle):
    api, nlc = cluster.api, lifecycle
    for name in ("a1", "a2", "a3", "b1"):
        await make_node(api, name, nlc.clock.now, zone=name[0])
    await settle(nlc, "a1", "a2", "a3", "b1")
    alive = ("a1", "b1")
    await tick(nlc, 41, "a2", "a3", alive=alive)  # a2 and a3 of zone a go silent together

    async def no_execute():
        nodes, _ = await api.list("v1", "Node")
        return sorted(
            n["metadata"]["name"] for n in nodes if (UNREACHABLE, "NoExecute") in taints_of(n)
        )

    assert await eventually(no_execute) in (["a2"], ["a3"])
    await tick(nlc, 5, "a2", "a3", alive=alive)
    await eventually(lambda: len(nlc.queue) == 0 and not nlc.queue.processing())
    assert len(await no_execute()) == 1  # 0.1 nodes/s: the next one waits 10 s
    await tick(nlc, 6, "a2", "a3", alive=alive)
    await eventually(lambda: _equal(no_execute(), ["a2", "a3"]))
