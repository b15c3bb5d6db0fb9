"""The DNS wire format: round trips, name compression, EDNS, truncation, and malformed
input that must raise FormatError (and nothing else)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.plugins.dns import wire
from kcore.plugins.dns.wire import (
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    TXT,
    A,
    Edns,
    FormatError,
    Message,
    MXData,
    Question,
    Record,
    SOAData,
    SRVData,
    decode,
)


def header(ident=1, flags=0, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def test_query_bytes_are_rfc_1035():
    data = wire.make_query("www.Example.com", A, ident=0x1234).encode()
    assert data == (
        header(0x1234, 0x0100) + b"\x03www\x07Example\x03com\x00" + struct.pack("!HH", 1, 1)
    )
    back = decode(data)
    assert back.id == 0x1234 and back.rd and not back.qr
    assert back.questions == [Question("www.Example.com", A)]


def test_every_record_type_round_trips():
    msg = Message(
        id=7,
        qr=True,
        aa=True,
        rd=True,
        ra=True,
        rcode=wire.NXDOMAIN,
        questions=[Question("web.default.svc.cluster.local", SRV)],
        answers=[
            Record("web.default.svc.cluster.local", A, "10.96.0.20", ttl=5),
            Record("web.default.svc.cluster.local", AAAA, "fd00::14", ttl=5),
            Record("alias.default.svc.cluster.local", CNAME, "www.example.test", ttl=5),
            Record("20.0.96.10.in-addr.arpa", PTR, "web.default.svc.cluster.local", ttl=5),
            Record(
                "_http._tcp.web.default.svc.cluster.local",
                SRV,
                SRVData(0, 100, 80, "web.default.svc.cluster.local"),
                ttl=5,
            ),
            Record("cluster.local", MX, MXData(10, "mail.cluster.local"), ttl=5),
            Record("dns-version.cluster.local", TXT, (b"1.1.0", b""), ttl=5),
            Record("x.cluster.local", 99, b"\x01\x02\x03", ttl=5),
        ],
        authority=[
            Record(
                "cluster.local",
                SOA,
                SOAData(
                    "ns.dns.cluster.local", "hostmaster.cluster.local", 9, 7200, 1800, 86400, 5
                ),
                ttl=5,
            ),
            Record("cluster.local", NS, "ns.dns.cluster.local", ttl=5),
        ],
        additional=[Record("ns.dns.cluster.local", A, "10.244.0.1", ttl=5)],
        edns=Edns(udp_size=1232, do=True),
    )
    assert decode(msg.encode()) == msg


def test_names_are_compressed_and_pointers_decoded():
    msg = Message(id=1, qr=True, questions=[Question("web.default.svc.cluster.local", A)])
    msg.answers = [
        Record("web.default.svc.cluster.local", A, f"10.244.0.{i}", ttl=5) for i in range(10)
    ]
    data = msg.encode()
    # each answer's owner is a 2-byte pointer to the question's name (offset 12)
    assert data.count(b"\xc0\x0c") == 10
    assert data.count(b"\x07cluster") == 1
    assert len(data) == 12 + 35 + 10 * (2 + 10 + 4)
    assert decode(data) == msg


def test_suffix_compression_and_case():
    """A name sharing only a suffix points into the middle of an earlier one; the
    pointer matches regardless of case, the stored spelling is kept."""
    msg = Message(
        id=2,
        qr=True,
        questions=[Question("A.Default.svc.cluster.local", A)],
        answers=[Record("b.default.SVC.cluster.local", A, "10.0.0.1")],
    )
    data = msg.encode()
    assert b"\x01b\xc0\x0e" in data  # "b" + pointer to "Default..." at offset 14
    back = decode(data)
    assert back.answers[0].name == "b.Default.svc.cluster.local"


def test_srv_target_is_never_compressed():
    target = "web.default.svc.cluster.local"
    msg = Message(
        id=3,
        questions=[Question(target, SRV)],
        answers=[Record(target, SRV, SRVData(0, 100, 80, target))],
    )
    data = msg.encode()
    assert data.count(b"\x03web\x07default") == 2


def test_labels_with_dots_and_backslashes_survive():
    name = "a\\.b.c\\\\d.example"
    assert wire.split_name(name) == ["a.b", "c\\d", "example"]
    data = wire.make_query(name).encode()
    assert b"\x03a.b\x03c\\d\x07example\x00" in data
    assert decode(data).questions[0].name == name


def test_trailing_dot_and_root():
    assert decode(wire.make_query("example.com.").encode()).questions[0].name == "example.com"
    assert decode(wire.make_query("", NS).encode()).questions[0].name == ""


def test_edns_extended_rcode_and_version():
    msg = Message(id=4, qr=True, rcode=wire.BADVERS, edns=Edns(udp_size=4096, version=0))
    data = msg.encode()
    opt = data[-11:]
    assert opt[:3] == b"\x00\x00\x29" and struct.unpack("!H", opt[3:5])[0] == 4096
    assert opt[5] == 1  # BADVERS = 16: upper bits 1 in the OPT TTL
    assert data[3] & 0xF == 0
    back = decode(data)
    assert back.rcode == wire.BADVERS and back.edns is not None and back.edns.udp_size == 4096
    with pytest.raises(ValueError, match="needs EDNS"):
        Message(rcode=wire.BADVERS).encode()


def test_encode_over_limit_truncates():
    msg = Message(id=5, qr=True, questions=[Question("big.cluster.local", A)], edns=Edns())
    msg.answers = [Record("big.cluster.local", A, f"10.0.{i // 256}.{i % 256}") for i in range(100)]
    full = msg.encode()
    assert len(full) > 512
    short = decode(msg.encode(512))
    assert short.tc and short.answers == [] and short.questions == msg.questions
    assert short.edns is not None
    assert not decode(full).tc


def test_bad_names_are_refused_on_encode():
    with pytest.raises(ValueError, match="label"):
        wire.make_query("a" * 64 + ".example").encode()
    with pytest.raises(ValueError, match="too long"):
        wire.make_query(".".join(["a" * 60] * 5)).encode()
    with pytest.raises(ValueError, match="label"):
        wire.make_query("a..b").encode()
    with pytest.raises(ValueError, match="IDNA"):
        wire.make_query("例え.example").encode()


MALFORMED = {
    "short header": b"\x00\x01\x00",
    "question past the end": header() + b"\x03www",
    "question without type": header() + b"\x03www\x00\x00",
    "pointer to itself": header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer forwards": header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 30,
    "pointer loop": header(qd=2)
    + b"\x01a\xc0\x12\x00\x01\x00\x01"  # at 12: "a" -> 18
    + b"\x01b\xc0\x0c\x00\x01\x00\x01",  # at 20: "b" -> 12: backwards, then 18 is ahead
    "truncated pointer": header() + b"\xc0",
    "label type 01": header() + b"\x43abc\x00\x00\x01\x00\x01",
    "label type 10": header() + b"\x83abc\x00\x00\x01\x00\x01",
    "name over 255 bytes": header() + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
    "answer missing": header(an=1) + b"\x00\x00\x01\x00\x01",
    "rdata past the end": header(qd=0, an=1) + b"\x00\x00\x01\x00\x01" + b"\0\0\0\5\x00\x04\x0a",
    "A with 3 bytes": header(qd=0, an=1) + b"\x00\x00\x01\x00\x01\0\0\0\5\x00\x03\x0a\x00\x00",
    "CNAME shorter than its name": header(qd=0, an=1)
    + b"\x00\x00\x05\x00\x01\0\0\0\5\x00\x02\x03abc\x00",
    "CNAME longer than its name": header(qd=0, an=1)
    + b"\x00\x00\x05\x00\x01\0\0\0\5\x00\x03\x00\x00\x00",
    "SRV too short": header(qd=0, an=1) + b"\x00\x00\x21\x00\x01\0\0\0\5\x00\x02\x00\x00",
    "TXT string past its record": header(qd=0, an=1) + b"\x00\x00\x10\x00\x01\0\0\0\5\x00\x02\x05a",
    "bytes after the last record": header() + b"\x00\x00\x01\x00\x01junk",
    "two OPT records": header(qd=0, ar=2) + (b"\x00\x00\x29\x04\xd0\0\0\0\0\x00\x00") * 2,
    "OPT not at the root": header(qd=0, ar=1) + b"\x01a\x00\x00\x29\x04\xd0\0\0\0\0\x00\x00",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_raises_format_error(data):
    with pytest.raises(FormatError):
        decode(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data):
    try:
        decode(data)
    except FormatError:
        pass


@settings(max_examples=80, deadline=None)
@given(
    st.binary(min_size=12, max_size=12),
    st.lists(st.integers(0, 255), max_size=60),
    st.integers(0, 200),
)
def test_mutated_messages_never_raise_anything_else(head, noise, position):
    good = Message(
        id=1,
        qr=True,
        questions=[Question("web.default.svc.cluster.local", A)],
        answers=[Record("web.default.svc.cluster.local", SRV, SRVData(0, 1, 2, "x.y"))],
        edns=Edns(),
    ).encode()
    data = bytearray(head + good[12:])
    for i, value in enumerate(noise):
        if position + i < len(data):
            data[position + i] = value
    try:
        decode(bytes(data))
    except FormatError:
        pass


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
names = st.lists(label, min_size=1, max_size=5).map(".".join)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    names,
    st.lists(
        st.tuples(names, st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))),
        max_size=8,
    ),
    st.lists(st.tuples(names, names), max_size=4),
)
def test_round_trip_property(ident, qname, addresses, aliases):
    msg = Message(
        id=ident,
        qr=True,
        questions=[Question(qname, A)],
        answers=[Record(n, A, ip, ttl=5) for n, ip in addresses]
        + [Record(n, CNAME, target, ttl=5) for n, target in aliases],
    )
    data = msg.encode()
    assert decode(data) == msg


def test_reverse_names():
    assert wire.reverse_name("10.96.0.20") == "20.0.96.10.in-addr.arpa"
    assert wire.address_of_reverse("20.0.96.10.IN-ADDR.arpa") == "10.96.0.20"
    assert wire.address_of_reverse("0.96.10.in-addr.arpa") is None
    assert wire.address_of_reverse("020.0.96.10.in-addr.arpa") is None
    v6 = wire.reverse_name("fd00::1")
    assert wire.address_of_reverse(v6) == "fd00::1"
