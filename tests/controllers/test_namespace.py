"""Namespace lifecycle against an in-process API: the API server's part (the
``kubernetes`` finalizer, Terminating, refused creates, protected system namespaces,
``/finalize``) and the namespace controller emptying and removing a deleted namespace."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer

from kcore.apiserver.server import APIServer
from kcore.client import ApiClient
from kcore.client.http import HttpTransport
from kcore.controllers import ControllerManager, owner_reference
from kcore.errors import Forbidden, NotFound
from kcore.plugins.controllers.garbagecollector import GarbageCollector
from kcore.plugins.controllers.namespace import NamespaceController
from kcore.plugins.controllers.replicaset import ReplicaSetController

from .helpers import eventually, pod, replica_set

NS = "shop"
HOLD = "example.com/hold"


def namespace(name: str = NS) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config_map(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


@pytest.fixture
async def controllers(cluster):
    manager = ControllerManager(
        cluster.api,
        [NamespaceController(), GarbageCollector(), ReplicaSetController()],
        leader_election=None,
    )
    manager.start()
    await eventually(lambda: "namespace-controller" in manager.runners)
    try:
        yield manager
    finally:
        await manager.stop()


async def gone(api, api_version, kind, name, namespace=None) -> bool:
    try:
        await api.get(api_version, kind, name, namespace)
    except NotFound:
        return True
    return False


async def finalize(api, ns: dict, finalizers: list[str]) -> dict:
    body = {**ns, "spec": {"finalizers": finalizers}}
    info = api.resource("v1", "Namespace")
    return await api.transport.update(
        info, None, ns["metadata"]["name"], body, subresource="finalize", dry_run=False
    )


# -- the API server's part ------------------------------------------------------------------


async def test_a_new_namespace_is_active_with_the_kubernetes_finalizer(cluster):
    created = await cluster.api.create(namespace())
    assert created["spec"]["finalizers"] == ["kubernetes"]
    assert created["status"]["phase"] == "Active"
    mine = await cluster.api.create(
        {**namespace("other"), "spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "x"}}
    )
    assert mine["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
    assert mine["status"]["phase"] == "Active"


async def test_only_finalize_changes_the_namespace_finalizers(cluster):
    api = cluster.api
    ns = await api.create(namespace())
    updated = await api.update({**ns, "spec": {"finalizers": []}})
    assert updated["spec"]["finalizers"] == ["kubernetes"]
    patched = await api.patch("v1", "Namespace", NS, {"spec": {"finalizers": None}})
    assert patched["spec"]["finalizers"] == ["kubernetes"]
    finalized = await finalize(api, patched, [])
    assert finalized["spec"].get("finalizers", []) == []
    assert not finalized["metadata"].get("deletionTimestamp")  # not deleted: not deleting


async def test_deleting_a_namespace_makes_it_terminating(cluster):
    api = cluster.api
    await api.create(namespace())
    await api.create(config_map("cm"), namespace=NS)
    answer = await api.delete("v1", "Namespace", NS)
    assert answer["kind"] == "Namespace"
    assert answer["status"]["phase"] == "Terminating"
    assert answer["metadata"]["deletionTimestamp"]
    stored = await api.get("v1", "Namespace", NS)
    assert stored["status"]["phase"] == "Terminating"
    assert stored["spec"]["finalizers"] == ["kubernetes"]
    again = await api.delete("v1", "Namespace", NS)  # a second delete changes nothing
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    # Without the controller, the content stays.
    assert (await api.get("v1", "ConfigMap", "cm", NS))["data"] == {"k": "v"}


async def test_creates_in_a_terminating_namespace_are_forbidden(cluster):
    api = cluster.api
    await api.create(namespace())
    await api.create(config_map("before"), namespace=NS)
    await api.delete("v1", "Namespace", NS)
    with pytest.raises(Forbidden) as err:
        await api.create(config_map("after"), namespace=NS)
    assert str(err.value) == (
        'configmaps "after" is forbidden: unable to create new content in namespace shop '
        "because it is being terminated"
    )
    cause = err.value.causes[0]
    assert (cause.reason, cause.field) == ("NamespaceTerminating", "metadata.namespace")
    assert cause.message == "namespace shop is being terminated"
    # What is there may still change (controllers finish their work).
    await api.patch("v1", "ConfigMap", "before", {"data": {"k": "w"}}, namespace=NS)


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public", "kube-node-lease"])
async def test_system_namespaces_cannot_be_deleted(cluster, name):
    with pytest.raises(Forbidden, match=f'namespaces "{name}" is forbidden: this namespace may'):
        await cluster.api.delete("v1", "Namespace", name)
    assert (await cluster.api.get("v1", "Namespace", name))["status"]["phase"] == "Active"


async def test_the_first_delete_of_a_finalized_namespace_still_terminates_it(cluster):
    api = cluster.api
    ns = await api.create(namespace())
    await finalize(api, ns, [])
    first = await api.delete("v1", "Namespace", NS)
    assert first["status"]["phase"] == "Terminating"
    await api.delete("v1", "Namespace", NS)  # the controller's, once the namespace is empty
    assert await gone(api, "v1", "Namespace", NS)


async def test_finalizing_a_terminating_namespace_removes_it(cluster):
    api = cluster.api
    await api.create(namespace())
    ns = await api.delete("v1", "Namespace", NS)
    await finalize(api, ns, [])
    assert await gone(api, "v1", "Namespace", NS)


async def test_finalize_over_http(cluster):
    """``PUT /api/v1/namespaces/<name>/finalize`` is routed; other verbs are not."""
    server = TestServer(APIServer(cluster.objects).app())
    await server.start_server()
    client = ApiClient(HttpTransport(str(server.make_url("")).rstrip("/")))
    try:
        await client.create(namespace())
        ns = await client.delete("v1", "Namespace", NS)
        assert ns["status"]["phase"] == "Terminating"
        session = client.transport._session_for_loop()
        async with session.post(
            server.make_url(f"/api/v1/namespaces/{NS}/configmaps"), json=config_map("late")
        ) as resp:
            status = await resp.json()
        assert resp.status == 403 and status["reason"] == "Forbidden"
        assert status["details"]["causes"] == [
            {
                "reason": "NamespaceTerminating",
                "message": f"namespace {NS} is being terminated",
                "field": "metadata.namespace",
            }
        ]
        assert status["details"]["name"] == "late" and status["details"]["kind"] == "configmaps"
        async with session.get(server.make_url(f"/api/v1/namespaces/{NS}/finalize")) as resp:
            assert resp.status == 405
        async with session.put(
            server.make_url("/api/v1/namespaces/nope/finalize"), json=namespace("nope")
        ) as resp:
            assert resp.status == 404
        await finalize(client, ns, [])
        assert await gone(client, "v1", "Namespace", NS)
    finally:
        await client.close()
        await server.close()


# -- the namespace controller ---------------------------------------------------------------


async def test_deleting_a_namespace_deletes_everything_in_it(cluster, controllers):
    api = cluster.api
    await api.create(namespace())
    await api.create(config_map("cm"), namespace=NS)
    await api.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"a": "b"}},
        namespace=NS,
    )
    await api.create(replica_set("web", replicas=2, namespace=NS))

    async def two_pods():
        pods, _ = await api.list("v1", "Pod", NS)
        return len(pods) == 2

    await eventually(two_pods, timeout=10)
    await api.create(pod("loner", {"app": "x"}, namespace=NS))
    await api.create(config_map("elsewhere"), namespace="default")
    await api.delete("v1", "Namespace", NS)
    await eventually(lambda: gone(api, "v1", "Namespace", NS), timeout=10)
    for api_version, kind in [
        ("v1", "Pod"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("apps/v1", "ReplicaSet"),
    ]:
        items, _ = await api.list(api_version, kind, NS)
        assert items == [], kind
    assert await api.get("v1", "ConfigMap", "elsewhere", "default")


async def test_content_with_finalizers_holds_the_namespace(cluster, controllers):
    api = cluster.api
    await api.create(namespace())
    held = config_map("held")
    held["metadata"]["finalizers"] = [HOLD]
    await api.create(held, namespace=NS)
    await api.create(config_map("free"), namespace=NS)
    await api.delete("v1", "Namespace", NS)

    async def conditions():
        ns = await api.get("v1", "Namespace", NS)
        by_type = {c["type"]: c for c in ns["status"].get("conditions") or []}
        remaining = by_type.get("NamespaceFinalizersRemaining") or {}
        return remaining.get("status") == "True" and by_type

    by_type = await eventually(conditions)
    assert by_type["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: "
        "example.com/hold in 1 resource instances"
    )
    assert by_type["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances"
    )
    assert by_type["NamespaceDeletionContentFailure"]["status"] == "False"
    assert await gone(api, "v1", "ConfigMap", "free", NS)
    await asyncio.sleep(0.3)
    assert not await gone(api, "v1", "Namespace", NS)
    await api.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, namespace=NS)
    await eventually(lambda: gone(api, "v1", "Namespace", NS), timeout=10)


async def test_pods_on_a_node_are_deleted_gracefully(cluster, controllers):
    api = cluster.api
    await api.create(namespace())
    await api.create(pod("bound", {"app": "x"}, namespace=NS))
    await api.bind("bound", "node-1", namespace=NS)
    await api.delete("v1", "Namespace", NS)

    async def terminating():
        p = await api.get("v1", "Pod", "bound", NS)
        return p["metadata"].get("deletionTimestamp") and p

    p = await eventually(terminating)
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30
    assert not await gone(api, "v1", "Namespace", NS)
    await api.delete("v1", "Pod", "bound", NS, grace_period_seconds=0)  # the node agent's
    await eventually(lambda: gone(api, "v1", "Namespace", NS), timeout=10)


async def test_a_recreated_namespace_starts_empty(cluster, controllers):
    api = cluster.api
    await api.create(namespace())
    await api.create(config_map("old"), namespace=NS)
    owner = await api.create(config_map("owner"), namespace=NS)
    dependent = config_map("dependent")
    dependent["metadata"]["ownerReferences"] = [owner_reference(owner)]
    await api.create(dependent, namespace=NS)
    await api.delete("v1", "Namespace", NS)
    await eventually(lambda: gone(api, "v1", "Namespace", NS), timeout=10)
    await api.create(namespace())
    await api.create(config_map("new"), namespace=NS)
    items, _ = await api.list("v1", "ConfigMap", NS)
    assert [i["metadata"]["name"] for i in items] == ["new"]


async def test_a_namespace_without_the_finalizer_is_still_emptied(cluster, controllers):
    """One made before namespaces had the finalizer (here: finalized beforehand)."""
    api = cluster.api
    ns = await api.create(namespace())
    await finalize(api, ns, [])
    await api.create(config_map("cm"), namespace=NS)
    await api.delete("v1", "Namespace", NS)
    await eventually(lambda: gone(api, "v1", "Namespace", NS), timeout=10)
    assert await gone(api, "v1", "ConfigMap", "cm", NS)
