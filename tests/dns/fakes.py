"""A fake upstream resolver on loopback (the only place the tests forward to) and builders
of Service and EndpointSlice objects as the informers deliver them."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import Any

from kcore.plugins.dns import wire


@dataclass
class FakeUpstream:
    """Answers A questions from ``names`` (NXDOMAIN otherwise) over UDP and TCP on
    127.0.0.1. ``big``: names whose UDP answer is truncated (their TCP answer has 100
    addresses); ``delays``: seconds to wait before answering a name; ``bogus_first``:
    answer each UDP query first with a wrong id and with a wrong question (both must be
    ignored)."""

    names: dict[str, str] = field(default_factory=dict)
    big: set[str] = field(default_factory=set)
    delays: dict[str, float] = field(default_factory=dict)
    bogus_first: bool = False
    silent: bool = False
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    """(transport, name, id) of every query received."""
    port: int = 0
    _udp: Any = None
    _tcp: Any = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def answer(self, data: bytes, transport: str) -> bytes | None:
        query = wire.decode(data)
        q = query.questions[0]
        name = q.name.lower()
        self.seen.append((transport, name, query.id))
        if self.silent:
            return None
        reply = query.reply(wire.NOERROR)
        if name in self.big:
            if transport == "udp":
                reply.tc = True
                return reply.encode()
            reply.answers = [
                wire.Record(q.name, wire.A, f"192.0.2.{i}", ttl=30) for i in range(1, 101)
            ]
        elif name in self.names:
            if q.qtype in (wire.A, wire.ANY):
                reply.answers = [wire.Record(q.name, wire.A, self.names[name], ttl=30)]
        else:
            reply.rcode = wire.NXDOMAIN
        return reply.encode()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                task = asyncio.ensure_future(self.reply(data, addr))
                upstream._tasks.add(task)
                task.add_done_callback(upstream._tasks.discard)

            async def reply(self, data: bytes, addr: Any) -> None:
                name = wire.decode(data).questions[0].name.lower()
                await asyncio.sleep(upstream.delays.get(name, 0))
                response = upstream.answer(data, "udp")
                if response is None:
                    return
                if upstream.bogus_first:
                    wrong_id = wire.with_id(response, (wire.peek_header(data)[0] + 1) % 65536)
                    self.transport.sendto(wrong_id, addr)
                    other = wire.decode(response)
                    other.questions = [wire.Question("other.example", wire.A)]
                    self.transport.sendto(other.encode(), addr)
                self.transport.sendto(response, addr)

        for _ in range(20):  # a free UDP port whose TCP twin is free too
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
                return
            except OSError:
                self._udp.close()
        raise OSError("no free port pair on 127.0.0.1")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                response = self.answer(await reader.readexactly(length), "tcp")
                if response is not None:
                    writer.write(struct.pack("!H", len(response)) + response)
                    await writer.drain()
        writer.close()

    async def close(self) -> None:
        self._udp.close()
        self._tcp.close()
        for task in list(self._tasks):
            task.cancel()


def service(
    name: str,
    namespace: str = "default",
    *,
    cluster_ip: str | None = "10.96.0.20",
    ports: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"ports": ports if ports is not None else [], **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def endpoint_slice(
    service_name: str,
    endpoints: list[dict[str, Any]],
    *,
    name: str | None = None,
    namespace: str = "default",
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports or [],
    }


def ep(address: str, ready: bool | None = True, hostname: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [address], "conditions": {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out
