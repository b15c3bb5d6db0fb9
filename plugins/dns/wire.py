"""The DNS wire format (RFC 1035, with EDNS0 from RFC 6891 and SRV from RFC 2782):
:func:`decode` turns a packet into a :class:`Message`, :meth:`Message.encode` turns one
back into bytes, compressing names.

Names are text without the trailing dot (``""`` is the root). A label holding a ``.`` or a
``\\`` keeps it escaped with a backslash, so every name survives a round trip. Record data
is typed for the types cluster DNS answers (A, AAAA, NS, CNAME, PTR, SOA, MX, TXT, SRV) and
raw bytes for every other type. Bad input raises :class:`FormatError`, never anything
else: pointers must point backwards (no loops), lengths must fit, names stay within 255
bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

# Types and classes
A, NS, CNAME, SOA, PTR, MX, TXT, AAAA, SRV, OPT, AXFR, IXFR, ANY = (
    1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 252, 251, 255,
)  # fmt: skip
IN = 1
TYPE_NAMES = {
    A: "A", NS: "NS", CNAME: "CNAME", SOA: "SOA", PTR: "PTR", MX: "MX", TXT: "TXT",
    AAAA: "AAAA", SRV: "SRV", OPT: "OPT", AXFR: "AXFR", IXFR: "IXFR", ANY: "ANY",
}  # fmt: skip

# Response codes (BADVERS needs the EDNS extended bits)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16
OPCODE_QUERY = 0

HEADER = struct.Struct("!HHHHHH")
MAX_NAME = 255
MAX_LABEL = 63
MAX_UDP = 512
"""The UDP payload limit of a query without EDNS."""


class FormatError(ValueError):
    """The bytes are not a well-formed DNS message."""


class Question(NamedTuple):
    name: str
    qtype: int = A
    qclass: int = IN


@dataclass(frozen=True)
class SRVData:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class SOAData:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True)
class MXData:
    preference: int
    exchange: str


class Record(NamedTuple):
    """One resource record. ``data``: an address string (A, AAAA), a name (NS, CNAME,
    PTR), :class:`SRVData`, :class:`SOAData`, :class:`MXData`, a tuple of ``bytes``
    (TXT), else the raw rdata ``bytes``. (A named tuple: answers make many.)"""

    name: str
    rtype: int
    data: Any
    ttl: int = 0
    rclass: int = IN


@dataclass(frozen=True)
class Edns:
    """The OPT pseudo-record: the sender's UDP payload size, the upper bits of the
    response code, the version, the DO bit and the raw options."""

    udp_size: int = 1232
    ext_rcode: int = 0
    version: int = 0
    do: bool = False
    options: bytes = b""


@dataclass
class Message:
    id: int = 0
    qr: bool = False
    opcode: int = OPCODE_QUERY
    aa: bool = False
    tc: bool = False
    rd: bool = False
    ra: bool = False
    ad: bool = False
    cd: bool = False
    rcode: int = NOERROR
    """The full response code, EDNS extended bits included."""
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)
    edns: Edns | None = None

    @property
    def question(self) -> Question | None:
        return self.questions[0] if self.questions else None

    def reply(self, rcode: int = NOERROR, *, aa: bool = False, ra: bool = True) -> Message:
        """An empty response to this query: same id, opcode, RD, CD and question; EDNS
        echoed (our payload size, the query's DO bit) when the query had it."""
        edns = None
        if self.edns is not None:
            edns = Edns(udp_size=SERVER_UDP_SIZE, do=self.edns.do)
        return Message(
            id=self.id,
            qr=True,
            opcode=self.opcode,
            aa=aa,
            rd=self.rd,
            ra=ra,
            cd=self.cd,
            rcode=rcode,
            questions=list(self.questions),
            edns=edns,
        )

    def encode(self, limit: int = 65535) -> bytes:
        """The message as bytes; when longer than ``limit``, the same header and question
        with TC set and no records (the client asks again over TCP)."""
        data = self._encode()
        if len(data) <= limit:
            return data
        short = replace(self, tc=True, answers=[], authority=[], additional=[])
        return short._encode()

    def _encode(self) -> bytes:
        if self.rcode > 0xFFF or (self.rcode > 0xF and self.edns is None):
            raise ValueError(f"response code {self.rcode} needs EDNS")
        flags = (
            (self.qr << 15)
            | ((self.opcode & 0xF) << 11)
            | (self.aa << 10)
            | (self.tc << 9)
            | (self.rd << 8)
            | (self.ra << 7)
            | (self.ad << 5)
            | (self.cd << 4)
            | (self.rcode & 0xF)
        )
        additional = list(self.additional)
        if self.edns is not None:
            e = self.edns
            ttl = ((self.rcode >> 4) << 24) | ((e.version & 0xFF) << 16) | (0x8000 if e.do else 0)
            additional.append(Record("", OPT, e.options, ttl=ttl, rclass=e.udp_size))
        out = bytearray(
            HEADER.pack(
                self.id,
                flags,
                len(self.questions),
                len(self.answers),
                len(self.authority),
                len(additional),
            )
        )
        names: dict[tuple[bytes, ...], int] = {}
        for q in self.questions:
            _put_name(out, q.name, names)
            out += struct.pack("!HH", q.qtype, q.qclass)
        for record in (*self.answers, *self.authority, *additional):
            _put_record(out, record, names)
        return bytes(out)


SERVER_UDP_SIZE = 1232
"""The UDP payload size we advertise (the DNS flag day 2020 value)."""


# -- names ------------------------------------------------------------------------------


def split_name(name: str) -> list[str]:
    """``a\\.b.c`` -> ``["a.b", "c"]`` (text labels, escapes resolved)."""
    if "\\" not in name:
        if name.endswith("."):
            name = name[:-1]
        return name.split(".") if name else []
    labels: list[str] = []
    current: list[str] = []
    chars = iter(name)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, "\\"))
        elif ch == ".":
            labels.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current or not labels:
        labels.append("".join(current))
    return labels


def join_labels(labels: list[str]) -> str:
    return ".".join(label.replace("\\", "\\\\").replace(".", "\\.") for label in labels)


def _label_bytes(name: str) -> list[bytes]:
    try:
        labels = [label.encode("latin-1") for label in split_name(name)]
    except UnicodeEncodeError as exc:
        raise ValueError(f"name {name!r} is not ASCII (use its IDNA form)") from exc
    for label in labels:
        if not label or len(label) > MAX_LABEL:
            raise ValueError(f"bad label in {name!r}: 1 to {MAX_LABEL} bytes each")
    if sum(len(label) + 1 for label in labels) + 1 > MAX_NAME:
        raise ValueError(f"name too long: {name!r}")
    return labels


def _put_name(out: bytearray, name: str, names: dict[tuple[bytes, ...], int] | None) -> None:
    labels = _label_bytes(name)
    lower = [label.lower() for label in labels] if names is not None else labels
    for i, label in enumerate(labels):
        if names is not None:
            key = tuple(lower[i:])
            offset = names.get(key)
            if offset is not None:
                out += struct.pack("!H", 0xC000 | offset)
                return
            if len(out) < 0x4000:
                names[key] = len(out)
        out.append(len(label))
        out += label
    out.append(0)


def _put_record(out: bytearray, r: Record, names: dict[tuple[bytes, ...], int]) -> None:
    _put_name(out, r.name, names)
    out += struct.pack("!HHI", r.rtype, r.rclass, r.ttl & 0xFFFFFFFF)
    start = len(out)
    out += b"\0\0"
    data = r.data
    if r.rtype == A and isinstance(data, str):
        out += ipaddress.IPv4Address(data).packed
    elif r.rtype == AAAA and isinstance(data, str):
        out += ipaddress.IPv6Address(data).packed
    elif r.rtype in (NS, CNAME, PTR) and isinstance(data, str):
        _put_name(out, data, names)
    elif isinstance(data, SOAData):
        _put_name(out, data.mname, names)
        _put_name(out, data.rname, names)
        out += struct.pack(
            "!IIIII", data.serial, data.refresh, data.retry, data.expire, data.minimum
        )
    elif isinstance(data, SRVData):
        out += struct.pack("!HHH", data.priority, data.weight, data.port)
        _put_name(out, data.target, None)  # RFC 2782: the target is never compressed
    elif isinstance(data, MXData):
        out += struct.pack("!H", data.preference)
        _put_name(out, data.exchange, names)
    elif r.rtype == TXT and isinstance(data, tuple):
        for chunk in data:
            if len(chunk) > 255:
                raise ValueError("a TXT string holds at most 255 bytes")
            out.append(len(chunk))
            out += chunk
    elif isinstance(data, bytes | bytearray):
        out += data
    else:
        raise ValueError(f"no encoding for {TYPE_NAMES.get(r.rtype, r.rtype)} data {data!r}")
    length = len(out) - start - 2
    if length > 0xFFFF:
        raise ValueError("record data longer than 65535 bytes")
    struct.pack_into("!H", out, start, length)


# -- decoding ---------------------------------------------------------------------------


def read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The name at ``offset`` and the offset just after it (after its first pointer)."""
    labels: list[bytes] = []
    escape = False
    end = None
    pos = offset
    size = 1
    lowest = offset  # a pointer must go strictly below every position read so far
    while True:
        if pos >= len(data):
            raise FormatError("name runs past the end of the message")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise FormatError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= lowest:
                raise FormatError("compression pointer does not point backwards")
            pos = lowest = target
            continue
        if length & 0xC0:
            raise FormatError(f"unknown label type 0x{length & 0xC0:02x}")
        pos += 1
        if length == 0:
            break
        if pos + length > len(data):
            raise FormatError("label runs past the end of the message")
        size += length + 1
        if size > MAX_NAME:
            raise FormatError("name longer than 255 bytes")
        label = data[pos : pos + length]
        escape = escape or b"." in label or b"\\" in label
        labels.append(label)
        pos += length
    if escape:
        name = join_labels([label.decode("latin-1") for label in labels])
    else:
        name = b".".join(labels).decode("latin-1")
    return name, (end if end is not None else pos)


def _read_question(data: bytes, offset: int) -> tuple[Question, int]:
    name, offset = read_name(data, offset)
    if offset + 4 > len(data):
        raise FormatError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return Question(name, qtype, qclass), offset + 4


def _read_record(data: bytes, offset: int) -> tuple[Record, int]:
    name, offset = read_name(data, offset)
    if offset + 10 > len(data):
        raise FormatError("truncated record header")
    rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
    offset += 10
    end = offset + rdlength
    if end > len(data):
        raise FormatError("record data runs past the end of the message")
    rdata = data[offset:end]
    value: Any = rdata
    try:
        if rtype == A:
            value = str(ipaddress.IPv4Address(rdata))
        elif rtype == AAAA:
            value = str(ipaddress.IPv6Address(rdata))
        elif rtype in (NS, CNAME, PTR):
            value, stop = read_name(data, offset)
            _check_end(stop, end)
        elif rtype == SOA:
            mname, pos = read_name(data, offset)
            rname, pos = read_name(data, pos)
            _check_end(pos + 20, end)
            value = SOAData(mname, rname, *struct.unpack_from("!IIIII", data, pos))
        elif rtype == SRV:
            if rdlength < 7:
                raise FormatError("SRV data too short")
            priority, weight, port = struct.unpack_from("!HHH", data, offset)
            target, stop = read_name(data, offset + 6)
            _check_end(stop, end)
            value = SRVData(priority, weight, port, target)
        elif rtype == MX:
            if rdlength < 3:
                raise FormatError("MX data too short")
            exchange, stop = read_name(data, offset + 2)
            _check_end(stop, end)
            value = MXData(struct.unpack_from("!H", data, offset)[0], exchange)
        elif rtype == TXT:
            chunks = []
            pos = 0
            while pos < len(rdata):
                n = rdata[pos]
                if pos + 1 + n > len(rdata):
                    raise FormatError("TXT string runs past its record")
                chunks.append(bytes(rdata[pos + 1 : pos + 1 + n]))
                pos += 1 + n
            value = tuple(chunks)
    except ipaddress.AddressValueError as exc:
        raise FormatError(f"bad address data: {exc}") from exc
    return Record(name, rtype, value, ttl=ttl, rclass=rclass), end


def _check_end(stop: int, end: int) -> None:
    if stop != end:
        raise FormatError("record data length does not match its contents")


def decode(data: bytes) -> Message:
    """Parse a whole message; :class:`FormatError` when it is not well formed."""
    if len(data) < HEADER.size:
        raise FormatError("shorter than a DNS header")
    ident, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    msg = Message(
        id=ident,
        qr=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100),
        ra=bool(flags & 0x0080),
        ad=bool(flags & 0x0020),
        cd=bool(flags & 0x0010),
        rcode=flags & 0xF,
    )
    offset = HEADER.size
    for _ in range(qd):
        q, offset = _read_question(data, offset)
        msg.questions.append(q)
    for count, section in ((an, msg.answers), (ns, msg.authority), (ar, msg.additional)):
        for _ in range(count):
            record, offset = _read_record(data, offset)
            section.append(record)
    opts = [r for r in msg.additional if r.rtype == OPT]
    if len(opts) > 1:
        raise FormatError("more than one OPT record")
    if opts:
        opt = opts[0]
        if opt.name != "":
            raise FormatError("the OPT record's owner must be the root")
        msg.additional = [r for r in msg.additional if r.rtype != OPT]
        msg.edns = Edns(
            udp_size=opt.rclass,
            ext_rcode=opt.ttl >> 24,
            version=(opt.ttl >> 16) & 0xFF,
            do=bool(opt.ttl & 0x8000),
            options=bytes(opt.data),
        )
        msg.rcode |= (opt.ttl >> 24) << 4
    if offset != len(data):
        raise FormatError(f"{len(data) - offset} bytes after the last record")
    return msg


def peek_header(data: bytes) -> tuple[int, int] | None:
    """``(id, flags)`` of a packet, or None when it is shorter than a header."""
    if len(data) < HEADER.size:
        return None
    ident, flags = struct.unpack_from("!HH", data)
    return ident, flags


def with_id(data: bytes, ident: int) -> bytes:
    """The message ``data`` with its id replaced."""
    return struct.pack("!H", ident) + data[2:]


def make_query(
    name: str, qtype: int = A, *, ident: int = 0, rd: bool = True, edns: Edns | None = None
) -> Message:
    return Message(id=ident, rd=rd, questions=[Question(name, qtype)], edns=edns)


def reverse_name(address: str) -> str:
    """``10.0.0.1`` -> ``1.0.0.10.in-addr.arpa`` (and the nibble form for IPv6)."""
    return ipaddress.ip_address(address).reverse_pointer


def address_of_reverse(name: str) -> str | None:
    """The address a PTR name stands for, or None when it is not a whole address."""
    labels = split_name(name.lower())
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            parts = labels[:4]
            if not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
                return None
            return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None


__all__ = [
    "AAAA",
    "ANY",
    "CNAME",
    "FORMERR",
    "IN",
    "MX",
    "NOERROR",
    "NOTIMP",
    "NS",
    "NXDOMAIN",
    "OPT",
    "PTR",
    "REFUSED",
    "SERVFAIL",
    "SOA",
    "SRV",
    "TXT",
    "A",
    "Edns",
    "FormatError",
    "MXData",
    "Message",
    "Question",
    "Record",
    "SOAData",
    "SRVData",
    "decode",
    "make_query",
]
