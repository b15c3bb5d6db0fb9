"""Benchmark of the scheduler: throughput and latency for many pods on many Node objects.

    python bench/bench_scheduler.py [--nodes 1000] [--pods 10000] [--mode both|stream|backlog]
                                    [--transport inprocess|http] [--concurrency 16]
                                    [--owners 0] [--store file|memory] [--json]

Runtime-free: the API server's object store (``store_sqlite``, a file in a temporary
directory by default, as the daemon uses it) in this process, ``--nodes`` Node objects with
scheduler_perf's default node (4 CPUs, 32Gi, 110 pods, Ready) and ``--pods`` pods with its
default pod (one container requesting 100m and 500Mi), created through kcore's API client
(in process, or with ``--transport http`` over HTTP to an API server in this process). The
scheduler is the ``scheduler`` plugin's, given the in-process client as the daemon gives it.
No node agent runs: nothing but the scheduler acts on the pods.

Two scenarios (``--mode both`` runs each in a fresh child process, so that their memory
figures do not mix):

- ``stream``: the scheduler runs while the pods are created (``--concurrency`` creates in
  flight), as upstream's scheduler_perf ``SchedulingBasic`` does. Throughput is pods over
  the time from the first create sent to the last binding written.
- ``backlog``: all pods are created first, then the scheduler starts: how fast it drains a
  queue, from its start to the last binding.

Per scenario: the overall rate; the steady-state rate (scheduler_perf's way: the bindings
counted every second, the average of those samples without the first and the last); the
per-pod latency from its create request to its binding written (median, p99); the
scheduling attempt alone (filters and scores, no API: median, p99); and the process's RSS
(``VmRSS``) with only the nodes, and once every pod is bound (the whole control plane: store,
API objects, scheduler caches). The rate is compared with upstream's scheduler_perf CI
minimum of 680 pods/s (SchedulingBasic, 5,000 nodes, 10,000 pods, on upstream's CI
machines, Go, many cores) and the clusterloader2 threshold of 100 pods/s.

Figures only, never asserted: all of it (store thread aside) shares one Python event loop
on this machine's cores; see shared/reference/perf-anchors.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kcore import ControllerContext, Settings
from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient, HttpTransport, InProcessTransport
from kcore.daemon import bootstrap
from kcore.plugins.scheduler import Scheduler
from kcore.plugins.store_sqlite.backend import SqliteStore

UPSTREAM_CI_MINIMUM = 680.0
"""scheduler_perf SchedulingBasic 5000 nodes / 10k pods, pods/s (performance-config.yaml)."""
CL2_THRESHOLD = 100.0
"""clusterloader2 scheduler-throughput threshold, pods/s."""
NAMESPACE = "sched-bench"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_node(i: int) -> dict[str, Any]:
    name = f"node-{i:05}"
    resources = {"cpu": "4", "memory": "32Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "phase": "Running",
        },
    }


def make_pod(i: int, owners: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"pod-{i:06}", "namespace": NAMESPACE}
    if owners:
        owner = f"rs-{i % owners}"
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner,
                "uid": f"00000000-0000-0000-0000-{i % owners:012}",
                "controller": True,
            }
        ]
    resources = {"cpu": "100m", "memory": "500Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": [
                {
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "ports": [{"containerPort": 80}],
                    "resources": {"requests": resources, "limits": dict(resources)},
                }
            ]
        },
    }


class TimedApi:
    """The scheduler's API client, noting when each binding has been written."""

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self.bound: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    async def bind(self, name: str, node: str, *, namespace: str | None = None) -> None:
        await self._api.bind(name, node, namespace=namespace)
        self.bound[name] = time.perf_counter()


async def create_all(
    api: ApiClient,
    objects: list[dict[str, Any]],
    concurrency: int,
    sent: dict[str, float] | None = None,
) -> None:
    """Create ``objects`` with ``concurrency`` requests in flight; note each send time."""
    it = iter(objects)

    async def worker() -> None:
        for obj in it:
            if sent is not None:
                sent[obj["metadata"]["name"]] = time.perf_counter()
            await api.create(obj)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def scenario(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    store = SqliteStore(":memory:" if args.store == "memory" else str(tmp / "kcore.db"))
    objects = ObjectStore(store)
    await bootstrap(objects)
    api = ApiClient(InProcessTransport(objects))
    server = None
    client = api
    if args.transport == "http":
        from aiohttp.test_utils import TestServer

        from kcore.apiserver.server import APIServer

        server = TestServer(APIServer(objects, token="bench").app())
        await server.start_server()
        client = ApiClient(HttpTransport(str(server.make_url("")), token="bench"))
    result: dict[str, Any] = {
        "mode": args.mode,
        "nodes": args.nodes,
        "pods": args.pods,
        "transport": args.transport,
        "store": args.store,
        "owners": args.owners,
    }
    stop = asyncio.Event()
    task = None
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        result["rss_start_mb"] = rss_mb()
        started = time.perf_counter()
        await create_all(api, [make_node(i) for i in range(args.nodes)], args.concurrency)
        result["node_create_s"] = time.perf_counter() - started
        result["rss_nodes_mb"] = rss_mb()
        pods = [make_pod(i, args.owners) for i in range(args.pods)]
        timed = TimedApi(api)
        scheduler = Scheduler(seed=1)
        ctx = ControllerContext(api=timed, settings=Settings())
        sent: dict[str, float] = {}

        async def start_scheduler() -> float:
            """Start the scheduler and wait for its first lists; returns when it started."""
            nonlocal task
            started = time.perf_counter()
            task = asyncio.ensure_future(scheduler.run(ctx, stop))
            await asyncio.wait_for(scheduler.synced.wait(), 600)
            result["scheduler_sync_s"] = time.perf_counter() - started
            return started

        samples: list[int] = []

        async def sample() -> None:
            while True:
                await asyncio.sleep(1.0)
                samples.append(len(timed.bound))

        if args.mode == "stream":
            await start_scheduler()
            sampler = asyncio.ensure_future(sample())
            begin = time.perf_counter()
            await create_all(client, pods, args.concurrency, sent)
            result["create_s"] = time.perf_counter() - begin
        else:
            begin = time.perf_counter()
            await create_all(client, pods, args.concurrency, sent)
            result["create_s"] = time.perf_counter() - begin
            begin = await start_scheduler()
            sampler = asyncio.ensure_future(sample())
        deadline = time.monotonic() + args.timeout
        while len(timed.bound) < args.pods and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        sampler.cancel()
        done = len(timed.bound)
        last = max(timed.bound.values(), default=begin)
        elapsed = last - begin
        result["bound"] = done
        result["elapsed_s"] = elapsed
        result["overall_pods_per_s"] = done / elapsed if elapsed > 0 else 0.0
        rates = [b - a for a, b in zip([0, *samples], samples, strict=False)]
        steady = rates[1:-1] if len(rates) > 2 else rates
        steady = [r for r in steady if r > 0] or steady
        result["steady_pods_per_s"] = statistics.fmean(steady) if steady else 0.0
        result["steady_p50_pods_per_s"] = statistics.median(steady) if steady else 0.0
        latencies = [timed.bound[n] - sent[n] for n in timed.bound if n in sent]
        if args.mode == "backlog":
            # The pods waited for the scheduler to start; count from its start instead.
            latencies = [timed.bound[n] - max(sent[n], begin) for n in timed.bound if n in sent]
        result["latency_p50_ms"] = percentile(latencies, 50) * 1000
        result["latency_p99_ms"] = percentile(latencies, 99) * 1000
        attempts = list(scheduler.metrics.attempt_seconds)
        result["attempt_p50_ms"] = percentile(attempts, 50) * 1000
        result["attempt_p99_ms"] = percentile(attempts, 99) * 1000
        result["attempts"] = scheduler.metrics.attempts
        result["unschedulable"] = scheduler.metrics.unschedulable
        result["rss_end_mb"] = rss_mb()
        spread = [len(info.pods) for info in scheduler.cache.nodes]
        result["pods_per_node_min_max"] = [min(spread, default=0), max(spread, default=0)]
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        if client is not api:
            await client.close()
        if server is not None:
            await server.close()
        await api.close()
        await store.close()
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("scenario", lambda r: f"{r['mode']} ({r['transport']})"),
        ("nodes / pods", lambda r: f"{r['nodes']:,} / {r['pods']:,}"),
        ("pods bound", lambda r: f"{r['bound']:,}"),
        (
            "first create (stream) or start (backlog) to last bound",
            lambda r: f"{r['elapsed_s']:.1f} s",
        ),
        ("throughput, overall", lambda r: f"{r['overall_pods_per_s']:.0f} pods/s"),
        (
            "throughput, steady state (avg of 1-s samples)",
            lambda r: f"{r['steady_pods_per_s']:.0f} pods/s",
        ),
        (
            "ratio to upstream CI minimum 680 pods/s",
            lambda r: f"{r['steady_pods_per_s'] / UPSTREAM_CI_MINIMUM:.2f}x",
        ),
        (
            "ratio to clusterloader2 threshold 100 pods/s",
            lambda r: f"{r['steady_pods_per_s'] / CL2_THRESHOLD:.2f}x",
        ),
        (
            "per-pod latency create (backlog: start) -> bound, median / p99",
            lambda r: f"{r['latency_p50_ms']:.0f} / {r['latency_p99_ms']:.0f} ms",
        ),
        ("scheduler start -> caches synced", lambda r: f"{r['scheduler_sync_s'] * 1000:.0f} ms"),
        (
            "scheduling attempt (filter+score), median / p99",
            lambda r: f"{r['attempt_p50_ms']:.2f} / {r['attempt_p99_ms']:.2f} ms",
        ),
        ("pods per node, min / max", lambda r: "{} / {}".format(*r["pods_per_node_min_max"])),
        (
            "RSS: start / with nodes / all pods bound",
            lambda r: (
                f"{r['rss_start_mb']:.0f} / {r['rss_nodes_mb']:.0f} / {r['rss_end_mb']:.0f} MB"
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        f"{name:<{width}}  " + "  ".join(f"{fmt(r):>22}" for r in results) for name, fmt in rows
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--mode", choices=("both", "stream", "backlog"), default="both")
    parser.add_argument("--transport", choices=("inprocess", "http"), default="inprocess")
    parser.add_argument("--store", choices=("file", "memory"), default="file")
    parser.add_argument("--concurrency", type=int, default=16, help="creates in flight")
    parser.add_argument("--owners", type=int, default=0, help="spread pods over N ReplicaSets")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.mode == "both":
        results = []
        for mode in ("stream", "backlog"):
            cmd = [sys.executable, __file__, *sys.argv[1:], "--mode", mode, "--json"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    else:
        with tempfile.TemporaryDirectory(prefix="kcore-bench-sched-") as tmp:
            results = [asyncio.run(scenario(args, Path(tmp)))]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
        return
    print(
        f"kcore scheduler benchmark ({platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, store {args.store})"
    )
    print(table(results))


if __name__ == "__main__":
    main()
