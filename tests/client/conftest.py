"""Fixtures for the API client: one ``api`` fixture, run once per transport.

``api.client`` is an :class:`ApiClient` over the in-process transport or over HTTP to an
in-process API server; ``api.store`` is the store underneath both (tests compact it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.client import ApiClient, HttpTransport, InProcessTransport
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore


@dataclass
class Api:
    client: ApiClient
    store: SqliteStore
    objects: ObjectStore
    transport: str


@pytest.fixture(params=["inprocess", "http"])
async def api(request):
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = None
    if request.param == "inprocess":
        client = ApiClient(InProcessTransport(objects))
    else:
        server = TestServer(APIServer(objects, token="t").app())
        await server.start_server()
        client = ApiClient(HttpTransport(str(server.make_url("")), token="t"))
    try:
        yield Api(client, store, objects, request.param)
    finally:
        await client.close()
        if server is not None:
            await server.close()
        await store.close()


# -- the real daemon, for `kcore ctl` ---------------------------------------------------------


@dataclass
class Daemon:
    proc: subprocess.Popen
    url: str
    kubeconfig: Path
    data_dir: Path

    def ctl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``kcore --data-dir D ctl ARGS`` (the default kubeconfig is the daemon's)."""
        return subprocess.run(
            [sys.executable, "-m", "kcore.cli", "--data-dir", str(self.data_dir), "ctl", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("KCORE_")},
        )


def start_daemon(data_dir: Path) -> Daemon:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    log = open(data_dir / "daemon.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kcore.cli",
            "--log-format=json",
            "--data-dir",
            str(data_dir),
            "daemon",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + 30
    url = kubeconfig = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("kcore API server listening on "):
            url = line.split()[-1]
        if line.startswith("export KUBECONFIG="):
            kubeconfig = Path(line.strip().split("=", 1)[1])
            break
    if url is None or kubeconfig is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"daemon did not start: {(data_dir / 'daemon.log').read_text()}")
    return Daemon(proc, url, kubeconfig, data_dir)


def stop_daemon(daemon: Daemon) -> None:
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        daemon.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        daemon.proc.wait()
        raise
    finally:
        if daemon.proc.stdout is not None:
            daemon.proc.stdout.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("kcore-ctl"))
    try:
        yield d
    finally:
        stop_daemon(d)
