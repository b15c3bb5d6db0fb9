"""A live server on 127.0.0.1:<free port>, asked over UDP and TCP; forwarding to a fake
upstream on loopback (never to the machine's resolvers)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from kcore.plugins.dns import wire
from kcore.plugins.dns.client import exchange_tcp, exchange_udp, query
from kcore.plugins.dns.forward import Forwarder, parse_upstream, resolv_conf_nameservers
from kcore.plugins.dns.records import ClusterZone
from kcore.plugins.dns.server import DnsServer
from kcore.plugins.dns.wire import AAAA, CNAME, SRV, A, Edns

from .fakes import FakeUpstream, endpoint_slice, ep, service

WEB = "web.default.svc.cluster.local"


def free_udp_port() -> int:
    """A loopback port with nothing on it (for an upstream that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_cluster_name_over_udp_and_tcp(served):
    served.zone.set_service(service("web", ports=[{"name": "http", "port": 80}]))
    for tcp in (False, True):
        answer = await query(served.address, "web.default.svc.cluster.local", A, tcp=tcp)
        assert answer.qr and answer.aa and answer.ra and answer.rd
        assert answer.rcode == wire.NOERROR
        assert [(r.name, r.data, r.ttl) for r in answer.answers] == [(WEB, "10.96.0.20", 5)]
        srv = await query(served.address, f"_http._tcp.{WEB}", SRV, tcp=tcp)
        assert [r.data.port for r in srv.answers] == [80]
        assert [r.data for r in srv.additional] == ["10.96.0.20"]


async def test_nxdomain_nodata_and_case(served):
    served.zone.set_service(service("web"))
    missing = await query(served.address, "nope.default.svc.cluster.local")
    assert missing.rcode == wire.NXDOMAIN and missing.aa
    assert [r.rtype for r in missing.authority] == [wire.SOA]
    nodata = await query(served.address, WEB, AAAA)
    assert nodata.rcode == wire.NOERROR and nodata.answers == []
    assert [r.rtype for r in nodata.authority] == [wire.SOA]
    mixed = await query(served.address, "WEB.Default.SVC.cluster.LOCAL")
    assert mixed.questions[0].name == "WEB.Default.SVC.cluster.LOCAL"
    assert [r.name for r in mixed.answers] == ["WEB.Default.SVC.cluster.LOCAL"]


async def test_edns_is_echoed(served):
    served.zone.set_service(service("web"))
    answer = await query(served.address, WEB, edns=Edns(udp_size=4096, do=True))
    assert answer.edns is not None and answer.edns.udp_size == 1232 and answer.edns.do
    plain = await query(served.address, WEB)
    assert plain.edns is None
    bad = wire.make_query(WEB, ident=9, edns=Edns(version=1)).encode()
    reply = wire.decode(await exchange_udp(served.address, bad))
    assert reply.rcode == wire.BADVERS and reply.edns is not None


async def test_large_answer_truncates_over_udp_and_is_whole_over_tcp(served):
    served.zone.set_service(service("big", cluster_ip="None"))
    served.zone.set_slice(
        endpoint_slice("big", [ep(f"10.244.{i // 250}.{i % 250 + 1}") for i in range(120)])
    )
    name = "big.default.svc.cluster.local"
    udp = await query(served.address, name)
    assert udp.tc and udp.answers == []
    edns = await query(served.address, name, edns=Edns(udp_size=4096))
    assert not edns.tc and len(edns.answers) == 120  # 120 * 16 bytes fit in 4096
    tcp = await query(served.address, name, tcp=True)
    assert not tcp.tc and len(tcp.answers) == 120


async def test_malformed_packets_get_formerr_or_nothing(served):
    def raw(data: bytes) -> bytes:
        return data

    # garbage after a header: FORMERR with the same id
    packet = struct.pack("!HHHHHH", 0xABCD, 0x0100, 1, 0, 0, 0) + b"\x05ab"
    reply = await exchange_udp(served.address, packet)
    assert struct.unpack("!HH", reply[:4]) == (0xABCD, 0x8100 | wire.FORMERR)
    # the same over TCP, and the connection keeps serving
    reader, writer = await asyncio.open_connection(*served.address)
    try:
        for data in (packet, wire.make_query(WEB, ident=7).encode()):
            writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        first = await reader.readexactly(struct.unpack("!H", await reader.readexactly(2))[0])
        second = await reader.readexactly(struct.unpack("!H", await reader.readexactly(2))[0])
        assert first[3] & 0xF == wire.FORMERR
        assert wire.decode(second).id == 7
    finally:
        writer.close()
    # two questions: FORMERR; opcode STATUS: NOTIMP
    two = wire.Message(id=3, questions=[wire.Question(WEB), wire.Question(WEB)]).encode()
    assert wire.decode(await exchange_udp(served.address, two)).rcode == wire.FORMERR
    status = wire.Message(id=4, opcode=2, questions=[wire.Question(WEB)]).encode()
    assert (await exchange_udp(served.address, status))[3] & 0xF == wire.NOTIMP
    # zone transfers are refused
    axfr = await query(served.address, "cluster.local", wire.AXFR, tcp=True)
    assert axfr.rcode == wire.REFUSED
    # a short packet and a response (QR set) get nothing; the server still answers after
    for data in (b"\x00\x01", wire.Message(id=5, qr=True).encode()):
        with pytest.raises(TimeoutError):
            await exchange_udp(served.address, raw(data), timeout=0.3)
    assert (await query(served.address, "cluster.local", wire.SOA)).answers


async def test_forwarding_to_the_upstream(served, upstream: FakeUpstream):
    answer = await query(served.address, "www.example.test")
    assert [r.data for r in answer.answers] == ["192.0.2.10"]
    assert answer.rcode == wire.NOERROR and not answer.aa
    missing = await query(served.address, "nope.example.test", tcp=True)
    assert missing.rcode == wire.NXDOMAIN
    # the upstream saw its own ids, not the client's
    assert [(t, n) for t, n, _ in upstream.seen] == [
        ("udp", "www.example.test"),
        ("udp", "nope.example.test"),
    ]
    assert upstream.seen[0][2] != answer.id or upstream.seen[1][2] != missing.id


async def test_reverse_names_of_unknown_addresses_are_forwarded(served, upstream):
    served.zone.set_service(service("web"))
    known = await query(served.address, "20.0.96.10.in-addr.arpa", wire.PTR)
    assert [r.data for r in known.answers] == [WEB]
    unknown = await query(served.address, "1.2.0.192.in-addr.arpa", wire.PTR)
    assert unknown.rcode == wire.NXDOMAIN  # the fake upstream's answer
    assert upstream.seen[-1][1] == "1.2.0.192.in-addr.arpa"


async def test_upstream_truncation_goes_to_tcp(served, upstream: FakeUpstream):
    upstream.big.add("many.example.test")
    answer = await query(served.address, "many.example.test", tcp=True)
    assert len(answer.answers) == 100 and not answer.tc
    assert [t for t, n, _ in upstream.seen if n == "many.example.test"] == ["udp", "tcp"]
    # over UDP the client gets TC (the whole answer does not fit in 512 bytes)
    udp = await query(served.address, "many.example.test")
    assert udp.tc and udp.answers == [] and udp.id is not None


async def test_concurrent_queries_map_ids_and_ignore_bogus_answers(served, upstream):
    upstream.bogus_first = True
    names = {f"h{i}.example.test": f"192.0.2.{i}" for i in range(1, 41)}
    upstream.names.update(names)
    # answers come back out of order: later names answer sooner
    upstream.delays.update({n: 0.2 - i * 0.005 for i, n in enumerate(names)})
    answers = await asyncio.gather(*(query(served.address, n) for n in names))
    for name, answer in zip(names, answers, strict=True):
        assert answer.questions[0].name == name
        assert [r.data for r in answer.answers] == [names[name]]


async def test_servfail_when_the_upstream_is_down(upstream):
    zone = ClusterZone()
    # port unreachable fails at once, long before the (long) timeout
    down = Forwarder([("127.0.0.1", free_udp_port())], timeout=30, attempts=2)
    server = DnsServer(zone, down)
    port = await server.start("127.0.0.1", 0)
    forwarder = Forwarder([upstream.address], timeout=0.3, attempts=2)
    try:
        answer = await query(("127.0.0.1", port), "www.example.test", timeout=20)
        assert answer.rcode == wire.SERVFAIL and answer.questions[0].name == "www.example.test"
        # a silent upstream: SERVFAIL after the timeouts; the second upstream answers
        server.forwarder = forwarder
        upstream.silent = True
        answer = await query(("127.0.0.1", port), "www.example.test", timeout=5)
        assert answer.rcode == wire.SERVFAIL
        assert len(upstream.seen) == 2  # two attempts
        other = FakeUpstream(names={"www.example.test": "192.0.2.99"})
        await other.start()
        try:
            forwarder.upstreams = [upstream.address, other.address]
            answer = await query(("127.0.0.1", port), "www.example.test", timeout=5)
            assert [r.data for r in answer.answers] == ["192.0.2.99"]
        finally:
            await other.close()
    finally:
        await server.close()
        forwarder.close()
        down.close()


async def test_no_upstream_is_servfail_for_outside_names():
    server = DnsServer(ClusterZone())
    port = await server.start("127.0.0.1", 0)
    try:
        answer = await query(("127.0.0.1", port), "www.example.test")
        assert answer.rcode == wire.SERVFAIL and not answer.ra
        inside = await query(("127.0.0.1", port), "cluster.local", wire.SOA)
        assert inside.rcode == wire.NOERROR
    finally:
        await server.close()


async def test_external_name_is_chased_upstream(served):
    served.zone.set_service(
        service("ext", cluster_ip=None, type="ExternalName", externalName="www.example.test")
    )
    answer = await query(served.address, "ext.default.svc.cluster.local")
    assert [(r.rtype, r.data) for r in answer.answers] == [
        (CNAME, "www.example.test"),
        (A, "192.0.2.10"),
    ]
    served.zone.set_service(
        service("gone", cluster_ip=None, type="ExternalName", externalName="nope.example.test")
    )
    answer = await query(served.address, "gone.default.svc.cluster.local")
    assert answer.rcode == wire.NXDOMAIN
    assert [r.rtype for r in answer.answers] == [CNAME]


async def test_busybox_nslookup_against_the_server(served):
    """A real client: busybox's nslookup (it takes SERVER:PORT)."""
    served.zone.set_service(service("web"))
    proc = await asyncio.create_subprocess_exec(
        "busybox",
        "nslookup",
        "-type=a",
        WEB,
        f"127.0.0.1:{served.server.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, out
    assert f"Name:\t{WEB}\nAddress: 10.96.0.20" in out.decode()


async def test_raw_tcp_exchange_keeps_id(served):
    data = wire.make_query("cluster.local", wire.NS, ident=4242).encode()
    reply = wire.decode(await exchange_tcp(served.address, data))
    assert reply.id == 4242 and reply.answers[0].data == "ns.dns.cluster.local"


def test_upstream_parsing():
    assert parse_upstream("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_upstream(" 127.0.0.2:5353 ") == ("127.0.0.2", 5353)
    assert parse_upstream("[::1]:5300") == ("::1", 5300)
    assert parse_upstream("fe80::1%eth0") == ("fe80::1", 53)
    for bad in ("nope", "10.0.0.1:0", "10.0.0.1:x", "[::1", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_upstream(bad)
    text = "# c\nsearch example\nnameserver 10.0.0.2\nnameserver bogus\nnameserver ::1\n"
    assert resolv_conf_nameservers(text) == [("10.0.0.2", 53), ("::1", 53)]
