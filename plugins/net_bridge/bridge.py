"""The network slot's backend: :class:`BridgeNetwork` (the package docstring says what it
builds). Every method is a thin coroutine around one call on a worker thread; the worker
holds the pod's lock and keeps the in-memory state (records, host-port reservations) in
step with the disk and the kernel, so a caller cancelled mid-way leaves nothing half done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import socket
import struct
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

import structlog

from kcore.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    KcoreError,
    NotFound,
    PermanentError,
    TemporaryError,
)
from kcore.interfaces import NETWORK_CAPABILITIES
from kcore.plugins.net_bridge import node
from kcore.plugins.net_bridge.config import VETH_NAME, BridgeConfig
from kcore.plugins.net_bridge.ipam import Exhausted, HostLocalIpam
from kcore.plugins.net_bridge.netlink import LOOPBACK_INDEX, Rtnl, entered, netns_id
from kcore.plugins.net_bridge.nft import (
    Nft,
    NftError,
    add_script,
    delete_script,
    drop_table_script,
    table_script,
)
from kcore.plugins.net_bridge.pods import HostPort, PodRecord, PodRecords, host_ports

log = structlog.get_logger("kcore.plugins.net_bridge")
T = TypeVar("T")

POD_INTERFACE = "eth0"
WORKERS = 8
"""Worker threads: netlink requests mostly wait on the kernel (deleting a veth waits for
RCU, about 20 ms), and several overlap there."""
_TEMPORARY_ERRNOS = {errno.ENOMEM, errno.ENOBUFS, errno.EBUSY, errno.EAGAIN, errno.EINTR}


class BridgeNetwork:
    """Pods on a Linux bridge of the node, with addresses from the node's pod CIDR."""

    capabilities = frozenset(
        {
            "pod_addresses",
            "pod_to_pod",
            "host_to_pod",
            "host_ports",
            "survives_restart",
            "address_rotation",
        }
    )
    assert capabilities <= NETWORK_CAPABILITIES

    def __init__(self, config: BridgeConfig, state_dir: Path, workers: int = WORKERS) -> None:
        self.config = config
        self.state_dir = Path(state_dir)
        self._tls = threading.local()
        self._sockets: list[Rtnl] = []
        self._pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=f"net_bridge-{config.bridge_name}",
            initializer=self._init_worker,
        )
        self._state = threading.Lock()
        self._state_changed = threading.Condition(self._state)
        self._sweeping = False
        self._repairing = threading.Lock()
        self._records: dict[str, PodRecord] = {}
        self._held: dict[str, list[HostPort]] = {}  # pod uid -> host ports it holds
        self._busy: dict[str, list[Any]] = {}  # pod uid -> [lock, users]
        self._host_netns: tuple[int, int] = (0, 0)
        self._bridge_index = 0
        self._ipam: HostLocalIpam | None = None
        self._store = PodRecords(self.state_dir / "pods")
        self._nft: Nft | None = None
        self._closed = False

    @classmethod
    async def create(
        cls, config: BridgeConfig, state_dir: Path, workers: int = WORKERS
    ) -> BridgeNetwork:
        """Set the node up (bridge, routes, sysctls, nft table) and load what an earlier
        plugin object on the same ``state_dir`` left."""
        self = cls(config, state_dir, workers)
        try:
            await self._run(self._start)
        except BaseException:
            await self.close()
            raise
        log.info(
            "pod network ready",
            plugin="net_bridge",
            bridge=config.bridge_name,
            pod_cidr=str(config.pod_cidr),
            pods=len(self._records),
            nft=self._nft.via if self._nft else None,
        )
        return self

    @property
    def node_address(self) -> str:
        """The node's address on the pod network (the gateway): node-local services, such
        as cluster DNS, listen there."""
        return str(self.config.gateway)

    # -- worker threads ----------------------------------------------------------------------

    def _init_worker(self) -> None:
        # A new worker starts in the namespace of the thread that submitted to the pool:
        # the event loop's, which is the node's. Its node socket is made now, before the
        # thread ever enters a pod's namespace.
        self._tls.host = Rtnl()
        with self._state:
            self._sockets.append(self._tls.host)

    @property
    def _host(self) -> Rtnl:
        return self._tls.host

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread; errors of the kernel, nft or the disk come
        out as kcore errors."""
        if self._closed:
            raise PermanentError("net_bridge: the plugin is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except KcoreError:
            raise
        except NftError as exc:
            raise PermanentError(f"net_bridge: nft: {exc}") from exc
        except OSError as exc:
            raise _netlink_error(exc, "net_bridge") from exc
        except Exception as exc:
            if type(exc).__name__ != "NetlinkError":  # pyroute2's, imported lazily
                raise
            raise PermanentError(f"net_bridge: netlink: {exc}") from exc

    @contextlib.contextmanager
    def _pod_lock(self, uid: str) -> Iterator[None]:
        """Serialize the work on one pod (threads, not tasks: a cancelled caller must not
        let the next call in while its worker still runs)."""
        with self._state:
            while self._sweeping:
                self._state_changed.wait()
            entry = self._busy.setdefault(uid, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._state:
                entry[1] -= 1
                if not entry[1]:
                    del self._busy[uid]
                    self._state_changed.notify_all()

    @contextlib.contextmanager
    def _sweep(self) -> Iterator[None]:
        """Work on the node alone: no pod's set-up or teardown runs meanwhile (new ones
        wait; running ones are waited for)."""
        with self._state:
            while self._sweeping:
                self._state_changed.wait()
            self._sweeping = True
            while self._busy:
                self._state_changed.wait()
        try:
            yield
        finally:
            with self._state:
                self._sweeping = False
                self._state_changed.notify_all()

    # -- start -------------------------------------------------------------------------------

    def _start(self) -> None:
        import pyroute2

        cfg = self.config
        self._host_netns = netns_id_of_thread()
        self._ipam = HostLocalIpam(self.state_dir / "ipam", cfg.pod_cidr, {cfg.gateway})
        self._store.directory.mkdir(parents=True, exist_ok=True)
        self._records = self._store.load_all()
        for uid, record in self._records.items():
            self._held[uid] = list(record.ports)
        self._nft = Nft()
        with pyroute2.IPRoute() as ipr:
            self._bridge_index = node.ensure_bridge(
                ipr, cfg.bridge_name, cfg.bridge_mac, cfg.gateway, cfg.pod_cidr.prefixlen
            )
            node.write_sysctl(f"net/ipv4/conf/{cfg.bridge_name}/route_localnet", "1")
            node.write_sysctl("net/ipv4/ip_forward", "1")
            node.ensure_unreachable(ipr, cfg.cluster_cidr)
            node.ensure_unreachable(ipr, cfg.service_cidr)
        self._sync_nft()

    def _sync_nft(self) -> None:
        """(Re)install the table's rules and set its maps to the records' host ports."""
        assert self._nft is not None
        elements = [(r.ip, p) for r in self._records.values() for p in r.ports]
        cfg = self.config
        self._nft.run(table_script(cfg.nft_table, cfg.pod_cidr, cfg.cluster_cidr, elements))

    # -- set-up --------------------------------------------------------------------------------

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        ports = host_ports(config)
        for i, a in enumerate(ports):
            for b in ports[i + 1 :]:
                if a.overlaps(b):
                    raise Conflict(f"pod {pod_uid}: host ports {a} and {b} overlap")
        meta = (str(config.get("name") or ""), str(config.get("namespace") or ""))
        answer = await self._run(self._setup, pod_uid, netns_path, ports, meta)
        return copy_answer(answer)

    def _setup(
        self, uid: str, netns_path: str, ports: list[HostPort], meta: tuple[str, str]
    ) -> dict[str, Any]:
        with self._pod_lock(uid):
            ns_fd = open_netns(netns_path)
            try:
                ns = netns_id(ns_fd)
                if ns == self._host_netns:
                    raise Invalid(f"{netns_path} is the node's own network namespace")
                record = self._records.get(uid) or self._store.load(uid)
                if (
                    record is not None
                    and record.netns_id == ns
                    and record.ports == ports
                    and self._wired(record)
                ):
                    with self._state:
                        self._records[uid] = record
                        self._held.setdefault(uid, list(record.ports))
                    return record.answer
                pod = pod_socket(ns_fd, netns_path)
                try:
                    self._reserve(uid, ports, record)
                    try:
                        record = self._wire(uid, netns_path, pod, ns_fd, ns, ports, meta, record)
                    except BaseException:
                        # _wire leaves nothing behind, not even an earlier wiring.
                        with self._state:
                            self._records.pop(uid, None)
                            self._held.pop(uid, None)
                        raise
                finally:
                    pod.close()
                with self._state:
                    self._records[uid] = record
                    self._held[uid] = list(record.ports)
                return record.answer
            finally:
                os.close(ns_fd)

    def _reserve(self, uid: str, ports: list[HostPort], record: PodRecord | None) -> None:
        """Hold ``ports`` for ``uid`` (in addition to what its record holds, until the
        set-up ends); :class:`kcore.Conflict` when another pod holds one of them."""
        with self._state:
            for other, held in self._held.items():
                if other == uid:
                    continue
                for mine in ports:
                    for theirs in held:
                        if mine.overlaps(theirs):
                            owner = self._records.get(other)
                            who = f"{owner.namespace}/{owner.name}" if owner and owner.name else ""
                            raise Conflict(
                                f"host port {mine} is taken by pod {who or other}"
                                + (f" ({other})" if who else "")
                            )
            self._held[uid] = sorted(set(ports) | set(record.ports if record else ()))

    def _wired(self, record: PodRecord) -> bool:
        link = self._host.link(record.host_veth)
        return link is not None and link[2] == self._bridge_index and bool(link[1] & 1)

    def _wire(
        self,
        uid: str,
        netns_path: str,
        pod: Rtnl,
        ns_fd: int,
        ns: tuple[int, int],
        ports: list[HostPort],
        meta: tuple[str, str],
        old: PodRecord | None,
    ) -> PodRecord:
        """Wire the namespace (``pod`` is a socket in it); on failure remove whatever this
        call and ``old`` held."""
        assert self._ipam is not None and self._nft is not None
        cfg = self.config
        host = self._host
        ip: IPv4Address | None = None
        veth = cfg.veth_name(uid)
        created = nft_added = False
        try:
            if old is not None:
                # Re-wiring (a new namespace, other host ports, or broken wiring): the
                # pod keeps its address.
                self._unwire(old)
                if IPv4Address(old.ip) in cfg.pod_cidr and self._ipam.claim(
                    IPv4Address(old.ip), uid
                ):
                    ip = IPv4Address(old.ip)
                else:
                    self._ipam.release(old.ip, uid)
            if ip is None:
                try:
                    ip = self._ipam.allocate(uid)
                except Exhausted as exc:
                    raise TemporaryError(
                        f"net_bridge: the pod CIDR {cfg.pod_cidr} is exhausted ({exc})",
                        retry_after=5.0,
                    ) from None
            self._add_veth(uid, veth, ns_fd, netns_path)
            created = True
            set_hairpin(host, veth)
            eth0 = pod.link(POD_INTERFACE)
            if eth0 is None:
                raise PermanentError(f"{POD_INTERFACE} vanished from {netns_path}")
            pod.set_up(LOOPBACK_INDEX)
            pod.set_up(eth0[0])
            pod.add_address(eth0[0], ip.packed, cfg.pod_cidr.prefixlen)
            pod.add_route(cfg.gateway.packed)
            if ports:
                self._nft.run(add_script(cfg.nft_table, str(ip), ports))
                nft_added = True
            gateway = str(cfg.gateway)
            record = PodRecord(
                uid=uid,
                ip=str(ip),
                host_veth=veth,
                netns_path=netns_path,
                netns_id=ns,
                answer={
                    "ips": [str(ip)],
                    "interface": POD_INTERFACE,
                    "gateway": gateway,
                    "routes": [{"dst": "0.0.0.0/0", "gateway": gateway}],
                    "dns": {"servers": [], "searches": [], "options": []},
                },
                ports=list(ports),
                name=meta[0],
                namespace=meta[1],
            )
            self._store.save(record)
            return record
        except BaseException as exc:
            with contextlib.suppress(Exception):
                if nft_added and ip is not None:
                    self._nft.run(delete_script(cfg.nft_table, str(ip), ports))
            with contextlib.suppress(OSError):
                if created:
                    host.delete_link(veth)
            with contextlib.suppress(OSError):
                if ip is not None:
                    self._ipam.release(ip, uid)
                elif old is not None:
                    self._ipam.release(old.ip, uid)
            with contextlib.suppress(OSError):
                self._store.remove(uid)
            if isinstance(exc, OSError):
                raise _netlink_error(exc, f"net_bridge: pod {uid}") from exc
            if isinstance(exc, NftError):
                raise PermanentError(f"net_bridge: nft: {exc}") from exc
            raise

    def _add_veth(self, uid: str, veth: str, ns_fd: int, netns_path: str) -> None:
        host = self._host
        try:
            host.add_veth(veth, POD_INTERFACE, ns_fd, self._bridge_index)
            return
        except OSError as exc:
            if exc.errno == errno.EINVAL and self._repair_bridge():
                host.add_veth(veth, POD_INTERFACE, ns_fd, self._bridge_index)
                return
            if exc.errno != errno.EEXIST:
                raise
        if host.link(veth) is None:
            raise AlreadyExists(f"{netns_path} already has an {POD_INTERFACE}")
        with self._state:
            clash = [r.uid for r in self._records.values() if r.host_veth == veth and r.uid != uid]
        if clash:
            raise PermanentError(f"veth name {veth} is taken by pod {clash[0]}")
        # A leftover of this pod's earlier set-up that never got its record.
        host.delete_link(veth)
        host.add_veth(veth, POD_INTERFACE, ns_fd, self._bridge_index)

    def _repair_bridge(self) -> bool:
        """Make the bridge again when it has gone (as CNI's bridge plugin ensures its bridge
        on every ADD) and put the recorded pods back on it; False when it was there."""
        import pyroute2

        cfg = self.config
        with self._repairing:
            found = self._host.link(cfg.bridge_name)
            if found is not None and found[0] == self._bridge_index:
                return False
            with pyroute2.IPRoute() as ipr:
                self._bridge_index = node.ensure_bridge(
                    ipr, cfg.bridge_name, cfg.bridge_mac, cfg.gateway, cfg.pod_cidr.prefixlen
                )
            node.write_sysctl(f"net/ipv4/conf/{cfg.bridge_name}/route_localnet", "1")
            with self._state:
                veths = [r.host_veth for r in self._records.values()]
            for veth in veths:
                with contextlib.suppress(OSError):
                    self._host.set_master(veth, self._bridge_index)
                    set_hairpin(self._host, veth)
            log.warning("bridge made again", plugin="net_bridge", bridge=cfg.bridge_name)
            return True

    # -- teardown ------------------------------------------------------------------------------

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None:
        await self._run(self._teardown, pod_uid)

    def _teardown(self, uid: str) -> bool:
        """Release what ``uid`` holds; True when there was something."""
        assert self._ipam is not None
        with self._pod_lock(uid):
            record = self._records.get(uid) or self._store.load(uid)
            try:
                if record is not None:
                    self._unwire(record)
                    released = self._ipam.release(record.ip, uid)
                else:
                    removed = self._host.delete_link(self.config.veth_name(uid))
                    released = bool(self._ipam.release_owner(uid)) or removed
            except OSError as exc:
                raise _netlink_error(exc, f"net_bridge: pod {uid}") from exc
            except NftError as exc:
                raise PermanentError(f"net_bridge: nft: {exc}") from exc
            self._store.remove(uid)
            with self._state:
                self._records.pop(uid, None)
                self._held.pop(uid, None)
            return record is not None or released

    def _unwire(self, record: PodRecord) -> None:
        """Delete the pod's veth (its peer goes with it) and host ports; keep its address."""
        assert self._nft is not None
        self._host.delete_link(record.host_veth)
        if record.ports:
            try:
                self._nft.run(delete_script(self.config.nft_table, record.ip, record.ports))
            except NftError:
                if self._nft_table_exists():
                    raise

    def _nft_table_exists(self) -> bool:
        assert self._nft is not None
        try:
            self._nft.run(f"list table ip {self.config.nft_table}")
        except NftError:
            return False
        return True

    # -- check, status ------------------------------------------------------------------------

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        await self._run(self._check, pod_uid, netns_path)

    def _check(self, uid: str, netns_path: str) -> None:
        import pyroute2

        with self._pod_lock(uid):
            record = self._records.get(uid) or self._store.load(uid)
            if record is None:
                raise NotFound(f"net_bridge: pod {uid} is not wired")
            ns_fd = open_netns(netns_path)
            try:
                if netns_id(ns_fd) != record.netns_id:
                    raise PermanentError(
                        f"pod {uid}: {netns_path} is not the namespace that was wired"
                    )
                link = self._host.link(record.host_veth)
                if link is None:
                    raise PermanentError(f"pod {uid}: its veth {record.host_veth} is gone")
                if link[2] != self._bridge_index:
                    raise PermanentError(
                        f"pod {uid}: {record.host_veth} is not on {self.config.bridge_name}"
                    )
                if not link[1] & 1:
                    raise PermanentError(f"pod {uid}: {record.host_veth} is down")
                with entered(ns_fd):
                    ipr = pyroute2.IPRoute()
                try:
                    problem = node.pod_side(ipr, record.ip, record.answer["gateway"])
                finally:
                    ipr.close()
                if problem:
                    raise PermanentError(f"pod {uid}: {problem}")
            finally:
                os.close(ns_fd)

    async def status(self) -> Mapping[str, Any]:
        try:
            problem = await self._run(self._status)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            return {"ready": False, "reason": "NetworkPluginNotReady", "message": problem}
        return {"ready": True, "reason": "", "message": ""}

    def _status(self) -> str | None:
        import pyroute2

        cfg = self.config
        with pyroute2.IPRoute() as ipr:
            problem = node.bridge_state(ipr, cfg.bridge_name, cfg.gateway)
        if problem:
            return problem
        if node.read_sysctl("net/ipv4/ip_forward") != "1":
            return "net.ipv4.ip_forward is off"
        if not self._nft_table_exists():
            return f"nft table ip {cfg.nft_table} is missing"
        return None

    # -- gc --------------------------------------------------------------------------------------

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        live = set(live_pod_uids)
        stale = await self._run(self._stale_records, live)
        done = await asyncio.gather(*(self._run(self._teardown, uid) for uid in stale))
        released = {uid for uid, held in zip(stale, done, strict=True) if held}
        released.update(await self._run(self._gc_leftovers))
        return sorted(released)

    def _stale_records(self, live: set[str]) -> list[str]:
        """Merge records written by another plugin object on this data dir; return those
        of pods not in ``live``."""
        disk = self._store.load_all()
        with self._state:
            for uid, record in disk.items():
                if uid not in self._records and uid not in self._busy:
                    self._records[uid] = record
                    self._held[uid] = list(record.ports)
            return [u for u in self._records if u not in live and u not in self._busy]

    def _gc_leftovers(self) -> list[str]:
        """Remove addresses, veths and nft elements that no record accounts for (left by
        a crash mid-set-up); return the owners of the addresses. Set-ups wait meanwhile."""
        import pyroute2

        assert self._ipam is not None
        with self._sweep():
            records = dict(self._records)
            released = []
            for address, owner in self._ipam.allocations().items():
                record = records.get(owner)
                if record is None or record.ip != address:
                    if self._ipam.release(address, owner):
                        released.append(owner)
            keep = {r.host_veth for r in records.values()}
            with pyroute2.IPRoute() as ipr:
                ports = node.ports(ipr, self.config.bridge_name)
            for name in ports:
                # Only veths named as this plugin names them: whatever else someone put
                # on the bridge is theirs.
                if name not in keep and VETH_NAME.fullmatch(name):
                    with contextlib.suppress(OSError):
                        self._host.delete_link(name)
            self._sync_nft()
        return released

    # -- close, remove_all -------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the worker threads; pods stay wired, and a new plugin object on the same
        data dir carries on where this one stopped."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self._ipam is not None:
            self._ipam.close()
        if self._nft is not None:
            self._nft.close()

    async def remove_all(self) -> None:
        """Take everything down: every pod's wiring, the bridge, the nft table, the
        unreachable routes and the plugin's state; then close. (Not in the contract: for
        tests, benchmarks and uninstalling.) ``net.ipv4.ip_forward`` stays on."""
        uids = await self._run(self._stale_records, set())
        await asyncio.gather(*(self._run(self._teardown, uid) for uid in uids))
        await self._run(self._remove_node)
        await self.close()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: shutil.rmtree(self.state_dir, ignore_errors=True)
        )
        log.info("pod network removed", plugin="net_bridge", bridge=self.config.bridge_name)

    def _remove_node(self) -> None:
        import pyroute2

        assert self._nft is not None
        cfg = self.config
        with self._sweep(), pyroute2.IPRoute() as ipr:
            for name in node.ports(ipr, cfg.bridge_name):
                with contextlib.suppress(OSError):
                    self._host.delete_link(name)
            node.delete_bridge(ipr, cfg.bridge_name)
            node.remove_unreachable(ipr, cfg.cluster_cidr)
            node.remove_unreachable(ipr, cfg.service_cidr)
            self._nft.run(drop_table_script(cfg.nft_table))


def netns_id_of_thread() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def pod_socket(ns_fd: int, netns_path: str) -> Rtnl:
    """A netlink socket inside the namespace ``ns_fd``."""
    try:
        with entered(ns_fd):
            return Rtnl()
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise Invalid(f"{netns_path} is not a network namespace") from exc
        raise PermanentError(f"cannot enter {netns_path}: {exc}") from exc


def open_netns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {path} does not exist") from None
    except OSError as exc:
        raise PermanentError(f"cannot open network namespace {path}: {exc}") from exc


def set_hairpin(rtnl: Rtnl, veth: str) -> None:
    """Let the bridge send a frame back out of the port it came from. With br_netfilter
    loaded, a pod's packet to a Service that is DNAT-ed to that same pod is bridged, not
    routed, back to its port; without hairpin mode the bridge drops it (the kubelet's
    ``--hairpin-mode=hairpin-veth``, CNI bridge's ``hairpinMode``). One RTM_SETLINK of
    family AF_BRIDGE with IFLA_PROTINFO { IFLA_BRPORT_MODE = 1 }."""
    link = rtnl.link(veth)
    if link is None:
        raise PermanentError(f"{veth} vanished")
    mode = struct.pack("=HHB3x", 5, 4, 1)  # IFLA_BRPORT_MODE, u8, padded
    protinfo = struct.pack("=HH", 4 + len(mode), 12 | 0x8000) + mode  # IFLA_PROTINFO, nested
    body = struct.pack("=BxHiII", socket.AF_BRIDGE, 0, link[0], 0, 0) + protinfo
    rtnl.request(19, 0, body, f"hairpin mode on {veth}")  # RTM_SETLINK


def copy_answer(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A copy the caller may change (``copy.deepcopy`` costs ten times as much)."""
    dns = answer["dns"]
    return {
        "ips": list(answer["ips"]),
        "interface": answer["interface"],
        "gateway": answer["gateway"],
        "routes": [dict(r) for r in answer["routes"]],
        "dns": {k: list(dns[k]) for k in ("servers", "searches", "options")},
    }


def _netlink_error(exc: OSError, what: str) -> KcoreError:
    if exc.errno in _TEMPORARY_ERRNOS:
        return TemporaryError(f"{what}: {exc.strerror or exc}")
    return PermanentError(f"{what}: {exc.strerror or exc}")
