"""Network namespaces and TCP probes, for the network conformance suite and for tests.

Everything here is bounded and leaves nothing behind when used through its context
managers: :func:`temporary_netns` and :class:`NetnsSet` delete the namespaces they made
(``ip netns add`` gives ``/run/netns/<name>``), :func:`echo_server` kills its server by the
pid it started. Names are unique to the run (:func:`unique_name`), so that two runs on one
machine never touch each other's namespaces.

The probes are a TCP echo server (:func:`echo_server`, run inside a namespace with
``nsenter --net=<path>``) that answers each connection with its own tag and what it read,
and a client (:func:`echo`) on the host or inside another namespace: a reply carrying the
server's tag proves the connection reached that very server, not whatever else listens on
the port. Only the standard library and the ``ip``, ``nsenter`` and (when present) ``nft``
commands are used; the probes run the current Python interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` puts the namespaces it names."""

COMMAND_TIMEOUT = 15.0
"""Seconds any one command (``ip``, ``nft``, a probe) may take."""

CONNECT_TIMEOUT = 3.0
"""Seconds one probe connection may take, connect and reply together."""

SERVER_LIFETIME = 300.0
"""Seconds an echo server lives at most, should its owner never get to kill it."""


class NetnsError(RuntimeError):
    """A command or a probe failed; the message says which and what it printed."""


class EchoFailed(NetnsError):
    """A probe connection got no reply (refused, timed out, closed early)."""


# -- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


async def run(
    *argv: str, timeout: float = COMMAND_TIMEOUT, check: bool = True, stdin: str | None = None
) -> Result:
    """Run a command, killing it after ``timeout`` seconds; with ``check`` a non-zero exit
    raises :class:`NetnsError` with its output."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        raise NetnsError(f"{' '.join(argv)} did not finish within {timeout:g} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
    result = Result(tuple(argv), proc.returncode or 0, out.decode(), err.decode())
    if check and result.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
        )
    return result


# -- namespaces ----------------------------------------------------------------------------


def unique_name(prefix: str = "kcnet") -> str:
    """A name no other run uses: ``<prefix>-<10 hex digits>``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Netns:
    """A named network namespace, ``/run/netns/<name>``."""

    name: str

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.name)

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["nsenter", f"--net={self.path}", "--", *argv]

    async def run(self, *argv: str, **kwargs: Any) -> Result:
        return await run(*self.command(*argv), **kwargs)


def in_netns(ns: Netns | None, *argv: str) -> list[str]:
    """``argv`` inside ``ns``, or on the host for ``None``."""
    return ns.command(*argv) if ns is not None else list(argv)


_made: set[str] = set()


def live_namespaces() -> set[str]:
    """The names of the namespaces this process made here and has not deleted yet."""
    return {name for name in _made if (NETNS_DIR / name).exists()}


async def create_netns(prefix: str = "kcnet", *, loopback_up: bool = True) -> Netns:
    """A new namespace with a unique name; loopback up, as a pod sandbox has it."""
    ns = Netns(unique_name(prefix))
    await run("ip", "netns", "add", ns.name)
    _made.add(ns.name)
    try:
        if loopback_up:
            await ns.run("ip", "link", "set", "lo", "up")
    except BaseException:
        await delete_netns(ns)
        raise
    return ns


async def delete_netns(ns: Netns) -> None:
    """Delete ``ns``; a namespace already gone is fine."""
    if Path(ns.path).exists():
        result = await run("ip", "netns", "delete", ns.name, check=False)
        if result.returncode != 0 and Path(ns.path).exists():
            raise NetnsError(f"ip netns delete {ns.name} failed: {result.stderr.strip()}")
    _made.discard(ns.name)


@contextlib.asynccontextmanager
async def temporary_netns(prefix: str = "kcnet") -> AsyncIterator[Netns]:
    """A namespace that is deleted when the block ends, also on failure."""
    ns = await create_netns(prefix)
    try:
        yield ns
    finally:
        await delete_netns(ns)


@dataclass
class NetnsSet:
    """Namespaces made on demand and all deleted when the ``async with`` block ends::

    async with NetnsSet() as namespaces:
        a, b = await namespaces.new(), await namespaces.new()
    """

    prefix: str = "kcnet"
    made: list[Netns] = field(default_factory=list)

    async def new(self) -> Netns:
        ns = await create_netns(self.prefix)
        self.made.append(ns)
        return ns

    async def delete_all(self) -> None:
        """Delete every namespace made so far; raise the first failure after trying all."""
        first: BaseException | None = None
        while self.made:
            ns = self.made.pop()
            try:
                await delete_netns(ns)
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    async def __aenter__(self) -> NetnsSet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.delete_all()


# -- what is there: interfaces, addresses, routes, nft rules --------------------------------


async def interfaces(ns: Netns | None = None) -> dict[str, frozenset[str]]:
    """Interface name -> its addresses (``"10.0.0.2/24"``) in ``ns`` (the host for
    ``None``), from ``ip -j addr``. IPv6 link-local addresses are left out: the kernel adds
    and drops them on its own as links go up and down."""
    return _interfaces(await _ip_json(ns, "addr", "show"))


def _interfaces(links: list[dict[str, Any]]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for link in links:
        name = link.get("ifname")
        if not name:
            continue
        addresses = {
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", ())
            if "local" in a and not (a.get("family") == "inet6" and a.get("scope") == "link")
        }
        out[name] = frozenset(addresses)
    return out


async def _ip_json(ns: Netns | None, *argv: str) -> list[dict[str, Any]]:
    result = await run(*in_netns(ns, "ip", "-j", *argv))
    return json.loads(result.stdout or "[]")


async def addresses_of(ns: Netns | None, interface: str) -> frozenset[str]:
    """The addresses (without prefix length) on ``interface`` in ``ns``; empty when the
    interface does not exist."""
    found = (await interfaces(ns)).get(interface, frozenset())
    return frozenset(a.split("/", 1)[0] for a in found)


def nft_available() -> bool:
    return shutil.which("nft") is not None


async def nft_tables(ns: Netns | None = None) -> dict[str, str] | None:
    """``"family name"`` -> the text of each nftables table in ``ns``, from ``nft -s list
    ruleset`` (stateless: no counters); ``None`` when ``nft`` is not installed."""
    if not nft_available():
        return None
    result = await run(*in_netns(ns, "nft", "-s", "list", "ruleset"))
    tables: dict[str, list[str]] = {}
    table: list[str] | None = None
    for raw in result.stdout.splitlines():
        if raw.startswith("table "):
            table = tables.setdefault(raw.removeprefix("table ").removesuffix("{").strip(), [])
        if table is not None and raw.strip():
            table.append(raw.strip())
    return {name: "\n".join(lines) for name, lines in tables.items()}


def nft_size(text: str) -> int:
    """The size of a table: its lines plus the items of its lists, so that a leaked set
    element counts even when nft prints several on one line."""
    return sum(1 + line.count(",") for line in text.splitlines())


@dataclass(frozen=True)
class Snapshot:
    """The interfaces, addresses, IPv4 routes and nft tables of one namespace at one
    moment; ``peers`` maps each interface whose other end (a veth's peer) is in another
    named namespace to that namespace's name."""

    interfaces: Mapping[str, frozenset[str]]
    routes: frozenset[str]
    nft: Mapping[str, str] | None
    peers: Mapping[str, str] = field(default_factory=dict)


async def snapshot(ns: Netns | None = None) -> Snapshot:
    """What is in ``ns`` (the host for ``None``) now."""
    links = await _ip_json(ns, "addr", "show")
    ids = {n["id"]: n["name"] for n in await _ip_json(ns, "netns", "list") if "id" in n}
    peers = {
        link["ifname"]: ids[link["link_netnsid"]]
        for link in links
        if link.get("link_netnsid") in ids
    }
    routes = frozenset(_route_text(r) for r in await _ip_json(ns, "route", "show"))
    return Snapshot(_interfaces(links), routes, await nft_tables(ns), peers)


def _route_text(route: Mapping[str, Any]) -> str:
    words = [route.get("type", "unicast"), route.get("dst", "?")]
    if route.get("gateway"):
        words += ["via", route["gateway"]]
    if route.get("dev"):
        words += ["dev", route["dev"]]
    return " ".join(words)


@dataclass
class Footprint:
    """What belongs to the pods a test set up: their addresses (and the networks they are
    in), host ports and namespaces. On a shared host, only changes that touch these count
    as the plugin's (see :func:`leaks`)."""

    addresses: set[str] = field(default_factory=set)
    networks: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)

    def add(
        self,
        ns: Netns,
        ips: Iterable[str],
        ports: Iterable[int] = (),
        in_pod: Snapshot | None = None,
    ) -> None:
        """A pod in ``ns`` with ``ips`` and host ``ports``; with ``in_pod`` (a snapshot of
        its namespace) the networks of its addresses too."""
        self.namespaces.add(ns.name)
        self.addresses.update(ips)
        self.ports.update(p for p in ports if p)
        for addresses in in_pod.interfaces.values() if in_pod is not None else ():
            for cidr in addresses:
                if cidr.split("/", 1)[0] in self.addresses:
                    self.networks.add(ipaddress.ip_network(cidr, strict=False))

    def owns_address(self, cidr: str) -> bool:
        ip = ipaddress.ip_address(cidr.split("/", 1)[0])
        return str(ip) in self.addresses or any(ip in net for net in self.networks)

    def owns_route(self, text: str) -> bool:
        """A route to one of the pods' addresses (not a whole range they are part of:
        that is shared)."""
        dst = text.split()[1]
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(dst, strict=False)
            return any(
                ipaddress.ip_address(a) in net and net.num_addresses == 1 for a in self.addresses
            )
        return False

    def mentions(self, text: str) -> int:
        """How often ``text`` names the pods' addresses or host ports."""
        count = 0
        for address in self.addresses:
            count += len(re.findall(rf"(?<![\w.:]){re.escape(address)}(?![\w.:]|/\d)", text))
        for port in self.ports:
            count += len(re.findall(rf"(?<![\w.:-]){port}(?![\w.:-])", text))
        return count


def leaks(
    before: Snapshot,
    after: Snapshot,
    *,
    ours: Footprint | None = None,
    seen: Sequence[Snapshot] = (),
) -> list[str]:
    """What ``after`` has that ``before`` had not, one line each: interfaces, addresses,
    routes, and nft tables that grew.

    Without ``ours`` everything counts (a pod's own namespace). With it (the host, shared
    with other programs) only what touches the pods counts: an interface or address in
    their networks or peered with their namespaces, a route to one of their addresses, an
    nft table that names their addresses or ports more often than before, and growth of a
    table that named them in one of the ``seen`` snapshots (taken while they were set up).
    """
    found: list[str] = []
    for name in sorted(set(after.interfaces) - set(before.interfaces)):
        addresses = after.interfaces[name]
        if (
            ours is None
            or after.peers.get(name) in ours.namespaces
            or any(ours.owns_address(a) for a in addresses)
        ):
            found.append(f"interface {name} ({', '.join(sorted(addresses)) or 'no address'})")
    for name in sorted(set(after.interfaces) & set(before.interfaces)):
        for address in sorted(after.interfaces[name] - before.interfaces[name]):
            if ours is None or ours.owns_address(address):
                found.append(f"address {address} on {name}")
    for route in sorted(after.routes - before.routes):
        if ours is None or ours.owns_route(route):
            found.append(f"route {route}")
    if before.nft is not None and after.nft is not None:
        touched = {
            table
            for snap in seen
            for table, text in (snap.nft or {}).items()
            if ours is not None and ours.mentions(text)
        }
        for table, text in sorted(after.nft.items()):
            old = before.nft.get(table, "")
            grown = nft_size(text) - nft_size(old)
            if ours is None or table in touched:
                if grown > 0:
                    found.append(f"nft table {table} grew by {grown} lines or elements")
                    continue
            if ours is not None and ours.mentions(text) > ours.mentions(old):
                found.append(f"nft table {table} still names the pods' addresses or ports")
    return found


async def route_to(address: str, ns: Netns | None = None) -> Mapping[str, Any]:
    """How ``ns`` (the host for ``None``) routes packets to ``address``: the first entry
    of ``ip -j route get``, e.g. ``{"dst": ..., "dev": ..., "gateway": ...}``."""
    result = await run(*in_netns(ns, "ip", "-j", "route", "get", address))
    routes = json.loads(result.stdout or "[]")
    if not routes:
        raise NetnsError(f"no route to {address}")
    return routes[0]


def free_tcp_port() -> int:
    """A TCP port nothing on the host is bound to right now (bound and released at once;
    nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


# -- the echo probe -------------------------------------------------------------------------

_SERVER = r"""
import socket, sys, time
host, port, lifetime, tag = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
server = socket.socket(family, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(64)
server.settimeout(0.2)
print(server.getsockname()[1], flush=True)
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    try:
        conn, _ = server.accept()
    except OSError:
        continue
    with conn:
        conn.settimeout(5)
        try:
            data = conn.recv(4096)
            conn.sendall(tag.encode() + b" " + data)
        except OSError:
            pass
"""

_CLIENT = r"""
import socket, sys
host, port, timeout, token = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        conn.sendall(token.encode())
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            piece = conn.recv(4096)
            if not piece:
                break
            reply += piece
except OSError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
sys.stdout.write(reply.decode(errors="replace"))
"""


@dataclass(frozen=True)
class EchoServer:
    """A running echo server: where it listens, and the tag it answers with."""

    ns: Netns | None
    host: str
    port: int
    tag: str
    pid: int


@contextlib.asynccontextmanager
async def echo_server(
    ns: Netns | None,
    port: int = 0,
    *,
    host: str | None = None,
    lifetime: float = SERVER_LIFETIME,
) -> AsyncIterator[EchoServer]:
    """A TCP echo server inside ``ns`` (on the host for ``None``) on ``port`` (0: any),
    listening on every address of the namespace (on 127.0.0.1 only on the host, so that
    nothing outside the machine can reach it). It is killed, by its pid, when the block
    ends; it also ends by itself after ``lifetime`` seconds."""
    if host is None:
        host = "0.0.0.0" if ns is not None else "127.0.0.1"
    tag = f"echo-{uuid.uuid4().hex[:12]}"
    argv = in_netns(
        ns, sys.executable, "-I", "-c", _SERVER, host, str(port), str(lifetime), tag
    )  # nsenter execs the interpreter: the pid is the server's.
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                line = await proc.stdout.readline()  # type: ignore[union-attr]
        except TimeoutError:
            line = b""
        if not line.strip().isdigit():
            proc.kill()
            err = b""
            with contextlib.suppress(TimeoutError):
                err = await asyncio.wait_for(proc.stderr.read(), 5)  # type: ignore[union-attr]
            where = ns.name if ns is not None else "the host"
            raise NetnsError(
                f"the echo server in {where} did not start on {host}:{port}: "
                f"{err.decode(errors='replace').strip() or 'no output'}"
            )
        yield EchoServer(ns, host, int(line), tag, proc.pid)
    finally:
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 5)


async def echo(
    address: str, port: int, *, ns: Netns | None = None, timeout: float = CONNECT_TIMEOUT
) -> str:
    """Connect from ``ns`` (the host for ``None``) to ``address:port``, send a token and
    return the tag of the server that echoed it back; :class:`EchoFailed` when no echo
    came within ``timeout`` seconds."""
    token = uuid.uuid4().hex[:12]
    if ns is None:
        reply = await _echo_from_here(address, port, token, timeout)
    else:
        result = await run(
            *ns.command(
                sys.executable, "-I", "-c", _CLIENT, address, str(port), str(timeout), token
            ),
            timeout=timeout + COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise EchoFailed(
                f"{address}:{port} from {ns.name}: {result.stderr.strip() or 'no reply'}"
            )
        reply = result.stdout
    tag, _, echoed = reply.partition(" ")
    if echoed != token:
        raise EchoFailed(f"{address}:{port} answered {reply!r}, not an echo of {token!r}")
    return tag


async def _echo_from_here(address: str, port: int, token: str, timeout: float) -> str:
    where = f"{address}:{port} from the host"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            writer.write(token.encode())
            writer.write_eof()
            await writer.drain()
            return (await reader.read()).decode(errors="replace")
    except TimeoutError:
        raise EchoFailed(f"{where}: no reply within {timeout:g} s") from None
    except OSError as exc:
        raise EchoFailed(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


async def wait_for_echo(
    server: EchoServer,
    address: str,
    port: int | None = None,
    *,
    ns: Netns | None = None,
    timeout: float = 10.0,
) -> None:
    """Retry :func:`echo` until ``server`` answers at ``address:port`` (``port`` defaults
    to the server's), for up to ``timeout`` seconds; :class:`EchoFailed` with the last
    error otherwise (another server answering is an error too)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    port = server.port if port is None else port
    while True:
        left = deadline - loop.time()
        try:
            tag = await echo(address, port, ns=ns, timeout=max(min(CONNECT_TIMEOUT, left), 0.5))
        except EchoFailed as exc:
            last = str(exc)
        else:
            if tag == server.tag:
                return
            last = f"{address}:{port} was answered by another server ({tag})"
        if loop.time() >= deadline:
            raise EchoFailed(f"not within {timeout:g} s: {last}")
        await asyncio.sleep(0.1)


def first_ipv4(ips: Iterable[str]) -> str | None:
    """The first IPv4 address among ``ips``, else the first address, else ``None``."""
    ips = list(ips)
    for ip in ips:
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(ip).version == 4:
                return ip
    return ips[0] if ips else None


__all__ = [
    "COMMAND_TIMEOUT",
    "CONNECT_TIMEOUT",
    "EchoFailed",
    "EchoServer",
    "Footprint",
    "Netns",
    "NetnsError",
    "NetnsSet",
    "Result",
    "Snapshot",
    "addresses_of",
    "create_netns",
    "delete_netns",
    "echo",
    "echo_server",
    "first_ipv4",
    "free_tcp_port",
    "in_netns",
    "interfaces",
    "leaks",
    "live_namespaces",
    "nft_available",
    "nft_size",
    "nft_tables",
    "route_to",
    "run",
    "snapshot",
    "temporary_netns",
    "unique_name",
    "wait_for_echo",
]
