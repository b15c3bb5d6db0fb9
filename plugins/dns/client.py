"""A minimal stub resolver: one question to one server, over UDP or TCP, for tests,
benchmarks and debugging (``python -m kcore.plugins.dns.client NAME [TYPE] [HOST[:PORT]]``)."""

from __future__ import annotations

import asyncio
import secrets
import struct
from typing import Any

from kcore.plugins.dns import wire

Server = tuple[str, int]


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        head = wire.peek_header(data)
        if head and head[0] == self.ident and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def exchange_udp(server: Server, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data`` and return the first datagram back with the same id."""
    loop = asyncio.get_running_loop()
    ident = struct.unpack_from("!H", data)[0]
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _OneShot(ident), remote_addr=server
    )
    try:
        transport.sendto(data)
        async with asyncio.timeout(timeout):
            return await proto.done
    finally:
        transport.close()


async def exchange_tcp(server: Server, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data`` length-prefixed on a new connection and return the response."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(*server)
        try:
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(length)
        finally:
            writer.close()


async def query(
    server: Server,
    name: str,
    qtype: int = wire.A,
    *,
    tcp: bool = False,
    edns: wire.Edns | None = None,
    timeout: float = 2.0,
) -> wire.Message:
    """Ask ``server`` about ``name``/``qtype`` (recursion desired) and decode the answer."""
    message = wire.make_query(name, qtype, ident=secrets.randbelow(0x10000), edns=edns)
    data = message.encode()
    raw = await (exchange_tcp if tcp else exchange_udp)(server, data, timeout)
    return wire.decode(raw)


def _main(argv: list[str]) -> int:
    from kcore.plugins.dns.forward import parse_upstream

    if not argv or len(argv) > 3:
        print("usage: python -m kcore.plugins.dns.client NAME [TYPE] [HOST[:PORT]]")
        return 2
    types = {v: k for k, v in wire.TYPE_NAMES.items()}
    qtype = types[argv[1].upper()] if len(argv) > 1 else wire.A
    server = parse_upstream(argv[2]) if len(argv) > 2 else ("127.0.0.1", 53)
    answer = asyncio.run(query(server, argv[0], qtype))
    print(answer)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))


__all__ = ["exchange_tcp", "exchange_udp", "query"]
