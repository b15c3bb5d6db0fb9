"""The scheduler against an in-process API server with Node objects (no node agents)."""

from __future__ import annotations

import asyncio
from collections import Counter

from kcore.plugins.scheduler import Scheduler

from .helpers import node, pod


async def test_resource_fit_counts_pods_already_bound(cluster):
    await cluster.create(node("a", cpu="1"), node("b", cpu="1"))
    await cluster.create(pod("old", "800m", node_name="a"))
    async with cluster.scheduler():
        await cluster.create(pod("p1", "500m"))
        assert await cluster.node_of("p1") == "b"
        await cluster.create(pod("p2", "400m"))
        assert await cluster.node_of("p2") == "b"  # a has 200m left, b 500m
        await cluster.create(pod("p3", "300m"))
        cond = await cluster.condition("p3")
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == (
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
        "2 No preemption victims found for incoming pod."
    )


async def test_scheduled_event_and_condition(cluster):
    await cluster.create(node("a"))
    async with cluster.scheduler():
        await cluster.create(pod("web"))
        assert await cluster.node_of("web") == "a"

        async def scheduled():
            return await cluster.events("web")

        events = await cluster.wait_for(scheduled)
    assert events == [("Normal", "Scheduled", "Successfully assigned default/web to a")]
    [event] = (await cluster.api.list("v1", "Event", namespace="default"))[0]
    assert event["source"] == {"component": "default-scheduler"}


async def test_node_selector_and_affinity(cluster):
    await cluster.create(
        node("hdd", labels={"disk": "hdd", "cores": "2"}),
        node("ssd", labels={"disk": "ssd", "cores": "16"}),
        node("plain"),
    )
    affinity = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}
                    ]
                }
            }
        }
    }
    preferred = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["plain"]}
                            ]
                        },
                    }
                ]
            }
        }
    }
    async with cluster.scheduler():
        await cluster.create(
            pod("sel", spec={"nodeSelector": {"disk": "ssd"}}),
            pod("aff", spec=affinity),
            pod("pref", spec=preferred),
            pod("none", spec={"nodeSelector": {"disk": "tape"}}),
        )
        assert await cluster.node_of("sel") == "ssd"
        assert await cluster.node_of("aff") == "hdd"
        assert await cluster.node_of("pref") == "plain"
        cond = await cluster.condition("none")
    assert cond["message"].startswith(
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )


async def test_taints_and_tolerations(cluster):
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    await cluster.create(node("gpu", cpu="8", taints=[taint]), node("cpu", cpu="1"))
    tolerant = {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}
    async with cluster.scheduler():
        await cluster.create(pod("plain", "500m"))
        assert await cluster.node_of("plain") == "cpu"
        await cluster.create(pod("big", "2"))
        cond = await cluster.condition("big")
        assert (
            "1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
            in cond["message"]
        )
        await cluster.create(pod("big-tolerant", "2", spec=tolerant))
        assert await cluster.node_of("big-tolerant") == "gpu"


async def test_anti_affinity_on_hostname(cluster):
    await cluster.create(node("a"), node("b"), node("c"))
    anti = {
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": "web"}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    }
    async with cluster.scheduler():
        for i in range(4):
            await cluster.create(pod(f"web-{i}", labels={"app": "web"}, spec=anti))
        placed = [await cluster.node_of(f"web-{i}") for i in range(3)]
        cond = await cluster.condition("web-3")
    assert sorted(placed) == ["a", "b", "c"]
    assert "3 node(s) didn't match pod anti-affinity rules." in cond["message"]


async def test_unschedulable_node_is_never_chosen(cluster):
    await cluster.create(node("cordoned", cpu="64", unschedulable=True), node("open", cpu="1"))
    async with cluster.scheduler():
        for i in range(3):
            await cluster.create(pod(f"p{i}", "100m"))
        assert {await cluster.node_of(f"p{i}") for i in range(3)} == {"open"}
        await cluster.create(pod("huge", "2"))
        cond = await cluster.condition("huge")
    assert "1 Insufficient cpu, 1 node(s) were unschedulable." in cond["message"]


async def test_pods_of_one_controller_spread_over_the_nodes(cluster):
    # Big equal nodes: the resource scores cannot tell them apart, spreading decides.
    await cluster.create(*(node(n, cpu="64", memory="256Gi") for n in ("a", "b", "c")))
    async with cluster.scheduler():
        for i in range(9):
            await cluster.create(pod(f"rs-{i}", owner="rs"))
        placed = Counter([await cluster.node_of(f"rs-{i}") for i in range(9)])
    assert placed == {"a": 3, "b": 3, "c": 3}


async def test_unschedulable_pod_is_scheduled_once_a_node_fits(cluster):
    await cluster.create(node("small", cpu="1"))
    async with cluster.scheduler():
        await cluster.create(pod("big", "2"))
        cond = await cluster.condition("big")
        assert cond["reason"] == "Unschedulable"

        async def warned():
            return [e for e in await cluster.events("big") if e[1] == "FailedScheduling"]

        [(kind, _, message)] = await cluster.wait_for(warned)
        assert kind == "Warning"
        assert message == cond["message"]
        await cluster.create(node("large", cpu="4"))
        assert await cluster.node_of("big") == "large"

        async def scheduled_condition():
            status = (await cluster.pod("big")).get("status") or {}
            return [c for c in status.get("conditions") or () if c["status"] == "True"]

        [condition] = await cluster.wait_for(scheduled_condition)
        assert condition["type"] == "PodScheduled"


async def test_deleting_a_bound_pod_makes_room(cluster):
    await cluster.create(node("a", cpu="1"))
    async with cluster.scheduler():
        await cluster.create(pod("first", "800m"))
        assert await cluster.node_of("first") == "a"
        await cluster.create(pod("second", "800m"))
        await cluster.condition("second")
        await cluster.api.delete("v1", "Pod", "first", namespace="default", grace_period_seconds=0)
        assert await cluster.node_of("second") == "a"


async def test_other_schedulers_pods_and_bound_pods_are_left_alone(cluster):
    await cluster.create(node("a"))
    async with cluster.scheduler() as scheduler:
        await cluster.create(
            pod("theirs", spec={"schedulerName": "my-scheduler"}),
            pod("mine"),
        )
        assert await cluster.node_of("mine") == "a"
        await asyncio.sleep(0.1)
        assert (await cluster.pod("theirs"))["spec"].get("nodeName") is None
        assert "default/theirs" not in scheduler.queue


async def test_a_failed_binding_is_forgotten_and_retried(cluster):
    class FlakyBind:
        """The API, except that the first binding fails."""

        def __init__(self, api):
            self.api = api
            self.failures = 1

        def __getattr__(self, name):
            return getattr(self.api, name)

        async def bind(self, *args, **kwargs):
            if self.failures:
                self.failures -= 1
                raise RuntimeError("connection reset")
            return await self.api.bind(*args, **kwargs)

    await cluster.create(node("a", cpu="1"))
    api = cluster.api
    cluster.api = FlakyBind(api)
    try:
        async with cluster.scheduler() as scheduler:
            await cluster.create(pod("p", "600m"))
            assert await cluster.node_of("p") == "a"
            # The failed attempt's assumption is gone: the node counts the pod once.
            assert scheduler.cache.node("a").requested.cpu == 600
            assert scheduler.metrics.errors == 1
    finally:
        cluster.api = api


async def test_pods_pending_before_the_scheduler_starts(cluster):
    await cluster.create(node("a"), node("b"))
    await cluster.create(*(pod(f"p{i}", "100m") for i in range(20)))
    scheduler = Scheduler(seed=3)
    async with cluster.scheduler(scheduler):
        for i in range(20):
            await cluster.node_of(f"p{i}")
        # Every binding seen through the watch confirmed its assumption: each pod counts once.
        cache = scheduler.cache

        async def confirmed():
            return not any(cache.is_assumed(f"default/p{i}") for i in range(20))

        await cluster.wait_for(confirmed)
        assert cache.pod_count() == 20
        assert sum(len(cache.node(n).pods) for n in ("a", "b")) == 20
        assert cache.node("a").requested.cpu + cache.node("b").requested.cpu == 2000
    assert scheduler.metrics.scheduled == 20
    assert scheduler.metrics.attempts == 20


async def test_topology_spread_constraint_balances_zones(cluster):
    zone = "topology.kubernetes.io/zone"
    # Zone a has two nodes, zone b one: the resource scores would favour zone a.
    await cluster.create(
        node("a1", labels={zone: "a"}),
        node("a2", labels={zone: "a"}),
        node("b1", labels={zone: "b"}),
    )
    constraint = {
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": zone,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }
        ]
    }
    async with cluster.scheduler():
        for i in range(6):
            await cluster.create(pod(f"web-{i}", labels={"app": "web"}, spec=constraint))
            await cluster.node_of(f"web-{i}")
        placed = [await cluster.node_of(f"web-{i}") for i in range(6)]
    zones = Counter(name[0] for name in placed)
    assert zones == {"a": 3, "b": 3}
