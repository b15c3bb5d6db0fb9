"""ClusterIP and NodePort allocation for Services, as kube-apiserver does it.

Every allocated address or port is one key in the store under :data:`ALLOCATIONS_PREFIX`
(``serviceips/<ip>``, ``servicenodeports/<port>``), its value naming the Service that holds
it. A key is taken with the store's ``create``, which fails when the key exists: that
compare-and-swap is the whole lock, so API servers sharing one store never hand out one
address twice, and a restarted server knows what is taken.

:class:`ServiceAllocator` is what :class:`~kcore.apiserver.objects.ObjectStore` calls for
Services: :meth:`~ServiceAllocator.prepare_update` before an update is validated (the
values a client left out are kept, as upstream's ``patchAllocatedValues``),
:meth:`~ServiceAllocator.allocate` once the object is valid (it returns an
:class:`Allocation` to ``commit`` after the write or ``revert`` when the write fails), and
:meth:`~ServiceAllocator.release` when a Service is gone. :meth:`~ServiceAllocator.repair`
frees what no Service holds and records what a Service holds without a key (run at
start-up and every few minutes by :func:`maintain_services`, which also keeps the
``default/kubernetes`` Service).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from kcore.api.validation import ErrorList, invalid_error
from kcore.errors import AlreadyExists, Conflict, FieldError, NotFound, PermanentError
from kcore.store import Store

if TYPE_CHECKING:
    from kcore.apiserver.objects import ObjectStore

__all__ = [
    "ALLOCATIONS_PREFIX",
    "DEFAULT_SERVICE_CLUSTER_IP_RANGE",
    "DEFAULT_SERVICE_NODE_PORT_RANGE",
    "Allocation",
    "IPRange",
    "PortRange",
    "ServiceAllocator",
    "ensure_kubernetes_service",
    "maintain_services",
    "reconcile_services",
]

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/12"
DEFAULT_SERVICE_NODE_PORT_RANGE = "30000-32767"
ALLOCATIONS_PREFIX = "/kcore/allocations/"
IP_PREFIX = ALLOCATIONS_PREFIX + "serviceips/"
NODE_PORT_PREFIX = ALLOCATIONS_PREFIX + "servicenodeports/"
SERVICES_PREFIX = "/registry/core/services/"
REPAIR_INTERVAL = 180.0
"""Seconds between repair passes (upstream repairs every 3 minutes)."""
REPAIR_GRACE = 60.0
"""A repair leaves allocations younger than this alone: their Service may be on its way."""
KUBERNETES_RECONCILE_INTERVAL = 10.0
RANDOM_TRIES = 16
"""Random picks in a band before scanning it for a free value."""

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode

CLUSTER_IP_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")


# --------------------------------------------------------------------------- ranges


def _static_band(size: int, step: int, largest: int) -> int:
    """How many values at the bottom of a range dynamic picks leave for explicit requests
    first: ``min(max(16, size/step), largest)``, none for a range of 16 or fewer."""
    if size <= 16:
        return 0
    return min(max(16, size // step), largest)


class IPRange:
    """The service cluster IP range: every address of the CIDR but the network address
    (and, for IPv4, the broadcast address)."""

    def __init__(self, cidr: str) -> None:
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ValueError(f"invalid service cluster IP range {cidr!r}: not a CIDR") from None
        least = 12 if network.version == 4 else 108
        if network.prefixlen < least:
            raise ValueError(
                f"the service cluster IP range {network} is too large: for IPv{network.version} "
                f"the mask must be at least /{least}"
            )
        self.network = network
        self.family = f"IPv{network.version}"
        self.size = network.num_addresses - (2 if network.version == 4 else 1)
        if self.size < 1:
            raise ValueError(f"the service cluster IP range {network} holds no usable address")
        self.static = _static_band(network.num_addresses, 16, 256)
        self._base = int(network.network_address) + 1

    def __str__(self) -> str:
        return str(self.network)

    def address(self, offset: int) -> str:
        return str(ipaddress.ip_address(self._base + offset))

    def offset(self, ip: str) -> int | None:
        """The offset of ``ip`` in the range, ``None`` when it is not an allocatable one."""
        try:
            value = int(ipaddress.ip_address(ip))
        except ValueError:
            return None
        offset = value - self._base
        return offset if 0 <= offset < self.size else None

    def key(self, offset: int) -> str:
        return IP_PREFIX + self.address(offset)

    @property
    def first(self) -> str:
        """The address of the ``default/kubernetes`` Service."""
        return self.address(0)


class PortRange:
    """The NodePort range, ``30000-32767`` (also ``30000+2767`` or a single port)."""

    def __init__(self, spec: str) -> None:
        text = spec.strip()
        try:
            if "-" in text:
                low, high = (int(p) for p in text.split("-", 1))
            elif "+" in text:
                low, extra = (int(p) for p in text.split("+", 1))
                high = low + extra
            else:
                low = high = int(text)
        except ValueError:
            raise ValueError(
                f"invalid service node port range {spec!r}: expected <low>-<high>"
            ) from None
        if not 1 <= low <= high <= 65535:
            raise ValueError(
                f"invalid service node port range {spec!r}: ports must be 1-65535, low <= high"
            )
        self.base = low
        self.size = high - low + 1
        self.static = _static_band(self.size, 32, 128)

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def offset(self, port: Any) -> int | None:
        if not isinstance(port, int) or isinstance(port, bool):
            return None
        offset = port - self.base
        return offset if 0 <= offset < self.size else None

    def port(self, offset: int) -> int:
        return self.base + offset

    def key(self, offset: int) -> str:
        return f"{NODE_PORT_PREFIX}{self.port(offset)}"


# --------------------------------------------------------------------------- owners


@dataclass(frozen=True)
class Owner:
    """The Service an allocation belongs to."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, svc: Mapping[str, Any]) -> Owner:
        meta = svc.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta.get("name") or "", meta.get("uid") or "")

    def record(self, now: float) -> bytes:
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _encode_json(
            {"namespace": self.namespace, "name": self.name, "uid": self.uid, "allocated": stamp}
        )


def _read_record(value: bytes) -> tuple[Owner, float]:
    """The owner and the allocation time (0 when unreadable) of a stored allocation."""
    try:
        data = _decode_json(value)
        owner = Owner(str(data["namespace"]), str(data["name"]), str(data["uid"]))
    except Exception:
        return Owner("", "", ""), 0.0
    try:
        stamp = datetime.fromisoformat(str(data.get("allocated"))).timestamp()
    except ValueError:
        stamp = 0.0
    return owner, stamp


# --------------------------------------------------------------------------- service shape


def _spec(svc: Mapping[str, Any]) -> dict[str, Any]:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _type(spec: Mapping[str, Any]) -> str:
    return spec.get("type") or "ClusterIP"


def _needs_cluster_ip(spec: Mapping[str, Any]) -> bool:
    return _type(spec) != "ExternalName"


def _needs_node_ports(spec: Mapping[str, Any]) -> bool:
    return _type(spec) in NODE_PORT_TYPES


def _is_load_balancer(spec: Mapping[str, Any]) -> bool:
    return _type(spec) == "LoadBalancer"


def _needs_health_check_port(spec: Mapping[str, Any]) -> bool:
    return _type(spec) == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _ports(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _node_port(port: Mapping[str, Any]) -> int | None:
    value = port.get("nodePort")
    return value if isinstance(value, int) and not isinstance(value, bool) and value else None


def _held_ip(spec: Mapping[str, Any]) -> str | None:
    """The cluster IP a (stored) Service holds, ``None`` for none or headless."""
    if not _needs_cluster_ip(spec):
        return None
    ip = spec.get("clusterIP")
    return ip if ip and ip != "None" else None


def _held_node_ports(spec: Mapping[str, Any]) -> set[int]:
    """The node ports a (stored) Service holds, its health check node port included."""
    held: set[int] = set()
    if _needs_node_ports(spec):
        held |= {p["nodePort"] for p in _ports(spec) if p.get("nodePort")}
    if _needs_health_check_port(spec) and spec.get("healthCheckNodePort"):
        held.add(spec["healthCheckNodePort"])
    return held


def _invalid(svc: Mapping[str, Any], errs: list[FieldError]) -> Exception:
    return invalid_error("Service", "", (svc.get("metadata") or {}).get("name"), errs)


# --------------------------------------------------------------------------- allocations


@dataclass
class Allocation:
    """What one create or update allocated and what it gave up: ``commit()`` after the
    object is written frees what the new object no longer holds; ``revert()`` after a
    failed write frees what was allocated for it."""

    allocator: ServiceAllocator
    owner: Owner
    dry_run: bool = False
    claimed: list[str] = field(default_factory=list)
    """Keys this operation created."""
    chosen: set[str] = field(default_factory=set)
    """Keys this operation uses (claimed or already the owner's): never picked twice."""
    released: list[str] = field(default_factory=list)
    """Keys to free once the write succeeded."""

    async def commit(self) -> None:
        if not self.dry_run:
            await self.allocator._free(self.released, self.owner)
        self.claimed, self.released = [], []

    async def revert(self) -> None:
        if not self.dry_run:
            await self.allocator._free(self.claimed, self.owner)
        self.claimed, self.released = [], []


class ServiceAllocator:
    """Hands out cluster IPs from ``cluster_ip_range`` and node ports from
    ``node_port_range``, keeping each allocation as one key in ``store``."""

    def __init__(
        self,
        store: Store,
        *,
        cluster_ip_range: str = DEFAULT_SERVICE_CLUSTER_IP_RANGE,
        node_port_range: str = DEFAULT_SERVICE_NODE_PORT_RANGE,
        clock: Any = time.time,
    ) -> None:
        self.store = store
        self.ips = IPRange(cluster_ip_range)
        self.ports = PortRange(node_port_range)
        self.clock = clock

    # -- before validation: keep what a client left out -----------------------------------

    @staticmethod
    def prepare_update(new: dict[str, Any], old: Mapping[str, Any]) -> None:
        """Make an update's Service say what the client meant, before it is validated
        (upstream's ``dropTypeDependentFields``, ``patchAllocatedValues`` and
        ``normalizeClusterIPs``): a type change drops the values the old type allocated
        when the client left them as they were; values the client omitted (``kubectl
        replace``, ``apply``) are taken from the stored object."""
        spec, old_spec = new.get("spec"), _spec(old)
        if not isinstance(spec, dict):
            return
        # The type changed to one that does not use what the old one allocated.
        if _needs_cluster_ip(old_spec) and not _needs_cluster_ip(spec):
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                if key in spec and spec[key] == old_spec.get(key):
                    del spec[key]
        new_ports = _ports(spec)
        if _needs_node_ports(old_spec) and not _needs_node_ports(spec):
            old_values = [p.get("nodePort") for p in _ports(old_spec)]
            if [p.get("nodePort") for p in new_ports] == old_values:
                for port in new_ports:
                    port.pop("nodePort", None)
        if _needs_health_check_port(old_spec) and not _needs_health_check_port(spec):
            if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
                spec.pop("healthCheckNodePort", None)
        for key, needed in (
            ("externalTrafficPolicy", _needs_node_ports),
            ("internalTrafficPolicy", _needs_cluster_ip),
            ("allocateLoadBalancerNodePorts", _is_load_balancer),
            ("loadBalancerClass", _is_load_balancer),
        ):
            if needed(old_spec) and not needed(spec) and spec.get(key) == old_spec.get(key):
                spec.pop(key, None)
        # Allocated values the client did not send.
        if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
            if not spec.get("clusterIP") and old_spec.get("clusterIP"):
                spec["clusterIP"] = old_spec["clusterIP"]
            if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
                if spec.get("clusterIP") == old_spec.get("clusterIP"):
                    spec["clusterIPs"] = list(old_spec["clusterIPs"])
            for key in ("ipFamilies", "ipFamilyPolicy"):
                if not spec.get(key) and old_spec.get(key):
                    value = old_spec[key]
                    spec[key] = list(value) if isinstance(value, list) else value
        if _needs_node_ports(old_spec) and _needs_node_ports(spec):
            used = {_node_port(p) for p in new_ports} - {None}
            by_name = {str(p.get("name") or ""): p.get("nodePort") for p in _ports(old_spec)}
            for port in new_ports:
                if not port.get("nodePort"):
                    value = by_name.get(str(port.get("name") or ""))
                    if value and value not in used:
                        port["nodePort"] = value
                        used.add(value)
        if _needs_health_check_port(old_spec) and _needs_health_check_port(spec):
            if not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
                spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
        # A client that cleared clusterIP clears both fields; one that changed it alone
        # changed both (validation then says whether it may).
        ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
        if old_spec.get("clusterIP") and not ip:
            spec.pop("clusterIPs", None)
        elif ip and ip != old_spec.get("clusterIP") and ips == old_spec.get("clusterIPs"):
            spec["clusterIPs"] = [ip]

    # -- after validation: allocate ---------------------------------------------------

    async def allocate(
        self, svc: dict[str, Any], old: Mapping[str, Any] | None = None, *, dry_run: bool = False
    ) -> Allocation:
        """Fill ``svc``'s cluster IP, IP families and node ports, allocating what it asks
        for (and what ``old`` did not hold). Raises ``Invalid`` (422) for a taken or
        out-of-range explicit value, ``PermanentError`` (500) for a full range. Dry-run
        checks but records nothing."""
        txn = Allocation(self, Owner.of(svc), dry_run)
        try:
            await self._allocate_ip(svc, _spec(old) if old is not None else None, txn)
            await self._allocate_node_ports(svc, _spec(old) if old is not None else None, txn)
        except BaseException:
            await txn.revert()
            raise
        return txn

    async def release(self, svc: Mapping[str, Any]) -> None:
        """Free everything the (deleted) Service ``svc`` held."""
        spec = _spec(svc)
        keys = []
        ip = _held_ip(spec)
        if ip is not None and (offset := self.ips.offset(ip)) is not None:
            keys.append(self.ips.key(offset))
        for port in _held_node_ports(spec):
            if (offset := self.ports.offset(port)) is not None:
                keys.append(self.ports.key(offset))
        await self._free(keys, Owner.of(svc))

    def _init_ip_families(
        self, svc: Mapping[str, Any], spec: dict[str, Any], old_spec: Mapping[str, Any] | None
    ) -> None:
        """``ipFamilyPolicy`` and ``ipFamilies`` as upstream sets them on a single-stack
        cluster: SingleStack (RequireDualStack for a headless Service without selector,
        which may carry endpoints of any family) and the range's family."""
        selectorless_headless = spec.get("clusterIP") == "None" and not spec.get("selector")
        policy = spec.get("ipFamilyPolicy")
        if policy is None:
            if old_spec is not None and old_spec.get("ipFamilyPolicy"):
                policy = old_spec["ipFamilyPolicy"]
            else:
                policy = "RequireDualStack" if selectorless_headless else "SingleStack"
        errs = ErrorList()
        families = spec.get("ipFamilies") or []
        for i, family in enumerate(families):
            if family in ("IPv4", "IPv6") and family != self.ips.family:
                errs.invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")
        if policy == "RequireDualStack" and not selectorless_headless:
            errs.invalid(
                "spec.ipFamilyPolicy",
                policy,
                "this cluster is not configured for dual-stack services",
            )
        ips = [ip for ip in spec.get("clusterIPs") or [] if ip != "None"]
        if len(ips) > 1:
            errs.invalid(
                "spec.clusterIPs",
                spec["clusterIPs"],
                "this cluster is not configured for dual-stack services",
            )
        if errs:
            raise _invalid(svc, list(errs))
        spec["ipFamilyPolicy"] = policy
        spec["ipFamilies"] = families or [self.ips.family]

    async def _allocate_ip(
        self, svc: dict[str, Any], old_spec: Mapping[str, Any] | None, txn: Allocation
    ) -> None:
        spec = svc.setdefault("spec", {})
        old_ip = _held_ip(old_spec) if old_spec is not None else None
        if not _needs_cluster_ip(spec):
            for key in ("ipFamilies", "ipFamilyPolicy"):
                spec.pop(key, None)
            if old_ip is not None and (offset := self.ips.offset(old_ip)) is not None:
                txn.released.append(self.ips.key(offset))
            return
        if not spec.get("clusterIP") and spec.get("clusterIPs"):
            spec["clusterIP"] = spec["clusterIPs"][0]
        self._init_ip_families(svc, spec, old_spec)
        ip = spec.get("clusterIP")
        if ip == "None":
            spec["clusterIPs"] = ["None"]
            return
        if ip and old_spec is not None and ip == old_spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [ip])
            return  # held already (immutable: validation saw to that)
        if ip:
            offset = self.ips.offset(ip)
            error = None
            if offset is None:
                error = (
                    f"the provided IP ({ip}) is not in the valid range. The range of valid "
                    f"IPs is {self.ips}"
                )
            elif not await self._claim(self.ips.key(offset), txn):
                error = "provided IP is already allocated"
            if error is not None:
                errs = ErrorList()
                errs.invalid(
                    "spec.clusterIPs",
                    spec.get("clusterIPs") or [ip],
                    f"failed to allocate IP {ip}: {error}",
                )
                raise _invalid(svc, list(errs))
        else:
            offset = await self._claim_next(self.ips, txn)
            if offset is None:
                raise PermanentError(
                    "Internal error occurred: failed to allocate a serviceIP: range is full"
                )
            ip = self.ips.address(offset)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    async def _allocate_node_ports(
        self, svc: dict[str, Any], old_spec: Mapping[str, Any] | None, txn: Allocation
    ) -> None:
        spec = svc.setdefault("spec", {})
        held = _held_node_ports(old_spec) if old_spec is not None else set()
        using: set[int] = set()
        errs = ErrorList()

        async def take(port: int, path: str) -> bool:
            """Allocate an explicitly requested port (or keep one held already)."""
            if port in held or port in using:
                using.add(port)
                return True
            offset = self.ports.offset(port)
            if offset is None:
                errs.invalid(
                    path,
                    port,
                    "provided port is not in the valid range. The range of valid ports is "
                    f"{self.ports}",
                )
                return False
            if not await self._claim(self.ports.key(offset), txn):
                errs.invalid(path, port, "provided port is already allocated")
                return False
            using.add(port)
            return True

        async def take_next() -> int:
            offset = await self._claim_next(self.ports, txn)
            if offset is None:
                raise PermanentError(
                    "Internal error occurred: failed to allocate a nodePort: range is full"
                )
            using.add(self.ports.port(offset))
            return self.ports.port(offset)

        if _needs_node_ports(spec):
            dynamic = _type(spec) == "NodePort" or spec.get("allocateLoadBalancerNodePorts", True)
            ports = _ports(spec)
            # One node port per service port number, whatever the protocols (upstream
            # gives TCP and UDP of one port the same node port).
            by_number: dict[Any, int] = {}
            for i, port in enumerate(ports):
                requested = port.get("nodePort")
                given = by_number.get(port.get("port"))
                if requested:
                    if await take(requested, f"spec.ports[{i}].nodePort"):
                        by_number.setdefault(port.get("port"), requested)
                elif given is not None:
                    port["nodePort"] = given
                elif dynamic:
                    wanted = next(
                        (
                            p.get("nodePort")
                            for p in ports[i + 1 :]
                            if p.get("port") == port.get("port") and p.get("nodePort")
                        ),
                        None,
                    )
                    if wanted and await take(wanted, f"spec.ports[{i}].nodePort"):
                        port["nodePort"] = wanted
                    elif not wanted:
                        port["nodePort"] = await take_next()
                    if port.get("nodePort"):
                        by_number[port.get("port")] = port["nodePort"]
        if _needs_health_check_port(spec):
            requested = spec.get("healthCheckNodePort")
            if requested:
                await take(requested, "spec.healthCheckNodePort")
            else:
                spec["healthCheckNodePort"] = await take_next()
        else:
            spec.pop("healthCheckNodePort", None)
        if errs:
            raise _invalid(svc, list(errs))
        for port in held - using:
            if (offset := self.ports.offset(port)) is not None:
                txn.released.append(self.ports.key(offset))

    # -- keys -----------------------------------------------------------------------------

    async def _claim(self, key: str, txn: Allocation) -> bool:
        """Take ``key`` for ``txn``'s owner; ``False`` when another Service holds it."""
        if key in txn.chosen:
            return False
        if txn.dry_run:
            try:
                kv = await self.store.get(key)
            except NotFound:
                txn.chosen.add(key)
                return True
        else:
            try:
                await self.store.create(key, txn.owner.record(self.clock()))
            except AlreadyExists:
                try:
                    kv = await self.store.get(key)
                except NotFound:
                    return False  # freed just now; the next pick will do
            else:
                txn.claimed.append(key)
                txn.chosen.add(key)
                return True
        owner, _ = _read_record(kv.value)
        if owner.uid and owner.uid == txn.owner.uid:
            txn.chosen.add(key)  # ours already (a repair recorded it): not ours to revert
            return True
        return False

    async def _claim_next(self, pool: IPRange | PortRange, txn: Allocation) -> int | None:
        """Take a free value of ``pool``: random picks in the upper band first (the lower
        ``pool.static`` values are kept for explicit requests), then a scan, then the
        lower band. ``None`` when the range is full."""
        bands = [(pool.static, pool.size), (0, pool.static)]
        for low, high in bands:
            if high <= low:
                continue
            for _ in range(min(RANDOM_TRIES, high - low)):
                offset = random.randrange(low, high)
                if await self._claim(pool.key(offset), txn):
                    return offset
            taken = await self._taken(pool)
            start = random.randrange(low, high)
            for offset in (*range(start, high), *range(low, start)):
                if offset not in taken and await self._claim(pool.key(offset), txn):
                    return offset
        return None

    async def _taken(self, pool: IPRange | PortRange) -> set[int]:
        prefix = IP_PREFIX if isinstance(pool, IPRange) else NODE_PORT_PREFIX
        taken: set[int] = set()
        for kv in await self._list(prefix):
            value = kv.key[len(prefix) :]
            offset = pool.offset(value) if isinstance(pool, IPRange) else pool.offset(_int(value))
            if offset is not None:
                taken.add(offset)
        return taken

    async def _list(self, prefix: str) -> list[Any]:
        items: list[Any] = []
        start_after: str | None = None
        while True:
            page = await self.store.list(prefix, limit=5000, start_after=start_after)
            items += page.items
            if not page.more or not page.items:
                return items
            start_after = page.items[-1].key

    async def _free(self, keys: Iterable[str], owner: Owner) -> None:
        """Delete each key that ``owner`` holds (never one another Service holds now)."""
        for key in keys:
            try:
                kv = await self.store.get(key)
                holder, _ = _read_record(kv.value)
                if holder.uid != owner.uid:
                    continue
                await self.store.delete(key, expected_revision=kv.revision)
            except (NotFound, Conflict):
                continue
            except Exception as exc:  # a repair pass frees it later
                log.warning("could not free a service allocation", key=key, error=str(exc))

    # -- repair ---------------------------------------------------------------------------

    async def repair(self, *, grace: float = REPAIR_GRACE) -> dict[str, int]:
        """Make the allocations match the Services: free what no Service holds (unless
        younger than ``grace`` seconds: its Service may still be being written) and
        record what a Service holds without a key. Returns counts of what it did."""
        now = self.clock()
        wanted: dict[str, Owner] = {}
        for kv in await self._list(SERVICES_PREFIX):
            try:
                svc = _decode_json(kv.value)
            except msgspec.DecodeError:
                continue
            owner, spec = Owner.of(svc), _spec(svc)
            keys = []
            ip = _held_ip(spec)
            held: list[tuple[Any, str, Any, str]] = []
            if ip is not None:
                held.append((self.ips, "ip", ip, "service cluster IP is not in the service range"))
            held += [
                (self.ports, "port", port, "service node port is not in the node port range")
                for port in _held_node_ports(spec)
            ]
            for allocator, what, value, out_of_range in held:
                offset = allocator.offset(value)
                if offset is None:
                    log.warning(
                        out_of_range,
                        service=f"{owner.namespace}/{owner.name}",
                        **{what: value},
                        range=str(allocator),
                    )
                else:
                    keys.append(allocator.key(offset))
            for key in keys:
                if key in wanted and wanted[key] != owner:
                    log.warning(
                        "two services hold one allocation",
                        key=key,
                        services=[
                            f"{wanted[key].namespace}/{wanted[key].name}",
                            f"{owner.namespace}/{owner.name}",
                        ],
                    )
                    continue
                wanted[key] = owner
        counts = {"freed": 0, "recorded": 0, "kept": 0}
        seen: set[str] = set()
        for prefix in (IP_PREFIX, NODE_PORT_PREFIX):
            for kv in await self._list(prefix):
                seen.add(kv.key)
                holder, allocated = _read_record(kv.value)
                owner = wanted.get(kv.key)
                if owner is not None and owner.uid == holder.uid:
                    continue
                if now - allocated < grace:
                    counts["kept"] += 1
                    continue
                try:
                    if owner is None:
                        await self.store.delete(kv.key, expected_revision=kv.revision)
                        counts["freed"] += 1
                    else:  # held by a Service the record does not name: name it
                        await self.store.update(
                            kv.key, owner.record(now), expected_revision=kv.revision
                        )
                        counts["recorded"] += 1
                except (NotFound, Conflict):
                    continue
        for key, owner in wanted.items():
            if key in seen:
                continue
            with contextlib.suppress(AlreadyExists):
                await self.store.create(key, owner.record(now))
                counts["recorded"] += 1
        if counts["freed"] or counts["recorded"]:
            log.info("repaired service allocations", **counts)
        return counts


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- default/kubernetes


KUBERNETES_SERVICE = "kubernetes"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _usable_endpoint(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


async def ensure_kubernetes_service(
    objects: ObjectStore, *, port: int, address: str | None = None
) -> None:
    """Keep ``default/kubernetes``: a selector-less ClusterIP Service on the first address
    of the range, port 443 (``https``) to the API server's ``port``, and, given a serving
    ``address`` that pods can reach (not loopback), its Endpoints and (when the kind is
    served) its EndpointSlice naming that address."""
    from kcore.api.registry import by_resource

    info = by_resource("", "v1", "services")
    assert info is not None
    allocator = objects.services
    ports = [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": port}]
    try:
        svc = await objects.get(info, "default", KUBERNETES_SERVICE)
    except NotFound:
        body = {
            "metadata": {
                "name": KUBERNETES_SERVICE,
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": allocator.ips.first,
                "ports": ports,
                "sessionAffinity": "None",
            },
        }
        with contextlib.suppress(AlreadyExists):
            await objects.create(info, "default", body)
            log.info("created the kubernetes service", cluster_ip=allocator.ips.first)
    else:
        current = [
            {k: p.get(k) for k in ("name", "protocol", "port", "targetPort")}
            for p in _ports(_spec(svc))
        ]
        if current != ports:
            svc["spec"]["ports"] = ports
            await objects.update(info, "default", KUBERNETES_SERVICE, svc)
    if not _usable_endpoint(address):
        return
    assert address is not None
    await _ensure_kubernetes_endpoints(objects, address, port)


async def _ensure_object(objects: ObjectStore, info: Any, body: dict[str, Any]) -> None:
    """Create ``body`` in ``default``, or bring the stored one's labels and content to it."""
    name = body["metadata"]["name"]
    try:
        current = await objects.get(info, "default", name)
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            await objects.create(info, "default", body)
        return
    changed = False
    labels = current["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in body["metadata"].get("labels", {}).items()):
        current["metadata"]["labels"] = {**labels, **body["metadata"]["labels"]}
        changed = True
    for key, value in body.items():
        if key not in ("metadata", "apiVersion", "kind") and current.get(key) != value:
            current[key] = value
            changed = True
    if changed:
        await objects.update(info, "default", name, current)


async def _ensure_kubernetes_endpoints(objects: ObjectStore, address: str, port: int) -> None:
    from kcore.api.registry import by_resource

    endpoints = by_resource("", "v1", "endpoints")
    assert endpoints is not None
    await _ensure_object(
        objects,
        endpoints,
        {
            "metadata": {"name": KUBERNETES_SERVICE, "labels": {SKIP_MIRROR_LABEL: "true"}},
            "subsets": [
                {
                    "addresses": [{"ip": address}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ],
        },
    )
    slices = by_resource("discovery.k8s.io", "v1", "endpointslices")
    if slices is None:
        return
    family = f"IPv{ipaddress.ip_address(address).version}"
    await _ensure_object(
        objects,
        slices,
        {
            "metadata": {
                "name": KUBERNETES_SERVICE,
                "labels": {SERVICE_NAME_LABEL: KUBERNETES_SERVICE},
            },
            "addressType": family,
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
    )


async def reconcile_services(
    objects: ObjectStore, *, port: int, address: str | None = None, repair: bool = True
) -> None:
    """One round of :func:`maintain_services`: repair the allocations (given ``repair``)
    and keep the ``default/kubernetes`` Service. Failures are logged, not raised."""
    if repair:
        try:
            await objects.services.repair()
        except Exception as exc:
            log.warning("service allocation repair failed", error=str(exc))
    try:
        await ensure_kubernetes_service(objects, port=port, address=address)
    except Exception as exc:
        log.warning("could not keep the kubernetes service", error=str(exc))


async def maintain_services(
    objects: ObjectStore,
    *,
    port: int,
    address: str | None = None,
    repair_interval: float = REPAIR_INTERVAL,
    reconcile_interval: float = KUBERNETES_RECONCILE_INTERVAL,
) -> None:
    """Run until cancelled, after a first :func:`reconcile_services` at start-up: keep the
    ``default/kubernetes`` Service (and its endpoints) every ``reconcile_interval`` seconds
    and repair the allocations every ``repair_interval`` seconds."""
    loop = asyncio.get_running_loop()
    next_repair = loop.time() + repair_interval
    while True:
        await asyncio.sleep(min(reconcile_interval, max(next_repair - loop.time(), 0.0)))
        repair = loop.time() >= next_repair
        if repair:
            next_repair = loop.time() + repair_interval
        await reconcile_services(objects, port=port, address=address, repair=repair)
