"""The discovery.k8s.io/v1 EndpointSlice kind (defaults, validation, table) and the
EndpointSlice controller against an in-process API (pods are objects; their IPs and
readiness are patched into their status)."""

from __future__ import annotations

from typing import Any

import pytest

from kcore.api import registry
from kcore.apiserver.tables import to_table
from kcore.errors import Invalid
from kcore.plugins.controllers import kcore_controllers
from kcore.plugins.controllers.endpoints import HEADLESS_LABEL
from kcore.plugins.controllers.endpointslice import (
    CONTROLLER_NAME,
    MAX_ENDPOINTS_PER_SLICE,
    EndpointSliceController,
    SliceTracker,
    plan_slices,
)
from kcore.plugins.controllers.garbagecollector import GarbageCollector
from kcore.settings import Settings

from .helpers import eventually
from .test_endpoints import (
    add_membership_pods,
    add_pod,
    add_web_pods,
    manager_with,
    quiet,
    release,
    service,
    set_ready,
    terminate,
)

NS = "default"
SLICE = ("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


def a_slice(name: str = "s", **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": SLICE[0],
        "kind": SLICE[1],
        "metadata": {"name": name, "namespace": NS},
        **body,
    }


# -- the kind ------------------------------------------------------------------------------


def test_both_controllers_are_contributed():
    names = [c.name for c in kcore_controllers(Settings())]
    assert {"endpoints-controller", "endpointslice-controller"} <= set(names)


def test_the_kind_is_served_in_its_group():
    info = registry.resolve("endpointslices")
    assert info is registry.by_kind(*SLICE)
    assert (info.group, info.version, info.namespaced) == ("discovery.k8s.io", "v1", True)
    assert "discovery.k8s.io/v1" in registry.group_versions()
    assert info.path(NS) == "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


async def test_defaults_and_validation(cluster):
    api = cluster.api
    created = await api.create(
        a_slice(
            addressType="IPv4",
            endpoints=[{"addresses": ["10.1.0.5"], "conditions": {"ready": False}}],
            ports=[{"port": 80}],
        )
    )
    assert created["ports"] == [{"name": "", "protocol": "TCP", "port": 80}]
    assert created["endpoints"] == [{"addresses": ["10.1.0.5"], "conditions": {"ready": False}}]
    empty = await api.create(a_slice("empty", addressType="FQDN"))
    assert empty["endpoints"] == []  # always encoded: clients require it

    async def causes(body: dict[str, Any]) -> list[tuple[str, str]]:
        with pytest.raises(Invalid) as err:
            await api.create(a_slice("bad", **body))
        return [(c.field, c.message) for c in err.value.causes]

    assert await causes({}) == [("addressType", "Required value")]
    assert (await causes({"addressType": "IP"}))[0][1].startswith('Unsupported value: "IP"')
    got = await causes(
        {
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": []},
                {"addresses": ["127.0.0.1"]},
                {"addresses": ["fd00::1"], "hostname": "Not_A_Label"},
                {"addresses": [f"10.0.0.{i}" for i in range(1, 102)]},
            ],
            "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 70000, "protocol": "X"}],
        }
    )
    fields = [f for f, _ in got]
    assert fields == [
        "endpoints[0].addresses",
        "endpoints[1].addresses[0]",
        "endpoints[2].addresses[0]",
        "endpoints[2].hostname",
        "endpoints[3].addresses",
        "ports[1].name",
        "ports[1].protocol",
        "ports[1].port",
    ]
    assert "loopback" in got[1][1]
    assert "must be a valid IPv4 address" in got[2][1]
    assert got[4][1] == "Too many: 101: must have at most 100 items"
    too_many = [{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}"]} for i in range(1001)]
    assert await causes({"addressType": "IPv4", "endpoints": too_many}) == [
        ("endpoints", "Too many: 1001: must have at most 1000 items")
    ]
    assert (await causes({"addressType": "FQDN", "endpoints": [{"addresses": ["single"]}]}))[0][
        0
    ] == "endpoints[0].addresses[0]"
    changed = {**created, "addressType": "IPv6", "endpoints": []}
    with pytest.raises(Invalid) as err:
        await api.update(changed)
    assert [(c.field, c.message) for c in err.value.causes] == [
        ("addressType", 'Invalid value: "IPv6": field is immutable')
    ]


def test_table_columns():
    table = to_table(
        "EndpointSlice",
        [
            a_slice(
                "web-abcde",
                addressType="IPv4",
                ports=[{"port": 80}, {"name": "x"}, {}, {"port": 9}],
                endpoints=[{"addresses": [f"10.0.0.{i}"]} for i in range(1, 6)],
            ),
            a_slice("empty", addressType="IPv4", endpoints=[]),
        ],
        resource_version="1",
    )
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "AddressType",
        "Ports",
        "Endpoints",
        "Age",
    ]
    first, second = (row["cells"] for row in table["rows"])
    assert first[:4] == [
        "web-abcde",
        "IPv4",
        "80,x,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
    ]
    assert second[:4] == ["empty", "IPv4", "<unset>", "<unset>"]


# -- the controller ------------------------------------------------------------------------


@pytest.fixture
async def controller(cluster):
    ctrl = EndpointSliceController()
    ctrl.resync_period = 0.1
    manager = await manager_with(cluster.api, ctrl, GarbageCollector())
    ctrl.manager = manager
    try:
        yield ctrl
    finally:
        await manager.stop()


async def slices_of(api, svc: str = "web") -> list[dict[str, Any]]:
    items, _ = await api.list(*SLICE, NS, label_selector=f"{SERVICE_NAME}={svc}")
    return sorted(items, key=lambda s: s["metadata"]["name"])


def summary(slices: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Per slice: its ports and its endpoints' (address, ready, serving, terminating),
    sorted (slice order and endpoint order are not part of the contract)."""
    out = []
    for s in slices:
        ports = tuple(sorted((p["name"], p["port"], p["protocol"]) for p in s.get("ports") or ()))
        eps = tuple(
            sorted(
                (
                    e["addresses"][0],
                    e["conditions"]["ready"],
                    e["conditions"]["serving"],
                    e["conditions"]["terminating"],
                )
                for e in s["endpoints"]
            )
        )
        out.append((ports, eps))
    return sorted(out)


async def wait_summary(api, want: list[tuple[Any, ...]], svc: str = "web") -> list[dict]:
    last: list[Any] = []

    async def check():
        slices = await slices_of(api, svc)
        last[:] = [summary(slices)]
        return slices if last[0] == sorted(want) else None

    try:
        return await eventually(check, timeout=10)
    except AssertionError:
        raise AssertionError(f"slices {last} != {sorted(want)}") from None


HTTP = (("", 8080, "TCP"),)


async def test_a_slice_per_service_with_conditions_and_references(cluster, controller):
    api = cluster.api
    await api.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}},
        }
    )
    svc = await api.create(service(labels={"tier": "front"}))
    await add_membership_pods(api, "Failed")
    (eps,) = await wait_summary(
        api, [(HTTP, (("10.1.0.1", True, True, False), ("10.1.0.2", False, False, False)))]
    )
    meta = eps["metadata"]
    assert meta["name"].startswith("web-") and meta["generateName"] == "web-"
    assert meta["labels"][SERVICE_NAME] == "web"
    assert meta["labels"][MANAGED_BY] == CONTROLLER_NAME
    assert meta["labels"]["tier"] == "front"
    (owner,) = meta["ownerReferences"]
    assert owner == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": "web",
        "uid": svc["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert eps["addressType"] == "IPv4"
    assert eps["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    by_ip = {e["addresses"][0]: e for e in eps["endpoints"]}
    pod_a = await api.get("v1", "Pod", "a", NS)
    assert by_ip["10.1.0.1"]["nodeName"] == "n1"
    assert by_ip["10.1.0.1"]["zone"] == "z1"
    assert by_ip["10.1.0.1"]["targetRef"] == {
        "kind": "Pod",
        "namespace": NS,
        "name": "a",
        "uid": pod_a["metadata"]["uid"],
    }
    assert "nodeName" not in by_ip["10.1.0.2"]

    name = meta["name"]
    await set_ready(api, "b", True)
    await set_ready(api, "a", False)
    (eps,) = await wait_summary(
        api, [(HTTP, (("10.1.0.1", False, False, False), ("10.1.0.2", True, True, False)))]
    )
    assert eps["metadata"]["name"] == name  # updated in place
    await api.patch(
        "v1", "Service", "web", {"metadata": {"labels": {"tier": "back"}}}, namespace=NS
    )

    async def relabelled():
        (s,) = await slices_of(api)
        return s["metadata"]["labels"]["tier"] == "back"

    await eventually(relabelled)


async def test_terminating_pods_and_publish_not_ready_addresses(cluster, controller):
    api = cluster.api
    await api.create(service())
    await api.create(service("all", {"app": "web"}, publishNotReadyAddresses=True))
    hold = ["example.com/hold"]
    await add_pod(api, "a", {"app": "web"}, "10.1.0.1", finalizers=hold)
    await add_pod(api, "b", {"app": "web"}, "10.1.0.2", ready=False, finalizers=hold)
    await wait_summary(
        api, [(HTTP, (("10.1.0.1", True, True, False), ("10.1.0.2", False, False, False)))]
    )
    await wait_summary(
        api, [(HTTP, (("10.1.0.1", True, True, False), ("10.1.0.2", True, False, False)))], "all"
    )
    await terminate(api, "a")
    await terminate(api, "b")
    await wait_summary(
        api, [(HTTP, (("10.1.0.1", False, True, True), ("10.1.0.2", False, False, True)))]
    )
    await wait_summary(
        api, [(HTTP, (("10.1.0.1", True, True, True), ("10.1.0.2", True, False, True)))], "all"
    )
    await release(api, "a")
    await release(api, "b")
    await wait_summary(api, [((), ())])  # gone: only the placeholder is left


async def test_pods_are_grouped_by_the_ports_they_resolve(cluster, controller):
    api = cluster.api
    ports = [
        {"name": "http", "port": 80, "targetPort": "web"},
        {"name": "metrics", "port": 9090},
    ]
    await api.create(service(ports=ports))
    await add_web_pods(
        api,
        ("a", "10.1.0.1", "web", 8080),
        ("b", "10.1.0.2", "web", 8080),
        ("c", "10.1.0.3", "web", 8081),
    )
    await add_pod(api, "d", {"app": "web"}, "10.1.0.4")  # no port named "web"
    up = (True, True, False)
    await wait_summary(
        api,
        [
            (
                (("http", 8080, "TCP"), ("metrics", 9090, "TCP")),
                (("10.1.0.1", *up), ("10.1.0.2", *up)),
            ),
            ((("http", 8081, "TCP"), ("metrics", 9090, "TCP")), (("10.1.0.3", *up),)),
            ((("metrics", 9090, "TCP"),), (("10.1.0.4", *up),)),
        ],
    )


async def test_slices_split_at_100_endpoints_and_shrink_in_place(cluster, controller):
    api = cluster.api
    for i in range(205):
        await add_pod(api, f"p{i}", {"app": "web"}, f"10.1.{i // 200}.{i % 200 + 1}")
    await api.create(service())

    async def split():
        slices = await slices_of(api)
        sizes = sorted(len(s["endpoints"]) for s in slices)
        return slices if sizes == [5, 100, 100] else None

    slices = await eventually(split, timeout=20)
    addresses = [e["addresses"][0] for s in slices for e in s["endpoints"]]
    assert len(set(addresses)) == 205
    names = {s["metadata"]["name"] for s in slices}
    for i in range(0, 40, 4):  # ten of them go
        await api.delete("v1", "Pod", f"p{i}", NS)

    async def shrunk():
        slices = await slices_of(api)
        count = sum(len(s["endpoints"]) for s in slices)
        return slices if count == 195 else None

    slices = await eventually(shrunk, timeout=20)
    assert {s["metadata"]["name"] for s in slices} == names  # updated in place
    await quiet(controller.manager, controller.name, cluster.store)


def test_planning_fills_slices_being_written_before_making_new_ones():
    svc = service()
    svc["metadata"]["uid"] = "svc-uid"
    pods = [
        {
            "metadata": {
                "name": f"p{i}",
                "namespace": NS,
                "uid": f"u{i}",
                "labels": {"app": "web"},
            },
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIP": f"10.0.{i // 250}.{i % 250 + 1}", "phase": "Running"},
        }
        for i in range(250)
    ]
    plan = plan_slices(svc, pods, [])
    assert [len(s["endpoints"]) for s in plan.creates] == [100, 100, 50]
    assert not plan.updates and not plan.deletes
    existing = []
    for i, s in enumerate(plan.creates):
        s["metadata"]["name"] = f"web-{i}"
        existing.append(s)
    assert not plan_slices(svc, pods, existing)  # converged: nothing to write
    # 30 pods go from the first slice, 20 come: they fill the slice being updated.
    newer = pods[30:] + [
        {**p, "metadata": {**p["metadata"], "name": f"q{i}", "uid": f"q{i}"},
         "status": {"podIP": f"10.9.0.{i + 1}"}}
        for i, p in enumerate(pods[:20])
    ]  # fmt: skip
    plan = plan_slices(svc, newer, existing)
    assert not plan.creates and not plan.deletes
    (updated,) = plan.updates
    assert updated["metadata"]["name"] == "web-0" and len(updated["endpoints"]) == 90
    assert MAX_ENDPOINTS_PER_SLICE == 100


async def test_placeholder_then_reuse_and_headless_label(cluster, controller):
    api = cluster.api
    await api.create(service("db", ports=[], clusterIP="None"))
    (placeholder,) = await wait_summary(api, [((), ())], "db")
    assert placeholder["metadata"]["labels"][HEADLESS_LABEL] == ""
    await add_pod(api, "db-0", {"app": "db"}, "10.1.0.1", hostname="db-0", subdomain="db")
    (eps,) = await wait_summary(api, [((), (("10.1.0.1", True, True, False),))], "db")
    assert eps["metadata"]["name"] == placeholder["metadata"]["name"]
    assert eps["endpoints"][0]["hostname"] == "db-0"

    await api.create(service())
    (web,) = await wait_summary(api, [((), ())])
    await add_pod(api, "a", {"app": "web"}, "10.1.0.2")
    (eps,) = await wait_summary(api, [(HTTP, (("10.1.0.2", True, True, False),))])
    assert eps["metadata"]["name"] == web["metadata"]["name"]  # the placeholder, reused


async def test_converged_services_get_no_writes(cluster, controller):
    api = cluster.api
    await api.create(service())
    await api.create(service("idle", {"app": "nothing"}))
    for i in range(5):
        await add_pod(api, f"p{i}", {"app": "web"}, f"10.1.0.{i + 1}", ready=i != 2)
    up, down = (True, True, False), (False, False, False)
    await wait_summary(
        api, [(HTTP, tuple((f"10.1.0.{i + 1}", *(down if i == 2 else up)) for i in range(5)))]
    )
    await wait_summary(api, [((), ())], "idle")
    await quiet(controller.manager, controller.name, cluster.store)


async def test_slices_go_with_their_service(cluster, controller):
    api = cluster.api
    await api.create(service())
    await add_pod(api, "a", {"app": "web"}, "10.1.0.1")
    await wait_summary(api, [(HTTP, (("10.1.0.1", True, True, False),))])
    (eps,) = await slices_of(api)
    await api.delete(*SLICE, eps["metadata"]["name"], NS)  # removed by hand: made again
    await wait_summary(api, [(HTTP, (("10.1.0.1", True, True, False),))])
    await api.delete("v1", "Service", "web", NS)

    async def collected():
        return not await slices_of(api)

    await eventually(collected, timeout=10)


async def test_services_without_selector_keep_their_own_slices(cluster, controller):
    api = cluster.api
    await api.create(service("ext", selector={}))
    mine = await api.create(
        a_slice(
            "ext-1",
            addressType="IPv4",
            endpoints=[{"addresses": ["192.0.2.10"]}],
            metadata={"name": "ext-1", "namespace": NS, "labels": {SERVICE_NAME: "ext"}},
        )
    )
    await add_pod(api, "p", {"app": "ext"}, "10.1.0.1")
    runner = controller.manager.runners[controller.name]
    before = runner.stats.reconciles
    await eventually(lambda: runner.stats.reconciles > before + 2)
    (got,) = await slices_of(api, "ext")
    assert got["metadata"]["resourceVersion"] == mine["metadata"]["resourceVersion"]
    assert runner.stats.writes == 0


def test_the_tracker_waits_for_the_cache_to_show_what_was_written():
    now = [0.0]
    tracker = SliceTracker(clock=lambda: now[0])

    def cached(name: str, generation: int) -> dict[str, Any]:
        return {"metadata": {"name": name, "generation": generation}}

    assert not tracker.stale("ns/web", [])
    tracker.expect("ns/web", "web-a", 2)
    tracker.expect("ns/web", "web-b", SliceTracker.DELETED)
    assert tracker.stale("ns/web", [cached("web-a", 1), cached("web-b", 1)])
    assert tracker.stale("ns/web", [cached("web-a", 1)])  # a is older; b is gone at last
    assert not tracker.stale("ns/web", [cached("web-a", 2)])  # caught up
    assert not tracker.stale("ns/web", [cached("web-a", 1), cached("web-b", 1)])  # forgotten
    tracker.expect("ns/web", "web-c", 1)
    now[0] += 61  # never shown (deleted by someone else, say): not waited for forever
    assert not tracker.stale("ns/web", [])
    tracker.expect("ns/web", "web-d", 1)
    tracker.forget("ns/web", "web-d")  # its DELETED event was seen
    assert not tracker.stale("ns/web", [])
