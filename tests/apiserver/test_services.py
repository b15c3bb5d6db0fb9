"""Service ClusterIP and NodePort allocation in the API server: in-process on store_sqlite
(allocation, races, ranges, updates, dry-run, repair, the ``kubernetes`` Service), and a
few kubectl cases against a daemon."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pytest
from click.testing import CliRunner
from daemon_process import start_daemon, stop_daemon

from kcore.api.registry import by_resource
from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.services import (
    IP_PREFIX,
    NODE_PORT_PREFIX,
    IPRange,
    Owner,
    PortRange,
    ServiceAllocator,
    ensure_kubernetes_service,
)
from kcore.daemon import bootstrap
from kcore.errors import AlreadyExists, Invalid, KcoreError
from kcore.plugins.store_sqlite.backend import SqliteStore

SERVICES = by_resource("", "v1", "services")
ENDPOINTS = by_resource("", "v1", "endpoints")
SLICES = by_resource("discovery.k8s.io", "v1", "endpointslices")
MERGE = "application/merge-patch+json"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def make_objects(store, **ranges) -> ObjectStore:
    objects = ObjectStore(store, services=ServiceAllocator(store, **ranges))
    await bootstrap(objects)
    return objects


@pytest.fixture
async def store():
    store = SqliteStore(":memory:")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def objects(store):
    return await make_objects(store)


def svc(name: str, **spec) -> dict:
    spec.setdefault("selector", {"app": name})
    spec.setdefault("ports", [{"port": 80}])
    return {"metadata": {"name": name}, "spec": spec}


async def keys(store, prefix: str) -> dict[str, dict]:
    page = await store.list(prefix)
    return {kv.key[len(prefix) :]: json.loads(kv.value) for kv in page.items}


async def create(objects, body, namespace="default", **kw) -> dict:
    return await objects.create(SERVICES, namespace, body, **kw)


def message(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


# --------------------------------------------------------------------------- ranges


def test_ranges_leave_out_network_and_broadcast_and_keep_a_static_band():
    r = IPRange("10.96.0.0/12")
    assert (r.first, r.size, r.static) == ("10.96.0.1", 2**20 - 2, 256)
    assert r.offset("10.96.0.0") is None and r.offset("10.111.255.255") is None
    assert r.offset("10.111.255.254") == r.size - 1
    small = IPRange("10.96.0.0/29")
    assert (small.size, small.static) == (6, 0)
    assert IPRange("10.96.0.0/24").static == 16
    ports = PortRange("30000-32767")
    assert (ports.base, ports.size, ports.static, str(ports)) == (30000, 2768, 86, "30000-32767")
    assert PortRange("30000+9").size == 10
    for bad in ("10.0.0.0/8", "nonsense", "10.96.0.0/32"):
        with pytest.raises(ValueError):
            IPRange(bad)
    for bad in ("32767-30000", "x-y", "0-10", "70000"):
        with pytest.raises(ValueError):
            PortRange(bad)


def test_a_bad_range_option_is_one_clear_error(tmp_path):
    from kcore.cli import cli

    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(tmp_path), "daemon", "--service-cluster-ip-range", "10.0.0.0/8"],
    )
    assert result.exit_code == 2
    assert "too large" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(
        cli, ["--data-dir", str(tmp_path), "daemon", "--service-node-port-range", "9-1"]
    )
    assert result.exit_code == 2 and "node port range" in result.output


# --------------------------------------------------------------------------- allocation


async def test_a_service_gets_a_cluster_ip_from_the_upper_band(objects, store):
    created = await create(objects, svc("web"))
    spec = created["spec"]
    ip = spec["clusterIP"]
    assert spec["clusterIPs"] == [ip]
    offset = objects.services.ips.offset(ip)
    assert offset is not None and offset >= 256  # the lower 256 are for explicit requests
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    record = (await keys(store, IP_PREFIX))[ip]
    assert record["namespace"] == "default" and record["name"] == "web"
    assert record["uid"] == created["metadata"]["uid"]
    assert await keys(store, NODE_PORT_PREFIX) == {}
    got = await objects.get(SERVICES, "default", "web")
    assert got["spec"]["clusterIP"] == ip


async def test_service_defaults_and_validation(objects):
    spec = (await create(objects, svc("d", ports=[{"port": 8080}])))["spec"]
    assert spec["ports"] == [{"protocol": "TCP", "port": 8080, "targetPort": 8080}]
    assert spec["sessionAffinity"] == "None" and spec["internalTrafficPolicy"] == "Cluster"
    assert "externalTrafficPolicy" not in spec
    spec = (await create(objects, svc("a", sessionAffinity="ClientIP")))["spec"]
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    np = (await create(objects, svc("n", type="NodePort")))["spec"]
    assert np["externalTrafficPolicy"] == "Cluster"
    bad = {
        "two ports without names": (
            svc("x", ports=[{"port": 80}, {"port": 81}]),
            "spec.ports[0].name: Required value",
        ),
        "duplicate names": (
            svc("x", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
            'spec.ports[1].name: Duplicate value: "a"',
        ),
        "protocol": (
            svc("x", ports=[{"port": 80, "protocol": "ICMP"}]),
            'spec.ports[0].protocol: Unsupported value: "ICMP"',
        ),
        "timeout 0": (
            svc(
                "x",
                sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}},
            ),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be "
            "greater than 0 and less than 86400",
        ),
        "timeout too long": (
            svc(
                "x",
                sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}},
            ),
            "timeoutSeconds: Invalid value: 86401",
        ),
        "ip family policy": (
            svc("x", ipFamilyPolicy="Sometimes"),
            'spec.ipFamilyPolicy: Unsupported value: "Sometimes"',
        ),
        "IPv6 on an IPv4 cluster": (
            svc("x", ipFamilies=["IPv6"]),
            'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
        ),
        "dual stack": (
            svc("x", ipFamilyPolicy="RequireDualStack"),
            "this cluster is not configured for dual-stack services",
        ),
        "headless node port": (
            svc("x", type="NodePort", clusterIP="None"),
            "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for "
            "NodePort services",
        ),
        "duplicate node ports": (
            svc(
                "x",
                type="NodePort",
                ports=[
                    {"port": 80, "name": "a", "nodePort": 30100},
                    {"port": 81, "name": "b", "nodePort": 30100},
                ],
            ),
            "spec.ports[1].nodePort: Duplicate value: 30100",
        ),
    }
    before = await keys(objects.store, IP_PREFIX)
    for why, (body, expected) in bad.items():
        with pytest.raises(Invalid) as exc:
            await create(objects, body)
        assert expected in message(exc), why
    assert await keys(objects.store, IP_PREFIX) == before  # nothing kept from failures
    ok = svc(
        "long",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}},
    )
    await create(objects, ok)


async def test_concurrent_creates_never_share_an_ip_or_port(objects, store):
    bodies = [svc(f"s{i}", type="NodePort") for i in range(50)]
    created = await asyncio.gather(*(create(objects, b) for b in bodies))
    ips = {c["spec"]["clusterIP"] for c in created}
    ports = {c["spec"]["ports"][0]["nodePort"] for c in created}
    assert len(ips) == 50 and len(ports) == 50
    assert set(await keys(store, IP_PREFIX)) == ips
    assert set(await keys(store, NODE_PORT_PREFIX)) == {str(p) for p in ports}


async def test_two_api_servers_on_one_store_share_a_small_range(store):
    """30 addresses, 30 Services created at once through two object stores (each with its
    own allocator): each gets a different address, and the 31st finds the range full."""
    one = await make_objects(store, cluster_ip_range="10.96.0.0/27")
    two = ObjectStore(store, services=ServiceAllocator(store, cluster_ip_range="10.96.0.0/27"))
    writes = [create(one if i % 2 else two, svc(f"s{i}")) for i in range(30)]
    created = await asyncio.gather(*writes)
    ips = [c["spec"]["clusterIP"] for c in created]
    assert len(set(ips)) == 30
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.96.0.0/27") for ip in ips)
    with pytest.raises(KcoreError) as exc:
        await create(two, svc("full"))
    assert exc.value.code == 500 and exc.value.reason == "InternalError"
    assert message(exc) == "Internal error occurred: failed to allocate a serviceIP: range is full"


async def test_explicit_ip(objects, store):
    created = await create(objects, svc("fixed", clusterIP="10.96.0.5"))
    assert created["spec"]["clusterIPs"] == ["10.96.0.5"]
    assert "10.96.0.5" in await keys(store, IP_PREFIX)
    with pytest.raises(Invalid) as exc:
        await create(objects, svc("again", clusterIP="10.96.0.5"))
    assert exc.value.code == 422
    assert message(exc) == (
        'Service "again" is invalid: spec.clusterIPs: Invalid value: ["10.96.0.5"]: failed to '
        "allocate IP 10.96.0.5: provided IP is already allocated"
    )
    assert exc.value.causes[0].field == "spec.clusterIPs"
    for outside in ("10.95.0.1", "10.96.0.0", "10.111.255.255"):
        with pytest.raises(Invalid) as exc:
            await create(objects, svc("outside", clusterIP=outside))
        assert message(exc).endswith(
            f"failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid "
            "range. The range of valid IPs is 10.96.0.0/12"
        )
    with pytest.raises(Invalid, match="must be a valid IP address"):
        await create(objects, svc("garbage", clusterIP="10.96.0.300"))


async def test_headless_services_get_no_address(objects, store):
    headless = await create(objects, svc("db", clusterIP="None"))
    assert headless["spec"]["clusterIPs"] == ["None"]
    assert headless["spec"]["ipFamilyPolicy"] == "SingleStack"
    no_selector = await create(
        objects, {"metadata": {"name": "ext"}, "spec": {"clusterIP": "None"}}
    )
    assert no_selector["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    assert await keys(store, IP_PREFIX) == {}
    external = await create(
        objects,
        {"metadata": {"name": "n"}, "spec": {"type": "ExternalName", "externalName": "a.b"}},
    )
    assert "clusterIP" not in external["spec"] and "ipFamilies" not in external["spec"]
    assert await keys(store, IP_PREFIX) == {}


async def test_exhaustion_and_reuse_in_a_tiny_range(store):
    objects = await make_objects(store, cluster_ip_range="10.96.0.0/29")
    ips = [(await create(objects, svc(f"s{i}")))["spec"]["clusterIP"] for i in range(6)]
    assert sorted(ips, key=ipaddress.ip_address) == [f"10.96.0.{i}" for i in range(1, 7)]
    with pytest.raises(KcoreError, match="failed to allocate a serviceIP: range is full"):
        await create(objects, svc("s6"))
    gone, _ = await objects.delete(SERVICES, "default", "s3")
    assert (await create(objects, svc("s6")))["spec"]["clusterIP"] == gone["spec"]["clusterIP"]


async def test_node_ports(objects, store):
    dynamic = await create(objects, svc("np", type="NodePort"))
    port = dynamic["spec"]["ports"][0]["nodePort"]
    assert 30000 + 86 <= port <= 32767  # the lower band is for explicit requests
    explicit = await create(
        objects, svc("fixed", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    )
    assert explicit["spec"]["ports"][0]["nodePort"] == 30080
    assert {str(port), "30080"} == set(await keys(store, NODE_PORT_PREFIX))
    with pytest.raises(Invalid) as exc:
        await create(
            objects, svc("clash", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
        )
    assert message(exc) == (
        'Service "clash" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided '
        "port is already allocated"
    )
    with pytest.raises(Invalid) as exc:
        await create(objects, svc("low", type="NodePort", ports=[{"port": 80, "nodePort": 8080}]))
    assert message(exc).endswith(
        "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    )
    # TCP and UDP of one port share a node port; other ports get their own
    multi = await create(
        objects,
        svc(
            "dns",
            type="LoadBalancer",
            ports=[
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153},
            ],
        ),
    )
    node_ports = [p["nodePort"] for p in multi["spec"]["ports"]]
    assert node_ports[0] == node_ports[1] != node_ports[2]
    assert len(await keys(store, NODE_PORT_PREFIX)) == 4
    local = await create(objects, svc("local", type="LoadBalancer", externalTrafficPolicy="Local"))
    assert local["spec"]["healthCheckNodePort"] != local["spec"]["ports"][0]["nodePort"]
    assert len(await keys(store, NODE_PORT_PREFIX)) == 6


async def test_node_port_range_exhaustion(store):
    objects = await make_objects(store, node_port_range="30000-30002")
    body = svc("three", type="NodePort", ports=[{"port": p, "name": f"p{p}"} for p in (1, 2, 3)])
    assert sorted(p["nodePort"] for p in (await create(objects, body))["spec"]["ports"]) == [
        30000,
        30001,
        30002,
    ]
    with pytest.raises(KcoreError, match="failed to allocate a nodePort: range is full") as exc:
        await create(objects, svc("four", type="NodePort"))
    assert exc.value.code == 500
    assert len(await keys(store, IP_PREFIX)) == 1  # the IP of the failed create is freed


async def test_delete_releases_and_the_values_can_be_taken_again(objects, store):
    created = await create(
        objects, svc("web", type="NodePort", ports=[{"port": 80, "nodePort": 30080}])
    )
    ip = created["spec"]["clusterIP"]
    await objects.delete(SERVICES, "default", "web")
    assert await keys(store, IP_PREFIX) == {} and await keys(store, NODE_PORT_PREFIX) == {}
    again = await create(
        objects,
        svc("other", type="NodePort", clusterIP=ip, ports=[{"port": 80, "nodePort": 30080}]),
    )
    assert again["spec"]["clusterIP"] == ip


async def test_a_service_kept_by_a_finalizer_releases_when_it_goes(objects, store):
    body = svc("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await create(objects, body)
    _, gone = await objects.delete(SERVICES, "default", "held")
    assert not gone and len(await keys(store, IP_PREFIX)) == 1
    await objects.patch(SERVICES, "default", "held", MERGE, {"metadata": {"finalizers": None}})
    assert await keys(store, IP_PREFIX) == {}


async def test_a_failed_create_keeps_nothing(objects, store):
    await create(objects, svc("web", type="NodePort"))
    before = (await keys(store, IP_PREFIX), await keys(store, NODE_PORT_PREFIX))
    with pytest.raises(AlreadyExists):
        await create(objects, svc("web", type="NodePort"))
    with pytest.raises(Invalid):  # the IP is free, the port is not: the IP is given back
        await create(
            objects,
            svc(
                "late", type="NodePort", clusterIP="10.96.0.9", ports=[{"port": 1, "nodePort": 31}]
            ),
        )
    assert (await keys(store, IP_PREFIX), await keys(store, NODE_PORT_PREFIX)) == before


async def test_allocations_survive_a_restart_of_the_api_server(tmp_path):
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    objects = await make_objects(store, cluster_ip_range="10.96.0.0/29")
    kept = (await create(objects, svc("kept", type="NodePort")))["spec"]
    await store.close()
    store = SqliteStore(path)
    try:
        objects = await make_objects(store, cluster_ip_range="10.96.0.0/29")
        with pytest.raises(Invalid, match="provided IP is already allocated"):
            await create(objects, svc("x", clusterIP=kept["clusterIP"]))
        node_port = kept["ports"][0]["nodePort"]
        with pytest.raises(Invalid, match="provided port is already allocated"):
            await create(
                objects, svc("y", type="NodePort", ports=[{"port": 1, "nodePort": node_port}])
            )
        others = [(await create(objects, svc(f"s{i}")))["spec"]["clusterIP"] for i in range(5)]
        assert kept["clusterIP"] not in others
    finally:
        await store.close()


async def test_updates_keep_allocated_values_and_may_not_change_them(objects, store):
    created = await create(objects, svc("web", type="NodePort", ports=[{"port": 80, "name": "h"}]))
    ip, port = created["spec"]["clusterIP"], created["spec"]["ports"][0]["nodePort"]
    # kubectl replace / apply send the object without the allocated values
    replaced = await objects.update(
        SERVICES,
        "default",
        "web",
        svc("web", type="NodePort", ports=[{"port": 80, "name": "h"}], selector={"app": "v2"}),
    )
    assert replaced["spec"]["clusterIP"] == ip and replaced["spec"]["clusterIPs"] == [ip]
    assert replaced["spec"]["ports"][0]["nodePort"] == port
    assert replaced["spec"]["selector"] == {"app": "v2"}
    with pytest.raises(Invalid) as exc:
        await objects.patch(
            SERVICES, "default", "web", MERGE, {"spec": {"clusterIP": "10.96.0.20"}}
        )
    assert message(exc) == (
        'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: ["10.96.0.20"]: may '
        "not change once set"
    )
    with pytest.raises(Invalid, match=r"spec\.clusterIPs"):
        await objects.patch(
            SERVICES, "default", "web", MERGE, {"spec": {"clusterIPs": ["10.96.0.20"]}}
        )
    assert set(await keys(store, IP_PREFIX)) == {ip}
    # a node port may change: the old one is freed, the new one taken
    moved = await objects.patch(
        SERVICES,
        "default",
        "web",
        "application/strategic-merge-patch+json",
        {"spec": {"ports": [{"port": 80, "nodePort": 30090}]}},
    )
    assert moved["spec"]["ports"][0]["nodePort"] == 30090
    assert set(await keys(store, NODE_PORT_PREFIX)) == {"30090"}
    # a second port
    two = await objects.patch(
        SERVICES,
        "default",
        "web",
        "application/json-patch+json",
        [{"op": "add", "path": "/spec/ports/-", "value": {"port": 81, "name": "i"}}],
    )
    assert len(await keys(store, NODE_PORT_PREFIX)) == 2
    assert two["spec"]["ports"][1]["nodePort"] in {
        int(p) for p in await keys(store, NODE_PORT_PREFIX)
    }


async def test_type_changes_allocate_and_release(objects, store):
    created = await create(objects, svc("web"))
    ip = created["spec"]["clusterIP"]
    np = await objects.patch(SERVICES, "default", "web", MERGE, {"spec": {"type": "NodePort"}})
    assert np["spec"]["clusterIP"] == ip and np["spec"]["ports"][0]["nodePort"]
    assert len(await keys(store, NODE_PORT_PREFIX)) == 1
    back = await objects.patch(SERVICES, "default", "web", MERGE, {"spec": {"type": "ClusterIP"}})
    assert "nodePort" not in back["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in back["spec"]
    assert await keys(store, NODE_PORT_PREFIX) == {}
    ext = await objects.patch(
        SERVICES,
        "default",
        "web",
        MERGE,
        {"spec": {"type": "ExternalName", "externalName": "example.com"}},
    )
    assert "clusterIP" not in ext["spec"] and "ipFamilies" not in ext["spec"]
    assert await keys(store, IP_PREFIX) == {}
    again = await objects.patch(
        SERVICES, "default", "web", MERGE, {"spec": {"type": "ClusterIP", "externalName": None}}
    )
    assert set(await keys(store, IP_PREFIX)) == {again["spec"]["clusterIP"]}


async def test_dry_run_keeps_nothing(objects, store):
    preview = await create(objects, svc("web", type="NodePort"), dry_run=True)
    assert preview["spec"]["clusterIP"] and preview["spec"]["ports"][0]["nodePort"]
    assert await keys(store, IP_PREFIX) == {} and await keys(store, NODE_PORT_PREFIX) == {}
    await create(objects, svc("real", clusterIP="10.96.0.7"))
    with pytest.raises(Invalid, match="provided IP is already allocated"):
        await create(objects, svc("web", clusterIP="10.96.0.7"), dry_run=True)
    await objects.patch(
        SERVICES, "default", "real", MERGE, {"spec": {"type": "NodePort"}}, dry_run=True
    )
    assert await keys(store, NODE_PORT_PREFIX) == {}
    await objects.patch(
        SERVICES,
        "default",
        "real",
        MERGE,
        {"spec": {"type": "ExternalName", "externalName": "x.y"}},
        dry_run=True,
    )
    assert set(await keys(store, IP_PREFIX)) == {"10.96.0.7"}
    await objects.delete(SERVICES, "default", "real", dry_run=True)
    assert set(await keys(store, IP_PREFIX)) == {"10.96.0.7"}


async def test_repair_frees_leaks_and_records_what_is_missing(store):
    clock = Clock()
    objects = ObjectStore(store, services=ServiceAllocator(store, clock=clock))
    await bootstrap(objects)
    allocator = objects.services
    live = await create(objects, svc("live", type="NodePort"))
    ip = live["spec"]["clusterIP"]
    # a leak: an address whose Service is gone (a crash between allocating and writing)
    await store.create(IP_PREFIX + "10.96.0.50", Owner("default", "gone", "x").record(0.0))
    # a young allocation: its Service may be being written right now
    clock.t -= 30
    await store.create(IP_PREFIX + "10.96.0.51", Owner("default", "coming", "u").record(clock()))
    clock.t += 30
    # a Service whose allocation record was lost
    await store.delete(IP_PREFIX + ip)
    counts = await allocator.repair()
    assert counts == {"freed": 1, "recorded": 1, "kept": 1}
    assert set(await keys(store, IP_PREFIX)) == {ip, "10.96.0.51"}
    assert (await keys(store, IP_PREFIX))[ip]["uid"] == live["metadata"]["uid"]
    clock.t += 60
    await allocator.repair()
    assert set(await keys(store, IP_PREFIX)) == {ip}
    assert set(await keys(store, NODE_PORT_PREFIX)) == {str(live["spec"]["ports"][0]["nodePort"])}
    # the recorded address is really held again
    with pytest.raises(Invalid, match="already allocated"):
        await create(objects, svc("x", clusterIP=ip))


async def test_the_kubernetes_service(store):
    objects = await make_objects(store, cluster_ip_range="10.97.0.0/16")
    await ensure_kubernetes_service(objects, port=6443, address="10.250.7.1")
    kube = await objects.get(SERVICES, "default", "kubernetes")
    spec = kube["spec"]
    assert spec["clusterIP"] == "10.97.0.1" and spec["type"] == "ClusterIP"
    assert spec["ports"] == [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}]
    assert "selector" not in spec
    assert kube["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    ep = await objects.get(ENDPOINTS, "default", "kubernetes")
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "10.250.7.1"}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }
    ]
    assert SLICES is not None
    eps = await objects.get(SLICES, "default", "kubernetes")
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert eps["addressType"] == "IPv4"
    assert eps["endpoints"][0]["addresses"] == ["10.250.7.1"]
    assert eps["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    # idempotent; a new port and address are brought in
    rv = kube["metadata"]["resourceVersion"]
    await ensure_kubernetes_service(objects, port=6443, address="10.250.7.1")
    assert (await objects.get(SERVICES, "default", "kubernetes"))["metadata"][
        "resourceVersion"
    ] == rv
    await ensure_kubernetes_service(objects, port=7443, address="10.250.7.2")
    kube = await objects.get(SERVICES, "default", "kubernetes")
    assert kube["spec"]["ports"][0]["targetPort"] == 7443
    assert kube["spec"]["clusterIP"] == "10.97.0.1"
    ep = await objects.get(ENDPOINTS, "default", "kubernetes")
    assert ep["subsets"][0]["addresses"] == [{"ip": "10.250.7.2"}]
    # a loopback address is no endpoint a pod could use
    other = await make_objects(SqliteStore(":memory:"))
    try:
        await ensure_kubernetes_service(other, port=6443, address="127.0.0.1")
        assert (await other.get(SERVICES, "default", "kubernetes"))["spec"]["clusterIP"] == (
            "10.96.0.1"
        )
        with pytest.raises(KcoreError, match="not found"):
            await other.get(ENDPOINTS, "default", "kubernetes")
    finally:
        await other.store.close()


# --------------------------------------------------------------------------- kubectl


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("kcore-services")
    d = start_daemon(
        data_dir,
        daemon_args=(
            "--service-cluster-ip-range",
            "10.98.0.0/24",
            "--service-node-port-range",
            "31000-31999",
        ),
    )
    try:
        yield d
    finally:
        stop_daemon(d)


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_kubectl_get_svc_shows_the_kubernetes_service(daemon):
    table = rows(ok(daemon.kubectl("get", "svc")))
    assert table[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert table[1][:5] == ["kubernetes", "ClusterIP", "10.98.0.1", "<none>", "443/TCP"]
    kube = json.loads(ok(daemon.kubectl("get", "svc", "kubernetes", "-o", "json")))
    assert kube["spec"]["ports"][0]["targetPort"] == int(daemon.url.rsplit(":", 1)[1])


def test_kubectl_create_service_and_expose(daemon):
    ok(daemon.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080"))
    ok(daemon.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=31080"))
    ok(daemon.kubectl("create", "deployment", "app", "--image=busybox", "--port=8080"))
    ok(daemon.kubectl("expose", "deployment", "app", "--port=80", "--target-port=8080"))
    table = {r[0]: r for r in rows(ok(daemon.kubectl("get", "svc", "-o", "wide")))}
    assert table["NAME"][-1] == "SELECTOR"
    for name in ("web", "np", "app"):
        assert ipaddress.ip_address(table[name][2]) in ipaddress.ip_network("10.98.0.0/24")
    assert table["web"][1:2] + table["web"][3:5] == ["ClusterIP", "<none>", "80/TCP"]
    assert table["np"][1] == "NodePort" and table["np"][4] == "80:31080/TCP"
    assert table["app"][-1] == "app=app"
    clash = daemon.kubectl("create", "service", "nodeport", "np2", "--tcp=80", "--node-port=31080")
    assert clash.returncode != 0
    assert "spec.ports[0].nodePort: Invalid value: 31080: provided port is already allocated" in (
        clash.stderr
    )
    headless = daemon.kubectl("create", "service", "clusterip", "db", "--clusterip=None")
    ok(headless)
    assert rows(ok(daemon.kubectl("get", "svc", "db")))[1][2] == "None"


def test_kubectl_apply_and_replace_keep_the_cluster_ip(daemon):
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "applied", "labels": {"v": "1"}},
        "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80}]},
    }
    ok(daemon.kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    first = json.loads(ok(daemon.kubectl("get", "svc", "applied", "-o", "json")))["spec"]
    manifest["metadata"]["labels"]["v"] = "2"
    ok(daemon.kubectl("apply", "-f", "-", input=json.dumps(manifest)))
    ok(daemon.kubectl("replace", "-f", "-", input=json.dumps(manifest)))
    now = json.loads(ok(daemon.kubectl("get", "svc", "applied", "-o", "json")))
    assert now["metadata"]["labels"]["v"] == "2"
    assert now["spec"]["clusterIP"] == first["clusterIP"]
    assert now["spec"]["ports"][0]["nodePort"] == first["ports"][0]["nodePort"]
    ok(daemon.kubectl("delete", "svc", "applied"))
    ok(
        daemon.kubectl(
            "create",
            "service",
            "clusterip",
            "reuse",
            "--tcp=80",
            f"--clusterip={first['clusterIP']}",
        )
    )
