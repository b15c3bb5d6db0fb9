"""Records from Services and EndpointSlices, and the zone's answers (CoreDNS's kubernetes
plugin with ``pods insecure``)."""

from __future__ import annotations

from kcore.plugins.dns import wire
from kcore.plugins.dns.records import ClusterZone, service_records
from kcore.plugins.dns.wire import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, A, SRVData

from .fakes import endpoint_slice, ep, service

WEB = "web.default.svc.cluster.local"
DB = "db.default.svc.cluster.local"


def data(answer, rtype=None):
    return sorted(
        (r.data for r in answer.answers if rtype is None or r.rtype == rtype),
        key=str,
    )


def zone_with(*objects) -> ClusterZone:
    zone = ClusterZone("cluster.local", ttl=5, nameserver="10.244.0.1")
    for obj in objects:
        (zone.set_service if obj["kind"] == "Service" else zone.set_slice)(obj)
    return zone


def headless_db(publish_not_ready: bool = False):
    svc = service(
        "db",
        cluster_ip="None",
        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}, {"port": 9000}],
        publishNotReadyAddresses=publish_not_ready,
    )
    es = endpoint_slice(
        "db",
        [
            ep("10.244.0.5", hostname="db-0"),
            ep("10.244.0.6"),
            ep("10.244.0.7", ready=False),
            ep("10.244.0.8", ready=None),  # unknown counts as ready
        ],
        ports=[
            {"name": "pg", "port": 5432, "protocol": "TCP"},
            {"name": "", "port": 9000, "protocol": "TCP"},
        ],
    )
    return svc, es


# -- service_records --------------------------------------------------------------------


def test_cluster_ip_service_records():
    svc = service(
        "web",
        cluster_ip="10.96.0.20",
        ports=[
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"port": 9090},
        ],
    )
    records = service_records(svc, [endpoint_slice("web", [ep("10.244.0.9")])])
    assert [(r.rtype, r.data) for r in records[WEB] if r.rtype == A] == [(A, "10.96.0.20")]
    assert records[f"_http._tcp.{WEB}"][0].data == SRVData(0, 100, 80, WEB)
    assert records[f"_dns._udp.{WEB}"][0].data == SRVData(0, 100, 53, WEB)
    # the unnamed port has no _port._proto name but is listed at the service name
    assert sorted(r.data.port for r in records[WEB] if r.rtype == SRV) == [53, 80, 9090]
    assert records["20.0.96.10.in-addr.arpa"][0].data == WEB
    assert all(r.ttl == 5 for rs in records.values() for r in rs)
    # endpoint names exist for a ClusterIP service too (as CoreDNS), but its A is the VIP
    assert records[f"10-244-0-9.{WEB}"][0].data == "10.244.0.9"


def test_headless_service_records():
    svc, es = headless_db()
    records = service_records(svc, [es], "cluster.local", 30)
    assert sorted(r.data for r in records[DB] if r.rtype == A) == [
        "10.244.0.5",
        "10.244.0.6",
        "10.244.0.8",
    ]
    assert records[f"db-0.{DB}"][0].data == "10.244.0.5"
    assert records[f"10-244-0-6.{DB}"][0].data == "10.244.0.6"
    assert f"10-244-0-7.{DB}" not in records  # not ready
    assert sorted(r.data.target for r in records[f"_pg._tcp.{DB}"]) == [
        f"10-244-0-6.{DB}",
        f"10-244-0-8.{DB}",
        f"db-0.{DB}",
    ]
    assert {r.data.weight for r in records[f"_pg._tcp.{DB}"]} == {33}
    assert records["5.0.244.10.in-addr.arpa"][0].data == f"db-0.{DB}"
    assert not any(name.startswith("_9000") or name.startswith("_.") for name in records)
    assert all(r.ttl == 30 for rs in records.values() for r in rs)


def test_publish_not_ready_addresses():
    svc, es = headless_db(publish_not_ready=True)
    records = service_records(svc, [es])
    assert "10.244.0.7" in [r.data for r in records[DB] if r.rtype == A]


def test_external_name_is_a_cname_only():
    svc = service(
        "ext",
        cluster_ip=None,
        type="ExternalName",
        externalName="WWW.Example.test.",
        ports=[{"name": "http", "port": 80}],
    )
    records = service_records(svc, [])
    assert records == {
        "ext.default.svc.cluster.local": [
            wire.Record("ext.default.svc.cluster.local", CNAME, "www.example.test", ttl=5)
        ]
    }


def test_service_without_cluster_ip_yet_exists_without_records():
    records = service_records(service("pending", cluster_ip=None), [])
    assert records == {"pending.default.svc.cluster.local": []}


def test_ipv6_service_and_slices():
    svc = service("v6", cluster_ip="fd00:96::14", clusterIPs=["fd00:96::14"])
    records = service_records(svc, [])
    assert records["v6.default.svc.cluster.local"][0].rtype == AAAA
    head = service("h6", cluster_ip="None")
    es = endpoint_slice("h6", [ep("fd00:244::5")], address_type="IPv6")
    fqdn = endpoint_slice("h6", [ep("db.example.test")], name="h6-fqdn", address_type="FQDN")
    records = service_records(head, [es, fqdn])
    name = "h6.default.svc.cluster.local"
    assert [(r.rtype, r.data) for r in records[name]] == [(AAAA, "fd00:244::5")]
    assert f"fd00-244--5.{name}" in records


# -- the zone ---------------------------------------------------------------------------


def test_lookup_a_and_case_kept_in_answer():
    zone = zone_with(service("web"))
    answer = zone.lookup("Web.DEFAULT.svc.Cluster.Local.", A)
    assert answer.rcode == wire.NOERROR
    assert [(r.name, r.data, r.ttl) for r in answer.answers] == [
        ("Web.DEFAULT.svc.Cluster.Local", "10.96.0.20", 5)
    ]
    assert answer.authority == []


def test_nxdomain_and_nodata_carry_the_soa():
    zone = zone_with(service("web"))
    missing = zone.lookup("nope.default.svc.cluster.local", A)
    assert missing.rcode == wire.NXDOMAIN and missing.answers == []
    assert [r.rtype for r in missing.authority] == [SOA]
    soa = missing.authority[0].data
    assert soa.mname == "ns.dns.cluster.local" and soa.minimum == 5
    nodata = zone.lookup(WEB, AAAA)
    assert nodata.rcode == wire.NOERROR and nodata.answers == []
    assert [r.rtype for r in nodata.authority] == [SOA]


def test_parents_exist_as_empty_names():
    zone = zone_with(service("web", "shop"))
    assert zone.lookup("shop.svc.cluster.local", A).rcode == wire.NOERROR
    assert zone.lookup("svc.cluster.local", A).rcode == wire.NOERROR
    assert zone.lookup("other.svc.cluster.local", A).rcode == wire.NXDOMAIN
    zone.delete_service(service("web", "shop"))
    assert zone.lookup("shop.svc.cluster.local", A).rcode == wire.NXDOMAIN
    assert zone.lookup("web.shop.svc.cluster.local", A).rcode == wire.NXDOMAIN
    assert zone.lookup("20.0.96.10.in-addr.arpa", PTR) is None


def test_srv_answers_with_targets_in_additional():
    svc, es = headless_db()
    zone = zone_with(service("web", ports=[{"name": "http", "port": 80}]), svc, es)
    answer = zone.lookup(f"_http._tcp.{WEB}", SRV)
    assert data(answer) == [SRVData(0, 100, 80, WEB)]
    assert [(r.name, r.data) for r in answer.additional] == [(WEB, "10.96.0.20")]
    answer = zone.lookup(f"_pg._tcp.{DB}", SRV)
    assert len(answer.answers) == 3
    assert {r.name for r in answer.additional} == {
        f"db-0.{DB}",
        f"10-244-0-6.{DB}",
        f"10-244-0-8.{DB}",
    }
    assert zone.lookup(f"_nope._tcp.{DB}", SRV).rcode == wire.NXDOMAIN
    assert zone.lookup(f"_pg._udp.{DB}", SRV).rcode == wire.NXDOMAIN


def test_ptr_for_cluster_ips_and_endpoints_only():
    svc, es = headless_db()
    zone = zone_with(service("web"), svc, es)
    assert data(zone.lookup("20.0.96.10.in-addr.arpa.", PTR)) == [WEB]
    assert data(zone.lookup("5.0.244.10.IN-ADDR.ARPA", PTR)) == [f"db-0.{DB}"]
    assert zone.lookup("5.0.244.10.in-addr.arpa", A).answers == []  # NODATA
    assert zone.lookup("7.0.244.10.in-addr.arpa", PTR) is None  # not ready: not ours
    assert zone.lookup("8.8.8.8.in-addr.arpa", PTR) is None


def test_external_name_cname_and_in_zone_chase():
    ext = service("ext", cluster_ip=None, type="ExternalName", externalName="www.example.test")
    inner = service("alias", cluster_ip=None, type="ExternalName", externalName=WEB)
    zone = zone_with(service("web"), ext, inner)
    answer = zone.lookup("ext.default.svc.cluster.local", A)
    assert [(r.rtype, r.data) for r in answer.answers] == [(CNAME, "www.example.test")]
    assert answer.chase == "www.example.test"
    answer = zone.lookup("alias.default.svc.cluster.local", A)
    assert [(r.name, r.rtype, r.data) for r in answer.answers] == [
        ("alias.default.svc.cluster.local", CNAME, WEB),
        (WEB, A, "10.96.0.20"),
    ]
    assert answer.chase is None
    cname = zone.lookup("ext.default.svc.cluster.local", CNAME)
    assert cname.chase is None and len(cname.answers) == 1


def test_cname_loop_stops():
    a = service(
        "a", cluster_ip=None, type="ExternalName", externalName="b.default.svc.cluster.local"
    )
    b = service(
        "b", cluster_ip=None, type="ExternalName", externalName="a.default.svc.cluster.local"
    )
    answer = zone_with(a, b).lookup("a.default.svc.cluster.local", A)
    assert len(answer.answers) == 8 and all(r.rtype == CNAME for r in answer.answers)


def test_pod_names_insecure():
    zone = zone_with()
    answer = zone.lookup("10-244-1-5.anything.pod.cluster.local", A)
    assert data(answer) == ["10.244.1.5"]
    assert zone.lookup("fd00--5.ns.pod.cluster.local", AAAA).answers[0].data == "fd00::5"
    assert zone.lookup("10-244-1-5.ns.pod.cluster.local", AAAA).answers == []
    assert zone.lookup("10-244-1-500.ns.pod.cluster.local", A).rcode == wire.NXDOMAIN
    assert zone.lookup("010-244-1-5.ns.pod.cluster.local", A).rcode == wire.NXDOMAIN
    assert zone.lookup("x.10-244-1-5.ns.pod.cluster.local", A).rcode == wire.NXDOMAIN
    assert zone.lookup("ns.pod.cluster.local", A).rcode == wire.NOERROR


def test_apex_records():
    zone = zone_with()
    assert zone.lookup("cluster.local", SOA).answers[0].rtype == SOA
    ns = zone.lookup("cluster.local", NS)
    assert data(ns) == ["ns.dns.cluster.local"]
    assert data(zone.lookup("ns.dns.cluster.local", A)) == ["10.244.0.1"]
    assert data(zone.lookup("dns-version.cluster.local", TXT)) == [(b"1.1.0",)]
    assert zone.lookup("example.com", A) is None
    assert zone.lookup("notcluster.local", A) is None


def test_any_returns_every_type():
    zone = zone_with(service("web", ports=[{"name": "http", "port": 80}]))
    assert {r.rtype for r in zone.lookup(WEB, ANY).answers} == {A, SRV}


def test_updates_and_slices_moving_between_services():
    svc, es = headless_db()
    zone = zone_with(svc, es)
    serial = zone.serial
    assert len(zone.lookup(DB, A).answers) == 3
    es2 = endpoint_slice("db", [ep("10.244.0.9")], name="db-second")
    zone.set_slice(es2)
    assert len(zone.lookup(DB, A).answers) == 4
    assert zone.serial != serial
    # the first slice drops all but one endpoint
    zone.set_slice(endpoint_slice("db", [ep("10.244.0.5", hostname="db-0")]))
    assert data(zone.lookup(DB, A)) == ["10.244.0.5", "10.244.0.9"]
    assert zone.lookup(f"10-244-0-6.{DB}", A).rcode == wire.NXDOMAIN
    assert zone.lookup("6.0.244.10.in-addr.arpa", PTR) is None
    # relabelled to another service: gone from db
    moved = endpoint_slice("other", [ep("10.244.0.9")], name="db-second")
    zone.set_slice(moved)
    assert data(zone.lookup(DB, A)) == ["10.244.0.5"]
    zone.delete_slice(endpoint_slice("db", []))
    assert zone.lookup(DB, A).answers == []  # exists, no endpoints: NODATA
    assert zone.lookup(DB, A).rcode == wire.NOERROR
    # the slice arrives before its service
    zone.set_service(service("other", cluster_ip="None"))
    assert data(zone.lookup("other.default.svc.cluster.local", A)) == ["10.244.0.9"]


def test_two_services_share_an_endpoint_address():
    one = service("one", cluster_ip="None")
    two = service("two", cluster_ip="None")
    zone = zone_with(
        one,
        two,
        endpoint_slice("one", [ep("10.244.0.5")], name="one-x"),
        endpoint_slice("two", [ep("10.244.0.5")], name="two-x"),
    )
    assert len(zone.lookup("5.0.244.10.in-addr.arpa", PTR).answers) == 2
    zone.delete_service(one)
    assert data(zone.lookup("5.0.244.10.in-addr.arpa", PTR)) == [
        "10-244-0-5.two.default.svc.cluster.local"
    ]


def test_service_change_from_cluster_ip_to_headless():
    zone = zone_with(service("web"), endpoint_slice("web", [ep("10.244.0.5")]))
    assert data(zone.lookup(WEB, A)) == ["10.96.0.20"]
    zone.set_service(service("web", cluster_ip="None"))
    assert data(zone.lookup(WEB, A)) == ["10.244.0.5"]
    assert zone.lookup("20.0.96.10.in-addr.arpa", PTR) is None
