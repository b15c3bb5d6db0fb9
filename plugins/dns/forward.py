"""Forwarding to upstream resolvers, for every name that is not the cluster's.

A query goes out over UDP with an id of its own, picked at random among the ids not in
flight to that upstream; only a response from that upstream with that id and the same
question settles it (anything else is dropped), and it goes back with the client's id. No
answer within ``timeout`` moves on to the next upstream, for ``attempts`` rounds; a port
unreachable fails at once. A truncated UDP response is asked again over TCP. ``None``
means no upstream answered: the server then replies SERVFAIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from collections.abc import Sequence
from typing import Any

import structlog

from kcore.plugins.dns import wire

log = structlog.get_logger("kcore.plugins.dns")

Upstream = tuple[str, int]


def question_key(data: bytes) -> tuple[str, int, int] | None:
    """The first question of a message (name lowercased), or None without one."""
    if len(data) < wire.HEADER.size or struct.unpack_from("!H", data, 4)[0] < 1:
        return None
    try:
        name, offset = wire.read_name(data, wire.HEADER.size)
    except wire.FormatError:
        return None
    if offset + 4 > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, offset)
    return name.lower(), qtype, qclass


class _UdpUpstream(asyncio.DatagramProtocol):
    """One connected UDP socket to one upstream, shared by every query to it."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[asyncio.Future[bytes], Any]] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        head = wire.peek_header(data)
        if head is None or not head[1] & 0x8000:
            return
        entry = self.pending.get(head[0])
        if entry is None:
            return
        future, key = entry
        if question_key(data) != key or future.done():
            return
        future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error on a connected socket: the upstream is not there. Every query
        # waiting on it moves on now instead of at its timeout.
        self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionError("upstream socket closed"))

    def _fail(self, exc: Exception) -> None:
        for future, _ in list(self.pending.values()):
            if not future.done():
                future.set_exception(exc)

    def new_id(self) -> int:
        while True:
            ident = secrets.randbelow(0x10000)
            if ident not in self.pending:
                return ident


class Forwarder:
    """Sends queries to ``upstreams`` (``(address, port)`` pairs) in order."""

    def __init__(
        self, upstreams: Sequence[Upstream], *, timeout: float = 2.0, attempts: int = 2
    ) -> None:
        if not upstreams:
            raise ValueError("a forwarder needs at least one upstream")
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.attempts = attempts
        self._udp: dict[Upstream, _UdpUpstream] = {}
        self._opening: dict[Upstream, asyncio.Lock] = {}

    async def query(self, data: bytes) -> bytes | None:
        """The response to the query ``data`` (a whole message) with its id, or None when
        no upstream answered."""
        head = wire.peek_header(data)
        key = question_key(data)
        if head is None or key is None:
            return None
        for _ in range(self.attempts):
            for upstream in self.upstreams:
                try:
                    response = await self._ask_udp(upstream, data, key)
                    if response[2] & 0x02:  # TC: ask again over TCP
                        response = await self._ask_tcp(upstream, data, key)
                    return wire.with_id(response, head[0])
                except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                    log.debug("upstream did not answer", upstream=upstream, error=repr(exc))
        log.debug("no upstream answered", name=key[0], upstreams=self.upstreams)
        return None

    async def resolve(self, name: str, qtype: int) -> wire.Message | None:
        """Ask upstream for ``name``/``qtype`` (recursion desired); the decoded response,
        or None on failure."""
        data = wire.make_query(name, qtype, edns=wire.Edns(udp_size=wire.SERVER_UDP_SIZE)).encode()
        response = await self.query(data)
        if response is None:
            return None
        try:
            return wire.decode(response)
        except wire.FormatError:
            return None

    async def _socket(self, upstream: Upstream) -> _UdpUpstream:
        proto = self._udp.get(upstream)
        if proto is not None and proto.transport is not None:
            return proto
        lock = self._opening.setdefault(upstream, asyncio.Lock())
        async with lock:
            proto = self._udp.get(upstream)
            if proto is None or proto.transport is None:
                _, proto = await asyncio.get_running_loop().create_datagram_endpoint(
                    _UdpUpstream, remote_addr=upstream
                )
                self._udp[upstream] = proto
        return proto

    async def _ask_udp(self, upstream: Upstream, data: bytes, key: Any) -> bytes:
        proto = await self._socket(upstream)
        ident = proto.new_id()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        proto.pending[ident] = (future, key)
        try:
            assert proto.transport is not None
            proto.transport.sendto(wire.with_id(data, ident))
            async with asyncio.timeout(self.timeout):
                return await future
        finally:
            proto.pending.pop(ident, None)

    async def _ask_tcp(self, upstream: Upstream, data: bytes, key: Any) -> bytes:
        ident = secrets.randbelow(0x10000)
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(*upstream)
            try:
                query = wire.with_id(data, ident)
                writer.write(struct.pack("!H", len(query)) + query)
                await writer.drain()
                while True:
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    response = await reader.readexactly(length)
                    head = wire.peek_header(response)
                    if head and head[0] == ident and question_key(response) == key:
                        return response
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    def close(self) -> None:
        for proto in self._udp.values():
            if proto.transport is not None:
                proto.transport.close()
        self._udp.clear()


def parse_upstream(text: str, default_port: int = 53) -> Upstream:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1``, ``[::1]:5353`` -> ``(address, port)``;
    ValueError otherwise."""
    import ipaddress

    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [address]:port")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    host = host.split("%", 1)[0]
    address = str(ipaddress.ip_address(host))
    if not 0 < port < 0x10000:
        raise ValueError(f"{text!r}: port {port} is not between 1 and 65535")
    return address, port


def resolv_conf_nameservers(text: str) -> list[Upstream]:
    """The ``nameserver`` lines of a resolv.conf (port 53), skipping unparsable ones."""
    out: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            with contextlib.suppress(ValueError):
                out.append((parse_upstream_host(fields[1]), 53))
    return out


def parse_upstream_host(text: str) -> str:
    import ipaddress

    return str(ipaddress.ip_address(text.split("%", 1)[0]))


__all__ = ["Forwarder", "parse_upstream", "question_key", "resolv_conf_nameservers"]
