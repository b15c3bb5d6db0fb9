"""Benchmark of store_sqlite: writes, reads, lists, compare-and-swap and watch delivery.

    python bench/bench_store.py [--n 10000] [--path FILE|:memory:] [--compare NORMAL|:memory:]

Runs the same workload twice, on ``--path`` (default: a new file in a temporary directory)
with ``synchronous=FULL``, and on the ``--compare`` configuration (default: a new file with
``synchronous=NORMAL``), and prints one table with both side by side and their ratio.
Values are pod-like JSON documents of about 1 KB under ``/registry/pods/default/``.

Watch latency is measured from the moment a write is issued to the moment a watcher has
the event: the store fans an event out to the watchers on the writer's loop before it
acknowledges the write, so measured from the acknowledgement it is zero or less (the
"ack->event" rows show that).

The figures are printed, never asserted: they depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from kcore.plugins.store_sqlite.backend import SqliteStore

PREFIX = "/registry/pods/default/"


@dataclass
class Result:
    ops: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    throughput: bool = True
    """False for rows that only measure latency (no meaningful ops/s)."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]


def pod(i: int, generation: int = 0) -> bytes:
    """A pod-like JSON document of about 1 KB."""
    name = f"pod-{i:05d}"
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"{i:08x}-0000-4000-8000-{generation:012x}",
            "labels": {"app": f"app-{i % 50}", "tier": "backend", "generation": str(generation)},
            "annotations": {},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1.25",
                    "args": ["--port=8080", "--verbose"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                }
            ],
            "restartPolicy": "Always",
            "nodeName": f"node-{i % 7}",
        },
        "status": {"phase": "Running", "podIP": f"10.0.{i // 250 % 250}.{i % 250}"},
    }
    raw = json.dumps(doc, separators=(",", ":"))
    doc["metadata"]["annotations"]["padding"] = "x" * max(0, 1024 - len(raw) - 16)
    return json.dumps(doc, separators=(",", ":")).encode()


def key(i: int) -> str:
    return f"{PREFIX}pod-{i:05d}"


async def clients(count: int, total: int, op: Callable[[int], Awaitable[object]]) -> Result:
    """Run ``op(i)`` for i in range(total) from ``count`` concurrent clients."""
    result = Result()
    latencies = result.latencies
    next_i = iter(range(total))

    async def client() -> None:
        for i in next_i:
            start = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(count)))
    result.seconds = time.perf_counter() - start
    result.ops = total
    return result


async def watch_latency(
    store: SqliteStore, n_watchers: int, n_writes: int, n_objects: int
) -> tuple[Result, Result]:
    """Updates from 8 clients while ``n_watchers`` watch: (issue->event, ack->event)."""
    base = await store.current_revision()
    issued: dict[int, float] = {}
    acked: dict[int, float] = {}
    received: list[list[tuple[int, float]]] = [[] for _ in range(n_watchers)]
    watches = [store.watch(PREFIX, after_revision=base) for _ in range(n_watchers)]
    ready = asyncio.Event()
    started = 0

    async def watcher(n: int) -> None:
        nonlocal started
        seen = received[n]
        watch = watches[n]
        first = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0)
        started += 1
        if started == n_watchers:
            ready.set()
        event = await first
        seen.append((event.revision, time.perf_counter()))
        while len(seen) < n_writes:
            event = await anext(watch)
            seen.append((event.revision, time.perf_counter()))

    readers = [asyncio.ensure_future(watcher(n)) for n in range(n_watchers)]
    await ready.wait()
    await asyncio.sleep(0.05)  # let every watch register before the first write

    async def update(i: int) -> None:
        k = key(i % n_objects)
        t0 = time.perf_counter()
        kv = await store.update(k, pod(i % n_objects, generation=i + 1))
        t1 = time.perf_counter()
        issued[kv.revision] = t0
        acked[kv.revision] = t1

    start = time.perf_counter()
    await clients(8, n_writes, update)
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    elapsed = time.perf_counter() - start
    for watch in watches:
        await watch.aclose()
    from_issue = Result(ops=n_writes * n_watchers, seconds=elapsed)
    from_ack = Result(throughput=False)
    for seen in received:
        for revision, t in seen:
            from_issue.latencies.append(t - issued[revision])
            from_ack.latencies.append(t - acked[revision])
    return from_issue, from_ack


async def workload(path: str, synchronous: str, n: int) -> dict[str, Result]:
    store = SqliteStore(path, synchronous=synchronous)
    results: dict[str, Result] = {}
    try:
        values = [pod(i) for i in range(n)]
        single = min(n, 500)
        results[f"create, 1 client ({single})"] = await clients(
            1, single, lambda i: store.create(key(i), values[i])
        )
        results[f"create, 32 clients ({n - single})"] = await clients(
            32, n - single, lambda i: store.create(key(i + single), values[i + single])
        )
        results[f"get, 1 client ({n})"] = await clients(1, n, lambda i: store.get(key(i)))
        results[f"get, 8 clients ({n})"] = await clients(8, n, lambda i: store.get(key(i)))
        listed = await store.list(PREFIX)
        assert len(listed.items) == n, len(listed.items)
        results[f"list all {n}, now (x5)"] = await clients(1, 5, lambda i: store.list(PREFIX))

        async def cas(i: int) -> None:
            k = key(i % n)
            current = await store.get(k)
            await store.update(k, values[i % n], expected_revision=current.revision)

        results[f"get+CAS update, 32 clients ({n})"] = await clients(32, n, cas)
        old = listed.revision
        results[f"list all {n}, at older rev (x3)"] = await clients(
            1, 3, lambda i: store.list(PREFIX, revision=old)
        )
        writes = min(n, 1000)
        for watchers in (1, 100):
            issue, ack = await watch_latency(store, watchers, writes, n)
            results[f"watch, {watchers} watcher(s), issue->event"] = issue
            results[f"watch, {watchers} watcher(s), ack->event"] = ack
        results["compact at current revision"] = await clients(1, 1, lambda i: compact_now(store))
    finally:
        await store.close()
    return results


async def compact_now(store: SqliteStore) -> None:
    await store.compact(await store.current_revision())


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


def table(a_name: str, a: dict[str, Result], b_name: str, b: dict[str, Result]) -> list[str]:
    width = max(len(name) for name in a) + 2
    head = (
        f"{'operation':<{width}}| {a_name:^29} | {b_name:^29} | ratio\n"
        f"{'':<{width}}| {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"| {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} | B/A"
    )
    lines = [head, "-" * (width + 76)]
    for name, ra in a.items():
        rb = b[name]
        cells = []
        for r in (ra, rb):
            rate = f"{r.rate:10.0f}" if r.throughput else f"{'-':>10}"
            cells.append(f"{rate} {fmt_ms(r.percentile(50))} {fmt_ms(r.percentile(99))}")
        if ra.throughput and ra.rate:
            ratio = f"{rb.rate / ra.rate:5.2f}x ops/s"
        else:
            ratio = "-"
        lines.append(f"{name:<{width}}| {cells[0]} | {cells[1]} | {ratio}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="objects (default 10000)")
    parser.add_argument(
        "--path",
        default=None,
        help="database file for the synchronous=FULL run (must not exist; default: a "
        "temporary file), or :memory:",
    )
    parser.add_argument(
        "--compare",
        default="NORMAL",
        help="second configuration: NORMAL (a file with synchronous=NORMAL) or :memory:",
    )
    args = parser.parse_args()
    if args.n < 10:
        parser.error("--n must be at least 10")
    if args.compare.upper() not in ("NORMAL", ":MEMORY:"):
        parser.error("--compare is NORMAL or :memory:")

    with tempfile.TemporaryDirectory(prefix="kcore-bench-", dir=_tmp_dir(args.path)) as tmp:
        a_path = args.path or os.path.join(tmp, "full.db")
        if a_path != ":memory:" and os.path.exists(a_path):
            parser.error(f"{a_path} exists: give a new file")
        b_path = ":memory:" if args.compare.upper() == ":MEMORY:" else os.path.join(tmp, "b.db")
        a_name = "FULL, file" if a_path != ":memory:" else ":memory:"
        b_name = ":memory:" if b_path == ":memory:" else "NORMAL, file"
        print(
            f"store_sqlite benchmark: n={args.n}, Python {platform.python_version()}, "
            f"sqlite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, {platform.platform()}"
        )
        print(f"A = {a_name} ({a_path})\nB = {b_name} ({b_path})\n", flush=True)
        t0 = time.perf_counter()
        a = asyncio.run(workload(a_path, "FULL", args.n))
        b = asyncio.run(workload(b_path, "NORMAL", args.n))
        for line in table(f"A: {a_name}", a, f"B: {b_name}", b):
            print(line)
        sizes = [
            f"{name}: {os.path.getsize(p) / 1e6:.1f} MB"
            for name, p in (("A", a_path), ("B", b_path))
            if p != ":memory:" and os.path.exists(p)
        ]
        print(f"\ndatabase size after the run: {', '.join(sizes) or '-'}")
        print(f"total time {time.perf_counter() - t0:.1f} s")
        if args.path and a_path != ":memory:":
            print(f"(kept {a_path})")


def _tmp_dir(path: str | None) -> str | None:
    """Temporary files go next to ``--path``, so that both runs use the same disk."""
    if path and path != ":memory:":
        return str(Path(path).resolve().parent)
    return None


if __name__ == "__main__":
    sys.exit(main())
