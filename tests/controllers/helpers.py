"""Helpers for the controller tests: waiting, and manifests of ReplicaSets and pods."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from typing import Any

SIM_PLUGINS = "store_sqlite,runtime_sim,volumes,controllers,scheduler"
"""A one-node cluster whose node agent runs pods on runtime_sim (for kubectl tests)."""


def ok(proc: subprocess.CompletedProcess) -> str:
    """A command's output, after checking it succeeded."""
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
    return proc.stdout


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Call ``check()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.2)


class Clock:
    """Wall-clock seconds (whole, from now) that move only when told."""

    def __init__(self) -> None:
        self.t = float(int(time.time()))

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def set(self, t: float) -> None:
        self.t = t


async def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Await ``check()`` (sync or async) until it returns something truthy; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            assert value, f"not true within {timeout}s: {check}"
            return value
        await asyncio.sleep(interval)


def replica_set(
    name: str = "web",
    replicas: int = 3,
    labels: dict[str, str] | None = None,
    *,
    namespace: str = "default",
    min_ready_seconds: int | None = None,
) -> dict[str, Any]:
    labels = labels or {"app": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": {**labels, "tier": "front"}, "annotations": {"note": "hi"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    }
    if min_ready_seconds is not None:
        spec["minReadySeconds"] = min_ready_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(
    name: str, labels: dict[str, str], *, namespace: str = "default", owner: Any = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
