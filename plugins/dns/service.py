"""The ``cluster-dns`` node service: a DNS server on the node's pod-network address, fed
by informers on Services and EndpointSlices, published for the pods' resolv.conf."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from kcore.errors import FieldError, Invalid
from kcore.plugins.dns.forward import (
    Forwarder,
    Upstream,
    parse_upstream,
    resolv_conf_nameservers,
)
from kcore.plugins.dns.records import ClusterZone
from kcore.plugins.dns.server import DnsServer

log = structlog.get_logger("kcore.plugins.dns")

SYNC_WAIT = 5.0
"""Seconds to wait for the first list of Services and EndpointSlices before serving (as
CoreDNS does); after that the server starts anyway and fills in as the lists arrive."""
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class DnsConfig:
    port: int = 53
    domain: str = "cluster.local"
    ttl: int = 5
    upstreams: tuple[Upstream, ...] | None = None
    """``None``: the node's resolv.conf nameservers, read when the service starts."""
    timeout: float = 2.0
    attempts: int = 2

    @classmethod
    def from_settings(cls, settings: Any) -> DnsConfig:
        option = settings.option if settings is not None else (lambda _name: None)
        return cls.from_options(
            port=option("cluster_dns_port"),
            domain=option("cluster_domain"),
            ttl=option("dns_ttl"),
            upstream=option("dns_upstream"),
        )

    @classmethod
    def from_options(
        cls,
        *,
        port: Any = None,
        domain: Any = None,
        ttl: Any = None,
        upstream: Any = None,
    ) -> DnsConfig:
        """Check the options (None: the default); every problem is a cause of one
        :class:`kcore.Invalid`, named by its option."""
        causes: list[FieldError] = []
        values: dict[str, Any] = {}
        if port is not None:
            if not isinstance(port, int) or not 0 <= port <= 65535:
                causes.append(FieldError("--cluster-dns-port", f"{port!r}: 0 to 65535"))
            else:
                values["port"] = port
        if domain is not None:
            name = str(domain).strip().rstrip(".").lower()
            if not name or len(name) > 253 or not all(_LABEL.fullmatch(x) for x in name.split(".")):
                causes.append(
                    FieldError("--cluster-domain", f"{domain!r} is not a DNS domain name")
                )
            else:
                values["domain"] = name
        if ttl is not None:
            if not isinstance(ttl, int) or not 0 <= ttl <= 3600:
                causes.append(FieldError("--dns-ttl", f"{ttl!r}: 0 to 3600 seconds"))
            else:
                values["ttl"] = ttl
        if upstream is not None:
            parsed: list[Upstream] = []
            for item in str(upstream).split(","):
                if not item.strip():
                    continue
                try:
                    parsed.append(parse_upstream(item))
                except ValueError as exc:
                    causes.append(
                        FieldError("--dns-upstream", f"{item.strip()!r}: not ip[:port] ({exc})")
                    )
            values["upstreams"] = tuple(parsed)
        if causes:
            raise Invalid("dns: " + "; ".join(str(c) for c in causes), causes=causes)
        return cls(**values)


def node_address(network: Any) -> str | None:
    """The address pods reach the node at on the pod network (net_bridge's gateway), or
    None for a network backend without one."""
    address = getattr(network, "node_address", None) if network is not None else None
    return str(address) if address else None


class ClusterDNS:
    """The node service (``kcore.NodeService``) named ``cluster-dns``."""

    name = "cluster-dns"

    def __init__(self, config: DnsConfig, resolv_conf: Path | str = "/etc/resolv.conf") -> None:
        self.config = config
        self.resolv_conf = Path(resolv_conf)
        self.server: DnsServer | None = None
        self.zone: ClusterZone | None = None
        self.ready = asyncio.Event()
        """Set once the server serves (tests wait for it)."""

    def upstreams(self, address: str, port: int) -> list[Upstream]:
        if self.config.upstreams is not None:
            chosen = list(self.config.upstreams)
        else:
            try:
                chosen = resolv_conf_nameservers(self.resolv_conf.read_text())
            except OSError:
                chosen = []
        return [u for u in chosen if u != (address, port)]  # never ourselves

    async def run(self, ctx: Any, stop: asyncio.Event) -> None:
        address = node_address(ctx.network)
        if address is None:
            log.info("no pod-network address on this node: cluster DNS is off")
            await stop.wait()
            return
        # Published before the first await: the node agent writes resolv.conf files from it.
        ctx.cluster_dns = [address]
        ctx.cluster_domain = self.config.domain
        zone = self.zone = ClusterZone(self.config.domain, self.config.ttl, nameserver=address)
        upstreams = self.upstreams(address, self.config.port)
        forwarder = None
        if upstreams:
            forwarder = Forwarder(
                upstreams, timeout=self.config.timeout, attempts=self.config.attempts
            )
        else:
            log.warning("no upstream resolvers: names outside the cluster get SERVFAIL")
        informers = _informers(ctx.api, zone)
        server = DnsServer(zone, forwarder)
        try:
            for informer in informers:
                informer.start()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SYNC_WAIT):
                    await asyncio.gather(*(i.wait_for_sync() for i in informers))
            await server.start(address, self.config.port)
            self.server = server
            self.ready.set()
            await stop.wait()
        finally:
            self.ready.clear()
            await server.close()
            for informer in informers:
                await informer.stop()
            if forwarder is not None:
                forwarder.close()


def _informers(api: Any, zone: ClusterZone) -> list[Any]:
    from kcore.client import Informer

    services = Informer(api, "v1", "Service")
    services.on_add(zone.set_service)
    services.on_update(lambda _old, new: zone.set_service(new))
    services.on_delete(zone.delete_service)
    out = [services]
    try:
        slices = Informer(api, "discovery.k8s.io/v1", "EndpointSlice")
    except Exception as exc:  # an API without the kind: ClusterIPs still resolve
        log.warning("no EndpointSlices: headless services have no addresses", error=str(exc))
        return out
    slices.on_add(zone.set_slice)
    slices.on_update(lambda _old, new: zone.set_slice(new))
    slices.on_delete(zone.delete_slice)
    out.append(slices)
    return out


__all__ = ["ClusterDNS", "DnsConfig", "node_address"]
