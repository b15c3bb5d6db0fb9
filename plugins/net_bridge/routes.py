"""Routes to the other nodes' pods: the ``pod-routes`` node service (host-gateway, as
flannel's ``host-gw`` backend).

For every other Node whose ``spec.podCIDR`` lies in the cluster CIDR and whose
``InternalIP`` is on a subnet this host is directly connected to, the node holds
``<podCIDR> via <InternalIP>`` (``ip route replace``, protocol :data:`ROUTE_PROTOCOL`, so
that it knows its own routes); a route whose Node went, changed or became unreachable is
removed. Nodes on no shared link get no route: their pods stay unreachable (the
unreachable route of the cluster CIDR answers), nothing is sent towards a gateway. The set
is synced on every Node change and every :data:`RESYNC_PERIOD` seconds (addresses may come
later than the Nodes). Routes stay when the service stops, as the pods do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_network
from typing import Any

import structlog

from kcore.client import Informer
from kcore.plugins.net_bridge.waiting import until_first, wake_on_changes

log = structlog.get_logger("kcore.plugins.net_bridge.routes")

ROUTE_PROTOCOL = 75
"""The ``proto`` of the routes this service makes (otherwise unused; ``ip route show proto
75`` lists them)."""
RESYNC_PERIOD = 30.0
RETRY = 2.0


def _internal_ip(node: Mapping[str, Any]) -> IPv4Address | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if isinstance(address, dict) and address.get("type") == "InternalIP":
            try:
                value = ip_address(address.get("address") or "")
            except ValueError:
                return None
            return value if isinstance(value, IPv4Address) else None
    return None


def _pod_cidr(node: Mapping[str, Any]) -> IPv4Network | None:
    spec = node.get("spec") or {}
    text = spec.get("podCIDR") or next(iter(spec.get("podCIDRs") or []), None)
    if not text:
        return None
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Network) else None


def desired_routes(
    nodes: Iterable[Mapping[str, Any]],
    *,
    own_node: str,
    cluster_cidr: IPv4Network,
    own_pod_cidr: IPv4Network | None,
    connected: Iterable[IPv4Interface],
) -> dict[IPv4Network, IPv4Address]:
    """``{pod CIDR: gateway}`` for the other nodes this host can reach directly."""
    links = [i for i in connected if not i.ip.is_loopback]
    local = {i.ip for i in links}
    out: dict[IPv4Network, IPv4Address] = {}
    for node in nodes:
        if (node.get("metadata") or {}).get("name") == own_node:
            continue
        cidr, gateway = _pod_cidr(node), _internal_ip(node)
        if cidr is None or gateway is None or not cidr.subnet_of(cluster_cidr):
            continue
        if own_pod_cidr is not None and cidr.overlaps(own_pod_cidr):
            continue
        if gateway in local or not any(gateway in i.network for i in links):
            continue
        if any(gateway in i.network for i in links if i.network.overlaps(cluster_cidr)):
            continue  # a gateway inside the pod range would route pods through pods
        out[cidr] = gateway
    return out


async def _ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *args] if netns is None else ["ip", "-n", netns, *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")
    return out.decode()


async def connected_interfaces(netns: str | None = None) -> list[IPv4Interface]:
    """The IPv4 addresses of this host, with their prefixes."""
    out = []
    for link in json.loads(await _ip("-j", "-4", "addr", "show", netns=netns) or "[]"):
        for addr in link.get("addr_info") or []:
            with contextlib.suppress(KeyError, ValueError):
                out.append(IPv4Interface(f"{addr['local']}/{addr['prefixlen']}"))
    return out


async def installed_routes(
    cluster_cidr: IPv4Network, netns: str | None = None
) -> dict[IPv4Network, IPv4Address | None]:
    """The routes of :data:`ROUTE_PROTOCOL` inside ``cluster_cidr`` and their gateways."""
    text = await _ip("-j", "-4", "route", "show", "proto", str(ROUTE_PROTOCOL), netns=netns)
    out: dict[IPv4Network, IPv4Address | None] = {}
    for route in json.loads(text or "[]"):
        with contextlib.suppress(KeyError, ValueError):
            dst = ip_network(route["dst"], strict=False)
            if isinstance(dst, IPv4Network) and dst.subnet_of(cluster_cidr):
                gateway = route.get("gateway")
                out[dst] = IPv4Address(gateway) if gateway else None
    return out


@dataclass
class PodRoutes:
    """The ``pod-routes`` node service (see the module docstring)."""

    name: str = "pod-routes"
    netns: str | None = None
    """Work in this network namespace instead of the node's (tests)."""
    installed: dict[IPv4Network, IPv4Address] = field(default_factory=dict, init=False)

    async def run(self, ctx: Any, stop: asyncio.Event) -> None:
        config = getattr(ctx.network, "config", None)
        cluster = getattr(config, "cluster_cidr", None)
        if cluster is None:
            log.info("no bridge network on this node: no routes to other nodes")
            return
        own_pod_cidr = getattr(config, "pod_cidr", None)
        nodes = Informer(ctx.api, "v1", "Node")
        changed = asyncio.Event()
        wake_on_changes((nodes,), changed)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            nodes.start()
            await until_first(nodes.wait_for_sync(), stopping)
            changed.set()
            while not stop.is_set():
                await until_first(changed.wait(), stopping, RESYNC_PERIOD)
                if stop.is_set():
                    return
                changed.clear()
                try:
                    await self.sync(
                        list(nodes.cache.values()), ctx.node_name, cluster, own_pod_cidr
                    )
                except (OSError, ValueError) as exc:
                    log.warning("syncing pod routes failed", error=str(exc), retry_in=RETRY)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RETRY):
                            await stop.wait()
                    changed.set()
        finally:
            stopping.cancel()
            await nodes.stop()

    async def sync(
        self,
        nodes: list[Mapping[str, Any]],
        own_node: str,
        cluster: IPv4Network,
        own_pod_cidr: IPv4Network | None,
    ) -> None:
        """Make this host's routes of :data:`ROUTE_PROTOCOL` match the Nodes."""
        wanted = desired_routes(
            nodes,
            own_node=own_node,
            cluster_cidr=cluster,
            own_pod_cidr=own_pod_cidr,
            connected=await connected_interfaces(self.netns),
        )
        present = await installed_routes(cluster, self.netns)
        for cidr, gateway in wanted.items():
            if present.get(cidr) != gateway:
                await _ip(
                    "route", "replace", str(cidr), "via", str(gateway),
                    "proto", str(ROUTE_PROTOCOL), netns=self.netns,
                )  # fmt: skip
                log.info("route to node pods", cidr=str(cidr), via=str(gateway))
        for cidr in present.keys() - wanted.keys():
            with contextlib.suppress(OSError):
                await _ip("route", "del", str(cidr), "proto", str(ROUTE_PROTOCOL), netns=self.netns)
                log.info("removed route to node pods", cidr=str(cidr))
        self.installed = wanted
