"""The API client, run over both transports (the ``api`` fixture): same calls, same
answers, same errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest
from aiohttp.test_utils import TestServer

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.client import (
    ApiClient,
    ConnectionFailed,
    HttpTransport,
    InProcessTransport,
    load_kubeconfig,
)
from kcore.daemon import bootstrap
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
)
from kcore.plugins.store_sqlite.backend import SqliteStore


def configmap(name, data=None, labels=None, namespace=None):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def pod(name, labels=None, containers=None):
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": containers or [{"name": "c", "image": "busybox"}]},
    }


def deployment(name, replicas=1):
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
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }


async def collect(events, count, timeout=5.0):
    out = []

    async def run():
        async for event in events:
            out.append(event)
            if len(out) == count:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    finally:
        await events.aclose()
    return out


# -- CRUD -------------------------------------------------------------------------------------


async def test_create_get_update_delete(api):
    c = api.client
    created = await c.create(configmap("cm", {"a": "1"}))
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert meta["uid"] and meta["creationTimestamp"]
    assert isinstance(meta["resourceVersion"], str)

    got = await c.get("v1", "ConfigMap", "cm", "default")
    assert got == created

    got["data"]["b"] = "2"
    updated = await c.update(got)
    assert updated["data"] == {"a": "1", "b": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert (await c.get("v1", "ConfigMap", "cm"))["data"] == {"a": "1", "b": "2"}

    answer = await c.delete("v1", "ConfigMap", "cm")
    assert answer["kind"] == "Status" and answer["status"] == "Success"
    assert answer["details"]["uid"] == meta["uid"]
    with pytest.raises(NotFound):
        await c.get("v1", "ConfigMap", "cm")


async def test_namespaces_and_cluster_scoped(api):
    c = api.client
    await c.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    await c.create(configmap("x", namespace="team"))
    await c.create(configmap("x"), namespace="kube-system")
    await c.create(configmap("x"))

    assert (await c.get("v1", "ConfigMap", "x", "team"))["metadata"]["namespace"] == "team"
    with pytest.raises(NotFound):
        await c.get("v1", "ConfigMap", "x", "kube-public")

    everywhere, _ = await c.list("v1", "ConfigMap")
    assert sorted(o["metadata"]["namespace"] for o in everywhere) == [
        "default",
        "kube-system",
        "team",
    ]
    in_team, _ = await c.list("v1", "ConfigMap", "team")
    assert [o["metadata"]["name"] for o in in_team] == ["x"]

    namespaces, _ = await c.list("v1", "Namespace")
    names = {o["metadata"]["name"] for o in namespaces}
    assert {"default", "kube-system", "team"} <= names
    ns = await c.get("v1", "Namespace", "team", namespace="ignored-for-cluster-scope")
    assert "namespace" not in ns["metadata"]


async def test_delete_answers(api):
    c = api.client
    created = await c.create(pod("p"))
    gone = await c.delete("v1", "Pod", "p")
    assert gone["kind"] == "Pod" and gone["metadata"]["uid"] == created["metadata"]["uid"]

    await c.create(deployment("web"))
    waiting = await c.delete("apps/v1", "Deployment", "web", propagation_policy="Foreground")
    assert waiting["kind"] == "Deployment"
    assert waiting["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    still = await c.get("apps/v1", "Deployment", "web")
    assert still["metadata"]["deletionTimestamp"]

    with pytest.raises(NotFound):
        await c.delete("v1", "ConfigMap", "nope")

    cm = await c.create(configmap("guarded"))
    with pytest.raises(Conflict):
        await c.delete("v1", "ConfigMap", "guarded", preconditions={"uid": "other"})
    await c.delete("v1", "ConfigMap", "guarded", preconditions={"uid": cm["metadata"]["uid"]})


async def test_dry_run_changes_nothing(api):
    c = api.client
    obj = await c.create(configmap("dry"), dry_run=True)
    assert obj["metadata"]["name"] == "dry"
    with pytest.raises(NotFound):
        await c.get("v1", "ConfigMap", "dry")
    await c.create(configmap("wet", {"a": "1"}))
    await c.patch("v1", "ConfigMap", "wet", {"data": {"a": "2"}}, dry_run=True)
    assert (await c.get("v1", "ConfigMap", "wet"))["data"] == {"a": "1"}


async def test_generate_name(api):
    obj = await api.client.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}
    )
    name = obj["metadata"]["name"]
    assert name.startswith("gen-") and len(name) == len("gen-") + 5


# -- conflicts and errors ---------------------------------------------------------------------


async def test_stale_update_is_a_conflict(api):
    c = api.client
    first = await c.create(configmap("cm", {"v": "1"}))
    second = dict(first, data={"v": "2"})
    await c.update(second)
    stale = dict(first, data={"v": "3"})
    with pytest.raises(Conflict) as info:
        await c.update(stale)
    assert info.value.code == 409 and info.value.reason == "Conflict"
    assert 'configmaps "cm"' in str(info.value)
    assert info.value.details["name"] == "cm"

    unconditional = dict(first, data={"v": "4"})
    unconditional["metadata"] = {
        k: v for k, v in first["metadata"].items() if k != "resourceVersion"
    }
    assert (await c.update(unconditional))["data"] == {"v": "4"}


async def test_error_categories(api):
    c = api.client
    with pytest.raises(NotFound) as nf:
        await c.get("v1", "ConfigMap", "missing")
    assert str(nf.value) == 'configmaps "missing" not found'
    assert nf.value.code == 404
    assert nf.value.details == {"name": "missing", "kind": "configmaps"}

    with pytest.raises(NotFound) as nf:
        await c.get("apps/v1", "Deployment", "missing")
    assert str(nf.value) == 'deployments.apps "missing" not found'
    assert nf.value.details["group"] == "apps"

    await c.create(configmap("dup"))
    with pytest.raises(AlreadyExists) as ae:
        await c.create(configmap("dup"))
    assert ae.value.code == 409 and ae.value.reason == "AlreadyExists"
    assert str(ae.value) == 'configmaps "dup" already exists'

    with pytest.raises(Invalid) as inv:
        await c.create(pod("bad", containers=[{"name": "c"}]))
    assert inv.value.code == 422
    fields = {cause.field for cause in inv.value.causes}
    assert "spec.containers[0].image" in fields
    assert all(cause.message for cause in inv.value.causes)

    with pytest.raises(BadRequest):
        await c.create(configmap("wrong-ns", namespace="kube-system"), namespace="default")
    with pytest.raises(BadRequest):
        await c.list("v1", "ConfigMap", field_selector="data.a=1")
    with pytest.raises(BadRequest):
        await c.list("v1", "ConfigMap", label_selector="a in (")
    with pytest.raises(NotFound):
        await c.create(configmap("x", namespace="no-such-namespace"))
    with pytest.raises(NotFound):
        await c.get("v1", "Gizmo", "x")


def category(exc):
    """The kcore.errors class that ``exc`` is an instance of (its category)."""
    return next(c for c in type(exc).__mro__ if c.__module__ == "kcore.errors")


async def test_both_transports_raise_identical_errors():
    """The same failing calls through both transports at one store: same error category,
    reason, code, message, details and causes."""
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = TestServer(APIServer(objects, token="t").app())
    await server.start_server()
    local = ApiClient(InProcessTransport(objects))
    remote = ApiClient(HttpTransport(str(server.make_url("")), token="t"))
    try:
        await local.create(configmap("there", {"a": "1"}))
        stale = await local.get("v1", "ConfigMap", "there")
        await local.patch("v1", "ConfigMap", "there", {"data": {"a": "2"}})
        calls = [
            lambda c: c.get("v1", "ConfigMap", "missing"),
            lambda c: c.create(configmap("there")),
            lambda c: c.update(stale),
            lambda c: c.create(pod("bad", containers=[{"name": "c"}])),
            lambda c: c.create(pod("", containers=[{"name": "c", "image": "x"}])),
            lambda c: c.list("v1", "Pod", field_selector="spec.nope=1"),
            lambda c: c.patch(
                "v1", "ConfigMap", "there", [{"op": "remove", "path": "/nope"}], "json"
            ),
            lambda c: c.patch("v1", "ConfigMap", "there", [{"data": None}], "strategic"),
            lambda c: c.patch("v1", "ConfigMap", "there", "text", "merge"),
            lambda c: c.delete("v1", "Pod", "missing"),
            lambda c: c.logs("there"),
            lambda c: c.get("v1", "ConfigMap", "there", subresource="status"),
        ]
        for number, call in enumerate(calls):
            seen = []
            for client in (local, remote):
                try:
                    result = await call(client)
                except KcoreError as exc:
                    seen.append(
                        (
                            category(exc),
                            exc.reason,
                            exc.code,
                            str(exc),
                            dict(getattr(exc, "details", None) or {}),
                            list(getattr(exc, "causes", [])),
                        )
                    )
                else:
                    seen.append(("ok", result))
            assert seen[0] == seen[1], f"call {number}"
            assert seen[0][0] != "ok", f"call {number} should fail"
    finally:
        await local.close()
        await remote.close()
        await server.close()
        await store.close()


async def test_http_only_failures():
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = TestServer(APIServer(objects, token="right").app())
    await server.start_server()
    url = str(server.make_url(""))
    wrong = ApiClient(HttpTransport(url, token="wrong"))
    try:
        with pytest.raises(KcoreError) as info:
            await wrong.list("v1", "Pod")
        assert info.value.code == 401 and info.value.reason == "Unauthorized"
    finally:
        await wrong.close()
        await server.close()
        await store.close()
    gone = ApiClient(HttpTransport(url, token="right"))
    try:
        with pytest.raises(ConnectionFailed) as info:
            await gone.get("v1", "Pod", "p")
        assert url.rstrip("/") in str(info.value)
    finally:
        await gone.close()


# -- selectors and pages ----------------------------------------------------------------------


async def test_label_and_field_selectors(api):
    c = api.client
    await c.create(pod("a1", {"app": "a", "tier": "web"}))
    await c.create(pod("a2", {"app": "a"}))
    await c.create(pod("b1", {"app": "b", "tier": "db"}))

    async def names(**kw):
        items, rv = await c.list("v1", "Pod", "default", **kw)
        assert rv.isdigit()
        return sorted(o["metadata"]["name"] for o in items)

    assert await names() == ["a1", "a2", "b1"]
    assert await names(label_selector="app=a") == ["a1", "a2"]
    assert await names(label_selector="app!=a") == ["b1"]
    assert await names(label_selector="app in (a,b),tier") == ["a1", "b1"]
    assert await names(label_selector="tier notin (web)") == ["a2", "b1"]
    assert await names(label_selector="!tier") == ["a2"]
    assert await names(field_selector="metadata.name=a2") == ["a2"]
    assert await names(field_selector="metadata.name!=a2,status.phase=Pending") == ["a1", "b1"]
    assert await names(label_selector="app=a", field_selector="metadata.name!=a1") == ["a2"]
    assert await names(label_selector="app=c") == []


async def test_list_pages(api):
    c = api.client
    for i in range(5):
        await c.create(configmap(f"cm{i}"))
    page = await c.list_page("v1", "ConfigMap", "default", limit=2)
    assert [o["metadata"]["name"] for o in page.items] == ["cm0", "cm1"]
    assert page.continue_token
    rest = await c.list_page(
        "v1", "ConfigMap", "default", limit=10, continue_token=page.continue_token
    )
    assert [o["metadata"]["name"] for o in rest.items] == ["cm2", "cm3", "cm4"]
    assert rest.continue_token is None
    assert rest.resource_version == page.resource_version

    items, rv = await c.list("v1", "ConfigMap", "default", limit=2)
    assert [o["metadata"]["name"] for o in items] == [f"cm{i}" for i in range(5)]
    assert rv == (await c.list("v1", "ConfigMap", "default"))[1]


# -- patches and status -----------------------------------------------------------------------


async def test_patch_types(api):
    c = api.client
    await c.create(configmap("cm", {"a": "1", "b": "2"}, labels={"x": "1"}))

    merged = await c.patch("v1", "ConfigMap", "cm", {"data": {"a": None, "c": "3"}})
    assert merged["data"] == {"b": "2", "c": "3"}

    ops = [
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "two"},
        {"op": "add", "path": "/metadata/labels/y", "value": "2"},
    ]
    patched = await c.patch("v1", "ConfigMap", "cm", ops, "json")
    assert patched["data"] == {"b": "two", "c": "3"}
    assert patched["metadata"]["labels"] == {"x": "1", "y": "2"}
    with pytest.raises(Invalid):
        await c.patch(
            "v1", "ConfigMap", "cm", [{"op": "test", "path": "/data/b", "value": "2"}], "json"
        )

    await c.create(
        pod("p", containers=[{"name": "a", "image": "one"}, {"name": "b", "image": "two"}])
    )
    strategic = await c.patch(
        "v1",
        "Pod",
        "p",
        {"spec": {"containers": [{"name": "b", "image": "three"}]}},
        "strategic",
    )
    assert [(x["name"], x["image"]) for x in strategic["spec"]["containers"]] == [
        ("a", "one"),
        ("b", "three"),
    ]
    replaced = await c.patch("v1", "Pod", "p", {"metadata": {"labels": {"k": "v"}}}, "merge")
    assert replaced["metadata"]["labels"] == {"k": "v"}

    applied = await c.patch("v1", "ConfigMap", "fresh", configmap("fresh", {"k": "v"}), "apply")
    assert applied["data"] == {"k": "v"} and applied["metadata"]["uid"]
    again = await c.patch("v1", "ConfigMap", "fresh", configmap("fresh", {"k": "w"}), "apply")
    assert again["data"] == {"k": "w"}
    assert again["metadata"]["uid"] == applied["metadata"]["uid"]

    with pytest.raises(NotFound):
        await c.patch("v1", "ConfigMap", "nope", {"data": {}})
    with pytest.raises(ValueError):
        await c.patch("v1", "ConfigMap", "cm", {}, "xml")


async def test_status_subresource(api):
    c = api.client
    created = await c.create(pod("p"))
    assert created["status"]["phase"] == "Pending"

    new_status = dict(created, status={"phase": "Running", "podIP": "10.0.0.5"})
    new_status["spec"] = dict(created["spec"], activeDeadlineSeconds=5)
    written = await c.update_status(new_status)
    assert written["status"]["phase"] == "Running"
    assert "activeDeadlineSeconds" not in written["spec"]

    main = dict(written, status={"phase": "Failed"})
    main["metadata"] = dict(written["metadata"], labels={"k": "v"})
    after = await c.update(main)
    assert after["status"]["phase"] == "Running"
    assert after["metadata"]["labels"] == {"k": "v"}

    with pytest.raises(Conflict):
        await c.update_status(new_status)  # its resourceVersion is stale now

    merged = await c.patch(
        "v1", "Pod", "p", {"status": {"phase": "Succeeded"}}, subresource="status"
    )
    assert merged["status"]["phase"] == "Succeeded"
    with pytest.raises(NotFound):
        await c.patch("v1", "ConfigMap", "p", {}, subresource="status")


# -- watch ------------------------------------------------------------------------------------


async def test_watch_from_a_list(api):
    c = api.client
    await c.create(configmap("before"))
    _, rv = await c.list("v1", "ConfigMap", "default")
    events = c.watch("v1", "ConfigMap", "default", resource_version=rv, timeout_seconds=10)
    watching = asyncio.ensure_future(collect(events, 4))
    await asyncio.sleep(0.2)
    created = await c.create(configmap("cm", {"a": "1"}))
    await c.patch("v1", "ConfigMap", "cm", {"data": {"a": "2"}})
    await c.create(configmap("other", namespace="kube-system"))
    await c.delete("v1", "ConfigMap", "before")
    await c.delete("v1", "ConfigMap", "cm")
    got = await watching
    assert [(t, o["metadata"]["name"]) for t, o in got] == [
        ("ADDED", "cm"),
        ("MODIFIED", "cm"),
        ("DELETED", "before"),
        ("DELETED", "cm"),
    ]
    assert got[1][1]["data"] == {"a": "2"}
    rvs = [int(o["metadata"]["resourceVersion"]) for _, o in got]
    assert rvs == sorted(rvs) and rvs[0] == int(created["metadata"]["resourceVersion"])


async def test_watch_without_version_starts_with_current_objects(api):
    c = api.client
    await c.create(configmap("one", labels={"app": "x"}))
    await c.create(configmap("two", labels={"app": "y"}))
    events = c.watch("v1", "ConfigMap", label_selector="app=x", timeout_seconds=10)
    watching = asyncio.ensure_future(collect(events, 3))
    await asyncio.sleep(0.2)
    await c.create(configmap("three", labels={"app": "y"}))
    await c.patch("v1", "ConfigMap", "two", {"metadata": {"labels": {"app": "x"}}})
    await c.patch("v1", "ConfigMap", "one", {"metadata": {"labels": {"app": "z"}}})
    got = await watching
    assert [(t, o["metadata"]["name"]) for t, o in got] == [
        ("ADDED", "one"),
        ("ADDED", "two"),  # started matching
        ("DELETED", "one"),  # stopped matching
    ]


async def test_watch_ends_after_timeout(api):
    c = api.client
    _, rv = await c.list("v1", "ConfigMap")
    loop = asyncio.get_running_loop()
    started = loop.time()
    got = [e async for e in c.watch("v1", "ConfigMap", resource_version=rv, timeout_seconds=1)]
    assert got == []
    assert 0.8 < loop.time() - started < 5


async def test_watch_bookmarks(api):
    c = api.client
    created = await c.create(configmap("cm"))
    rv = created["metadata"]["resourceVersion"]
    if api.transport == "inprocess":
        api.client.transport.bookmark_interval = 0.2
        timeout = 1
    else:
        timeout = 1  # the server sends one bookmark when the stream ends
    got = [
        e
        async for e in c.watch(
            "v1", "ConfigMap", resource_version=rv, timeout_seconds=timeout, allow_bookmarks=True
        )
    ]
    assert got and all(t == "BOOKMARK" for t, _ in got)
    assert got[-1][1]["metadata"]["resourceVersion"] == rv
    assert got[-1][1]["kind"] == "ConfigMap"


async def test_watch_from_a_compacted_revision_is_expired(api):
    c = api.client
    first = await c.create(configmap("cm", {"v": "0"}))
    for i in range(1, 4):
        await c.patch("v1", "ConfigMap", "cm", {"data": {"v": str(i)}})
    await api.store.compact(await api.store.current_revision())
    with pytest.raises(Expired) as info:
        async for _ in c.watch(
            "v1", "ConfigMap", resource_version=first["metadata"]["resourceVersion"]
        ):
            pass
    assert info.value.code == 410


async def test_watch_rejects_a_bad_resource_version(api):
    with pytest.raises(BadRequest):
        async for _ in api.client.watch("v1", "ConfigMap", resource_version="abc"):
            pass


# -- tables and logs --------------------------------------------------------------------------


async def test_table(api):
    c = api.client
    await c.create(pod("p1", {"app": "a"}))
    await c.create(pod("p2", {"app": "b"}))
    table = await c.table("v1", "Pod", namespace="default", label_selector="app=a")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    columns = [col["name"] for col in table["columnDefinitions"]]
    assert columns[:3] == ["Name", "Ready", "Status"]
    assert [row["cells"][0] for row in table["rows"]] == ["p1"]
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "default"
    one = await c.table("v1", "Pod", "p2")
    assert [row["cells"][0] for row in one["rows"]] == ["p2"]
    with pytest.raises(NotFound):
        await c.table("v1", "Pod", "p3")


async def test_logs_need_a_node_agent(api):
    await api.client.create(pod("p"))
    with pytest.raises(NotSupported) as info:
        await api.client.logs("p")
    assert info.value.code == 405
    assert "node agent" in str(info.value)


# -- arguments checked before any transport -------------------------------------------------


async def test_client_side_checks(api):
    c = api.client
    with pytest.raises(BadRequest):
        await c.create({"metadata": {"name": "no-kind"}})
    with pytest.raises(BadRequest):
        await c.get("v1", "ConfigMap", "")
    with pytest.raises(BadRequest):
        await c.get("v1", "ConfigMap", "a/b")
    with pytest.raises(BadRequest):
        await c.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "x"},
                "data": {"a": object()},
            }
        )
    with pytest.raises(ValueError):
        await c.get("apps/v1", "Deployment", "x", subresource="scale")


def test_load_kubeconfig(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (tmp_path / "config").write_text(
        f"""
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: {base64.b64encode(ca.encode()).decode()}
- name: c2
  cluster: {{server: "http://127.0.0.1:8080", insecure-skip-tls-verify: true}}
users:
- name: u1
  user: {{token: secret}}
- name: u2
  user: {{tokenFile: token}}
contexts:
- name: dev
  context: {{cluster: c1, user: u1, namespace: team}}
- name: other
  context: {{cluster: c2, user: u2}}
"""
    )
    cfg = load_kubeconfig(tmp_path / "config")
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.token == "secret" and cfg.namespace == "team" and cfg.ca_data == ca
    other = load_kubeconfig(tmp_path / "config", "other")
    assert other.token == "from-file" and other.namespace == "default" and other.insecure
    with pytest.raises(KcoreError):
        load_kubeconfig(tmp_path / "config", "missing")
    with pytest.raises(KcoreError):
        load_kubeconfig(tmp_path / "absent")


async def test_a_watch_closed_early_frees_its_stream(api):
    c = api.client
    events = c.watch("v1", "ConfigMap", timeout_seconds=30)
    await c.create(configmap("cm"))
    first = await anext(events)
    assert first[0] == "ADDED"
    await events.aclose()
    with contextlib.suppress(StopAsyncIteration):
        await anext(events)
    # the client still works for further calls on the same connection pool
    assert (await c.get("v1", "ConfigMap", "cm"))["metadata"]["name"] == "cm"
