"""The pod garbage collector against an in-process API, on a clock the tests move."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from kcore.controllers import ControllerManager
from kcore.errors import NotFound
from kcore.plugins.controllers.podgc import QUARANTINE, PodGCController

from .helpers import Clock, eventually, pod

NS = "default"


async def make_node(api, name: str, *, ready: str = "True", taints=None) -> None:
    spec = {"taints": taints} if taints else {}
    await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec})
    status = {"conditions": [{"type": "Ready", "status": ready}]}
    await api.patch("v1", "Node", name, {"status": status}, subresource="status")


async def bound_pod(api, name: str, node: str, phase: str | None = None) -> dict:
    obj = pod(name, {"app": "x"})
    obj["spec"]["nodeName"] = node
    created = await api.create(obj)
    if phase:
        await api.patch(
            "v1", "Pod", name, {"status": {"phase": phase}}, namespace=NS, subresource="status"
        )
    return created


async def exists(api, name: str) -> bool:
    try:
        await api.get("v1", "Pod", name, namespace=NS)
    except NotFound:
        return False
    return True


POKES = itertools.count()


async def poke(api, name: str) -> None:
    """Change a pod so the controller looks at it again (time moved on the test clock)."""
    labels = {"poked": str(next(POKES))}
    with contextlib.suppress(NotFound):
        await api.patch("v1", "Pod", name, {"metadata": {"labels": labels}}, namespace=NS)


@pytest.fixture
async def podgc(cluster):
    clock = Clock()
    controller = PodGCController(terminated_threshold=3)
    manager = ControllerManager(cluster.api, [controller], clock=clock, leader_election=None)
    manager.start()
    await eventually(lambda: len(manager.runners) == 1)
    try:
        yield clock
    finally:
        await manager.stop()


async def test_pods_of_a_missing_node_go_after_the_quarantine(cluster, podgc):
    api = cluster.api
    await make_node(api, "alive")
    await bound_pod(api, "orphan", "ghost")
    await bound_pod(api, "kept", "alive")
    await poke(api, "orphan")
    podgc.advance(QUARANTINE - 5)
    await poke(api, "orphan")
    await eventually(lambda: True)
    assert await exists(api, "orphan")
    podgc.advance(10)
    await poke(api, "orphan")

    async def orphan_gone():
        return not await exists(api, "orphan")

    await eventually(orphan_gone)
    assert await exists(api, "kept")


async def test_deleting_a_node_collects_its_pods(cluster, podgc):
    api = cluster.api
    await make_node(api, "doomed")
    await bound_pod(api, "p1", "doomed")
    await bound_pod(api, "done", "doomed", phase="Succeeded")
    await api.delete("v1", "Node", "doomed")

    async def both_gone():
        # Each round moves the clock past a quarantine and makes the controller look again.
        podgc.advance(QUARANTINE + 1)
        await poke(api, "p1")
        await poke(api, "done")
        return not await exists(api, "p1") and not await exists(api, "done")

    await eventually(both_gone)


async def test_a_node_that_comes_back_within_the_quarantine_keeps_its_pods(cluster, podgc):
    api = cluster.api
    await bound_pod(api, "early", "late-node")
    await poke(api, "early")
    await make_node(api, "late-node")
    podgc.advance(QUARANTINE + 1)
    await poke(api, "early")
    await eventually(lambda: True)
    assert await exists(api, "early")


async def test_terminating_pods_of_an_out_of_service_node_are_deleted(cluster, podgc):
    api = cluster.api
    taint = [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}]
    await make_node(api, "dead", ready="False", taints=taint)
    await make_node(api, "fine")
    await bound_pod(api, "stuck", "dead")
    await bound_pod(api, "waiting", "fine")
    await api.delete("v1", "Pod", "stuck", namespace=NS, grace_period_seconds=30)
    await api.delete("v1", "Pod", "waiting", namespace=NS, grace_period_seconds=30)

    async def stuck_gone():
        return not await exists(api, "stuck")

    await eventually(stuck_gone)
    # A terminating pod on a healthy node waits for its node agent.
    assert (await api.get("v1", "Pod", "waiting", namespace=NS))["metadata"]["deletionTimestamp"]


async def test_terminated_pods_above_the_threshold_go_oldest_first(cluster, podgc):
    api = cluster.api
    await make_node(api, "n")
    for i in range(5):
        await bound_pod(api, f"t{i}", "n", phase="Failed" if i % 2 else "Succeeded")
    await bound_pod(api, "running", "n", phase="Running")

    async def three_left():
        left = [i for i in range(5) if await exists(api, f"t{i}")]
        return left if len(left) == 3 else None

    left = await eventually(three_left)
    assert await exists(api, "running")
    assert len(left) == 3
