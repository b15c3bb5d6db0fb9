"""Benchmark of the API server: a real ``kcore daemon`` over HTTPS, next to the same
operations in process through ``ObjectStore`` (no HTTP, no TLS, no JSON on the wire).

    python bench/bench_api.py [--duration S] [--store store_sqlite] [--watchers 1000]
                              [--store-option NAME=VALUE ...]

Starts the daemon as a subprocess on a free loopback port with a temporary data directory,
and talks to it with aiohttp clients that trust its CA and send the admin bearer token; one
connection per client. Measured, each with 1 and 16 concurrent clients for ``--duration``
seconds:

- create: ``POST`` of a ConfigMap (a 256-byte value) under a new name;
- get: ``GET`` of one of 1,000 ConfigMaps;
- list: ``GET`` of all 1,000 ConfigMaps of a namespace (about 510 KiB of JSON, read but
  not decoded by the client; in process, the list is the decoded objects);
- update: ``PUT`` of one of the 1,000 (no resourceVersion: unconditional);
- watch delivery: ``PUT`` updates while one watcher watches the namespace; the latency is
  from the write's acknowledgement (its response received) to its event at the watcher.
  It can be negative: the store hands the event to the watchers before the write returns.

Then ``--watchers`` idle watchers (default 1,000), each on its own connection, watch one
ConfigMap (``fieldSelector=metadata.name=...``); one update; the time until each has the
event, and the daemon's RSS (``/proc/<pid>/status``) before the watchers, with them idle and
after the change.

The in-process peer runs the same workload against ``ObjectStore`` over a store from the same
plugin (a fresh data directory), in this process; the ratio column is HTTPS ops/s divided by
in-process ops/s; for the fan-out, the peer's memory is the Python heap per watcher
(tracemalloc). Clients and watchers share one event loop in this process, so at 16 clients
and 1,000 watchers the client's own CPU is part of the figures: ``daemon cpu`` and
``client cpu`` are each process's CPU time over the row's wall time (100% is one core).

Figures only, never asserted: they depend on the machine (see
shared/reference/perf-anchors.md for etcd measured on the same box).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from kcore.api.registry import by_resource
from kcore.apiserver.objects import ListOptions, ObjectStore
from kcore.daemon import bootstrap
from kcore.plugin_host import PluginHost
from kcore.settings import Settings

CONFIGMAPS = by_resource("", "v1", "configmaps")
NAMESPACES = by_resource("", "v1", "namespaces")
RUN_ID = secrets.token_hex(3)
"""Namespaces are per run and per side: a shared store (one etcd) keeps them apart."""
LIST_SIZE = 1000
CLIENT_COUNTS = (1, 16)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def configmap(name: str, generation: int = 0) -> dict[str, Any]:
    """A ConfigMap with one 256-byte value (etcd's anchor uses 256-byte values)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"value": f"{generation:012d}" + "x" * 244},
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- results -----------------------------------------------------------------------------------


@dataclass
class Result:
    ops: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: float | None = None
    """Daemon CPU seconds per wall second over the phase (HTTPS only)."""
    client_cpu: float | None = None
    """This process's CPU seconds per wall second over the phase."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


async def run_for(
    duration: float, clients: int, op: Callable[[int, int], Awaitable[None]]
) -> Result:
    """Call ``op(client, i)`` from ``clients`` concurrent clients for ``duration`` seconds."""
    result = Result()
    counter = itertools.count()
    stop_at = time.perf_counter() + duration

    async def client(c: int) -> None:
        while time.perf_counter() < stop_at:
            i = next(counter)
            t0 = time.perf_counter()
            await op(c, i)
            result.latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    result.seconds = time.perf_counter() - start
    result.ops = len(result.latencies)
    return result


# -- the daemon ----------------------------------------------------------------------------------


class Daemon:
    """``kcore daemon`` in a subprocess; stopped by its pid."""

    def __init__(self, data_dir: Path, store: str, options: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir / "daemon.log"
        data_dir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
        cmd = [
            *(sys.executable, "-m", "kcore.cli", "--plugins", store),
            *(arg for k, v in options.items() for arg in (f"--{k.replace('_', '-')}", v)),
            *("--data-dir", str(data_dir), "--log-format", "json"),
            *("daemon", "--bind-address", "127.0.0.1", "--port", "0"),
        ]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env
            )
        self.pid = self.proc.pid
        try:
            self.url = self._wait_for_url(timeout=60)
            pki = data_dir / "pki"
            self.token = (pki / "admin.token").read_text().strip()
            self.ssl = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        except BaseException:
            self.stop()
            raise

    def _wait_for_url(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        url = None
        buffer = b""
        fd = self.proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith("kcore API server listening on "):
                    url = line.split()[-1]
                if line.startswith("export KUBECONFIG=") and url:
                    return url
        raise RuntimeError(f"the daemon did not start; its log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not gone after 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- the two sides: HTTPS and in process ------------------------------------------------------


class Side:
    """The operations of the benchmark, over one transport."""

    name = ""
    tag = ""

    def ns(self, purpose: str) -> str:
        """This side's namespace for ``purpose`` (list, create, delivery, fanout)."""
        return f"bench-{RUN_ID}-{self.tag}-{purpose}"

    async def open(self, clients: int) -> None:
        """Be ready for clients ``0 .. clients - 1``."""

    async def close(self) -> None: ...
    async def create_namespace(self, ns: str) -> None: ...
    async def create(self, c: int, ns: str, obj: dict[str, Any]) -> int: ...
    async def get(self, c: int, ns: str, name: str) -> None: ...
    async def list(self, c: int, ns: str) -> int: ...
    async def update(self, c: int, ns: str, obj: dict[str, Any]) -> int: ...
    async def revision(self) -> int: ...
    async def watch(
        self, ns: str, rv: int, on_event: Callable[[int], None], name: str | None = None
    ) -> tuple[Any, asyncio.Task[None]]:
        """Start one watcher; ``on_event(revision)`` per event. Returns (handle, task)
        once the watch is established."""
        ...


class HttpSide(Side):
    name = "HTTPS daemon"
    tag = "https"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.base = daemon.url
        self.headers = {"Authorization": f"Bearer {daemon.token}"}
        self.sessions: list[aiohttp.ClientSession] = []

    async def open(self, clients: int) -> None:
        """One session (and so one keep-alive connection) per client, warmed up."""
        while len(self.sessions) < clients:
            connector = aiohttp.TCPConnector(ssl=self.daemon.ssl, limit=1)
            session = aiohttp.ClientSession(
                connector=connector, headers=self.headers, timeout=aiohttp.ClientTimeout(60)
            )
            self.sessions.append(session)
            async with session.get(self.base + "/api/v1") as resp:
                await resp.read()

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()
        self.sessions.clear()

    @staticmethod
    def _path(ns: str, name: str = "") -> str:
        return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")

    async def _call(self, c: int, method: str, path: str, body: Any = None, want=200) -> bytes:
        data = _encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self.sessions[c].request(
            method, self.base + path, data=data, headers=headers
        ) as resp:
            payload = await resp.read()
            if resp.status != want:
                raise RuntimeError(f"{method} {path}: {resp.status} {payload[:300]!r}")
            return payload

    async def create(self, c: int, ns: str, obj: dict[str, Any]) -> int:
        out = await self._call(c, "POST", self._path(ns), obj, want=201)
        return int(_decode(out)["metadata"]["resourceVersion"])

    async def create_namespace(self, ns: str) -> None:
        await self._call(0, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}}, want=201)

    async def get(self, c: int, ns: str, name: str) -> None:
        await self._call(c, "GET", self._path(ns, name))

    async def list(self, c: int, ns: str) -> int:
        return len(await self._call(c, "GET", self._path(ns)))

    async def update(self, c: int, ns: str, obj: dict[str, Any]) -> int:
        out = await self._call(c, "PUT", self._path(ns, obj["metadata"]["name"]), obj)
        return int(_decode(out)["metadata"]["resourceVersion"])

    async def revision(self) -> int:
        out = await self._call(0, "GET", self._path(self.ns("list")) + "?limit=1")
        return int(_decode(out)["metadata"]["resourceVersion"])

    async def watch(
        self,
        ns: str,
        rv: int,
        on_event: Callable[[int], None],
        name: str | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> tuple[Any, asyncio.Task[None]]:
        own = session is None
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.daemon.ssl),
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            )
        query = f"watch=true&resourceVersion={rv}&timeoutSeconds=600"
        if name:
            query += f"&fieldSelector=metadata.name%3D{name}"
        resp = await session.get(self.base + self._path(ns) + "?" + query)
        if resp.status != 200:
            raise RuntimeError(f"watch: {resp.status} {await resp.text()}")

        async def read() -> None:
            try:
                async for line in resp.content:
                    if line.strip():
                        on_event(int(_decode(line)["object"]["metadata"]["resourceVersion"]))
            finally:
                resp.close()
                if own:
                    await session.close()

        return resp, asyncio.ensure_future(read())


class LocalSide(Side):
    name = "in-process ObjectStore"
    tag = "local"

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def open(self, clients: int) -> None:
        pass

    async def close(self) -> None:
        pass

    async def create(self, c: int, ns: str, obj: dict[str, Any]) -> int:
        out = await self.objects.create(CONFIGMAPS, ns, obj)
        return int(out["metadata"]["resourceVersion"])

    async def create_namespace(self, ns: str) -> None:
        await self.objects.create(NAMESPACES, None, {"metadata": {"name": ns}})

    async def get(self, c: int, ns: str, name: str) -> None:
        await self.objects.get(CONFIGMAPS, ns, name)

    async def list(self, c: int, ns: str) -> int:
        items, _, _ = await self.objects.list(CONFIGMAPS, ns)
        return len(items)

    async def update(self, c: int, ns: str, obj: dict[str, Any]) -> int:
        out = await self.objects.update(CONFIGMAPS, ns, obj["metadata"]["name"], obj)
        return int(out["metadata"]["resourceVersion"])

    async def revision(self) -> int:
        return await self.objects.store.current_revision()

    async def watch(
        self, ns: str, rv: int, on_event: Callable[[int], None], name: str | None = None
    ) -> tuple[Any, asyncio.Task[None]]:
        from kcore.selectors import parse_field_selector

        field = parse_field_selector(f"metadata.name={name}") if name else None
        events = self.objects.watch(
            CONFIGMAPS,
            ns,
            ListOptions(field_selector=field, resource_version=str(rv)),
            send_initial=False,
        )
        first = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)  # the store registers the watcher on the first step

        async def read() -> None:
            try:
                item = await first
                on_event(item.revision)
                async for item in events:
                    on_event(item.revision)
            finally:
                await events.aclose()

        return events, asyncio.ensure_future(read())


# -- the workload --------------------------------------------------------------------------------


async def populate(side: Side, clients: int = 16) -> None:
    """The namespaces, and the 1,000 ConfigMaps that get, list and update use."""
    await side.open(clients)
    for purpose in ("list", "create", "delivery", "fanout"):
        await side.create_namespace(side.ns(purpose))
    names = iter(range(LIST_SIZE))

    async def worker(c: int) -> None:
        for i in names:
            await side.create(c, side.ns("list"), configmap(f"cm-{i:04d}"))

    await asyncio.gather(*(worker(c) for c in range(clients)))
    for c in range(max(CLIENT_COUNTS)):
        await side.create(0, side.ns("delivery"), configmap(f"wd-{c:02d}"))
    await side.create(0, side.ns("fanout"), configmap("target"))


async def phases(side: Side, duration: float, daemon: Daemon | None) -> dict[str, Result]:
    """Every row of the table for one side."""
    results: dict[str, Result] = {}
    generation = itertools.count(1)

    async def measure(label: str, clients: int, op: Callable[[int, int], Awaitable[None]]):
        await side.open(clients)
        cpu0, own0 = (daemon.cpu_seconds() if daemon else 0.0), time.process_time()
        result = await run_for(duration, clients, op)
        result.client_cpu = (time.process_time() - own0) / result.seconds
        if daemon:
            result.cpu = (daemon.cpu_seconds() - cpu0) / result.seconds
        results[f"{label}|{clients}"] = result

    for clients in CLIENT_COUNTS:
        prefix = f"c{clients}-{os.getpid()}"

        async def create(c: int, i: int, prefix: str = prefix) -> None:
            await side.create(c, side.ns("create"), configmap(f"{prefix}-{i}"))

        await measure("create", clients, create)
    for clients in CLIENT_COUNTS:

        async def get(c: int, i: int) -> None:
            await side.get(c, side.ns("list"), f"cm-{i % LIST_SIZE:04d}")

        await measure("get", clients, get)
    size = await side.list(0, side.ns("list"))
    for clients in CLIENT_COUNTS:

        async def list_all(c: int, i: int) -> None:
            await side.list(c, side.ns("list"))

        await measure(f"list {LIST_SIZE}", clients, list_all)
    for clients in CLIENT_COUNTS:

        async def update(c: int, i: int) -> None:
            await side.update(
                c, side.ns("list"), configmap(f"cm-{i % LIST_SIZE:04d}", next(generation))
            )

        await measure("update", clients, update)
    for clients in CLIENT_COUNTS:
        results[f"watch delivery|{clients}"] = await watch_delivery(
            side, clients, duration, daemon, generation
        )
    results["_list_bytes"] = Result(ops=size)
    return results


async def watch_delivery(
    side: Side,
    clients: int,
    duration: float,
    daemon: Daemon | None,
    generation: itertools.count,
) -> Result:
    """Updates from ``clients`` writers (one object each) while one watcher watches."""
    await side.open(clients)
    received: dict[int, float] = {}
    acked: dict[int, float] = {}
    done = asyncio.Event()

    def on_event(rv: int) -> None:
        received[rv] = time.perf_counter()
        if writing_over and set(acked) <= set(received):
            done.set()

    writing_over = False
    _, task = await side.watch(side.ns("delivery"), await side.revision(), on_event)

    async def write(c: int, i: int) -> None:
        rv = await side.update(c, side.ns("delivery"), configmap(f"wd-{c:02d}", next(generation)))
        acked[rv] = time.perf_counter()

    cpu0, own0 = (daemon.cpu_seconds() if daemon else 0.0), time.process_time()
    result = await run_for(duration, clients, write)
    result.client_cpu = (time.process_time() - own0) / result.seconds
    if daemon:
        result.cpu = (daemon.cpu_seconds() - cpu0) / result.seconds
    writing_over = True
    if not set(acked) <= set(received):
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    missing = len(set(acked) - set(received))
    if missing:
        print(f"  warning: {side.name}: {missing} of {len(acked)} events never arrived")
    result.latencies = [received[rv] - t for rv, t in acked.items() if rv in received]
    return result


@dataclass
class Fanout:
    watchers: int
    established_s: float = 0.0
    write_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss_mb: tuple[float, float, float] = (float("nan"),) * 3
    """The daemon's RSS before the watchers, with them idle and after the change."""
    heap_per_watcher: float = float("nan")
    """In process: bytes of Python heap per idle watcher (tracemalloc)."""
    missing: int = 0


async def fanout(side: Side, watchers: int, daemon: Daemon | None) -> Fanout:
    """``watchers`` idle watchers on one ConfigMap; one update; when does each have it."""
    out = Fanout(watchers)
    await side.open(1)
    pid = daemon.pid if daemon else os.getpid()
    rss_before = rss_mb(pid)
    rv = await side.revision()
    arrived: list[float] = []
    all_in = asyncio.Event()

    def on_event(_rv: int) -> None:
        arrived.append(time.perf_counter())
        if len(arrived) >= watchers:
            all_in.set()

    session = None
    if isinstance(side, HttpSide):
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=side.daemon.ssl, limit=0),
            headers=side.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
    gate = asyncio.Semaphore(64)  # do not flood the listen backlog with handshakes

    async def start_one() -> tuple[Any, asyncio.Task[None]]:
        async with gate:
            if session is not None:
                assert isinstance(side, HttpSide)
                return await side.watch(side.ns("fanout"), rv, on_event, "target", session=session)
            return await side.watch(side.ns("fanout"), rv, on_event, "target")

    if daemon is None:
        tracemalloc.start()
    t0 = time.perf_counter()
    started = await asyncio.gather(*(start_one() for _ in range(watchers)))
    out.established_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)  # idle
    rss_idle = rss_mb(pid)
    if daemon is None:
        out.heap_per_watcher = tracemalloc.get_traced_memory()[0] / watchers
        tracemalloc.stop()
    t_issue = time.perf_counter()
    await side.update(0, side.ns("fanout"), configmap("target", 1))
    t_ack = time.perf_counter()
    out.write_ms = (t_ack - t_issue) * 1000
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(all_in.wait(), 60)
    out.latencies = [t - t_ack for t in arrived]
    out.missing = watchers - len(arrived)
    rss_after = rss_mb(pid)
    for _, task in started:
        task.cancel()
    await asyncio.gather(*(task for _, task in started), return_exceptions=True)
    if session is not None:
        await session.close()
    out.rss_mb = (rss_before, rss_idle, rss_after)
    return out


# -- the report ----------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def table(http: dict[str, Result], local: dict[str, Result]) -> list[str]:
    rows = [k for k in http if not k.startswith("_")]
    width = max(len(k.split("|")[0]) for k in rows) + 2
    lines = [
        f"{'operation':<{width}} {'clients':>7} | {'HTTPS daemon':^50} | "
        f"{'in-process ObjectStore':^34} | HTTPS/in-proc",
        f"{'':<{width}} {'':>7} | {'ops/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'daemon cpu':>11} {'client cpu':>11} | {'ops/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu':>7} | ops/s",
        "-" * (width + 124),
    ]
    for key in rows:
        label, clients = key.split("|")
        h, loc = http[key], local[key]
        ratio = f"{h.rate / loc.rate:6.3f}x" if loc.rate else "-"
        lines.append(
            f"{label:<{width}} {clients:>7} | {h.rate:7.0f} {ms(h.percentile(50))} "
            f"{ms(h.percentile(99))} {_pct(h.cpu):>11} {_pct(h.client_cpu):>11} | "
            f"{loc.rate:7.0f} {ms(loc.percentile(50))} {ms(loc.percentile(99))} "
            f"{_pct(loc.client_cpu):>7} | {ratio}"
        )
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def fanout_table(http: Fanout, local: Fanout) -> list[str]:
    def pct(f: Fanout, p: float) -> float:
        return Result(latencies=f.latencies).percentile(p)

    lines: list[str] = []

    def row(label: str, a: str, b: str) -> None:
        lines.append(f"{label:<48}| {a:>24} | {b:>24}")

    row(f"{http.watchers} idle watchers on one ConfigMap, one update", "HTTPS daemon", "in-process")
    lines.append("-" * 102)

    row("watchers established in", f"{http.established_s:.2f} s", f"{local.established_s:.3f} s")
    row(
        "the update's own latency (issue -> ack)",
        f"{http.write_ms:.2f} ms",
        f"{local.write_ms:.2f} ms",
    )
    for label, p in (("p50", 50), ("p99", 99), ("max", 100)):
        row(
            f"ack -> event at a watcher, {label}",
            f"{pct(http, p) * 1000:.2f} ms",
            f"{pct(local, p) * 1000:.2f} ms",
        )
    row(
        "watchers that got the event",
        f"{http.watchers - http.missing} / {http.watchers}",
        f"{local.watchers - local.missing} / {local.watchers}",
    )
    for i, label in enumerate(
        ("before the watchers", f"with {http.watchers} idle watchers", "after the change")
    ):
        row(f"daemon RSS {label}", f"{http.rss_mb[i]:.1f} MB", "-")
    row(
        "memory per idle watcher (RSS | Python heap)",
        f"{(http.rss_mb[1] - http.rss_mb[0]) * 1024 / http.watchers:.1f} KB",
        f"{local.heap_per_watcher / 1024:.1f} KB",
    )
    return lines


# -- main -----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path, daemon: Daemon) -> None:
    host = PluginHost([args.store])
    store = await host.store(Settings(data_dir=tmp / "in-process", options=store_options(args)))
    http = HttpSide(daemon)
    local = LocalSide(ObjectStore(store))
    try:
        await bootstrap(local.objects)
        t0 = time.perf_counter()
        await asyncio.gather(populate(http), populate(local))
        print(f"populated {LIST_SIZE} ConfigMaps on each side in {time.perf_counter() - t0:.1f} s")
        print("measuring the HTTPS daemon ...", flush=True)
        http_results = await phases(http, args.duration, daemon)
        await http.close()
        print("measuring in process ...", flush=True)
        local_results = await phases(local, args.duration, None)
        print(f"list of {LIST_SIZE}: {http_results['_list_bytes'].ops / 1024:.0f} KiB of JSON")
        print(f"fan-out to {args.watchers} watchers ...", flush=True)
        http_fan = await fanout(http, args.watchers, daemon)
        await http.close()
        local_fan = await fanout(local, args.watchers, None)
        print()
        for line in table(http_results, local_results):
            print(line)
        print()
        for line in fanout_table(http_fan, local_fan):
            print(line)
    finally:
        await http.close()
        await store.close()


def store_options(args: argparse.Namespace) -> dict[str, str]:
    """``--store-option etcd_endpoints=...`` -> ``{"etcd_endpoints": "..."}``."""
    return {
        k.strip().replace("-", "_"): v for k, _, v in (o.partition("=") for o in args.store_option)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=2.0, help="seconds per measured row (default 2)"
    )
    parser.add_argument(
        "--store", default="store_sqlite", help="the plugin that fills the store slot"
    )
    parser.add_argument(
        "--store-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of the store plugin, for the daemon and the in-process store "
        "(e.g. etcd_endpoints=http://127.0.0.1:2379)",
    )
    parser.add_argument(
        "--watchers", type=int, default=1000, help="idle watchers for the fan-out (default 1000)"
    )
    args = parser.parse_args()
    if args.duration <= 0 or args.watchers < 1:
        parser.error("--duration and --watchers must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.watchers + 256
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the daemon inherits it
    # A SIGTERM to the benchmark still stops the daemon and removes the temporary directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp = Path(tempfile.mkdtemp(prefix="kcore-bench-api-"))
    daemon: Daemon | None = None
    start = time.perf_counter()
    try:
        print(
            f"kcore API benchmark: store={args.store}, {args.duration:g} s per row, "
            f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
            f"{os.cpu_count()} CPUs, {platform.platform()}"
        )
        daemon = Daemon(tmp / "daemon", args.store, store_options(args))
        print(f"daemon pid {daemon.pid} at {daemon.url} (data in {daemon.data_dir})", flush=True)
        asyncio.run(run(args, tmp, daemon))
        print(f"\ntotal time {time.perf_counter() - start:.1f} s")
    except Exception:
        if daemon is not None:
            print(f"daemon log (last lines):\n{daemon.log_tail()}", file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
