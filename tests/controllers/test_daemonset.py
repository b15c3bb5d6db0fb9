"""The DaemonSet controller against an in-process API: Nodes are made by hand, there is no
scheduler or node agent (pods are bound, made ready and finally deleted by the tests)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kcore.controllers import ControllerManager
from kcore.plugins.controllers.daemonset import (
    HASH_LABEL,
    DaemonSetController,
    add_daemon_tolerations,
    node_name_affinity,
    node_should_run,
    scaled_value,
    surge_and_unavailable,
    target_node,
    template_hash,
)

from .helpers import eventually

NS = "default"

DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def node(name: str, labels: dict[str, str] | None = None, taints: list | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints or []},
    }


def daemon_set(
    name: str = "agent",
    *,
    node_selector: dict[str, str] | None = None,
    strategy: dict[str, Any] | None = None,
    image: str = "agent:1",
) -> dict:
    spec: dict[str, Any] = {"containers": [{"name": "a", "image": image}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    ds: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }
    if strategy is not None:
        ds["spec"]["updateStrategy"] = strategy
    return ds


@pytest.fixture
async def controller(cluster):
    dsc = DaemonSetController()
    manager = ControllerManager(cluster.api, [dsc], leader_election=None)
    manager.start()
    await eventually(lambda: "daemonset-controller" in manager.runners)
    dsc.manager = manager
    try:
        yield dsc
    finally:
        await manager.stop()


async def live_pods(api, name: str = "agent") -> list[dict]:
    pods, _ = await api.list("v1", "Pod", NS, label_selector=f"app={name}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def wait_pods_on(api, nodes: set[str], name: str = "agent", **status) -> dict[str, dict]:
    """Wait until the live pods are exactly one per node of ``nodes`` and the status has
    ``status``; the pods by node."""

    async def check():
        pods = await live_pods(api, name)
        by_node = {target_node(p): p for p in pods}
        ds = await api.get("apps/v1", "DaemonSet", name, NS)
        st = ds.get("status") or {}
        if len(pods) == len(nodes) and set(by_node) == nodes:
            if all(st.get(k) == v for k, v in status.items()):
                return by_node
        return None

    return await eventually(check, timeout=10)


async def run_pod(api, pod: dict) -> None:
    """What the scheduler and a kubelet would do: bind to the target node, go Ready."""
    name = pod["metadata"]["name"]
    if not pod["spec"].get("nodeName"):
        await api.bind(name, target_node(pod), namespace=NS)
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": None}],
    }
    await api.patch("v1", "Pod", name, {"status": status}, namespace=NS, subresource="status")


async def finish_deletions(api) -> list[str]:
    """What a kubelet does with pods being deleted: remove them for good."""
    pods, _ = await api.list("v1", "Pod", NS)
    gone = []
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            await api.delete("v1", "Pod", p["metadata"]["name"], NS, grace_period_seconds=0)
            gone.append(p["metadata"]["name"])
    return gone


async def deleting(api) -> list[dict]:
    pods, _ = await api.list("v1", "Pod", NS)
    return [p for p in pods if p["metadata"].get("deletionTimestamp")]


# -- helpers -------------------------------------------------------------------------------


def test_percentages_round_up_for_both_surge_and_unavailable():
    assert scaled_value("10%", 3, default=1) == 1
    assert scaled_value("34%", 3, default=1) == 2
    assert scaled_value(0, 3, default=1) == 0
    assert scaled_value(None, 3, default=1) == 1
    ds = daemon_set(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}})
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 0
    assert surge_and_unavailable(ds, 5) == (2, 0)
    ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] = 0
    assert surge_and_unavailable(ds, 5) == (0, 1)  # never both 0


def test_template_hash_is_stable_and_safe():
    template = daemon_set()["spec"]["template"]
    h = template_hash(template)
    assert h == template_hash(dict(reversed(list(template.items()))))
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", h)
    assert template_hash(template, 1) != h
    assert template_hash({**template, "spec": {"containers": []}}) != h


def test_daemon_tolerations_and_node_affinity():
    spec: dict[str, Any] = {
        "tolerations": [
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 5,
            },
            {"key": "x", "operator": "Exists"},
        ]
    }
    add_daemon_tolerations(spec)
    assert spec["tolerations"][1] == {"key": "x", "operator": "Exists"}
    assert sorted(spec["tolerations"][:1] + spec["tolerations"][2:], key=str) == sorted(
        DAEMON_TOLERATIONS, key=str
    )  # the unreachable one lost its seconds
    spec = {"hostNetwork": True}
    add_daemon_tolerations(spec)
    assert spec["tolerations"][-1]["key"] == "node.kubernetes.io/network-unavailable"

    preferred = [{"weight": 1, "preference": {"matchExpressions": []}}]
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        }
    }
    out = node_name_affinity(affinity, "n1")
    assert out["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]
    }
    assert out["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert target_node({"spec": {"affinity": out}}) == "n1"


def test_which_nodes_run_a_daemon_pod():
    spec: dict[str, Any] = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]},
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["x"]}
                            ]
                        },
                    ]
                }
            }
        }
    }
    add_daemon_tolerations(spec)
    assert node_should_run(spec, node("a", {"gpu": "2"})) == (True, True)
    assert node_should_run(spec, node("x")) == (True, True)
    assert node_should_run(spec, node("b", {"gpu": "1"})) == (False, False)
    no_schedule = [{"key": "k", "effect": "NoSchedule"}]
    assert node_should_run(spec, node("x", taints=no_schedule)) == (False, True)
    no_execute = [{"key": "k", "effect": "NoExecute"}]
    assert node_should_run(spec, node("x", taints=no_execute)) == (False, False)
    unreachable = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    assert node_should_run(spec, node("x", taints=unreachable)) == (True, True)


# -- the controller ------------------------------------------------------------------------


async def test_one_pod_per_eligible_node(cluster, controller):
    api = cluster.api
    for name, labels, taints in [
        ("n1", {"disk": "ssd"}, []),
        ("n2", {"disk": "ssd"}, []),
        ("n3", {"disk": "hdd"}, []),
        ("n4", {"disk": "ssd"}, [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        (
            "n5",
            {"disk": "ssd"},
            [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
        ),
    ]:
        await api.create(node(name, labels, taints))
    ds = await api.create(daemon_set(node_selector={"disk": "ssd"}))
    by_node = await wait_pods_on(
        api,
        {"n1", "n2", "n5"},
        desiredNumberScheduled=3,
        currentNumberScheduled=3,
        numberMisscheduled=0,
        numberReady=0,
        updatedNumberScheduled=3,
        numberAvailable=0,
        numberUnavailable=3,
        observedGeneration=1,
    )
    hash_ = template_hash(ds["spec"]["template"])
    for name, pod in by_node.items():
        assert re.fullmatch(r"agent-[a-z0-9]{5}", pod["metadata"]["name"])
        assert pod["metadata"]["labels"] == {
            "app": "agent",
            HASH_LABEL: hash_,
            "pod-template-generation": "1",
        }
        assert pod["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
        assert not pod["spec"].get("nodeName")  # the scheduler binds it
        assert pod["spec"]["affinity"] == node_name_affinity(None, name)
        assert sorted(pod["spec"]["tolerations"], key=str) == sorted(DAEMON_TOLERATIONS, key=str)

    for pod in by_node.values():
        await run_pod(api, pod)
    await wait_pods_on(api, {"n1", "n2", "n5"}, numberReady=3, numberAvailable=3)

    # A new eligible node gets a pod; a node that stops matching loses its pod.
    await api.create(node("n6", {"disk": "ssd"}))
    await api.patch("v1", "Node", "n2", {"metadata": {"labels": {"disk": "hdd"}}})
    await wait_pods_on(api, {"n1", "n5", "n6"}, desiredNumberScheduled=3, numberReady=2)
    assert (await deleting(api))[0]["spec"]["nodeName"] == "n2"
    await finish_deletions(api)

    # A NoSchedule taint keeps the pod (misscheduled); a NoExecute taint evicts it.
    taint = {"key": "maintenance", "effect": "NoSchedule"}
    await api.patch("v1", "Node", "n1", {"spec": {"taints": [taint]}})
    await wait_pods_on(api, {"n1", "n5", "n6"}, desiredNumberScheduled=2, numberMisscheduled=1)
    taint["effect"] = "NoExecute"
    await api.patch("v1", "Node", "n1", {"spec": {"taints": [taint]}})
    await wait_pods_on(api, {"n5", "n6"})
    assert (await finish_deletions(api)) == [by_node["n1"]["metadata"]["name"]]
    await wait_pods_on(api, {"n5", "n6"}, desiredNumberScheduled=2, numberMisscheduled=0)


async def test_rolling_update_replaces_one_node_at_a_time(cluster, controller):
    api = cluster.api
    nodes = {"n1", "n2", "n3"}
    for name in sorted(nodes):
        await api.create(node(name))
    await api.create(daemon_set())
    for pod in (await wait_pods_on(api, nodes)).values():
        await run_pod(api, pod)
    await wait_pods_on(api, nodes, numberAvailable=3)

    await api.patch(
        "apps/v1",
        "DaemonSet",
        "agent",
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "agent:2"}]}}}},
        namespace=NS,
    )
    ds = await api.get("apps/v1", "DaemonSet", "agent", NS)
    new_hash = template_hash(ds["spec"]["template"])
    replaced: list[str] = []
    for _ in range(3):
        (victim,) = await eventually(lambda: deleting(api))  # one old pod at a time
        assert victim["metadata"]["labels"][HASH_LABEL] != new_hash
        replaced.append(victim["spec"]["nodeName"])
        await finish_deletions(api)

        async def replacement(node_name=victim["spec"]["nodeName"]):
            for p in await live_pods(api):
                if target_node(p) == node_name and p["metadata"]["labels"][HASH_LABEL] == new_hash:
                    return p
            return None

        new = await eventually(replacement)
        assert await deleting(api) == []  # nothing else goes while a node is unavailable
        await run_pod(api, new)
    assert sorted(replaced) == sorted(nodes)
    await wait_pods_on(
        api, nodes, updatedNumberScheduled=3, numberAvailable=3, observedGeneration=2
    )


async def test_rolling_update_with_surge_starts_the_new_pod_first(cluster, controller):
    api = cluster.api
    await api.create(node("n1"))
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    await api.create(daemon_set(strategy=strategy))
    (old,) = (await wait_pods_on(api, {"n1"})).values()
    await run_pod(api, old)
    await wait_pods_on(api, {"n1"}, numberAvailable=1)
    await api.patch(
        "apps/v1",
        "DaemonSet",
        "agent",
        {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}},
        namespace=NS,
    )

    async def two_pods():
        pods = await live_pods(api)
        return pods if len(pods) == 2 else None

    pods = await eventually(two_pods)
    (new,) = [p for p in pods if p["metadata"]["name"] != old["metadata"]["name"]]
    assert new["metadata"]["annotations"] == {"v": "2"}
    assert await deleting(api) == []  # the old one stays until the new one is available
    await run_pod(api, new)
    (victim,) = await eventually(lambda: deleting(api))
    assert victim["metadata"]["name"] == old["metadata"]["name"]


async def test_on_delete_replaces_only_deleted_pods(cluster, controller):
    api = cluster.api
    for name in ("n1", "n2"):
        await api.create(node(name))
    await api.create(daemon_set(strategy={"type": "OnDelete"}))
    pods = await wait_pods_on(api, {"n1", "n2"}, updatedNumberScheduled=2)
    await api.patch(
        "apps/v1",
        "DaemonSet",
        "agent",
        {"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}},
        namespace=NS,
    )
    await wait_pods_on(api, {"n1", "n2"}, updatedNumberScheduled=0, observedGeneration=2)
    assert await deleting(api) == []
    await api.delete("v1", "Pod", pods["n1"]["metadata"]["name"], NS)
    after = await wait_pods_on(api, {"n1", "n2"}, updatedNumberScheduled=1)
    assert after["n1"]["metadata"]["annotations"] == {"v": "2"}
    assert after["n2"]["metadata"]["name"] == pods["n2"]["metadata"]["name"]


async def test_failed_pods_and_pods_for_gone_nodes_are_deleted(cluster, controller):
    api = cluster.api
    for name in ("n1", "n2"):
        await api.create(node(name))
    await api.create(daemon_set())
    pods = await wait_pods_on(api, {"n1", "n2"})
    await api.patch(
        "v1",
        "Pod",
        pods["n1"]["metadata"]["name"],
        {"status": {"phase": "Failed"}},
        namespace=NS,
        subresource="status",
    )

    async def replaced():
        after = await wait_pods_on(api, {"n1", "n2"})
        return after["n1"]["metadata"]["name"] != pods["n1"]["metadata"]["name"]

    await eventually(replaced)
    events, _ = await api.list("v1", "Event", NS)
    assert any(e["reason"] == "FailedDaemonPod" for e in events)

    await api.delete("v1", "Node", "n2")  # its pod was never scheduled: it goes too
    await wait_pods_on(api, {"n1"}, desiredNumberScheduled=1, currentNumberScheduled=1)


async def test_adopts_orphans_and_a_converged_daemon_set_costs_no_writes(cluster, controller):
    api = cluster.api
    await api.create(node("n1"))
    orphan = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": NS, "labels": {"app": "agent"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "agent:0"}]},
    }
    await api.create(orphan)
    ds = await api.create(daemon_set())

    # Adopted, not duplicated; as an old pod (no hash) the rolling update replaces it.
    (adopted,) = await eventually(lambda: deleting(api))
    assert adopted["metadata"]["name"] == "orphan"
    assert adopted["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
    assert await live_pods(api) == []
    await finish_deletions(api)
    new = (await wait_pods_on(api, {"n1"}, updatedNumberScheduled=1))["n1"]
    await run_pod(api, new)
    await wait_pods_on(api, {"n1"}, numberAvailable=1)

    runner = controller.manager.runners["daemonset-controller"]
    await eventually(lambda: len(runner.queue) == 0 and not runner.queue.processing())
    writes, reconciles = runner.stats.writes, runner.stats.reconciles
    controller.enqueue(f"{NS}/agent")
    await eventually(lambda: runner.stats.reconciles > reconciles)
    assert runner.stats.writes == writes


async def revisions(api) -> dict[int, dict]:
    items, _ = await api.list("apps/v1", "ControllerRevision", namespace=NS)
    return {r["revision"]: r for r in items}


def image_of(revision: dict) -> str:
    return revision["data"]["spec"]["template"]["spec"]["containers"][0]["image"]


async def set_image(api, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": image}]}}}}
    await api.patch("apps/v1", "DaemonSet", "agent", patch, namespace=NS)


async def test_each_template_gets_a_controller_revision(cluster, controller):
    api = cluster.api
    await api.create(node("n1"))
    ds = await api.create(daemon_set())
    first = await eventually(lambda: revisions(api))
    (rev1,) = first.values()
    assert rev1["revision"] == 1
    assert rev1["metadata"]["name"] == f"agent-{template_hash(ds['spec']['template'])}"
    assert rev1["metadata"]["labels"] == {
        "app": "agent",
        HASH_LABEL: template_hash(ds["spec"]["template"]),
    }
    assert rev1["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
    assert rev1["data"]["spec"]["template"]["$patch"] == "replace"

    await set_image(api, "agent:2")
    second = await eventually(lambda: _with(api, 2))
    assert image_of(second[2]) == "agent:2" and image_of(second[1]) == "agent:1"

    # Back to the first template (what an undo does): its revision moves to the top.
    await api.patch("apps/v1", "DaemonSet", "agent", rev1["data"], namespace=NS)
    third = await eventually(lambda: _with(api, 3))
    assert set(third) == {2, 3}
    assert third[3]["metadata"]["name"] == rev1["metadata"]["name"]
    assert image_of(third[3]) == "agent:1"


async def _with(api, revision: int) -> dict[int, dict] | None:
    found = await revisions(api)
    return found if revision in found else None


async def test_history_beyond_the_limit_goes_oldest_first(cluster, controller):
    api = cluster.api
    ds = daemon_set()
    ds["spec"]["revisionHistoryLimit"] = 2
    await api.create(ds)  # no nodes: no pods pin any revision
    for i in range(2, 7):
        await set_image(api, f"agent:{i}")
        await eventually(lambda i=i: _with(api, i))

    async def trimmed():
        found = await revisions(api)
        return found if set(found) == {4, 5, 6} else None

    found = await eventually(trimmed)
    assert image_of(found[6]) == "agent:6"
