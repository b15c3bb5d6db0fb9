"""The service proxy: a node service (:class:`ServiceProxy`, ``service-proxy``) that turns
Services and their EndpointSlices into an nftables table of the node, as kube-proxy's
nftables mode does.

It watches v1 Services and discovery.k8s.io/v1 EndpointSlices (two informers) and, a few
tens of milliseconds after a change (changes arriving meanwhile are coalesced, one sync at a
time), replaces its whole table ``ip <--nft-table>_svc`` in one nft transaction: a packet
sees the old rules or the new ones, never a half-made or empty table. The layout::

    map service-ips        { clusterIP . proto . port : goto service-<ns>/<svc>/<proto>/<port> }
    map service-nodeports  { proto . nodePort : goto external-<ns>/<svc>/<proto>/<port>
                                                (or reject-chain without endpoints) }
    set cluster-ips
    chain nat-prerouting   { nat hook prerouting, priority -90: jump services }  # pods, others
    chain nat-output       { nat hook output, priority -90: jump services }      # the node
    chain nat-postrouting  { nat hook postrouting, priority 110: jump masquerading }
    chain services         { ip daddr . meta l4proto . th dport vmap @service-ips
                             fib daddr type local: meta l4proto . th dport vmap @service-nodeports
                             still for the service range or a ClusterIP: goto reject-chain }
    chain service-...      { affinity first, then a random endpoint:
                             numgen random mod N == 0 goto endpoint-1,
                             numgen random mod N-1 == 0 goto endpoint-2, ..., goto endpoint-N }
    chain external-...     { from outside the pod CIDR: mark for masquerade; goto service-... }
    chain endpoint-...     { mark for masquerade when needed; update @affinity-...; dnat }

Only ready endpoints get traffic. A service port without any has no element in
``service-ips``, so the first packet of a connection to it falls through to the end of
``services`` and is rejected there (``tcp reset`` for TCP, ICMP port unreachable otherwise)
and the client is refused at once instead of waiting; so is one to a ClusterIP on a port
the Service lacks, or to an unused address of the service range. The reject happens in the
NAT hooks, before routing: later, a pod's packet would be forwarded back out of the bridge
it came in on, and the ICMP redirect the kernel sends for that uses up the rate limit of
the ICMP error to the same pod (so a UDP client would not hear of it). Rejecting in
prerouting needs Linux 5.x or later.

Masquerade, by mark ``0x4000`` (cleared again in ``masquerading``): NodePort and ClusterIP
traffic from outside the node's pod CIDR (the node itself, 127.0.0.1 included, other
machines), and service traffic from the pod CIDR to an endpoint in it (the same bridge).
Without br_netfilter the endpoint's reply to a pod on the same bridge would go straight
back over the bridge, past the node's conntrack, and the client would see an answer from
the pod's address instead of the service's; from the gateway's address it comes back
through the node. With br_netfilter (loaded on most hosts) bridged frames pass the node's
conntrack anyway, and a packet DNAT-ed back to the pod that sent it (hairpin) is bridged
out of the port it came in by: net_bridge turns hairpin mode on for its pod ports.

``sessionAffinity: ClientIP``: one dynamic set per endpoint, with the Service's timeout
(default 10800 s), filled by ``update @affinity-... { ip saddr }`` in the endpoint chain and
checked before the random choice. A sync carries the sets' elements over, with what is left
of their timeouts.

Host to ClusterIP: net_bridge installs an unreachable route (metric 4242) for the service
range, which a connect() from the node would hit before any nat hook. While the proxy runs
it adds a route for the range through the bridge, metric 4200, source the gateway, so the
node's own packets reach the output hook and get rewritten; the unreachable route stays
under it as the safety net, and nothing for a service address leaves the machine either
way: it is rewritten to a pod or rejected.

NodePorts on 127.0.0.1 work because net_bridge turns ``route_localnet`` on for the bridge.
hostPorts win over NodePorts on the same port: net_bridge's chains (priority -100) run
first, and a connection gets its address rewritten once.

A sync costs about 50 ms for 100 Services and 0.5-0.7 s for 1,000 (3 endpoints each, a
2-CPU VM; ``bench/bench_service_proxy.py``), most of it nft parsing and the kernel's commit.

On stop the table and the route go (pods keep running); a start replaces whatever an
earlier run left under the same name. Not done: IPv6, externalIPs and load balancer
addresses, ``externalTrafficPolicy`` / ``internalTrafficPolicy: Local`` (every ready
endpoint serves), terminating endpoints as a fallback, and flushing the conntrack entries
of UDP flows to removed endpoints (they last until their conntrack timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import structlog

from kcore.plugins.net_bridge.config import BridgeConfig
from kcore.plugins.net_bridge.waiting import until_first, wake_on_changes

log = structlog.get_logger("kcore.plugins.net_bridge.proxy")

MASQUERADE_MARK = 0x4000
ROUTE_METRIC = 4200
"""Metric of the route for the service range through the bridge: below the unreachable one
(4242) that net_bridge keeps."""
DEFAULT_AFFINITY_TIMEOUT = 10800
SYNC_DELAY = 0.01
"""How long a sync waits after the change that woke it, to take in the rest of a burst."""
MIN_SYNC_INTERVAL = 0.05
"""At most one sync per this many seconds: more changes than that are coalesced."""
RESYNC_PERIOD = 60.0
"""Apply the rules again this often even without changes (repairs a flushed ruleset)."""
RETRY = (0.5, 30.0)
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_TIME = re.compile(r"(\d+)(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


# -- what to program ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Endpoint:
    ip: str
    port: int


@dataclass(frozen=True)
class ServicePortRules:
    """One port of one Service, with the ready endpoints behind it."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    """``tcp``, ``udp`` or ``sctp``."""
    port: int
    cluster_ips: tuple[str, ...]
    node_port: int | None = None
    affinity_timeout: int | None = None
    """Seconds, for ``sessionAffinity: ClientIP``; None without affinity."""
    endpoints: tuple[Endpoint, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}/{self.protocol}/{self.port_name}"


def service_ports(
    services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
) -> list[ServicePortRules]:
    """What the proxy programs for these Services and EndpointSlices (API objects as
    dicts): every port of every Service that has an IPv4 ClusterIP (not headless, not
    ExternalName), with its ready IPv4 endpoints, matched by port name and protocol."""
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in slices:
        meta = s.get("metadata") or {}
        owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if owner and s.get("addressType") == "IPv4":
            by_service.setdefault((meta.get("namespace") or "", owner), []).append(s)
    found: list[ServicePortRules] = []
    for svc in services:
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            continue
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if _ipv4(ip)]
        if not ips:
            continue
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            affinity = int(config.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
        node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
        for port in spec.get("ports") or ():
            protocol = PROTOCOLS.get(port.get("protocol") or "TCP")
            if protocol is None or not port.get("port"):
                continue
            port_name = port.get("name") or ""
            endpoints = set()
            for s in by_service.get((namespace, name), ()):
                number = _slice_port(s, port_name, protocol)
                if number is None:
                    continue
                for ep in s.get("endpoints") or ():
                    if (ep.get("conditions") or {}).get("ready") is False:
                        continue
                    for address in ep.get("addresses") or ():
                        if _ipv4(address):
                            endpoints.add(Endpoint(address, number))
            found.append(
                ServicePortRules(
                    namespace=namespace,
                    name=name,
                    port_name=port_name,
                    protocol=protocol,
                    port=int(port["port"]),
                    cluster_ips=tuple(ips),
                    node_port=int(port["nodePort"])
                    if node_ports and port.get("nodePort")
                    else None,
                    affinity_timeout=affinity,
                    endpoints=tuple(sorted(endpoints)),
                )
            )
    found.sort(key=lambda p: p.key)
    return found


def _slice_port(s: Mapping[str, Any], port_name: str, protocol: str) -> int | None:
    for p in s.get("ports") or ():
        if (p.get("name") or "") == port_name and PROTOCOLS.get(p.get("protocol") or "TCP") == (
            protocol
        ):
            return p.get("port") or None
    return None


def _ipv4(value: Any) -> bool:
    if not isinstance(value, str) or not value or value == "None":
        return False
    try:
        IPv4Address(value)
    except ValueError:
        return False
    return True


# -- the rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyConfig:
    """Where the proxy works: its table, the bridge and the node's ranges."""

    table: str
    bridge: str
    pod_cidr: IPv4Network
    service_cidr: IPv4Network
    gateway: IPv4Address

    @classmethod
    def from_bridge(cls, config: BridgeConfig) -> ProxyConfig:
        return cls(
            table=f"{config.nft_table}_svc",
            bridge=config.bridge_name,
            pod_cidr=config.pod_cidr,
            service_cidr=config.service_cidr,
            gateway=config.gateway,
        )


def service_chain(p: ServicePortRules) -> str:
    return f"service-{p.key}"


def external_chain(p: ServicePortRules) -> str:
    return f"external-{p.key}"


def endpoint_chain(p: ServicePortRules, ep: Endpoint) -> str:
    return f"endpoint-{p.key}__{ep.ip}/{ep.port}"


def affinity_set(p: ServicePortRules, ep: Endpoint) -> str:
    return f"affinity-{p.key}__{ep.ip}/{ep.port}"


def ruleset(
    config: ProxyConfig,
    ports: Iterable[ServicePortRules],
    affinity: Mapping[str, Iterable[tuple[str, float]]] | None = None,
) -> str:
    """One nft transaction that replaces the table with the rules for ``ports``;
    ``affinity`` (set name -> (client address, seconds left)) refills the affinity sets
    that are still there."""
    t = f"ip {config.table}"
    pods, mark = config.pod_cidr, f"0x{MASQUERADE_MARK:x}"
    service_ips: list[str] = []
    node_ports: list[str] = []
    cluster_ips: set[str] = set()
    body: list[str] = []
    elements: list[str] = []
    for p in ports:
        cluster_ips.update(p.cluster_ips)
        if not p.endpoints:
            if p.node_port:
                node_ports.append(f"{p.protocol} . {p.node_port} : goto reject-chain")
            continue
        svc = service_chain(p)
        for ip in p.cluster_ips:
            service_ips.append(f"{ip} . {p.protocol} . {p.port} : goto {svc}")
        if p.node_port:
            node_ports.append(f"{p.protocol} . {p.node_port} : goto {external_chain(p)}")
            body.append(
                f"  chain {external_chain(p)} {{\n"
                f"    ip saddr != {pods} jump mark-for-masquerade\n"
                f"    goto {svc}\n  }}"
            )
        rules = [f"    ip saddr != {pods} jump mark-for-masquerade"]
        if p.affinity_timeout:
            for ep in p.endpoints:
                rules.append(f"    ip saddr @{affinity_set(p, ep)} goto {endpoint_chain(p, ep)}")
        # Uniform over n endpoints without a set: the i-th rule takes 1/(n-i) of what the
        # rules before it left, the last one the rest. (An anonymous numgen map per service
        # port costs the kernel about 0.5 ms each per sync; a map shared by all service
        # ports makes its validation quadratic.)
        n = len(p.endpoints)
        for i, ep in enumerate(p.endpoints[:-1]):
            rules.append(f"    numgen random mod {n - i} == 0 goto {endpoint_chain(p, ep)}")
        rules.append(f"    goto {endpoint_chain(p, p.endpoints[-1])}")
        body.append(f"  chain {svc} {{\n" + "\n".join(rules) + "\n  }")
        for ep in p.endpoints:
            source = pods if IPv4Address(ep.ip) in pods else IPv4Network(ep.ip)
            rules = [f"    ip saddr {source} jump mark-for-masquerade"]
            if p.affinity_timeout:
                name = affinity_set(p, ep)
                body.append(
                    f"  set {name} {{ type ipv4_addr; flags dynamic,timeout; "
                    f"timeout {p.affinity_timeout}s; }}"
                )
                rules.append(f"    update @{name} {{ ip saddr }}")
                kept = [
                    f"{client} timeout {p.affinity_timeout}s expires "
                    f"{max(1, min(int(left), p.affinity_timeout))}s"
                    for client, left in (affinity or {}).get(name, ())
                ]
                if kept:
                    elements.append(f"add element {t} {name} {{ {', '.join(kept)} }}")
            rules.append(f"    meta l4proto {p.protocol} dnat to {ep.ip}:{ep.port}")
            body.append(f"  chain {endpoint_chain(p, ep)} {{\n" + "\n".join(rules) + "\n  }")

    def elements_of(items: Iterable[str]) -> str:
        items = list(items)
        return f" elements = {{ {', '.join(items)} }};" if items else ""

    head = [
        f"table {t} {{ }}",
        f"delete table {t}",
        f"table {t} {{",
        "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict;"
        + elements_of(service_ips)
        + " }",
        "  map service-nodeports { type inet_proto . inet_service : verdict;"
        + elements_of(node_ports)
        + " }",
        "  set cluster-ips { type ipv4_addr;" + elements_of(sorted(cluster_ips)) + " }",
        "  chain nat-prerouting { type nat hook prerouting priority -90; policy accept;"
        " jump services; }",
        "  chain nat-output { type nat hook output priority -90; policy accept; jump services; }",
        "  chain nat-postrouting { type nat hook postrouting priority 110; policy accept;"
        " jump masquerading; }",
        "  chain reject-chain { meta l4proto tcp reject with tcp reset; reject; }",
        "  chain services {",
        "    ip daddr . meta l4proto . th dport vmap @service-ips",
        "    fib daddr type local meta l4proto . th dport vmap @service-nodeports",
        f"    ip daddr {config.service_cidr} goto reject-chain",
        "    ip daddr @cluster-ips goto reject-chain",
        "  }",
        f"  chain mark-for-masquerade {{ meta mark set meta mark | {mark}; }}",
        "  chain masquerading {",
        f"    meta mark & {mark} == 0 return",
        f"    meta mark set meta mark ^ {mark}",
        "    masquerade fully-random",
        "  }",
    ]
    return "\n".join([*head, *body, "}", *elements, ""])


def drop_table_script(table: str) -> str:
    return f"table ip {table} {{ }}\ndelete table ip {table}\n"


def parse_affinity(listing: str) -> dict[str, list[tuple[str, float]]]:
    """The affinity sets' elements in ``nft list sets`` output: set name -> (client
    address, seconds until it expires)."""
    found: dict[str, list[tuple[str, float]]] = {}
    for match in re.finditer(r"set (affinity-\S+) \{(.*?)\n\s*\}", listing, re.S):
        elements = re.search(r"elements = \{(.*?)\}", match.group(2), re.S)
        if not elements:
            continue
        items = []
        for element in elements.group(1).split(","):
            words = element.split()
            if not words:
                continue
            left = None
            for word, value in itertools.pairwise(words):
                if word == "expires":
                    left = sum(int(n) * _UNITS[u] for n, u in _TIME.findall(value))
            if left is not None:
                items.append((words[0], left))
        found[match.group(1)] = items
    return found


# -- the node side -------------------------------------------------------------------------------


class ProxyTable:
    """The proxy's table and route on the node, changed from one thread of its own (so
    at most one change runs at a time). ``netns`` (a path) makes that thread work inside
    another network namespace: tests and benchmarks use it for a node of their own."""

    def __init__(self, config: ProxyConfig, netns: str | None = None) -> None:
        self.config = config
        self.netns = netns
        self.syncs = 0
        self.last_sync_seconds = 0.0
        self._nft: Any = None
        self._ipr: Any = None
        self._failed: BaseException | None = None
        self._closed = False
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"proxy-{config.table}", initializer=self._init
        )

    def _init(self) -> None:
        from kcore.plugins.net_bridge.netlink import setns
        from kcore.plugins.net_bridge.nft import Nft

        try:
            if self.netns is not None:
                fd = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    setns(fd)  # for good: the thread is this table's alone
                finally:
                    os.close(fd)
            self._nft = Nft()
        except BaseException as exc:
            self._failed = exc

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise RuntimeError("the proxy table is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _ready(self) -> Any:
        if self._failed is not None:
            raise self._failed
        return self._nft

    async def apply(self, ports: list[ServicePortRules]) -> float:
        """Replace the table with the rules for ``ports`` and make sure of the route;
        return how long it took (seconds)."""
        return await self._call(self._apply, ports)

    def _apply(self, ports: list[ServicePortRules]) -> float:
        nft = self._ready()
        started = time.perf_counter()
        affinity = None
        if any(p.affinity_timeout and p.endpoints for p in ports):
            try:
                affinity = parse_affinity(nft.run(f"list sets table ip {self.config.table}"))
            except Exception:
                affinity = None  # no table yet
        nft.run(ruleset(self.config, ports, affinity))
        self._ensure_route()
        self.syncs += 1
        self.last_sync_seconds = time.perf_counter() - started
        return self.last_sync_seconds

    async def list(self, chain: str | None = None) -> str:
        """The table, or one chain of it, as ``nft list`` prints it ("" when missing)."""
        return await self._call(self._list, chain)

    def _list(self, chain: str | None) -> str:
        what = f"chain ip {self.config.table} {chain}" if chain else f"table ip {self.config.table}"
        try:
            return self._ready().run(f"list {what}")
        except Exception:
            return ""

    async def remove(self) -> None:
        """Remove the table and the route (whether there or not)."""
        await self._call(self._remove)

    def _remove(self) -> None:
        self._ready().run(drop_table_script(self.config.table))
        self._remove_route()

    async def close(self) -> None:
        if self._closed:
            return
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    def _iproute(self) -> Any:
        """The thread's pyroute2 socket (made once: making one costs milliseconds)."""
        if self._ipr is None:
            import pyroute2

            self._ipr = pyroute2.IPRoute()
        return self._ipr

    def _ensure_route(self) -> None:
        cfg = self.config
        ipr = self._iproute()
        found = ipr.link_lookup(ifname=cfg.bridge)
        if not found:
            raise RuntimeError(f"the bridge {cfg.bridge} does not exist")
        ipr.route(
            "replace",
            dst=str(cfg.service_cidr),
            oif=found[0],
            prefsrc=str(cfg.gateway),
            priority=ROUTE_METRIC,
            proto="static",
            scope="link",
        )

    def _remove_route(self) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._iproute().route(
                "del", dst=str(self.config.service_cidr), priority=ROUTE_METRIC, scope="link"
            )
        except NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT):
                raise

    def _close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._nft is not None:
            self._nft.close()


# -- the node service ----------------------------------------------------------------------------


@dataclass
class ServiceProxy:
    """The ``service-proxy`` node service (see the module docstring)."""

    name: str = "service-proxy"
    netns: str | None = None
    """Work in this network namespace instead of the node's (tests, benchmarks)."""
    config: ProxyConfig | None = None
    """Defaults to the one of the node's bridge network (or of the plugin's options)."""
    table: ProxyTable | None = field(default=None, init=False)
    _warned: set[str] = field(default_factory=set, init=False, repr=False)

    async def run(self, ctx: Any, stop: asyncio.Event) -> None:
        config = self.config or _config_of(ctx)
        services = _informer(ctx.api, "v1", "Service")
        slices = _informer(ctx.api, "discovery.k8s.io/v1", "EndpointSlice")
        table = self.table = ProxyTable(config, self.netns)
        changed = asyncio.Event()
        wake_on_changes((services, slices), changed)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            services.start()
            slices.start()
            await until_first(
                asyncio.gather(services.wait_for_sync(), slices.wait_for_sync()), stopping
            )
            if stop.is_set():
                return
            log.info("service proxy running", table=config.table, node=ctx.node_name)
            await self._sync_loop(table, services, slices, changed, stop, stopping)
        finally:
            stopping.cancel()
            await services.stop()
            await slices.stop()
            # Shielded: the node agent cancels its services right after setting ``stop``.
            await asyncio.shield(_remove_and_close(table))
            log.info("service proxy stopped", table=config.table)

    async def _sync_loop(
        self,
        table: ProxyTable,
        services: Any,
        slices: Any,
        changed: asyncio.Event,
        stop: asyncio.Event,
        stopping: asyncio.Future,
    ) -> None:
        loop = asyncio.get_running_loop()
        applied: list[ServicePortRules] | None = None
        last_start = -1e9
        retry = RETRY[0]
        changed.set()
        while not stop.is_set():
            await until_first(changed.wait(), stopping, RESYNC_PERIOD)
            if stop.is_set():
                return
            resync = not changed.is_set()
            await asyncio.sleep(max(SYNC_DELAY, last_start + MIN_SYNC_INTERVAL - loop.time()))
            changed.clear()
            ports = service_ports(services.list(), slices.list())
            if ports == applied and not resync:
                continue
            last_start = loop.time()
            try:
                took = await table.apply(ports)
            except Exception as exc:
                log.error(
                    "service proxy sync failed", error=str(exc), error_type=type(exc).__name__
                )
                applied = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(retry):
                        await stop.wait()
                retry = min(retry * 2, RETRY[1])
                changed.set()
                continue
            retry = RETRY[0]
            if ports != applied:
                log.debug("service rules synced", ports=len(ports), seconds=round(took, 4))
            applied = ports
            self._warn_outside(table.config, ports)

    def _warn_outside(self, config: ProxyConfig, ports: list[ServicePortRules]) -> None:
        for p in ports:
            for ip in p.cluster_ips:
                if IPv4Address(ip) not in config.service_cidr and ip not in self._warned:
                    self._warned.add(ip)
                    log.warning(
                        "ClusterIP outside --service-cidr: the node itself reaches it only "
                        "by its default route (pods are not affected)",
                        service=f"{p.namespace}/{p.name}",
                        cluster_ip=ip,
                        service_cidr=str(config.service_cidr),
                    )


async def _remove_and_close(table: ProxyTable) -> None:
    try:
        await table.remove()
    except Exception as exc:
        log.warning("could not remove the service proxy's table", error=str(exc))
    finally:
        await table.close()


def _config_of(ctx: Any) -> ProxyConfig:
    bridge = getattr(getattr(ctx, "network", None), "config", None)
    if not isinstance(bridge, BridgeConfig):
        bridge = BridgeConfig.from_settings(ctx.settings)
    return ProxyConfig.from_bridge(bridge)


def _informer(api: Any, api_version: str, kind: str) -> Any:
    from kcore.client import Informer

    return Informer(api, api_version, kind)
