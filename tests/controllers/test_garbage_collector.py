"""The garbage collector against an in-process API: Background, Foreground and Orphan
deletion of a ReplicaSet's pods, several owners, dangling references; and the API
server's part (the finalizers a DELETE's propagation policy sets)."""

from __future__ import annotations

import asyncio

import pytest

from kcore.controllers import ControllerManager, owner_reference
from kcore.errors import Invalid, NotFound
from kcore.plugins.controllers.garbagecollector import GarbageCollector, collectable_kinds
from kcore.plugins.controllers.replicaset import ReplicaSetController

from .helpers import eventually, pod, replica_set

NS = "default"
HOLD = "example.com/hold"


@pytest.fixture
async def gc(cluster):
    collector = GarbageCollector()
    manager = ControllerManager(cluster.api, [collector], leader_election=None)
    manager.start()
    await eventually(lambda: "garbage-collector" in manager.runners)
    collector.manager = manager
    try:
        yield collector
    finally:
        await manager.stop()


async def rs_with_pods(api, name: str = "web", count: int = 2, **ref_options):
    """A ReplicaSet (0 replicas: no controller needed) and ``count`` pods it owns."""
    rs = await api.create(replica_set(name, replicas=0))
    ref = owner_reference(rs, **ref_options)
    pods = [
        await api.create(pod(f"{name}-{i}", {"app": name, "i": str(i)}, owner=ref))
        for i in range(count)
    ]
    return rs, pods


async def exists(api, api_version, kind, name, namespace=NS) -> dict | None:
    try:
        return await api.get(api_version, kind, name, namespace)
    except NotFound:
        return None


async def gone(api, api_version, kind, name, namespace=NS) -> bool:
    return await exists(api, api_version, kind, name, namespace) is None


async def pod_names(api) -> list[str]:
    pods, _ = await api.list("v1", "Pod", NS)
    return sorted(p["metadata"]["name"] for p in pods)


def owner_uids(obj: dict) -> list[str]:
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or []]


# -- the API server's part ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "finalizers"),
    [("Foreground", ["foregroundDeletion"]), ("Orphan", ["orphan"])],
)
async def test_delete_with_a_policy_marks_the_owner(cluster, policy, finalizers):
    api = cluster.api
    await api.create(replica_set("web", replicas=0))
    answer = await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy=policy)
    assert answer["metadata"]["finalizers"] == finalizers
    assert answer["metadata"]["deletionTimestamp"]
    assert answer["metadata"]["deletionGracePeriodSeconds"] == 0
    stored = await api.get("apps/v1", "ReplicaSet", "web", NS)
    assert stored["metadata"]["finalizers"] == finalizers
    assert stored["metadata"]["generation"] == 2  # marked for deletion, as upstream


async def test_background_delete_removes_the_owner_at_once(cluster):
    api = cluster.api
    await api.create(replica_set("web", replicas=0))
    answer = await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Background")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert await gone(api, "apps/v1", "ReplicaSet", "web")


async def test_a_second_delete_may_change_the_policy(cluster):
    api = cluster.api
    await api.create(replica_set("web", replicas=0))
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Orphan")
    again = await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Foreground")
    assert again["metadata"]["finalizers"] == ["foregroundDeletion"]
    # Background drops the GC finalizers; nothing else holds it: it goes.
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Background")
    assert await gone(api, "apps/v1", "ReplicaSet", "web")


async def test_a_job_orphans_by_default_unless_told(cluster):
    api = cluster.api
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }
    await api.create(job, namespace=NS)
    answer = await api.delete("batch/v1", "Job", "once", NS)
    assert answer["metadata"]["finalizers"] == ["orphan"]
    await api.create({**job, "metadata": {"name": "twice"}}, namespace=NS)
    await api.delete("batch/v1", "Job", "twice", NS, propagation_policy="Background")
    assert await gone(api, "batch/v1", "Job", "twice")


async def test_orphan_dependents_and_a_policy_together_are_invalid(cluster):
    await cluster.api.create(replica_set("web", replicas=0))
    info = cluster.api.resource("apps/v1", "ReplicaSet")
    with pytest.raises(Invalid, match="cannot be both set"):
        await cluster.objects.delete(
            info, NS, "web", {"orphanDependents": True, "propagationPolicy": "Background"}
        )
    answer, gone_now = await cluster.objects.delete(info, NS, "web", {"orphanDependents": True})
    assert not gone_now and answer["metadata"]["finalizers"] == ["orphan"]


async def test_a_delete_between_a_name_list_and_its_watch_is_seen(cluster, monkeypatch):
    """kubectl delete waits with a list by name and a watch from its revision: when the
    collector completes the deletion between the two reads of that list, the watch must
    still deliver the DELETED."""
    from kcore.apiserver.objects import ListOptions

    api, objects, store = cluster.api, cluster.objects, cluster.store
    await api.create(replica_set("web", replicas=0))
    info = api.resource("apps/v1", "ReplicaSet")
    real_get = store.get

    async def get_then_delete(key, *args, **kwargs):
        kv = await real_get(key, *args, **kwargs)
        monkeypatch.setattr(store, "get", real_get)
        await objects.delete(info, NS, "web")
        return kv

    monkeypatch.setattr(store, "get", get_then_delete)
    options = ListOptions.parse("ReplicaSet", field_selector="metadata.name=web")
    items, revision, _ = await objects.list(info, NS, options)
    assert [i["metadata"]["name"] for i in items] == ["web"]
    watch_options = ListOptions.parse(
        "ReplicaSet", field_selector="metadata.name=web", resource_version=str(revision)
    )
    events = objects.watch(info, NS, watch_options, send_initial=False)
    try:
        first = await asyncio.wait_for(anext(events), 2)
    finally:
        await events.aclose()
    assert first.type == "DELETED"


def test_the_collector_watches_what_can_be_owned():
    kinds = collectable_kinds()
    for kind in [("v1", "Pod"), ("apps/v1", "ReplicaSet"), ("v1", "ConfigMap"), ("v1", "Secret")]:
        assert kind in kinds
    assert ("v1", "Event") not in kinds and ("events.k8s.io/v1", "Event") not in kinds


# -- the collector -------------------------------------------------------------------------


async def test_background_deletion_collects_the_dependents(cluster, gc):
    api = cluster.api
    await rs_with_pods(api)
    await api.create(pod("bystander", {"app": "other"}))
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Background")
    await eventually(async_equals(lambda: pod_names(api), ["bystander"]))


async def test_foreground_deletion_deletes_dependents_before_the_owner(cluster, gc):
    api = cluster.api
    _, pods = await rs_with_pods(api)
    # One pod holds on (a finalizer of its own): the owner must wait for it.
    held = pods[0]["metadata"]["name"]
    await api.patch("v1", "Pod", held, {"metadata": {"finalizers": [HOLD]}}, namespace=NS)
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Foreground")

    async def only_the_held_pod_is_left():
        p = await exists(api, "v1", "Pod", held)
        return (
            p is not None
            and p["metadata"].get("deletionTimestamp")
            and (await pod_names(api) == [held])
        )

    await eventually(only_the_held_pod_is_left)
    await asyncio.sleep(0.2)
    waiting = await api.get("apps/v1", "ReplicaSet", "web", NS)
    assert waiting["metadata"]["finalizers"] == ["foregroundDeletion"]
    await api.patch("v1", "Pod", held, {"metadata": {"finalizers": None}}, namespace=NS)
    await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", "web"))
    assert await pod_names(api) == []


async def test_foreground_owner_does_not_wait_for_non_blocking_dependents(cluster, gc):
    api = cluster.api
    await rs_with_pods(api, block_owner_deletion=False)
    pods = await pod_names(api)
    await api.patch("v1", "Pod", pods[0], {"metadata": {"finalizers": [HOLD]}}, namespace=NS)
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Foreground")
    await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", "web"))
    held = await api.get("v1", "Pod", pods[0], NS)
    assert held["metadata"].get("deletionTimestamp")  # deleted too, just not waited for
    await api.patch("v1", "Pod", pods[0], {"metadata": {"finalizers": None}}, namespace=NS)
    await eventually(async_equals(lambda: pod_names(api), []))


async def test_orphan_deletion_keeps_dependents_without_the_reference(cluster, gc):
    api = cluster.api
    rs, pods = await rs_with_pods(api)
    cm = await api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "also-owned", "ownerReferences": [owner_reference(rs)]},
        },
        namespace=NS,
    )
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Orphan")
    await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", "web"))
    for p in pods:
        kept = await api.get("v1", "Pod", p["metadata"]["name"], NS)
        assert not owner_uids(kept) and not kept["metadata"].get("deletionTimestamp")
    kept_cm = await api.get("v1", "ConfigMap", cm["metadata"]["name"], NS)
    assert not owner_uids(kept_cm)
    await asyncio.sleep(0.2)  # and nobody collects them later
    assert await pod_names(api) == ["web-0", "web-1"]


async def test_a_dependent_with_another_owner_only_loses_the_reference(cluster, gc):
    api = cluster.api
    first = await api.create(replica_set("first", replicas=0))
    second = await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "second"}}, namespace=NS
    )
    refs = [
        owner_reference(first),
        owner_reference(second, controller=False, block_owner_deletion=False),
    ]
    shared = pod("shared", {"app": "x"})
    shared["metadata"]["ownerReferences"] = refs
    await api.create(shared)
    await api.delete("apps/v1", "ReplicaSet", "first", NS)

    async def lost_the_reference():
        p = await exists(api, "v1", "Pod", "shared")
        return p is not None and owner_uids(p) == [second["metadata"]["uid"]]

    await eventually(lost_the_reference)
    await asyncio.sleep(0.2)
    assert (await api.get("v1", "Pod", "shared", NS))["metadata"].get("deletionTimestamp") is None
    await api.delete("v1", "ConfigMap", "second", NS)
    await eventually(lambda: gone(api, "v1", "Pod", "shared"))


async def test_a_foreground_owner_with_a_co_owned_dependent(cluster, gc):
    """A dependent that another owner keeps loses the waiting owner's reference, which
    unblocks it."""
    api = cluster.api
    first = await api.create(replica_set("first", replicas=0))
    keeper = await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keeper"}}, namespace=NS
    )
    shared = pod("shared", {"app": "x"})
    shared["metadata"]["ownerReferences"] = [
        owner_reference(first),
        owner_reference(keeper, controller=False),
    ]
    await api.create(shared)
    await api.delete("apps/v1", "ReplicaSet", "first", NS, propagation_policy="Foreground")
    await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", "first"))
    kept = await api.get("v1", "Pod", "shared", NS)
    assert owner_uids(kept) == [keeper["metadata"]["uid"]]
    assert not kept["metadata"].get("deletionTimestamp")


async def test_a_dependent_created_with_a_dangling_reference_is_collected(cluster, gc):
    api = cluster.api
    ghost = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000001",
        "controller": True,
    }
    await api.create(pod("haunted", {"app": "x"}, owner=ghost))
    # The name exists, but as another object (another uid): still dangling.
    await api.create(replica_set("real", replicas=0))
    await api.create(pod("misled", {"app": "y"}, owner={**ghost, "name": "real"}))
    # An owner of a kind this server does not serve is never taken as gone.
    alien = {**ghost, "apiVersion": "unserved.kcore.test/v1", "kind": "Unserved", "uid": "u-alien"}
    await api.create(pod("alien", {"app": "z"}, owner=alien))
    await eventually(lambda: gone(api, "v1", "Pod", "haunted"))
    await eventually(lambda: gone(api, "v1", "Pod", "misled"))
    await asyncio.sleep(0.2)
    assert await exists(api, "v1", "Pod", "alien") is not None
    assert await exists(api, "apps/v1", "ReplicaSet", "real") is not None


async def test_an_owner_in_another_namespace_is_out_of_reach(cluster, gc):
    """Owner references are namespace-local: a dependent in another namespace than its
    owner is collected (with a Warning), the owner and its real dependents stay."""
    api = cluster.api
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    owner = await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace="other"
    )
    await api.create(pod("local", {"app": "x"}, namespace="other", owner=owner_reference(owner)))
    await api.create(pod("stray", {"app": "x"}, owner=owner_reference(owner)))
    await eventually(lambda: gone(api, "v1", "Pod", "stray"))

    async def warned():
        events, _ = await api.list("v1", "Event", NS)
        return [e for e in events if e.get("reason") == "OwnerRefInvalidNamespace"]

    (event,) = await eventually(warned)
    assert event["involvedObject"]["name"] == "stray"
    await asyncio.sleep(0.2)
    assert await exists(api, "v1", "Pod", "local", "other") is not None
    assert await exists(api, "v1", "ConfigMap", "owner", "other") is not None


async def test_chains_are_collected_in_the_background(cluster, gc):
    """ConfigMap -> ReplicaSet -> pods: deleting the top takes the whole chain."""
    api = cluster.api
    top = await api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "top"}}, namespace=NS
    )
    rs = replica_set("mid", replicas=0)
    rs["metadata"]["ownerReferences"] = [owner_reference(top)]
    rs = await api.create(rs)
    await api.create(pod("leaf", {"app": "leaf"}, owner=owner_reference(rs)))
    await api.delete("v1", "ConfigMap", "top", NS, propagation_policy="Foreground")
    await eventually(lambda: gone(api, "v1", "ConfigMap", "top"))
    assert await gone(api, "apps/v1", "ReplicaSet", "mid")
    assert await gone(api, "v1", "Pod", "leaf")


async def test_foreground_pods_with_grace_keep_the_owner_until_they_are_gone(cluster, gc):
    """Pods on a node are deleted gracefully: the owner waits for the node agent's final
    delete."""
    api = cluster.api
    _, pods = await rs_with_pods(api, count=1)
    name = pods[0]["metadata"]["name"]
    await api.bind(name, "node-1", namespace=NS)
    await api.delete("apps/v1", "ReplicaSet", "web", NS, propagation_policy="Foreground")

    async def terminating():
        p = await exists(api, "v1", "Pod", name)
        return p is not None and p["metadata"].get("deletionTimestamp")

    await eventually(terminating)
    await asyncio.sleep(0.2)
    assert await exists(api, "apps/v1", "ReplicaSet", "web") is not None
    await api.delete("v1", "Pod", name, NS, grace_period_seconds=0)  # the node agent's
    await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", "web"))


async def test_with_the_replica_set_controller(cluster, gc):
    """The real thing: a ReplicaSet of 2 with its controller, deleted each way."""
    api = cluster.api
    manager = ControllerManager(cluster.client(), [ReplicaSetController()], leader_election=None)
    manager.start()
    try:
        for policy in ("Background", "Foreground", "Orphan"):
            name = f"rs-{policy.lower()}"
            await api.create(replica_set(name, replicas=2))

            async def two_pods(name=name):
                pods, _ = await api.list("v1", "Pod", NS, label_selector=f"app={name}")
                return len(pods) == 2 and pods

            pods = await eventually(two_pods, timeout=10)
            await api.delete("apps/v1", "ReplicaSet", name, NS, propagation_policy=policy)
            await eventually(lambda name=name: gone(api, "apps/v1", "ReplicaSet", name))
            left, _ = await api.list("v1", "Pod", NS, label_selector=f"app={name}")
            if policy == "Foreground":
                assert left == []  # gone before their owner
            elif policy == "Orphan":
                assert sorted(p["metadata"]["uid"] for p in left) == sorted(
                    p["metadata"]["uid"] for p in pods
                )
                assert all(not owner_uids(p) for p in left)
            else:

                async def none_left(name=name):
                    items, _ = await api.list("v1", "Pod", NS, label_selector=f"app={name}")
                    return items == []

                await eventually(none_left)
    finally:
        await manager.stop()


async def test_a_converged_cluster_costs_the_collector_nothing(cluster, gc):
    api = cluster.api
    await rs_with_pods(api)
    await asyncio.sleep(0.3)
    runner = gc.manager.runners["garbage-collector"]
    before = runner.stats.writes
    await api.patch(
        "v1", "Pod", "web-0", {"metadata": {"labels": {"touched": "yes"}}}, namespace=NS
    )
    await asyncio.sleep(0.3)
    assert runner.stats.writes == before


def async_equals(fn, expected):
    async def check():
        return await fn() == expected

    return check


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
async def test_deleting_a_deployment(cluster, gc, policy):
    """Deployment -> ReplicaSet -> pods, with their controllers, each propagation policy."""
    from kcore.plugins.controllers.deployment import DeploymentController

    api = cluster.api
    manager = ControllerManager(
        cluster.client(), [DeploymentController(), ReplicaSetController()], leader_election=None
    )
    manager.start()
    try:
        template = replica_set("web", replicas=2)["spec"]
        await api.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": template,
            },
            namespace=NS,
        )

        async def two_pods():
            pods, _ = await api.list("v1", "Pod", NS, label_selector="app=web")
            return len(pods) == 2 and pods

        pods = await eventually(two_pods, timeout=10)
        (rs,) = (await api.list("apps/v1", "ReplicaSet", NS))[0]
        await api.delete("apps/v1", "Deployment", "web", NS, propagation_policy=policy)
        await eventually(lambda: gone(api, "apps/v1", "Deployment", "web"))
        if policy == "Foreground":  # the whole tree went before the Deployment
            assert await gone(api, "apps/v1", "ReplicaSet", rs["metadata"]["name"])
            assert await pod_names(api) == []
        elif policy == "Background":
            await eventually(lambda: gone(api, "apps/v1", "ReplicaSet", rs["metadata"]["name"]))
            await eventually(async_equals(lambda: pod_names(api), []))
        else:
            kept = await api.get("apps/v1", "ReplicaSet", rs["metadata"]["name"], NS)
            assert not owner_uids(kept)
            await asyncio.sleep(0.2)
            left, _ = await api.list("v1", "Pod", NS, label_selector="app=web")
            assert sorted(p["metadata"]["uid"] for p in left) == sorted(
                p["metadata"]["uid"] for p in pods
            )
            assert all(owner_uids(p) == [rs["metadata"]["uid"]] for p in left)
    finally:
        await manager.stop()
