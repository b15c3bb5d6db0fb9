"""The Endpoints controller against an in-process API (pods are objects; their IPs and
readiness are patched into their status), and end to end with kubectl: a Deployment behind
a Service on a daemon with a node agent on runtime_sim."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kcore.controllers import ControllerManager
from kcore.plugins.controllers import endpoints as endpoints_module
from kcore.plugins.controllers.endpoints import (
    HEADLESS_LABEL,
    MAX_CAPACITY,
    OVER_CAPACITY_ANNOTATION,
    EndpointsController,
    truncate_subsets,
)

from .helpers import eventually, ok, wait_for

NS = "default"


# -- helpers (shared with test_endpointslice) ---------------------------------------------


def service(
    name: str = "web",
    selector: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    *,
    namespace: str = NS,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080}],
        **spec,
    }
    if selector is None:
        selector = {"app": name}
    if selector:
        body["selector"] = selector
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": body}


async def add_membership_pods(api, ended: str) -> None:
    """Pods of app=web: "a" ready on n1, "b" not ready, "no-ip", "done" (phase ``ended``)
    and "far" in namespace elsewhere; and "other" of another app."""
    await add_pod(api, "a", {"app": "web"}, "10.1.0.1", node="n1")
    await add_pod(api, "b", {"app": "web"}, "10.1.0.2", ready=False)
    await add_pod(api, "no-ip", {"app": "web"}, None)
    await add_pod(api, "other", {"app": "other"}, "10.1.0.9")
    await add_pod(api, "done", {"app": "web"}, "10.1.0.8", phase=ended, ready=False)
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    await add_pod(api, "far", {"app": "web"}, "10.1.0.7", namespace="elsewhere")


async def add_web_pods(api, *pods: tuple[str, str, str, int]) -> None:
    """:func:`add_pod` for each (name, IP, port name, container port), labelled app=web."""
    for name, ip, port_name, port in pods:
        await add_pod(
            api, name, {"app": "web"}, ip, ports=[{"name": port_name, "containerPort": port}]
        )


async def add_pod(
    api,
    name: str,
    labels: dict[str, str],
    ip: str | None,
    *,
    ready: bool = True,
    namespace: str = NS,
    ports: list[dict[str, Any]] | None = None,
    node: str | None = None,
    finalizers: list[str] | None = None,
    phase: str = "Running",
    **spec: Any,
) -> dict[str, Any]:
    """Create a pod, then give it an IP (unless ``ip`` is None), a phase and a Ready
    condition, as a node agent would."""
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if ports:
        container["ports"] = ports
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if finalizers:
        meta["finalizers"] = finalizers
    pod_spec: dict[str, Any] = {"containers": [container], **spec}
    if node:
        pod_spec["nodeName"] = node
    await api.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec})
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return await api.patch(
        "v1", "Pod", name, {"status": status}, namespace=namespace, subresource="status"
    )


async def set_ready(api, name: str, ready: bool, namespace: str = NS) -> None:
    cond = [{"type": "Ready", "status": "True" if ready else "False"}]
    await api.patch(
        "v1",
        "Pod",
        name,
        {"status": {"conditions": cond}},
        namespace=namespace,
        subresource="status",
    )


async def terminate(api, name: str, namespace: str = NS) -> None:
    """Delete a pod that holds a finalizer: it stays, with a deletionTimestamp."""
    await api.delete("v1", "Pod", name, namespace)
    pod = await api.get("v1", "Pod", name, namespace)
    assert pod["metadata"].get("deletionTimestamp")


async def release(api, name: str, namespace: str = NS) -> None:
    await api.patch("v1", "Pod", name, {"metadata": {"finalizers": None}}, namespace=namespace)


async def manager_with(api, *controllers):
    manager = ControllerManager(api, list(controllers), leader_election=None)
    manager.start()
    names = [c.name for c in controllers]
    await eventually(lambda: all(n in manager.runners for n in names))
    return manager


async def quiet(manager, name: str, store, seconds: float = 0.6) -> None:
    """Assert that the controller, resyncing, writes nothing for ``seconds``."""
    runner = manager.runners[name]
    await asyncio.sleep(0.2)
    writes, reconciles = runner.stats.writes, runner.stats.reconciles
    revision = await store.current_revision()
    await asyncio.sleep(seconds)
    assert runner.stats.reconciles >= reconciles + 2
    assert runner.stats.writes == writes
    assert await store.current_revision() == revision


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def controller(cluster):
    ctrl = EndpointsController()
    ctrl.resync_period = 0.1
    manager = await manager_with(cluster.api, ctrl)
    ctrl.manager = manager
    try:
        yield ctrl
    finally:
        await manager.stop()


async def endpoints_of(api, name: str = "web", namespace: str = NS) -> dict[str, Any] | None:
    try:
        return await api.get("v1", "Endpoints", name, namespace)
    except Exception:
        return None


async def wait_subsets(api, want: list[dict[str, Any]], name: str = "web") -> dict[str, Any]:
    """Wait for the Endpoints' subsets (addresses reduced to their IPs) to be ``want``."""
    last: list[Any] = []

    async def check():
        ep = await endpoints_of(api, name)
        if ep is None:
            return None
        last[:] = [simplify(ep.get("subsets") or [])]
        return ep if last[0] == want else None

    try:
        return await eventually(check, timeout=10)
    except AssertionError:
        raise AssertionError(f"subsets {last} != {want}") from None


def simplify(subsets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in subsets:
        item: dict[str, Any] = {}
        for field in ("addresses", "notReadyAddresses"):
            if s.get(field):
                item[field] = [a["ip"] for a in s[field]]
        if s.get("ports"):
            item["ports"] = [(p.get("name", ""), p["port"], p["protocol"]) for p in s["ports"]]
        out.append(item)
    return out


# -- membership ----------------------------------------------------------------------------


async def test_membership_follows_readiness(cluster, controller):
    api = cluster.api
    await api.create(service(labels={"tier": "front"}))
    await add_membership_pods(api, "Succeeded")
    port = [("", 8080, "TCP")]
    ep = await wait_subsets(
        api, [{"addresses": ["10.1.0.1"], "notReadyAddresses": ["10.1.0.2"], "ports": port}]
    )
    address = ep["subsets"][0]["addresses"][0]
    pod_a = await api.get("v1", "Pod", "a", NS)
    assert address == {
        "ip": "10.1.0.1",
        "nodeName": "n1",
        "targetRef": {"kind": "Pod", "namespace": NS, "name": "a", "uid": pod_a["metadata"]["uid"]},
    }
    assert ep["metadata"]["labels"]["tier"] == "front"
    assert OVER_CAPACITY_ANNOTATION not in (ep["metadata"].get("annotations") or {})

    await set_ready(api, "b", True)
    await wait_subsets(api, [{"addresses": ["10.1.0.1", "10.1.0.2"], "ports": port}])
    await set_ready(api, "a", False)
    await wait_subsets(
        api, [{"addresses": ["10.1.0.2"], "notReadyAddresses": ["10.1.0.1"], "ports": port}]
    )
    await api.patch("v1", "Pod", "b", {"metadata": {"labels": {"app": "moved"}}}, namespace=NS)
    await wait_subsets(api, [{"notReadyAddresses": ["10.1.0.1"], "ports": port}])
    await api.delete("v1", "Pod", "a", NS)
    await wait_subsets(api, [])


async def test_named_and_multiple_ports_group_pods_by_the_ports_they_serve(cluster, controller):
    api = cluster.api
    ports = [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "metrics", "port": 9090, "appProtocol": "http"},
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
    ]
    await api.create(service(ports=ports))
    await add_web_pods(api, ("a", "10.1.0.1", "web", 8080), ("b", "10.1.0.2", "web", 8081))
    # "dns" on TCP does not serve a UDP Service port; "web" is missing.
    await add_web_pods(api, ("c", "10.1.0.3", "dns", 53))
    ep = await wait_subsets(
        api,
        [
            {"addresses": ["10.1.0.1"], "ports": [("http", 8080, "TCP")]},
            {"addresses": ["10.1.0.2"], "ports": [("http", 8081, "TCP")]},
            {
                "addresses": ["10.1.0.1", "10.1.0.2", "10.1.0.3"],
                "ports": [("metrics", 9090, "TCP")],
            },
        ],
    )
    assert ep["subsets"][2]["ports"] == [
        {"name": "metrics", "port": 9090, "protocol": "TCP", "appProtocol": "http"}
    ]
    await add_pod(
        api,
        "d",
        {"app": "web"},
        "10.1.0.4",
        ports=[
            {"name": "web", "containerPort": 8080},
            {"name": "dns", "containerPort": 5353, "protocol": "UDP"},
        ],
    )
    await wait_subsets(
        api,
        [
            {"addresses": ["10.1.0.4"], "ports": [("dns", 5353, "UDP")]},
            {"addresses": ["10.1.0.1", "10.1.0.4"], "ports": [("http", 8080, "TCP")]},
            {"addresses": ["10.1.0.2"], "ports": [("http", 8081, "TCP")]},
            {
                "addresses": ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"],
                "ports": [("metrics", 9090, "TCP")],
            },
        ],
    )


async def test_publish_not_ready_addresses_and_terminating_pods(cluster, controller):
    api = cluster.api
    await api.create(service())
    await api.create(service("all", {"app": "web"}, publishNotReadyAddresses=True))
    hold = ["example.com/hold"]
    await add_pod(api, "ready", {"app": "web"}, "10.1.0.1", finalizers=hold)
    await add_pod(api, "unready", {"app": "web"}, "10.1.0.2", ready=False)
    port = [("", 8080, "TCP")]
    await wait_subsets(
        api, [{"addresses": ["10.1.0.1"], "notReadyAddresses": ["10.1.0.2"], "ports": port}]
    )
    await wait_subsets(api, [{"addresses": ["10.1.0.1", "10.1.0.2"], "ports": port}], "all")
    # A terminating pod leaves the Endpoints, unless not-ready addresses are published.
    await terminate(api, "ready")
    await wait_subsets(api, [{"notReadyAddresses": ["10.1.0.2"], "ports": port}])
    await wait_subsets(api, [{"addresses": ["10.1.0.1", "10.1.0.2"], "ports": port}], "all")
    await release(api, "ready")
    await wait_subsets(api, [{"addresses": ["10.1.0.2"], "ports": port}], "all")


async def test_headless_service_hostnames_and_labels(cluster, controller):
    api = cluster.api
    await api.create(service("db", ports=[], clusterIP="None", labels={"app": "db"}))
    await add_pod(api, "db-0", {"app": "db"}, "10.1.0.1", hostname="db-0", subdomain="db")
    await add_pod(api, "db-1", {"app": "db"}, "10.1.0.2", hostname="db-1", subdomain="other")
    ep = await wait_subsets(api, [{"addresses": ["10.1.0.1", "10.1.0.2"]}], "db")
    first, second = ep["subsets"][0]["addresses"]
    assert first["hostname"] == "db-0"
    assert "hostname" not in second
    assert ep["metadata"]["labels"] == {"app": "db", HEADLESS_LABEL: ""}
    await api.patch("v1", "Service", "db", {"metadata": {"labels": {"app": "d2"}}}, namespace=NS)

    async def relabelled():
        got = await endpoints_of(api, "db")
        return got["metadata"]["labels"] == {"app": "d2", HEADLESS_LABEL: ""}

    await eventually(relabelled)


async def test_services_without_selector_are_left_alone(cluster, controller):
    api = cluster.api
    mine = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "ext", "namespace": NS},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
    }
    await api.create(service("ext", selector={}))
    created = await api.create(mine)
    await add_pod(api, "p", {"app": "ext"}, "10.1.0.1")
    runner = controller.manager.runners[controller.name]
    before = runner.stats.reconciles
    await eventually(lambda: runner.stats.reconciles > before + 2)
    got = await api.get("v1", "Endpoints", "ext", NS)
    assert got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_endpoints_go_with_their_service_and_come_back_when_removed(cluster, controller):
    api = cluster.api
    await api.create(service())
    await add_pod(api, "a", {"app": "web"}, "10.1.0.1")
    port = [("", 8080, "TCP")]
    await wait_subsets(api, [{"addresses": ["10.1.0.1"], "ports": port}])
    await api.delete("v1", "Endpoints", "web", NS)  # someone removes them: they come back
    await wait_subsets(api, [{"addresses": ["10.1.0.1"], "ports": port}])
    await api.delete("v1", "Service", "web", NS)

    async def gone():
        return await endpoints_of(api) is None

    await eventually(gone)


async def test_a_converged_service_gets_no_writes(cluster, controller):
    api = cluster.api
    await api.create(service())
    for i in range(5):
        await add_pod(api, f"p{i}", {"app": "web"}, f"10.1.0.{i + 1}", ready=i % 2 == 0)
    await wait_subsets(
        api,
        [
            {
                "addresses": ["10.1.0.1", "10.1.0.3", "10.1.0.5"],
                "notReadyAddresses": ["10.1.0.2", "10.1.0.4"],
                "ports": [("", 8080, "TCP")],
            }
        ],
    )
    await quiet(controller.manager, controller.name, cluster.store)


# -- capacity ------------------------------------------------------------------------------


def _subset(ready: int, not_ready: int, port: int, start: int = 0) -> dict[str, Any]:
    def ips(n: int, offset: int) -> list[dict[str, str]]:
        return [
            {"ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"}
            for i in range(offset, offset + n)
        ]

    return {
        "addresses": ips(ready, start),
        "notReadyAddresses": ips(not_ready, start + ready),
        "ports": [{"port": port, "protocol": "TCP"}],
    }


def test_truncation_keeps_ready_addresses_first_in_proportion():
    # Not too many ready addresses: the not-ready ones share what is left.
    subsets = [_subset(600, 300, 80), _subset(100, 300, 81, 5000)]
    assert truncate_subsets(subsets)
    assert [len(s["addresses"]) for s in subsets] == [600, 100]
    assert [len(s.get("notReadyAddresses", [])) for s in subsets] == [150, 150]
    # Too many ready ones: those are cut in proportion and every not-ready one goes.
    subsets = [_subset(1200, 10, 80), _subset(300, 10, 81, 5000)]
    assert truncate_subsets(subsets)
    assert [len(s["addresses"]) for s in subsets] == [800, 200]
    assert all("notReadyAddresses" not in s for s in subsets)
    total = sum(len(s["addresses"]) for s in subsets)
    assert total == MAX_CAPACITY
    untouched = [_subset(500, 500, 80)]
    assert not truncate_subsets(untouched)
    assert len(untouched[0]["notReadyAddresses"]) == 500


async def test_over_capacity_is_truncated_and_annotated(cluster, controller, monkeypatch):
    monkeypatch.setattr(endpoints_module, "MAX_CAPACITY", 4)
    api = cluster.api
    await api.create(service())
    for i in range(6):
        await add_pod(api, f"p{i}", {"app": "web"}, f"10.1.0.{i + 1}", ready=i < 3)

    async def truncated():
        ep = await endpoints_of(api)
        if (
            ep is None
            or (ep["metadata"].get("annotations") or {}).get(OVER_CAPACITY_ANNOTATION)
            != "truncated"
        ):
            return None
        return ep

    ep = await eventually(truncated)
    (subset,) = ep["subsets"]
    assert len(subset["addresses"]) == 3
    assert len(subset["notReadyAddresses"]) == 1
    for i in range(3, 6):
        await api.delete("v1", "Pod", f"p{i}", NS)

    async def fits():
        got = await endpoints_of(api)
        annotations = got["metadata"].get("annotations") or {}
        return (
            OVER_CAPACITY_ANNOTATION not in annotations and len(got["subsets"][0]["addresses"]) == 3
        )

    await eventually(fits)


# -- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_kubectl_get_endpoints_and_slices_follow_a_scaled_deployment(sim_daemon):
    d = sim_daemon
    manifest = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "echo"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "echo"}},
                "template": {
                    "metadata": {"labels": {"app": "echo"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "web",
                                "image": "busybox",
                                "ports": [{"name": "http", "containerPort": 8080}],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo"},
            "spec": {
                "selector": {"app": "echo"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            },
        },
    ]
    ok(
        d.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifest}),
        )
    )
    try:

        def endpoint_count(want: int) -> list[str] | None:
            eps = json.loads(ok(d.kubectl("get", "endpoints", "echo", "-o", "json")))
            addresses = [a for s in eps.get("subsets") or () for a in s.get("addresses") or ()]
            selector = "kubernetes.io/service-name=echo"
            slices = json.loads(
                ok(d.kubectl("get", "endpointslices", "-l", selector, "-o", "json"))
            )
            ready = [
                e
                for s in slices["items"]
                for e in s["endpoints"]
                if e["conditions"].get("ready") and not e["conditions"].get("terminating")
            ]
            if len(addresses) != want or len(ready) != want:
                return None
            return ok(d.kubectl("get", "endpoints,endpointslices")).splitlines()

        lines = wait_for(lambda: endpoint_count(2), timeout=60, what="2 endpoints")
        assert lines[0].split() == ["NAME", "ENDPOINTS", "AGE"]
        (ep_row,) = [line.split() for line in lines if line.startswith("endpoints/echo ")]
        assert ep_row[1].count(":8080") == 2
        assert lines.index("") > 0  # one table per kind, a blank line between them
        header = lines[lines.index("") + 1].split()
        assert header == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
        (slice_row,) = [
            line.split()
            for line in lines
            if line.startswith("endpointslice.discovery.k8s.io/echo-")
        ]
        assert slice_row[1:3] == ["IPv4", "8080"]
        assert len(slice_row[3].split(",")) == 2
        ok(d.kubectl("scale", "deployment/echo", "--replicas=4"))
        lines = wait_for(lambda: endpoint_count(4), timeout=60, what="4 endpoints")
        (ep_row,) = [line for line in lines if line.startswith("endpoints/echo ")]
        assert ep_row.split()[1].count(":8080") == 3 and "+ 1 more..." in ep_row
        ok(d.kubectl("scale", "deployment/echo", "--replicas=1"))
        lines = wait_for(lambda: endpoint_count(1), timeout=60, what="1 endpoint")
        (ep_row,) = [line.split() for line in lines if line.startswith("endpoints/echo ")]
        assert ep_row[1].count(":8080") == 1
    finally:
        d.kubectl("delete", "deployment,service", "echo", "--wait=false")
