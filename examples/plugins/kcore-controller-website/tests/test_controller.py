"""The Website controller against kcore's API in this process."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Cluster, eventually

from kcore.client import ApiClient
from kcore.errors import Invalid, NotFound
from kcore_website.controller import CONTENT_HASH, WEBSITE, WEBSITE_LABEL, definition

CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def website(name: str = "hello", replicas: int = 2, content: str = "<h1>hi</h1>") -> dict:
    return {
        "apiVersion": WEBSITE[0],
        "kind": WEBSITE[1],
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "content": content},
    }


async def get(api: ApiClient, api_version: str, kind: str, name: str) -> dict | None:
    try:
        return await api.get(api_version, kind, name, namespace="default")
    except NotFound:
        return None


async def children(api: ApiClient, name: str = "hello") -> dict:
    return {
        "configmap": await get(api, "v1", "ConfigMap", f"{name}-content"),
        "deployment": await get(api, "apps/v1", "Deployment", name),
        "service": await get(api, "v1", "Service", name),
    }


async def converged(cluster: Cluster, name: str = "hello") -> dict:
    async def all_there():
        found = await children(cluster.api, name)
        return found if all(found.values()) else None

    return await eventually(all_there)


async def test_the_controller_creates_the_definition_when_it_starts(cluster: Cluster):
    crd = await eventually(lambda: get_crd(cluster.api))
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert crd["spec"]["names"] == definition()["spec"]["names"]
    assert crd["status"]["acceptedNames"]["shortNames"] == ["ws"]


async def get_crd(api: ApiClient) -> dict | None:
    try:
        return await api.get(*CRD, "websites.examples.kcore.io")
    except NotFound:
        return None


async def test_a_website_gets_a_configmap_a_deployment_and_a_service(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    created = await cluster.api.create(website(content="<h1>hello</h1>"))
    found = await converged(cluster)
    for obj in found.values():
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "examples.kcore.io/v1",
            "kind": "Website",
            "name": "hello",
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    assert found["configmap"]["data"] == {"index.html": "<h1>hello</h1>"}
    deploy = found["deployment"]["spec"]
    assert deploy["replicas"] == 2
    assert deploy["selector"] == {"matchLabels": {WEBSITE_LABEL: "hello"}}
    pod = deploy["template"]["spec"]
    assert pod["containers"][0]["command"][:1] == ["httpd"]
    assert pod["volumes"][0]["configMap"]["name"] == "hello-content"
    svc = found["service"]["spec"]
    assert svc["selector"] == {WEBSITE_LABEL: "hello"}
    assert [(p["port"], p["targetPort"]) for p in svc["ports"]] == [(80, 8080)]


async def test_the_status_follows_the_deployment(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(website(replicas=2))
    found = await converged(cluster)

    async def ready_condition():
        obj = await cluster.api.get(*WEBSITE, "hello", namespace="default")
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), None)

    starting = await eventually(ready_condition)
    assert (starting["status"], starting["reason"]) == ("False", "Starting")
    # No Deployment controller runs here: play its part and report two ready replicas.
    deployment = found["deployment"]
    deployment["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    await cluster.api.update_status(deployment)

    async def serving():
        cond = await ready_condition()
        return cond if cond["status"] == "True" else None

    cond = await eventually(serving)
    assert (cond["reason"], cond["message"]) == ("Serving", "2/2 replicas ready")
    obj = await cluster.api.get(*WEBSITE, "hello", namespace="default")
    assert obj["status"]["readyReplicas"] == 2
    assert obj["status"]["selector"] == f"{WEBSITE_LABEL}=hello"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


async def test_a_converged_website_costs_no_writes(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(website())
    await converged(cluster)
    runner = cluster.manager.runners["website-controller"]

    async def settled():
        obj = await cluster.api.get(*WEBSITE, "hello", namespace="default")
        return (obj.get("status") or {}).get("conditions")

    await eventually(settled)
    await asyncio.sleep(0.3)
    writes, reconciles = runner.stats.writes, runner.stats.reconciles
    for _ in range(3):
        cluster.website.enqueue("default/hello")
    await eventually(lambda: runner.stats.reconciles > reconciles)
    await asyncio.sleep(0.2)
    assert runner.stats.writes == writes


async def test_changes_under_it_are_undone(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(website(content="v1"))
    await converged(cluster)
    await cluster.api.patch("v1", "ConfigMap", "hello-content", {"data": {"index.html": "x"}},
                            namespace="default")  # fmt: skip
    await cluster.api.delete("v1", "Service", "hello", namespace="default")

    async def repaired():
        found = await children(cluster.api)
        ok = found["service"] and found["configmap"]["data"] == {"index.html": "v1"}
        return found if ok else None

    await eventually(repaired)


async def test_new_content_reaches_the_configmap_and_rolls_the_pods(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(website(content="one"))
    before = (await converged(cluster))["deployment"]
    await cluster.api.patch(*WEBSITE, "hello", {"spec": {"content": "two", "replicas": 3}},
                            namespace="default")  # fmt: skip

    async def updated():
        found = await children(cluster.api)
        ok = (
            found["configmap"]["data"]["index.html"] == "two"
            and found["deployment"]["spec"]["replicas"] == 3
        )
        return found if ok else None

    after = (await eventually(updated))["deployment"]
    hashes = [
        d["spec"]["template"]["metadata"]["annotations"][CONTENT_HASH] for d in (before, after)
    ]
    assert hashes[0] != hashes[1]


async def test_deleting_a_website_deletes_what_it_owns(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(website())
    await converged(cluster)
    await cluster.api.delete(*WEBSITE, "hello", namespace="default")

    async def all_gone():
        return not any((await children(cluster.api)).values())

    await eventually(all_gone, timeout=20)


async def test_an_object_of_someone_else_is_left_alone(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    await cluster.api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hello-content", "namespace": "default"},
            "data": {"index.html": "mine"},
        }
    )
    await cluster.api.create(website())

    async def failed_event():
        events, _ = await cluster.api.list("v1", "Event", namespace="default")
        return [e for e in events if e.get("reason") == "ReconcileFailed"]

    (event,) = await eventually(failed_event)
    assert "not controlled by this Website" in event["message"]
    cm = await cluster.api.get("v1", "ConfigMap", "hello-content", namespace="default")
    assert cm["data"] == {"index.html": "mine"}
    assert not cm["metadata"].get("ownerReferences")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"content": "x", "replicas": "two"},
            "spec.replicas",
            'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
        ),
        (
            {"content": "x", "replicas": 21},
            "spec.replicas",
            "Invalid value: 21: spec.replicas in body should be less than or equal to 20",
        ),
        ({"replicas": 1}, "spec.content", "Required value"),
    ],
)
async def test_a_bad_website_is_refused_naming_the_field(cluster: Cluster, spec, field, message):
    await eventually(lambda: get_crd(cluster.api))
    body = website()
    body["spec"] = spec
    with pytest.raises(Invalid) as info:
        await cluster.api.create(body)
    assert [(c.field, c.message) for c in info.value.causes] == [(field, message)]
    assert str(info.value).startswith('Website.examples.kcore.io "hello" is invalid: ')


async def test_replicas_default_to_one(cluster: Cluster):
    await eventually(lambda: get_crd(cluster.api))
    body = website()
    del body["spec"]["replicas"]
    created = await cluster.api.create(body)
    assert created["spec"]["replicas"] == 1
