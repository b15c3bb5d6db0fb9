"""API semantics over HTTP, in process (store_sqlite in memory)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

PODS = "/api/v1/namespaces/default/pods"
CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def pod(name="p1", labels=None, image="busybox:1.36"):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": "demo"}},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


def deployment(name="web", replicas=1):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]},
            },
        },
    }


async def test_discovery(api):
    status, version = await api.request("GET", "/version")
    assert status == 200 and version["major"] == "1"
    status, apis = await api.request("GET", "/apis")
    names = {g["name"] for g in apis["groups"]}
    assert {"apps", "batch", "coordination.k8s.io"} <= names
    status, core = await api.request("GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"]
    assert by_name["pods"]["namespaced"] is True
    assert "pods/status" in by_name and "pods/log" in by_name
    status, apps = await api.request("GET", "/apis/apps/v1")
    scale = {r["name"]: r for r in apps["resources"]}["deployments/scale"]
    assert scale["group"] == "autoscaling" and scale["kind"] == "Scale"
    async with api.session.get(api.base + "/openapi/v2") as resp:
        assert resp.status == 200
        assert await resp.read() == bytes.fromhex("0a03322e30")
        assert "@" not in resp.headers["Content-Type"]


async def test_unauthenticated_requests_get_401(api):
    async with aiohttp.ClientSession() as anon:
        async with anon.get(api.base + PODS) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["kind"] == "Status" and body["reason"] == "Unauthorized"


async def test_create_sets_system_fields_and_duplicates_conflict(api):
    status, created = await api.request("POST", PODS, pod())
    assert status == 201
    meta = created["metadata"]
    assert isinstance(meta["resourceVersion"], str) and int(meta["resourceVersion"]) > 0
    assert len(meta["uid"]) == 36 and meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert created["spec"]["restartPolicy"] == "Always"
    assert created["status"]["phase"] == "Pending"
    status, err = await api.request("POST", PODS, pod())
    assert status == 409 and err["reason"] == "AlreadyExists"
    assert err["message"] == 'pods "p1" already exists'
    assert err["details"] == {"name": "p1", "kind": "pods"}


async def test_create_without_content_type_is_read_as_json(api):
    status, created = await api.request("POST", PODS, pod("nocontent"), content_type=None)
    assert status == 201, created


async def test_generate_name(api):
    body = pod()
    body["metadata"] = {"generateName": "web-"}
    status, created = await api.request("POST", PODS, body)
    assert status == 201
    name = created["metadata"]["name"]
    assert name.startswith("web-") and len(name) == 9


async def test_bad_input_statuses(api):
    no_image = pod("x")
    del no_image["spec"]["containers"][0]["image"]
    status, err = await api.request("POST", PODS, no_image)
    assert status == 422 and err["reason"] == "Invalid"
    assert {"field": "spec.containers[0].image"}.items() <= err["details"]["causes"][0].items()
    status, err = await api.request("POST", PODS, pod("Bad_Name"))
    assert status == 422 and "metadata.name" in err["message"]
    other_ns = pod("y")
    other_ns["metadata"]["namespace"] = "kube-system"
    status, err = await api.request("POST", PODS, other_ns)
    assert status == 400 and "namespace" in err["message"]
    status, err = await api.request(
        "POST", PODS, raw=b'{"kind": "Pod", ', content_type="application/json"
    )
    assert status == 400 and err["reason"] == "BadRequest"
    status, err = await api.request("POST", "/api/v1/namespaces/nope/pods", pod("z"))
    assert status == 404 and err["message"] == 'namespaces "nope" not found'
    status, err = await api.request("GET", "/api/v1/namespaces/default/widgets")
    assert status == 404 and err["kind"] == "Status"
    status, err = await api.request("GET", PODS + "/p1/frobnicate")
    assert status == 404
    big = pod("big")
    big["metadata"]["annotations"] = {"a": "x" * (4 * 1024 * 1024)}
    status, err = await api.request("POST", PODS, big)
    assert status == 413 and err["reason"] == "RequestEntityTooLarge"
    status, err = await api.request(
        "POST", PODS + "?fieldValidation=Strict", {**pod("s"), "bogus": 1}
    )
    assert status in (400, 422) and "bogus" in err["message"]
    status, _ = await api.request("GET", PODS + "/s")
    assert status == 404, "nothing half-written"


async def test_list_selectors_and_pagination(api):
    for i in range(7):
        await api.request("POST", PODS, pod(f"p{i}", {"app": "a" if i % 2 else "b", "i": str(i)}))
    status, listed = await api.request("GET", PODS)
    assert listed["kind"] == "PodList" and listed["apiVersion"] == "v1"
    assert len(listed["items"]) == 7 and isinstance(listed["metadata"]["resourceVersion"], str)
    status, listed = await api.request("GET", PODS + "?labelSelector=app%3Da")
    assert sorted(p["metadata"]["name"] for p in listed["items"]) == ["p1", "p3", "p5"]
    status, listed = await api.request("GET", PODS + "?labelSelector=i+in+(1,2),app!=a")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p2"]
    status, listed = await api.request("GET", PODS + "?fieldSelector=metadata.name%3Dp4")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["p4"]
    status, err = await api.request("GET", PODS + "?fieldSelector=spec.bogus%3Dx")
    assert status == 400 and "field label not supported" in err["message"]
    status, err = await api.request("GET", PODS + "?labelSelector=a+in+(b")
    assert status == 400
    seen, token = [], None
    while True:
        path = PODS + "?limit=3" + (f"&continue={token}" if token else "")
        status, page = await api.request("GET", path)
        assert status == 200
        seen += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert seen == [f"p{i}" for i in range(7)]
    status, all_ns = await api.request("GET", "/api/v1/pods")
    assert len(all_ns["items"]) == 7


async def test_update_optimistic_concurrency(api):
    _, created = await api.request("POST", CMS, {"metadata": {"name": "c"}, "data": {"k": "1"}})
    stale = created["metadata"]["resourceVersion"]
    created["data"]["k"] = "2"
    status, updated = await api.request("PUT", CMS + "/c", created)
    assert status == 200 and updated["data"]["k"] == "2"
    assert int(updated["metadata"]["resourceVersion"]) > int(stale)
    created["data"]["k"] = "3"
    status, err = await api.request("PUT", CMS + "/c", created)
    assert status == 409 and err["reason"] == "Conflict"
    assert "the object has been modified" in err["message"]
    created["metadata"].pop("resourceVersion")
    status, updated = await api.request("PUT", CMS + "/c", created)
    assert status == 200 and updated["data"]["k"] == "3"
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]


async def test_generation_moves_only_on_spec_changes_and_status_is_separate(api):
    _, dep = await api.request("POST", DEPLOYS, deployment())
    assert dep["metadata"]["generation"] == 1
    status, dep = await api.request(
        "PATCH",
        DEPLOYS + "/web",
        {"metadata": {"labels": {"x": "y"}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and dep["metadata"]["generation"] == 1
    status, dep = await api.request(
        "PATCH",
        DEPLOYS + "/web",
        {"spec": {"replicas": 3}, "status": {"replicas": 9}},
        content_type="application/merge-patch+json",
    )
    assert dep["metadata"]["generation"] == 2 and dep["spec"]["replicas"] == 3
    assert (dep.get("status") or {}).get("replicas") in (None, 0), "main writes ignore status"
    status, dep = await api.request(
        "PATCH",
        DEPLOYS + "/web/status",
        {"status": {"replicas": 2}, "spec": {"replicas": 7}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and dep["status"]["replicas"] == 2
    assert dep["spec"]["replicas"] == 3 and dep["metadata"]["generation"] == 2


async def test_three_patch_types_and_bad_patches(api):
    await api.request("POST", PODS, pod("pp"))
    smp = {
        "metadata": {"annotations": {"a": "1"}},
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "command": ["sleep", "1"]}],
        },
    }
    status, patched = await api.request(
        "PATCH", PODS + "/pp", smp, content_type="application/strategic-merge-patch+json"
    )
    assert status == 422, "pod spec is immutable except images"
    status, _ = await api.request("POST", DEPLOYS, deployment("d2"))
    smp["metadata"] = {"annotations": {"a": "1"}}
    smp = {"metadata": smp["metadata"], "spec": {"template": {"spec": smp["spec"]}}}
    status, patched = await api.request(
        "PATCH", DEPLOYS + "/d2", smp, content_type="application/strategic-merge-patch+json"
    )
    assert status == 200, patched
    [ctr] = patched["spec"]["template"]["spec"]["containers"]
    assert ctr["image"] == "nginx:1.25" and ctr["command"] == ["sleep", "1"]
    assert not any(k.startswith("$") for k in patched["spec"]["template"]["spec"])
    ops = [{"op": "replace", "path": "/metadata/annotations/a", "value": "2"}]
    status, patched = await api.request(
        "PATCH", DEPLOYS + "/d2", ops, content_type="application/json-patch+json"
    )
    assert status == 200 and patched["metadata"]["annotations"]["a"] == "2"
    ops = [{"op": "test", "path": "/metadata/annotations/a", "value": "nope"}]
    status, err = await api.request(
        "PATCH", DEPLOYS + "/d2", ops, content_type="application/json-patch+json"
    )
    assert status == 422
    status, err = await api.request("PATCH", DEPLOYS + "/d2", {}, content_type="text/plain")
    assert status == 415 and err["reason"] == "UnsupportedMediaType"
    status, err = await api.request(
        "PATCH", DEPLOYS + "/nope", {}, content_type="application/merge-patch+json"
    )
    assert status == 404


async def test_server_side_apply_upserts(api):
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa"},
        "data": {"a": "1"},
    }
    path = CMS + "/ssa?fieldManager=kubectl&force=false"
    status, obj = await api.request(
        "PATCH", path, body, content_type="application/apply-patch+yaml"
    )
    assert status in (200, 201) and obj["data"] == {"a": "1"}
    body["data"] = {"a": "2"}
    status, obj = await api.request(
        "PATCH", path, body, content_type="application/apply-patch+yaml"
    )
    assert status == 200 and obj["data"] == {"a": "2"}


async def test_delete_shapes_finalizers_and_preconditions(api):
    _, _created = await api.request("POST", PODS, pod("d"))
    status, body = await api.request("DELETE", PODS + "/d", {"propagationPolicy": "Background"})
    assert status == 200 and body["kind"] == "Pod", "pods return the deleted object"
    status, _ = await api.request("GET", PODS + "/d")
    assert status == 404
    await api.request("POST", CMS, {"metadata": {"name": "f", "finalizers": ["example.com/x"]}})
    status, body = await api.request("DELETE", CMS + "/f", content_type=None)
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    status, _still = await api.request("GET", CMS + "/f")
    assert status == 200
    status, _done = await api.request(
        "PATCH",
        CMS + "/f",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    status, _ = await api.request("GET", CMS + "/f")
    assert status == 404, "the object goes once its finalizers are empty"
    _, _cm = await api.request("POST", CMS, {"metadata": {"name": "g"}})
    status, _err = await api.request("DELETE", CMS + "/g", {"preconditions": {"uid": "wrong"}})
    assert status == 409
    status, body = await api.request("DELETE", CMS + "/g")
    assert status == 200 and body["kind"] == "Status" and body["status"] == "Success"


async def test_dry_run_writes_nothing(api):
    status, obj = await api.request("POST", PODS + "?dryRun=All", pod("dry"))
    assert status == 201 and obj["metadata"]["name"] == "dry"
    status, _ = await api.request("GET", PODS + "/dry")
    assert status == 404


async def test_scale_subresource(api):
    await api.request("POST", DEPLOYS, deployment("s", 1))
    status, scale = await api.request("GET", DEPLOYS + "/s/scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=s"
    status, scale = await api.request(
        "PATCH",
        DEPLOYS + "/s/scale",
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    assert status == 200 and scale["spec"]["replicas"] == 3
    scale["spec"]["replicas"] = 4
    status, scale = await api.request("PUT", DEPLOYS + "/s/scale", scale, content_type=None)
    assert status == 200 and scale["spec"]["replicas"] == 4
    status, dep = await api.request("GET", DEPLOYS + "/s")
    assert dep["spec"]["replicas"] == 4
    scale["metadata"]["resourceVersion"] = "1"
    status, _err = await api.request("PUT", DEPLOYS + "/s/scale", scale)
    assert status == 409
    merge = "application/merge-patch+json"
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 5}}
    status, _err = await api.request("PATCH", DEPLOYS + "/s/scale", stale, content_type=merge)
    assert status == 409  # a resourceVersion the patch sets is a precondition
    status, _ = await api.request(  # a status write in between is no conflict
        "PATCH", DEPLOYS + "/s/status", {"status": {"replicas": 4}}, content_type=merge
    )
    assert status == 200
    status, scale = await api.request(
        "PATCH", DEPLOYS + "/s/scale", {"spec": {"replicas": 5}}, content_type=merge
    )
    assert status == 200 and scale["spec"]["replicas"] == 5


async def read_events(resp, count, timeout=10):
    events = []

    async def go():
        while len(events) < count:
            line = await resp.content.readline()
            if not line:
                break
            events.append(json.loads(line))

    await asyncio.wait_for(go(), timeout)
    return events


async def test_watch_initial_then_live_with_selectors(api):
    await api.request("POST", PODS, pod("w1", {"app": "x"}))
    await api.request("POST", PODS, pod("w2", {"app": "y"}))
    url = api.base + PODS + "?watch=true&labelSelector=app%3Dx"
    async with api.session.get(url) as resp:
        assert resp.status == 200
        [first] = await read_events(resp, 1)
        assert first["type"] == "ADDED" and first["object"]["metadata"]["name"] == "w1"
        await api.request(
            "PATCH",
            PODS + "/w2",
            {"metadata": {"labels": {"app": "x"}}},
            content_type="application/merge-patch+json",
        )
        await api.request(
            "PATCH",
            PODS + "/w1",
            {"metadata": {"labels": {"app": "z"}}},
            content_type="application/merge-patch+json",
        )
        await api.request("DELETE", PODS + "/w2")
        events = await read_events(resp, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"),
        ("DELETED", "w1"),
        ("DELETED", "w2"),
    ]


async def test_watch_from_resource_version_and_410(api):
    _, created = await api.request("POST", CMS, {"metadata": {"name": "a"}, "data": {"v": "1"}})
    rv = created["metadata"]["resourceVersion"]
    await api.request(
        "PATCH", CMS + "/a", {"data": {"v": "2"}}, content_type="application/merge-patch+json"
    )
    async with api.session.get(api.base + CMS + f"?watch=true&resourceVersion={rv}") as resp:
        [ev] = await read_events(resp, 1)
    assert ev["type"] == "MODIFIED" and ev["object"]["data"]["v"] == "2"
    await api.request(
        "PATCH", CMS + "/a", {"data": {"v": "3"}}, content_type="application/merge-patch+json"
    )
    await api.store.compact(await api.store.current_revision())
    async with api.session.get(api.base + CMS + f"?watch=true&resourceVersion={rv}") as resp:
        [ev] = await read_events(resp, 1)
    assert ev["type"] == "ERROR"
    assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    status, _err = await api.request(
        "GET", CMS + f"?resourceVersion={rv}&resourceVersionMatch=Exact"
    )
    assert status == 410


async def test_watch_timeout_seconds_ends_the_stream(api):
    async with api.session.get(
        api.base + CMS + "?watch=true&timeoutSeconds=1&resourceVersion=1"
    ) as resp:
        body = await asyncio.wait_for(resp.read(), 10)
    assert resp.status == 200 and body == b""


async def test_pod_deletion_waits_for_the_node_only_with_a_grace_period(api):
    def pod(name, **spec):
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}], **spec},
        }

    base = "/api/v1/namespaces/default/pods"
    for name, spec, waits in (
        ("default-grace", {}, 30),
        ("short-grace", {"terminationGracePeriodSeconds": 3}, 3),
        ("no-grace", {"terminationGracePeriodSeconds": 0}, None),
    ):
        status, _ = await api.request("POST", base, pod(name, **spec))
        assert status == 201
        status, _ = await api.request("DELETE", f"{base}/{name}")
        assert status == 200
        status, after = await api.request("GET", f"{base}/{name}")
        if waits is None:
            assert status == 404  # nothing to wait for: gone at once
        else:
            assert status == 200
            assert after["metadata"]["deletionGracePeriodSeconds"] == waits
            assert after["metadata"]["deletionTimestamp"]
