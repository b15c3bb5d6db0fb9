"""The real daemon on a real single etcd, end to end over HTTPS: etcd restarting under a
running daemon (requests during the outage answer 503/504 in bounded time, the API comes
back, a watcher sees every ADDED once), etcd unreachable at start-up (a clear one-line
error, no traceback), and values over etcd's request size limit (413/422, not 500)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_process import clean_env, start_daemon, stop_daemon

PREFIX = "--etcd-prefix=/kcore-e2e-*"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
OUTAGE_ANSWER_WITHIN = 20.0
"""A request while etcd is down must be answered (503/504) within this many seconds."""
RECOVERY_WITHIN = 30.0
EVENTS_WITHIN = 20.0
STARTUP_FAILURE_WITHIN = 60.0


# -- the daemon as a child process (stopped by its recorded pid) -------------------------------


def kcore_args(data_dir: Path, *extra: str, port: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kcore",
        "--log-format=json",
        "--data-dir",
        str(data_dir),
        *extra,
        "daemon",
        "--port",
        str(port),
    ]


@contextlib.contextmanager
def running_daemon(data_dir: Path, *extra: str):
    data_dir.mkdir(parents=True, exist_ok=True)
    daemon = start_daemon(data_dir, *extra)
    try:
        yield daemon
    finally:
        stop_daemon(daemon)


def etcd_args(cluster) -> tuple[str, ...]:
    return ("--plugins=store_etcd", f"--etcd-endpoints={cluster.endpoints}", PREFIX)


# -- raw HTTPS with the admin token ------------------------------------------------------------


class Api:
    def __init__(self, url: str, data_dir: Path) -> None:
        host, _, port = url.removeprefix("https://").rpartition(":")
        self.host, self.port = host, int(port)
        self.context = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
        token = (data_dir / "pki" / "admin.token").read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def connect(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=timeout
        )

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float = 10.0
    ) -> tuple[int, Any, float]:
        """(status, decoded JSON body, seconds taken); a client timeout raises."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn = self.connect(timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=self.headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        elapsed = time.monotonic() - started
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, payload, elapsed

    def create_configmap(self, name: str, *, timeout: float = 10.0) -> tuple[int, Any, float]:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        return self.request("POST", CONFIGMAPS, {**body, "data": {"n": name}}, timeout=timeout)


class Watcher:
    """Watches configmaps in ``default`` from a resourceVersion in a thread, and like the
    Python client opens a new stream from the last resourceVersion it saw whenever one
    ends or breaks."""

    def __init__(self, api: Api, resource_version: str) -> None:
        self.api = api
        self.rv = resource_version
        self.events: list[tuple[str, str, str]] = []
        """(type, name, resourceVersion) of every event received."""
        self.errors: list[Any] = []
        self.streams = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.conn: http.client.HTTPSConnection | None = None
        self.thread = threading.Thread(target=self._run, name="configmap watcher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        conn = self.conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)

    def added(self) -> list[str]:
        with self.changed:
            return [name for kind, name, _ in self.events if kind == "ADDED"]

    def wait_for(self, names: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not names <= set(self.added()):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.errors:
                    missing = sorted(names - set(self.added()))
                    raise AssertionError(
                        f"the watch did not deliver {missing} within {timeout:g} s "
                        f"(streams opened: {self.streams}, errors: {self.errors})"
                    )
                self.changed.wait(remaining)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._stream()
            except (OSError, http.client.HTTPException):
                pass
            if not self.stopping.is_set():
                time.sleep(0.2)

    def _stream(self) -> None:
        self.conn = conn = self.api.connect(timeout=120)
        try:
            path = f"{CONFIGMAPS}?watch=true&resourceVersion={self.rv}&allowWatchBookmarks=true"
            conn.request("GET", path, headers=self.api.headers)
            response = conn.getresponse()
            with self.changed:
                self.streams += 1
            if response.status != 200:
                with self.changed:
                    self.errors.append((response.status, response.read()[:500]))
                    self.changed.notify_all()
                return
            while not self.stopping.is_set():
                line = response.readline()
                if not line:
                    return  # the server ended the stream: open a new one
                event = json.loads(line)
                meta = event["object"].get("metadata", {})
                with self.changed:
                    if event["type"] == "ERROR":
                        self.errors.append(event["object"])
                        self.stopping.set()
                    elif event["type"] != "BOOKMARK":
                        self.events.append((event["type"], meta["name"], meta["resourceVersion"]))
                    if "resourceVersion" in meta:
                        self.rv = meta["resourceVersion"]
                    self.changed.notify_all()
        finally:
            conn.close()


# -- (a) etcd restarts under the daemon --------------------------------------------------------


@pytest.mark.slow
def test_etcd_restart_under_a_running_daemon(etcd_factory, tmp_path):
    cluster = etcd_factory()
    member = cluster.members[0]
    n = 15
    with running_daemon(tmp_path / "data", *etcd_args(cluster)) as daemon:
        api = Api(daemon.url, daemon.data_dir)
        status, listed, _ = api.request("GET", CONFIGMAPS)
        assert status == 200, listed
        watcher = Watcher(api, listed["metadata"]["resourceVersion"])
        watcher.start()
        try:
            before = {f"before-{i}" for i in range(n)}
            for name in sorted(before):
                status, body, _ = api.create_configmap(name)
                assert status == 201, body
            watcher.wait_for(before, EVENTS_WITHIN)

            member.stop(signal.SIGTERM)
            assert not member.running
            # A read and a write while etcd is down: a 503/504 Status in bounded time.
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                calls = {
                    "GET": pool.submit(api.request, "GET", CONFIGMAPS, timeout=30),
                    "POST": pool.submit(api.create_configmap, "during-outage", timeout=30),
                }
                for method, future in calls.items():
                    try:
                        status, body, elapsed = future.result()
                    except TimeoutError:
                        pytest.fail(f"{method} during the etcd outage hung for over 30 s")
                    assert status in (503, 504), (method, status, body)
                    assert body["kind"] == "Status" and body["code"] == status, body
                    assert elapsed < OUTAGE_ANSWER_WITHIN, (method, elapsed, body)

            member.start(cluster.initial_cluster)
            cluster.wait_healthy(member)
            deadline = time.monotonic() + RECOVERY_WITHIN
            while True:
                try:
                    status, body, _ = api.request("GET", CONFIGMAPS, timeout=5)
                except (OSError, http.client.HTTPException) as exc:
                    status, body = None, repr(exc)
                if status == 200:
                    break
                assert time.monotonic() < deadline, f"no answer {RECOVERY_WITHIN:g} s: {body}"
                time.sleep(0.2)

            # A write refused during the outage normally never happened; if it did, the
            # watcher must report it (once) like any other.
            status, _, _ = api.request("GET", f"{CONFIGMAPS}/during-outage")
            assert status in (200, 404)
            outage = {"during-outage"} if status == 200 else set()

            after = {f"after-{i}" for i in range(n)}
            for name in sorted(after):
                status, body, _ = api.create_configmap(name)
                assert status == 201, body
            watcher.wait_for(before | after | outage, EVENTS_WITHIN)
            # Nothing repeated, nothing else, in order of resourceVersion.
            time.sleep(0.3)
        finally:
            watcher.stop()
        added = watcher.added()
        assert not watcher.errors, watcher.errors
        assert sorted(added) == sorted(before | after | outage), added
        assert len(added) == len(set(added)), "an ADDED event was delivered twice"
        revisions = [int(rv) for _, _, rv in watcher.events]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
        assert {kind for kind, _, _ in watcher.events} == {"ADDED"}


# -- (b) etcd unreachable at start-up ----------------------------------------------------------


def free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@pytest.mark.slow
def test_unreachable_etcd_at_start_up_is_one_clear_line(tmp_path):
    etcd_port, api_port = free_ports(2)
    endpoint = f"http://127.0.0.1:{etcd_port}"
    args = kcore_args(tmp_path, "--plugins=store_etcd", f"--etcd-endpoints={endpoint}")
    args[-1] = str(api_port)
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    started = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=STARTUP_FAILURE_WITHIN)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"kcore daemon on an unreachable etcd still ran after {STARTUP_FAILURE_WITHIN:g} s;"
            f" stderr:\n{stderr[-3000:]}"
        )
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.monotonic() - started
    assert proc.returncode not in (0, None), (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert "kcore API server listening" not in stdout, stdout
    # JSON log records may come first; the error itself is one plain line.
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("kcore: error:"), lines
    assert f"127.0.0.1:{etcd_port}" in lines[0], lines
    assert elapsed < STARTUP_FAILURE_WITHIN


# -- (c) values over etcd's request size limit -------------------------------------------------


@pytest.fixture(scope="module")
def shared_daemon(etcd_server, tmp_path_factory):
    """One daemon on the session's etcd for the size tests (they leave etcd running)."""
    with running_daemon(tmp_path_factory.mktemp("kcore-data"), *etcd_args(etcd_server)) as d:
        yield d


def configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def many_long_keys(total: int) -> dict[str, str]:
    """Keys of 250 characters and empty values: ConfigMap validation limits only the values
    (1 MiB), so this passes validation (as in Kubernetes) and reaches etcd."""
    return {f"{i:06d}" + "k" * 244: "" for i in range(total // 256)}


@pytest.mark.parametrize(
    ("name", "data"),
    [
        # Over etcd's --max-request-bytes (1.5 MiB): "etcdserver: request is too large".
        ("keys-1800k", many_long_keys(1_800_000)),
        # Over etcd's gRPC message limit (2 MiB): "received message larger than max".
        ("keys-2700k", many_long_keys(2_700_000)),
        # 2 MiB of values: refused by ConfigMap validation (1 MiB) before it reaches etcd.
        ("values-2m", {"a": "x" * (2 << 20)}),
        # 1,000,000 characters of 2 bytes: 2 MB in etcd, under 1 MiB if counted in characters.
        ("utf8-2m", {"a": "é" * 1_000_000}),
    ],
)
def test_values_over_etcds_request_limit_are_refused_cleanly(shared_daemon, name, data):
    api = Api(shared_daemon.url, shared_daemon.data_dir)
    body = json.dumps(configmap(name, data), ensure_ascii=False).encode()
    assert len(body) < 3 << 20  # under the API's own body limit
    status, reply, _ = api.request("POST", CONFIGMAPS, body, timeout=30)
    assert status in (413, 422), (status, reply)
    assert reply["kind"] == "Status" and reply["code"] == status, reply
    # Nothing was stored and the daemon still works.
    assert api.request("GET", f"{CONFIGMAPS}/{name}")[0] == 404
    status, reply, _ = api.create_configmap(f"small-{name}")
    assert status == 201, reply
