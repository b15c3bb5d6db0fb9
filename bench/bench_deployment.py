"""Benchmark: how long a Deployment takes from 0 to N ready replicas on simulated nodes.

    python bench/bench_deployment.py [--replicas 1000] [--nodes 10] [--max-pods 150]

Starts ``kcore daemon`` (API server, controller manager with the built-in controllers, the
scheduler; no node agent) on runtime_sim's plugins and a ``kcore sim-nodes`` process with
``--nodes`` simulated nodes, creates one Deployment of ``--replicas`` replicas, and polls
its status until every replica is ready and available. Prints the time to 10 %, 50 %,
90 % and 100 % ready with the rate in ready replicas per second, and the resident memory
of the control plane (the daemon) before and after, and of the simulated nodes. Both
processes run in a temporary data directory (removed afterwards) and are stopped by their
pids; nothing else is created.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kcore.client import ApiClient

PLUGINS = "store_sqlite,runtime_sim,volumes,controllers,scheduler"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kcore", *args],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env=env,
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def deployment(replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "c", "image": "example.com/app:1"}],
                },
            },
        },
    }


async def measure(kubeconfig: Path, replicas: int, timeout: float) -> dict[str, float]:
    client = ApiClient.from_kubeconfig(kubeconfig)
    marks = {0.1: None, 0.5: None, 0.9: None, 1.0: None}
    try:
        started = time.monotonic()
        await client.create(deployment(replicas))
        while time.monotonic() - started < timeout:
            status = (await client.get("apps/v1", "Deployment", "bench", "default")).get(
                "status"
            ) or {}
            ready = min(status.get("readyReplicas") or 0, status.get("availableReplicas") or 0)
            for share in marks:
                if marks[share] is None and ready >= share * replicas:
                    marks[share] = time.monotonic() - started
            if marks[1.0] is not None:
                break
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    return {f"{int(k * 100)} %": v for k, v in marks.items() if v is not None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--max-pods", type=int, default=150)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=f"kcore-bench-deploy-{secrets.token_hex(3)}-"))
    daemon = start(
        [
            "--data-dir",
            str(work / "api"),
            "--plugins",
            PLUGINS,
            "daemon",
            "--port",
            "0",
            "--no-node-agent",
        ],
        work / "daemon.log",
    )
    nodes = None
    try:
        kubeconfig = None
        assert daemon.stdout is not None
        for line in daemon.stdout:
            if line.startswith("export KUBECONFIG="):
                kubeconfig = Path(line.strip().split("=", 1)[1])
                break
        if kubeconfig is None:
            print((work / "daemon.log").read_text()[-2000:], file=sys.stderr)
            return 1
        nodes = start(
            [
                "--data-dir",
                str(work / "nodes"),
                "--plugins",
                "runtime_sim",
                "sim-nodes",
                "--kubeconfig",
                str(kubeconfig),
                "--count",
                str(args.nodes),
                "--max-pods",
                str(args.max_pods),
            ],
            work / "nodes.log",
        )
        time.sleep(3)  # the nodes register and turn Ready
        rss_before = rss_mib(daemon.pid)
        marks = asyncio.run(measure(kubeconfig, args.replicas, args.timeout))
        print(f"Deployment 0 -> {args.replicas} ready replicas on {args.nodes} simulated nodes")
        print(f"{'ready':>8} {'seconds':>9} {'replicas/s':>11}")
        for share, seconds in marks.items():
            count = args.replicas * int(share.split()[0]) / 100
            print(f"{share:>8} {seconds:9.2f} {count / seconds:11.1f}")
        if "100 %" not in marks:
            print(f"not all ready within {args.timeout:g} s")
        print(
            f"control plane RSS: {rss_before:.0f} MiB before, {rss_mib(daemon.pid):.0f} MiB with "
            f"{args.replicas} pods; sim-nodes RSS {rss_mib(nodes.pid):.0f} MiB"
        )
        return 0
    finally:
        if nodes is not None:
            stop(nodes)
        stop(daemon)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
