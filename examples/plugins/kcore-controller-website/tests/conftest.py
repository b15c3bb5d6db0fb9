"""Fixtures for the Website plugin's tests: kcore's API in this process (fast), and a
kcore daemon with simulated containers (end to end, with kubectl)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kcore.client import ApiClient, InProcessTransport
from kcore.controllers import ControllerManager
from kcore_website import WebsiteController

# kcore has no public in-process API fixture yet: these four imports build one the way
# kcore's own tests do (an ObjectStore on an in-memory store_sqlite, with the system
# namespaces), and borrow the built-in garbage collector.
from kcore.apiserver.objects import ObjectStore  # isort: skip
from kcore.daemon import bootstrap  # isort: skip
from kcore.plugins.controllers.garbagecollector import GarbageCollector  # isort: skip
from kcore.plugins.store_sqlite.backend import SqliteStore  # isort: skip

EXAMPLE = Path(__file__).resolve().parent.parent
SIM_PLUGINS = "store_sqlite,runtime_sim,volumes,controllers,scheduler,website"
"""A one-node cluster on simulated containers, with this plugin loaded by its entry point."""


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Await ``check()`` (sync or async) until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            assert value, f"not true within {timeout}s: {check}"
            return value
        await asyncio.sleep(0.02)


@dataclass
class Cluster:
    api: ApiClient
    manager: ControllerManager

    @property
    def website(self) -> WebsiteController:
        return self.manager.controllers[0]


@pytest.fixture
async def api() -> AsyncIterator[ApiClient]:
    """kcore's API server logic on an in-memory store, called in this process."""
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    client = ApiClient(InProcessTransport(objects))
    try:
        yield client
    finally:
        await client.close()
        await store.close()


@pytest.fixture
async def cluster(api: ApiClient) -> AsyncIterator[Cluster]:
    """The Website controller running, with kcore's garbage collector (which deletes what
    a deleted Website owned)."""
    manager = ControllerManager(
        api, [WebsiteController(), GarbageCollector()], leader_election=None
    )
    manager.start()
    try:
        yield Cluster(api, manager)
    finally:
        await manager.stop()


# -- a daemon ----------------------------------------------------------------------------


@dataclass
class Daemon:
    proc: subprocess.Popen
    kubeconfig: Path
    data_dir: Path

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
            env={**os.environ, "HOME": str(self.data_dir)},
        )


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """``kcore --plugins <SIM_PLUGINS> daemon`` on a free port; stopped by its pid."""
    data_dir = tmp_path_factory.mktemp("kcore")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    with open(data_dir / "daemon.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "kcore", "--data-dir", str(data_dir),
                "--plugins", SIM_PLUGINS, "daemon", "--port", "0",
            ],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env,
        )  # fmt: skip
    kubeconfig = None
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("export KUBECONFIG="):
            kubeconfig = Path(line.strip().split("=", 1)[1])
            break
    try:
        if kubeconfig is None:
            raise RuntimeError(f"the daemon did not start: {(data_dir / 'daemon.log').read_text()}")
        yield Daemon(proc, kubeconfig, data_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(Exception):
            proc.stdout.close()
        unmount_below(data_dir)


def unmount_below(path: Path) -> None:
    """The node agent's volume mounts outlive the daemon (pods keep running by design):
    unmount whatever is still mounted below ``path``, deepest first."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
