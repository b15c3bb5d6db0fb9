"""The DNS server: UDP and TCP on one address and port, answering from a
:class:`~kcore.plugins.dns.records.ClusterZone` and forwarding the rest.

Per query: a packet shorter than a header or with QR set is dropped; one that does not
parse is FORMERR (header only); an opcode other than QUERY is NOTIMP; not exactly one
question is FORMERR; EDNS versions above 0 get BADVERS. A UDP response longer than the
client can take (512 bytes, or its EDNS size up to 4096) goes out with TC set and no
records, so the client asks again over TCP. Zone transfers are REFUSED.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import struct
from typing import Any

import structlog

from kcore.plugins.dns import wire
from kcore.plugins.dns.forward import Forwarder
from kcore.plugins.dns.records import ClusterZone

log = structlog.get_logger("kcore.plugins.dns")

MAX_UDP_RESPONSE = 4096
MAX_IN_FLIGHT = 2048
"""UDP queries being answered at once; more are dropped (the client asks again)."""
TCP_IDLE = 10.0
"""Seconds a TCP connection may stay idle between queries."""
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def header_only(ident: int, flags: int, rcode: int) -> bytes:
    """A response with no sections: the query's id, opcode and RD, and ``rcode``."""
    return wire.HEADER.pack(ident, 0x8000 | (flags & 0x7900) | (rcode & 0xF), 0, 0, 0, 0)


def udp_limit(query: wire.Message) -> int:
    if query.edns is None:
        return wire.MAX_UDP
    return min(max(wire.MAX_UDP, query.edns.udp_size), MAX_UDP_RESPONSE)


class DnsServer:
    """Answers queries; :meth:`handle` is the whole protocol, :meth:`start` puts it on
    sockets."""

    def __init__(self, zone: ClusterZone, forwarder: Forwarder | None = None) -> None:
        self.zone = zone
        self.forwarder = forwarder
        self.address: str | None = None
        self.port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the protocol ---------------------------------------------------------------------

    async def handle(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The response to the packet ``data``, or None to send nothing."""
        head = wire.peek_header(data)
        if head is None or head[1] & 0x8000:
            return None
        ident, flags = head
        try:
            query = wire.decode(data)
        except wire.FormatError:
            return header_only(ident, flags, wire.FORMERR)
        if query.opcode != wire.OPCODE_QUERY:
            return header_only(ident, flags, wire.NOTIMP)
        limit = 65535 if tcp else udp_limit(query)
        if len(query.questions) != 1:
            return query.reply(wire.FORMERR, ra=self._ra).encode(limit)
        if query.edns is not None and query.edns.version != 0:
            reply = query.reply(wire.BADVERS, ra=self._ra)
            reply.questions = []
            return reply.encode(limit)
        question = query.questions[0]
        in_zone = self.zone.in_zone(question.name)
        if in_zone and (
            question.qtype in (wire.AXFR, wire.IXFR) or question.qclass not in (wire.IN, wire.ANY)
        ):
            return query.reply(wire.REFUSED, aa=True, ra=self._ra).encode(limit)
        answer = None
        if question.qclass in (wire.IN, wire.ANY):
            answer = self.zone.lookup(question.name, question.qtype)
        if answer is None:
            return await self._forward(query, data, limit)
        if answer.chase is not None and self.forwarder is not None:
            chased = await self.forwarder.resolve(answer.chase, question.qtype)
            if chased is not None and chased.rcode in (wire.NOERROR, wire.NXDOMAIN):
                answer.answers += chased.answers
                answer.rcode = chased.rcode
                if not chased.answers:
                    answer.authority = chased.authority
        reply = query.reply(answer.rcode, aa=True, ra=self._ra)
        reply.answers = answer.answers
        reply.authority = answer.authority
        reply.additional = answer.additional
        return reply.encode(limit)

    @property
    def _ra(self) -> bool:
        return self.forwarder is not None

    async def _forward(self, query: wire.Message, data: bytes, limit: int) -> bytes:
        response = await self.forwarder.query(data) if self.forwarder is not None else None
        if response is None:
            return query.reply(wire.SERVFAIL, ra=self._ra).encode(limit)
        if len(response) > limit:
            short = query.reply(response[3] & 0xF, ra=True)
            short.tc = True
            return short.encode(limit)
        return response

    # -- sockets --------------------------------------------------------------------------

    async def start(self, address: str, port: int = 53) -> int:
        """Serve UDP and TCP on ``address``:``port`` (``0``: a free port, the same for
        both); returns the port. The address need not be on an interface yet
        (``IP_FREEBIND``): the bridge may come later, or come back."""
        loop = asyncio.get_running_loop()
        for _ in range(20 if port == 0 else 1):
            udp = _bound(address, port, socket.SOCK_DGRAM)
            chosen = udp.getsockname()[1]
            try:
                tcp = _bound(address, chosen, socket.SOCK_STREAM)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            break
        else:
            raise OSError(errno.EADDRINUSE, f"no free port for UDP and TCP on {address}")
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(self), sock=udp)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        self.address, self.port = address, chosen
        log.info("cluster DNS serving", address=address, port=chosen, domain=self.zone.domain)
        return chosen

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, data: bytes, addr: Any) -> None:
        try:
            response = await self.handle(data)
        except Exception:
            log.exception("query failed", client=addr)
            head = wire.peek_header(data)
            response = header_only(*head, wire.SERVFAIL) if head else None
        if response is not None and self._udp is not None:
            self._udp.sendto(response, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    data = await reader.readexactly(length)
                try:
                    response = await self.handle(data, tcp=True)
                except Exception:
                    log.exception("query failed", client=writer.get_extra_info("peername"))
                    head = wire.peek_header(data)
                    response = header_only(*head, wire.SERVFAIL) if head else None
                if response is None:
                    continue
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(self.server._tasks) >= MAX_IN_FLIGHT:
            return
        self.server._spawn(self.server._answer_udp(data, addr))

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for a client that went away


def _bound(address: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.setblocking(False)
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


__all__ = ["DnsServer", "header_only", "udp_limit"]
