"""The ReplicaSet controller against an in-process API (no node agent: pods are objects;
readiness is simulated by patching pod status)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from kcore import Controller
from kcore.controllers import ControllerManager, controller_ref, deletion_order
from kcore.plugins.controllers import kcore_controllers
from kcore.plugins.controllers.replicaset import ReplicaSetController, slow_start_batch
from kcore.settings import Settings

from .helpers import eventually, pod, replica_set

NS = "default"


@pytest.fixture
async def controller(cluster):
    rsc = ReplicaSetController()
    manager = ControllerManager(cluster.api, [rsc], leader_election=None)
    manager.start()
    await eventually(lambda: "replicaset-controller" in manager.runners)
    rsc.manager = manager
    try:
        yield rsc
    finally:
        await manager.stop()


async def owned_pods(api, rs_name: str = "web") -> list[dict]:
    rs = await api.get("apps/v1", "ReplicaSet", rs_name, NS)
    pods, _ = await api.list("v1", "Pod", NS)
    return [
        p
        for p in pods
        if (controller_ref(p) or {}).get("uid") == rs["metadata"]["uid"]
        and not p["metadata"].get("deletionTimestamp")
        and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
    ]


async def wait_replicas(api, count: int, rs_name: str = "web", **status) -> list[dict]:
    async def check():
        pods = await owned_pods(api, rs_name)
        rs = await api.get("apps/v1", "ReplicaSet", rs_name, NS)
        st = rs.get("status") or {}
        want = {"replicas": count, **status}
        if len(pods) == count and all((st.get(k) or 0) == v for k, v in want.items()):
            return (pods,)
        return None

    (pods,) = await eventually(check, timeout=10)
    return pods


async def scale(api, replicas: int, rs_name: str = "web") -> None:
    await api.patch(
        "apps/v1", "ReplicaSet", rs_name, {"spec": {"replicas": replicas}}, namespace=NS
    )


def stamp(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_ready(api, name: str, since: float = 0.0) -> None:
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp(since)}],
    }
    await api.patch("v1", "Pod", name, {"status": status}, namespace=NS, subresource="status")


async def events(api, reason: str) -> list[str]:
    items, _ = await api.list("v1", "Event", NS)
    return sorted(e["message"] for e in items if e["reason"] == reason)


def test_the_plugin_contributes_the_replicaset_controller():
    by_name = {c.name: c for c in kcore_controllers(Settings())}
    rsc = by_name["replicaset-controller"]
    assert isinstance(rsc, ReplicaSetController)
    assert isinstance(rsc, Controller)  # a Reconciler also runs as a plain Controller
    assert rsc.name == "replicaset-controller"


async def test_scale_up_and_down(cluster, controller):
    api = cluster.api
    rs = await api.create(replica_set("web", 3))
    pods = await wait_replicas(api, 3, fullyLabeledReplicas=3, observedGeneration=1)
    for p in pods:
        assert re.fullmatch(r"web-[a-z0-9]{5}", p["metadata"]["name"])
        assert p["metadata"]["labels"] == {"app": "web", "tier": "front"}
        assert p["metadata"]["annotations"] == {"note": "hi"}
        assert p["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web",
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert p["spec"]["containers"][0]["image"] == "busybox"
    created = await eventually(lambda: events(api, "SuccessfulCreate"))
    assert created == sorted(f"Created pod: {p['metadata']['name']}" for p in pods)

    await scale(api, 5)
    await wait_replicas(api, 5, observedGeneration=2)
    await scale(api, 1)
    (left,) = await wait_replicas(api, 1, observedGeneration=3)

    async def four_deletes():
        deleted = await events(api, "SuccessfulDelete")
        return deleted if len(deleted) == 4 else None

    deleted = await eventually(four_deletes)
    assert f"Deleted pod: {left['metadata']['name']}" not in deleted
    await scale(api, 0)
    await wait_replicas(api, 0, observedGeneration=4)


async def test_ready_and_available_replicas_follow_pod_status_and_min_ready_seconds(
    cluster, controller
):
    api = cluster.api
    await api.create(replica_set("web", 2, min_ready_seconds=1))
    pods = await wait_replicas(api, 2)
    for p in pods:
        await make_ready(api, p["metadata"]["name"])
    await wait_replicas(api, 2, readyReplicas=2, availableReplicas=0)
    # Requeued after minReadySeconds: available without any further change.
    await wait_replicas(api, 2, readyReplicas=2, availableReplicas=2)


async def test_scale_down_deletes_not_ready_and_cheaper_pods_first(cluster, controller):
    api = cluster.api
    await api.create(replica_set("web", 3))
    pods = await wait_replicas(api, 3)
    names = [p["metadata"]["name"] for p in pods]
    await make_ready(api, names[0], since=-60)
    await make_ready(api, names[1], since=-60)
    await wait_replicas(api, 3, readyReplicas=2)
    await scale(api, 2)
    remaining = await wait_replicas(api, 2)
    assert sorted(p["metadata"]["name"] for p in remaining) == sorted(names[:2])  # not ready first
    await api.patch(
        "v1",
        "Pod",
        names[1],
        {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-5"}}},
        namespace=NS,
    )
    await asyncio.sleep(0.1)
    await scale(api, 1)
    (last,) = await wait_replicas(api, 1)
    assert last["metadata"]["name"] == names[0]  # the lower deletion cost went first


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching(cluster, controller):
    api = cluster.api
    await api.create(pod("orphan-1", {"app": "web"}))
    await api.create(pod("orphan-2", {"app": "web"}))
    rs = await api.create(replica_set("web", 3))
    pods = await wait_replicas(api, 3)
    names = sorted(p["metadata"]["name"] for p in pods)
    assert names[:2] == ["orphan-1", "orphan-2"]  # adopted, one more created
    assert len(await events(api, "SuccessfulCreate")) == 1

    await api.patch(
        "v1", "Pod", "orphan-1", {"metadata": {"labels": {"app": "other"}}}, namespace=NS
    )

    async def released_pod():
        p = await api.get("v1", "Pod", "orphan-1", NS)
        return None if p["metadata"].get("ownerReferences") else p

    released = await eventually(released_pod)  # released, not deleted
    pods = await wait_replicas(api, 3)
    assert "orphan-1" not in {p["metadata"]["name"] for p in pods}
    assert "deletionTimestamp" not in released["metadata"]
    adopted = await api.get("v1", "Pod", "orphan-2", NS)
    assert controller_ref(adopted)["uid"] == rs["metadata"]["uid"]


async def test_pods_controlled_by_others_are_ignored(cluster, controller):
    api = cluster.api
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "x",
        "uid": "u-x",
        "controller": True,
    }
    theirs = await api.create(pod("theirs", {"app": "web"}, owner=foreign))
    await api.create(replica_set("web", 2))
    await wait_replicas(api, 2)
    await asyncio.sleep(0.2)
    still = await api.get("v1", "Pod", "theirs", NS)
    assert still["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]


async def test_deleted_and_finished_pods_are_replaced(cluster, controller):
    api = cluster.api
    await api.create(replica_set("web", 2))
    pods = await wait_replicas(api, 2)
    gone, failed = (p["metadata"]["name"] for p in pods)
    await api.delete("v1", "Pod", gone, namespace=NS)
    await api.patch(
        "v1", "Pod", failed, {"status": {"phase": "Failed"}}, namespace=NS, subresource="status"
    )
    pods = await wait_replicas(api, 2)
    assert {gone, failed}.isdisjoint(p["metadata"]["name"] for p in pods)


async def test_a_converged_replica_set_gets_no_writes_on_resync(cluster):
    api = cluster.api
    rsc = ReplicaSetController()
    rsc.resync_period = 0.1
    manager = ControllerManager(api, [rsc], leader_election=None)
    manager.start()
    try:
        await api.create(replica_set("web", 3))
        pods = await wait_replicas(api, 3)
        for p in pods:
            await make_ready(api, p["metadata"]["name"], since=-60)
        await wait_replicas(api, 3, readyReplicas=3, availableReplicas=3)
        await asyncio.sleep(0.2)
        runner = manager.runners["replicaset-controller"]
        writes, reconciles = runner.stats.writes, runner.stats.reconciles
        revision = await cluster.store.current_revision()
        await asyncio.sleep(0.6)  # about six resyncs
        assert runner.stats.reconciles >= reconciles + 3
        assert runner.stats.writes == writes
        assert await cluster.store.current_revision() == revision
    finally:
        await manager.stop()


async def test_expectations_prevent_double_creates_while_the_cache_catches_up(cluster, controller):
    api = cluster.api
    runner = controller.manager.runners["replicaset-controller"]
    await api.create(replica_set("web", 20))

    async def hammer():  # reconcile again and again while the creates are in flight
        for _ in range(100):
            runner.queue.add("default/web")
            await asyncio.sleep(0.005)

    await asyncio.gather(hammer(), wait_replicas(api, 20))
    await asyncio.sleep(0.2)
    assert len(await events(api, "SuccessfulCreate")) == 20
    assert await events(api, "SuccessfulDelete") == []


async def test_slow_start_batches_double_and_stop_at_the_first_failure():
    sizes: list[int] = []
    in_batch = 0

    async def ok():
        nonlocal in_batch
        in_batch += 1
        await asyncio.sleep(0)
        sizes.append(in_batch)

    assert await slow_start_batch(10, 1, ok) == (10, None)
    calls = 0

    async def fail_on_fourth():
        nonlocal calls
        calls += 1
        if calls == 4:
            raise RuntimeError("quota")

    successes, error = await slow_start_batch(20, 1, fail_on_fourth)
    assert calls == 7  # batches of 1, 2, 4: the third batch failed, no fourth batch
    assert successes == 6 and isinstance(error, RuntimeError)


def test_deletion_order_follows_kubernetes():
    def p(
        name,
        *,
        node=None,
        phase="Running",
        ready=None,
        cost=None,
        restarts=0,
        created=100,
        uid=None,
    ):
        meta = {"name": name, "uid": uid or name, "creationTimestamp": _iso(created)}
        if cost is not None:
            meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
        status = {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}
        if ready is not None:
            status["conditions"] = [
                {"type": "Ready", "status": "True", "lastTransitionTime": _iso(ready)}
            ]
        return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": status}

    now = 1_000_000.0
    pods = [
        p("ready-long", node="n", ready=now - 10_000),
        p("ready-short", node="n", ready=now - 10),
        p("unscheduled"),
        p("pending", node="n", phase="Pending"),
        p("unknown", node="n", phase="Unknown"),
        p("not-ready", node="n"),
        p("cheap", node="n", ready=now - 10_000, cost=-1),
    ]
    order = [x["metadata"]["name"] for x in deletion_order(pods, now=now)]
    assert order == [
        "unscheduled",
        "pending",
        "unknown",
        "not-ready",
        "cheap",
        "ready-short",
        "ready-long",
    ]

    # Ranks: more related pods on the node go first; then restarts; then newer.
    a, b = p("a", node="n", created=now - 500), p("b", node="n", created=now - 500)
    assert [x["metadata"]["name"] for x in deletion_order([a, b], ranks=[1, 3], now=now)] == [
        "b",
        "a",
    ]
    c, d = p("c", node="n", restarts=5), p("d", node="n", restarts=0)
    assert [x["metadata"]["name"] for x in deletion_order([d, c], now=now)] == ["c", "d"]
    old, new = p("old", node="n", created=now - 100_000), p("new", node="n", created=now - 10)
    assert [x["metadata"]["name"] for x in deletion_order([old, new], now=now)] == ["new", "old"]
    # Same log2 age bucket: by uid.
    x1, x2 = (
        p("x1", node="n", created=now - 1000, uid="b"),
        p("x2", node="n", created=now - 1001, uid="a"),
    )
    assert [x["metadata"]["name"] for x in deletion_order([x1, x2], now=now)] == ["x2", "x1"]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
