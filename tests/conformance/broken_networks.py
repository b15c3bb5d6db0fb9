"""Network plugins for testing the network conformance suite itself.

:class:`DummyNetwork` is an honest, small plugin on real namespaces: each pod gets an
address on a ``dummy`` interface named ``eth0`` inside its namespace (no traffic leaves it:
the pods reach nothing, so it lacks ``pod_to_pod`` and ``host_to_pod``), and each host port
is a userspace proxy on 127.0.0.1 that connects, from inside the pod's namespace, to the
container port. It remembers its pods in a file, so a new object on the same data
directory knows them, and hands addresses out round the pool, on from the last one handed
out (kept in a file too). Each other class here is that plugin with exactly one promise of the
contract broken, so that ``test_suite_catches_broken_networks.py`` can show the suite
notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from kcore.conformance.netns import run
from kcore.errors import Conflict, NotFound, PermanentError, TemporaryError

POOL = ipaddress.ip_network("10.253.0.0/25")
"""The dummy's addresses: only ever inside the tests' own namespaces, on dummy links.
Smaller than the suite's 200 set-up cycles, so that a leak of addresses runs it dry."""

SMALL_POOL = "10.253.0.0/29"
"""The pool of the suite's ``small_pod_range``: 5 pods (the first host is the gateway)."""

LINK_KINDS = ("dummy", "ifb")
"""Link types for a pod's eth0 that carry no traffic anywhere, in order of preference (some
kernels come without the dummy driver)."""

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _socket_in_netns(netns_path: str) -> socket.socket:
    """A TCP socket created inside the namespace at ``netns_path``, by a thread of its own
    that enters it (a socket stays in the namespace it was made in)."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns_path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=work, name="dummy-net-setns")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass


class DummyNetwork:
    """The honest plugin (see the module docstring)."""

    capabilities = frozenset(
        {"pod_addresses", "host_ports", "survives_restart", "address_rotation"}
    )

    def __init__(self, data_dir: Path, pool: str | None = None) -> None:
        self.pool = ipaddress.ip_network(pool) if pool else POOL
        self.state_file = Path(data_dir) / "dummy-net.json"
        self.last_file = Path(data_dir) / "dummy-net-last"
        self.pods: dict[str, dict[str, Any]] = self._load()
        self.held: set[str] = {p["ip"] for p in self.pods.values()}
        self.proxies: dict[str, list[asyncio.Server]] = {}
        self._lock: asyncio.Lock | None = None
        self._resumed = False

    # -- state -------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.pods))
        tmp.replace(self.state_file)

    async def _begin(self) -> asyncio.Lock:
        """The plugin's lock; on the first call, the host ports of remembered pods are
        proxied again (a restarted plugin resumes them)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        if not self._resumed:
            self._resumed = True
            for uid, record in self.pods.items():
                with contextlib.suppress(Conflict):
                    await self._start_proxies(uid, record)
        return self._lock

    # -- the pieces the broken plugins change --------------------------------------------------

    def _last(self) -> str | None:
        """The address handed out last."""
        try:
            return self.last_file.read_text()
        except FileNotFoundError:
            return None

    def _remember(self, ip: str) -> None:
        self.last_file.write_text(ip)

    def _allocate(self) -> str:
        hosts = [str(h) for h in list(self.pool.hosts())[1:]]
        last = self._last()
        start = hosts.index(last) + 1 if last in hosts else 0
        for ip in hosts[start:] + hosts[:start]:
            if ip not in self.held:
                self.held.add(ip)
                self._remember(ip)
                return ip
        raise TemporaryError(f"all addresses of {self.pool} are taken")

    def _release_address(self, ip: str) -> None:
        self.held.discard(ip)

    def _check_ports(self, uid: str, ports: Sequence[Mapping[str, Any]]) -> None:
        for port in ports:
            for other, record in self.pods.items():
                if other != uid and any(
                    p["host_port"] == port["host_port"] and p["protocol"] == port["protocol"]
                    for p in record["ports"]
                ):
                    raise Conflict(f"host port {port['host_port']} is taken by pod {other}")

    async def _wire(self, netns_path: str, ip: str) -> None:
        gateway = next(self.pool.hosts())
        commands = (
            f"addr add {ip}/{self.pool.prefixlen} dev eth0\n"
            "link set eth0 up\n"
            f"route add default via {gateway} dev eth0\n"
        )
        enter = ("nsenter", f"--net={netns_path}", "--")
        for kind in LINK_KINDS:
            added = await run(*enter, "ip", "link", "add", "eth0", "type", kind, check=False)
            if added.returncode == 0:
                break
        else:
            raise PermanentError(f"cannot add eth0 of any kind {LINK_KINDS}: {added.stderr}")
        await run(*enter, "ip", "-batch", "-", stdin=commands)

    async def _unwire(self, netns_path: str) -> None:
        if os.path.exists(netns_path):
            await run(
                "nsenter", f"--net={netns_path}", "--", "ip", "link", "delete", "eth0", check=False
            )

    async def _start_proxies(self, uid: str, record: Mapping[str, Any]) -> None:
        servers = self.proxies.setdefault(uid, [])
        for port in record["ports"]:

            async def handle(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                target: tuple[str, int] = (record["ip"], port["container_port"]),
            ) -> None:
                try:
                    sock = _socket_in_netns(record["netns"])
                    sock.setblocking(False)
                    loop = asyncio.get_running_loop()
                    await asyncio.wait_for(loop.sock_connect(sock, target), 3)
                    pod_reader, pod_writer = await asyncio.open_connection(sock=sock)
                except (OSError, TimeoutError):
                    writer.close()
                    return
                await asyncio.gather(_pump(reader, pod_writer), _pump(pod_reader, writer))
                pod_writer.close()
                writer.close()

            try:
                server = await asyncio.start_server(handle, "127.0.0.1", port["host_port"])
            except OSError as exc:
                raise Conflict(f"host port {port['host_port']}: {exc}") from None
            servers.append(server)

    async def _stop_proxies(self, uid: str) -> None:
        for server in self.proxies.pop(uid, []):
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _answer(self, ip: str) -> dict[str, Any]:
        gateway = str(next(self.pool.hosts()))
        return {
            "ips": [ip],
            "interface": "eth0",
            "gateway": gateway,
            "routes": [{"dst": "0.0.0.0/0", "gateway": gateway}],
            "dns": {"servers": [], "searches": [], "options": []},
        }

    # -- the contract ----------------------------------------------------------------------------

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        async with await self._begin():
            if not os.path.exists(netns_path):
                raise NotFound(f"network namespace {netns_path} does not exist")
            if pod_uid in self.pods:
                return self._answer(self.pods[pod_uid]["ip"])
            ports = [
                {"protocol": m.get("protocol") or "TCP", **m}
                for m in config.get("port_mappings") or ()
                if m.get("host_port")
            ]
            self._check_ports(pod_uid, ports)
            ip = self._allocate()
            record = {"ip": ip, "netns": netns_path, "ports": ports}
            try:
                await self._wire(netns_path, ip)
                await self._start_proxies(pod_uid, record)
            except BaseException:
                await self._stop_proxies(pod_uid)
                await self._unwire(netns_path)
                self._release_address(ip)
                raise
            self.pods[pod_uid] = record
            self._save()
            return self._answer(ip)

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None:
        async with await self._begin():
            await self._teardown(pod_uid)

    async def _teardown(self, pod_uid: str) -> None:
        record = self.pods.pop(pod_uid, None)
        if record is None:
            return
        await self._stop_proxies(pod_uid)
        await self._unwire(record["netns"])
        self._release_address(record["ip"])
        self._save()

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        record = self.pods.get(pod_uid)
        if record is None:
            raise NotFound(f"pod {pod_uid} is not wired")
        if not os.path.exists(netns_path):
            raise NotFound(f"network namespace {netns_path} does not exist")
        result = await run(
            "nsenter", f"--net={netns_path}", "--", "ip", "-j", "addr", "show", check=False
        )
        links = {link["ifname"]: link for link in json.loads(result.stdout or "[]")}
        addresses = {a.get("local") for a in links.get("eth0", {}).get("addr_info", ())}
        if record["ip"] not in addresses:
            raise PermanentError(f"pod {pod_uid}: {record['ip']} is not on eth0")

    async def status(self) -> Mapping[str, Any]:
        return {"ready": True, "reason": "", "message": ""}

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        async with await self._begin():
            dead = [uid for uid in self.pods if uid not in set(live_pod_uids)]
            for uid in dead:
                await self._teardown(uid)
            return dead

    async def close(self) -> None:
        for uid in list(self.proxies):
            await self._stop_proxies(uid)


# -- broken ones ---------------------------------------------------------------------------------


class SameAddressNetwork(DummyNetwork):
    """Every pod gets the same address."""

    def _allocate(self) -> str:
        return str(list(POOL.hosts())[1])


class SetupNotIdempotentNetwork(DummyNetwork):
    """Setting up a known pod again adds a second address and answers with it."""

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if pod_uid not in self.pods:
            return await super().setup_pod(pod_uid, netns_path, config)
        ip = self._allocate()
        await run(
            "nsenter", f"--net={netns_path}", "--", "ip", "addr", "add", f"{ip}/32", "dev", "eth0"
        )
        return self._answer(ip)


class MissingNetnsAcceptedNetwork(DummyNetwork):
    """A namespace path that does not exist gets an answer, not NotFound."""

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if not os.path.exists(netns_path):
            return self._answer(str(list(POOL.hosts())[-1]))
        return await super().setup_pod(pod_uid, netns_path, config)


class StatusWithoutReadyNetwork(DummyNetwork):
    """``status()`` has no ``ready``."""

    async def status(self) -> Mapping[str, Any]:
        return {"reason": "", "message": "fine"}


class TeardownNotIdempotentNetwork(DummyNetwork):
    """Tearing down a pod that is not (or no longer) wired raises NotFound."""

    async def teardown_pod(self, pod_uid: str, netns_path: str | None) -> None:
        if pod_uid not in self.pods:
            raise NotFound(f"pod {pod_uid} is not wired")
        await super().teardown_pod(pod_uid, netns_path)


class TeardownLeavesInterfaceNetwork(DummyNetwork):
    """Teardown forgets the pod but leaves its eth0, address and all, in the namespace."""

    async def _unwire(self, netns_path: str) -> None:
        return None


class TeardownKeepsAddressNetwork(DummyNetwork):
    """Teardown removes the interface but never gives the address back."""

    def _release_address(self, ip: str) -> None:
        return None


class HostPortConflictIgnoredNetwork(DummyNetwork):
    """A host port another pod holds is accepted (and silently not forwarded)."""

    def _check_ports(self, uid: str, ports: Sequence[Mapping[str, Any]]) -> None:
        return None

    async def _start_proxies(self, uid: str, record: Mapping[str, Any]) -> None:
        with contextlib.suppress(Conflict):
            await super()._start_proxies(uid, record)


class HostPortKeptNetwork(DummyNetwork):
    """Teardown keeps listening on the pod's host ports."""

    async def _stop_proxies(self, uid: str) -> None:
        self.kept = getattr(self, "kept", []) + self.proxies.pop(uid, [])

    async def close(self) -> None:
        for server in getattr(self, "kept", []):
            server.close()
        await super().close()


class FailedSetupLeavesInterfaceNetwork(DummyNetwork):
    """A set-up refused for its host port has already made eth0, and leaves it."""

    async def setup_pod(
        self, pod_uid: str, netns_path: str, config: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if pod_uid not in self.pods and os.path.exists(netns_path):
            try:
                ports = [m for m in config.get("port_mappings") or () if m.get("host_port")]
                self._check_ports(pod_uid, [{"protocol": "TCP", **p} for p in ports])
            except Conflict:
                await self._wire(netns_path, self._allocate())
                raise
        return await super().setup_pod(pod_uid, netns_path, config)


class ClaimsTrafficNetwork(DummyNetwork):
    """Declares pod-to-pod and host-to-pod traffic, which dummy links never carry."""

    capabilities = DummyNetwork.capabilities | {"pod_to_pod", "host_to_pod"}


class CheckAlwaysPassesNetwork(DummyNetwork):
    """``check_pod`` never raises."""

    async def check_pod(self, pod_uid: str, netns_path: str) -> None:
        return None


class GcReleasesNothingNetwork(DummyNetwork):
    """``gc`` keeps every pod."""

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        return []


class GcReleasesLiveNetwork(DummyNetwork):
    """``gc`` releases every pod, live or not."""

    async def gc(self, live_pod_uids: Collection[str]) -> Sequence[str]:
        return await super().gc(())


class ForgetsOnRestartNetwork(DummyNetwork):
    """Remembers its pods only in memory, while declaring ``survives_restart``."""

    def _load(self) -> dict[str, dict[str, Any]]:
        return {}


class ReusesFreedAddressNetwork(DummyNetwork):
    """Hands out the lowest free address (a just freed one at once), while declaring
    ``address_rotation``."""

    def _allocate(self) -> str:
        for host in list(self.pool.hosts())[1:]:
            if str(host) not in self.held:
                self.held.add(str(host))
                return str(host)
        raise TemporaryError(f"all addresses of {self.pool} are taken")


class RotationForgottenOnRestartNetwork(DummyNetwork):
    """Keeps its place in the rotation only in memory: a new object starts the pool over."""

    _memory: str | None = None

    def _last(self) -> str | None:
        return self._memory

    def _remember(self, ip: str) -> None:
        self._memory = ip


BROKEN_NETWORKS: dict[str, type[DummyNetwork]] = {
    cls.__name__: cls
    for cls in (
        SameAddressNetwork,
        SetupNotIdempotentNetwork,
        MissingNetnsAcceptedNetwork,
        StatusWithoutReadyNetwork,
        TeardownNotIdempotentNetwork,
        TeardownLeavesInterfaceNetwork,
        TeardownKeepsAddressNetwork,
        HostPortConflictIgnoredNetwork,
        HostPortKeptNetwork,
        FailedSetupLeavesInterfaceNetwork,
        ClaimsTrafficNetwork,
        CheckAlwaysPassesNetwork,
        GcReleasesNothingNetwork,
        GcReleasesLiveNetwork,
        ForgetsOnRestartNetwork,
        ReusesFreedAddressNetwork,
        RotationForgottenOnRestartNetwork,
    )
}
"""Every broken network plugin, by class name."""


def make(name: str, data_dir: Path, pool: str | None = None) -> DummyNetwork:
    """The named broken plugin (``"DummyNetwork"`` for the honest one) on ``data_dir``,
    with addresses from ``pool`` (default :data:`POOL`)."""
    return BROKEN_NETWORKS.get(name, DummyNetwork)(data_dir, pool)
