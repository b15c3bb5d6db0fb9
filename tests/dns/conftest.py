"""Fixtures for the dns plugin's tests: the fake upstream, and a cluster DNS server on
127.0.0.1 at a free port forwarding to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from kcore.plugins.dns.forward import Forwarder
from kcore.plugins.dns.records import ClusterZone
from kcore.plugins.dns.server import DnsServer

from .fakes import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(names={"www.example.test": "192.0.2.10"})
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@dataclass
class Served:
    server: DnsServer
    zone: ClusterZone
    forwarder: Forwarder | None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server.port  # type: ignore[return-value]


@pytest.fixture
async def served(upstream: FakeUpstream) -> AsyncIterator[Served]:
    """Cluster DNS on 127.0.0.1:<free port>, forwarding to the fake upstream."""
    zone = ClusterZone("cluster.local", ttl=5, nameserver="127.0.0.1")
    forwarder = Forwarder([upstream.address], timeout=0.5, attempts=2)
    server = DnsServer(zone, forwarder)
    await server.start("127.0.0.1", 0)
    try:
        yield Served(server, zone, forwarder)
    finally:
        await server.close()
        forwarder.close()
