"""The node agent's prober for real: exec through a runtime whose exec_sync runs a process,
httpGet, tcpSocket and grpc against local servers, lifecycle handlers, and the probe
workers' thresholds and states on an injected clock."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import signal
import socket
import time
from collections.abc import Callable

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from grpc import aio
from multidict import CIMultiDict

from kcore.apiserver.pki import ensure_pki
from kcore.errors import NotFound, TemporaryError
from kcore.nodeagent.probes import (
    ContainerProbeState,
    ProbeManager,
    ProbeResult,
    run_handler,
    run_probe,
)

CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 0}]}
POD = {"metadata": {"name": "web", "namespace": "default", "uid": "uid-1"}}


class SubprocessRuntime:
    """``exec_sync`` as a runtime does it, on the host: a real process, killed on timeout."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], float]] = []

    async def exec_sync(self, container_id, cmd, timeout=0):
        self.calls.append((container_id, list(cmd), timeout))
        if container_id == "gone":
            raise NotFound("container gone not found")
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout or None):
                stdout, stderr = await proc.communicate()
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.communicate()
            raise TemporaryError(f"exec timed out after {timeout}s") from None
        return stdout, stderr, proc.returncode


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_port(port: int) -> dict:
    return {**CONTAINER, "ports": [{"name": "http", "containerPort": port}]}


async def probe(spec: dict, *, container: dict | None = None, pod_ip: str = "127.0.0.1"):
    return await run_probe(
        spec,
        runtime=SubprocessRuntime(),
        container_id="c1",
        pod_ip=pod_ip,
        container=container or CONTAINER,
    )


# --------------------------------------------------------------------------------------
# exec
# --------------------------------------------------------------------------------------


async def test_exec_exit_zero_passes_with_the_output():
    result = await probe({"exec": {"command": ["sh", "-c", "echo fine"]}})
    assert result == ProbeResult("success", "fine\n")


async def test_exec_nonzero_fails_with_stdout_and_stderr():
    result = await probe({"exec": {"command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}})
    assert result == ProbeResult("failure", "out\nerr\n")


async def test_exec_timeout_fails_as_the_kubelet_says():
    runtime = SubprocessRuntime()
    start = time.monotonic()
    result = await run_probe(
        {"exec": {"command": ["sh", "-c", "sleep 5"]}, "timeoutSeconds": 1},
        runtime=runtime,
        container_id="c1",
        pod_ip="",
        container=CONTAINER,
    )
    assert result == ProbeResult("failure", 'command "sh -c sleep 5" timed out')
    assert time.monotonic() - start < 3
    assert runtime.calls == [("c1", ["sh", "-c", "sleep 5"], 1.0)]


async def test_exec_output_is_capped_at_10_kib():
    result = await probe(
        {"exec": {"command": ["sh", "-c", "head -c 50000 /dev/zero | tr '\\0' x"]}}
    )
    assert result.result == "success"
    assert result.output == "x" * 10240


async def test_exec_expands_static_env_references():
    container = {**CONTAINER, "env": [{"name": "GREETING", "value": "hello"}]}
    spec = {"exec": {"command": ["echo", "$(GREETING)", "$(MISSING)", "$$(GREETING)"]}}
    result = await probe(spec, container=container)
    assert result == ProbeResult("success", "hello $(MISSING) $(GREETING)\n")


async def test_exec_runtime_error_is_unknown():
    result = await run_probe(
        {"exec": {"command": ["true"]}},
        runtime=SubprocessRuntime(),
        container_id="gone",
        pod_ip="",
        container=CONTAINER,
    )
    assert result == ProbeResult("unknown", "container gone not found")


async def test_probe_without_handler_is_unknown():
    result = await probe({"periodSeconds": 3})
    assert result.result == "unknown"
    assert "missing probe handler" in result.output


# --------------------------------------------------------------------------------------
# httpGet
# --------------------------------------------------------------------------------------


class HttpServer:
    """A local server that records what it received."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, CIMultiDict[str]]] = []
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path_qs, CIMultiDict(request.headers)))
        path = request.path
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return web.Response(status=code, text=f"status {code}")
        if path == "/redirect":
            return web.Response(status=302, headers={"Location": request.query["to"]})
        if path == "/loop":
            return web.Response(status=302, headers={"Location": "/loop"})
        if path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            if n:
                return web.Response(status=301, headers={"Location": f"/chain/{n - 1}"})
            return web.Response(text="end of chain")
        if path == "/slow":
            await asyncio.wait_for(self.release.wait(), 10)
            return web.Response(text="late")
        if path == "/big":
            response = web.StreamResponse()
            await response.prepare(request)
            try:
                for _ in range(64):
                    await response.write(b"y" * 16384)
            except (ConnectionError, RuntimeError):
                pass
            return response
        return web.Response(text=f"ok {path}")

    async def start(self, **kwargs) -> HttpServer:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server(**kwargs)
        return self

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()


@pytest.fixture
async def http():
    server = await HttpServer().start()
    yield server
    await server.close()


async def test_http_sends_the_kubelet_default_headers(http):
    result = await probe({"httpGet": {"path": "/healthz", "port": http.port}})
    assert result == ProbeResult("success", "ok /healthz")
    [(path, headers)] = http.seen
    assert path == "/healthz"
    assert headers.getall("User-Agent") == ["kube-probe/1.30"]
    assert headers.getall("Accept") == ["*/*"]
    assert headers["Host"] == f"127.0.0.1:{http.port}"
    assert "Accept-Encoding" not in headers


@pytest.mark.parametrize(
    ("status", "result"),
    [(200, "success"), (204, "success"), (299, "success"), (400, "failure"), (503, "failure")],
)
async def test_http_status_decides(http, status, result):
    outcome = await probe({"httpGet": {"path": f"/status/{status}", "port": http.port}})
    assert outcome.result == result
    assert not outcome.warning
    if result == "failure":
        assert outcome.output == f"HTTP probe failed with statuscode: {status}"


async def test_http_3xx_not_followed_passes_with_a_warning(http):
    outcome = await probe({"httpGet": {"path": "/status/399", "port": http.port}})
    assert outcome == ProbeResult(
        "success", "Probe terminated redirects, Response body: status 399", warning=True
    )


async def test_http_headers_override_and_remove_defaults(http):
    headers = [
        {"name": "User-Agent", "value": "my-agent"},
        {"name": "accept", "value": ""},
        {"name": "X-Trace", "value": "a"},
        {"name": "X-Trace", "value": "b"},
        {"name": "Host", "value": "probe.example"},
    ]
    spec = {"httpGet": {"path": "/h", "port": http.port, "httpHeaders": headers}}
    assert (await probe(spec)).result == "success"
    [(_, seen)] = http.seen
    assert seen.getall("User-Agent") == ["my-agent"]
    assert "Accept" not in seen
    assert seen.getall("X-Trace") == ["a", "b"]
    assert seen["Host"] == "probe.example"


async def test_http_empty_user_agent_sends_none(http):
    headers = [{"name": "User-Agent", "value": ""}]
    spec = {"httpGet": {"path": "/h", "port": http.port, "httpHeaders": headers}}
    assert (await probe(spec)).result == "success"
    [(_, seen)] = http.seen
    assert "User-Agent" not in seen
    assert seen["Accept"] == "*/*"


async def test_http_follows_same_host_redirects_keeping_headers(http):
    headers = [{"name": "Host", "value": "probe.example"}, {"name": "X-Keep", "value": "1"}]
    spec = {"httpGet": {"path": "/redirect?to=/target", "port": http.port, "httpHeaders": headers}}
    assert await probe(spec) == ProbeResult("success", "ok /target")
    assert http.paths() == ["/redirect?to=/target", "/target"]
    second = http.seen[1][1]
    assert second["Host"] == "probe.example"  # kept through a relative redirect, as Go does
    assert second["X-Keep"] == "1"
    assert second["Referer"] == f"http://127.0.0.1:{http.port}/redirect?to=/target"


async def test_http_same_host_on_another_port_is_followed(http):
    other = await HttpServer().start()
    try:
        to = f"http://127.0.0.1:{other.port}/elsewhere"
        result = await probe({"httpGet": {"path": f"/redirect?to={to}", "port": http.port}})
        assert result == ProbeResult("success", "ok /elsewhere")
        assert other.paths() == ["/elsewhere"]
    finally:
        await other.close()


async def test_http_off_host_redirect_passes_with_a_warning(http):
    to = f"http://localhost:{http.port}/target"
    result = await probe({"httpGet": {"path": f"/redirect?to={to}", "port": http.port}})
    assert result == ProbeResult(
        "success", "Probe terminated redirects, Response body: ", warning=True
    )
    assert http.paths() == [f"/redirect?to={to}"]


async def test_http_stops_after_ten_redirects(http):
    result = await probe({"httpGet": {"path": "/loop", "port": http.port}})
    assert result == ProbeResult(
        "failure", f'Get "http://127.0.0.1:{http.port}/loop": stopped after 10 redirects'
    )
    assert http.paths() == ["/loop"] * 10
    assert await probe({"httpGet": {"path": "/chain/9", "port": http.port}}) == ProbeResult(
        "success", "end of chain"
    )


async def test_http_timeout_fails(http):
    start = time.monotonic()
    result = await probe({"httpGet": {"path": "/slow", "port": http.port}, "timeoutSeconds": 1})
    assert time.monotonic() - start < 3
    assert result.result == "failure"
    assert result.output == (
        f'Get "http://127.0.0.1:{http.port}/slow": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )


async def test_http_reads_at_most_10_kib_of_the_body(http):
    result = await probe({"httpGet": {"path": "/big", "port": http.port}})
    assert result == ProbeResult("success", "y" * 10240)


async def test_http_connection_refused_fails_with_the_error():
    port = closed_port()
    result = await probe({"httpGet": {"path": "/", "port": port}})
    assert result == ProbeResult(
        "failure",
        f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: connection refused',
    )


async def test_https_is_not_verified(tmp_path):
    pki = ensure_pki(tmp_path, hosts=["127.0.0.1"])
    server = await HttpServer().start(ssl=pki.ssl_context())
    try:
        spec = {"httpGet": {"path": "/secure", "port": server.port, "scheme": "HTTPS"}}
        assert await probe(spec) == ProbeResult("success", "ok /secure")
    finally:
        await server.close()


async def test_http_ports_by_name_or_number_string(http):
    named = {"httpGet": {"path": "ready", "port": "http"}}
    assert await probe(named, container=with_port(http.port)) == ProbeResult("success", "ok /ready")
    numeric = {"httpGet": {"path": "/n", "port": str(http.port)}}
    assert (await probe(numeric)).result == "success"
    unknown = await probe({"httpGet": {"path": "/", "port": "metrics"}})
    assert unknown.result == "unknown"
    assert unknown.output == 'port "metrics" not found: container "app" has no port of that name'
    assert http.paths() == ["/ready", "/n"]


async def test_http_host_field_replaces_the_pod_ip(http):
    spec = {"httpGet": {"path": "/h", "port": http.port, "host": "127.0.0.1"}}
    assert (await probe(spec, pod_ip="192.0.2.1")).result == "success"


# --------------------------------------------------------------------------------------
# tcpSocket and grpc
# --------------------------------------------------------------------------------------


async def test_tcp_open_and_closed_ports(http):
    assert await probe({"tcpSocket": {"port": http.port}}) == ProbeResult("success", "")
    named = await probe({"tcpSocket": {"port": "http"}}, container=with_port(http.port))
    assert named.result == "success"
    port = closed_port()
    assert await probe({"tcpSocket": {"port": port}}) == ProbeResult(
        "failure", f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )


@pytest.fixture
async def grpc_health():
    seen: list[tuple[str, str]] = []
    statuses = {"": 1, "sick": 2}

    async def check(request: bytes, context):
        service = request[2:].decode()
        agent = dict(context.invocation_metadata()).get("user-agent", "")
        seen.append((service, agent))
        if service not in statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, statuses[service]])

    handler = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )
    server = aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port, seen
    await server.stop(None)


async def test_grpc_health_check(grpc_health):
    port, seen = grpc_health
    assert await probe({"grpc": {"port": port}}) == ProbeResult("success", "service healthy")
    assert await probe({"grpc": {"port": port, "service": "sick"}}) == ProbeResult(
        "failure", 'service unhealthy (responded with "NOT_SERVING")'
    )
    missing = await probe({"grpc": {"port": port, "service": "nope"}})
    assert missing == ProbeResult(
        "failure",
        "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service",
    )
    assert [s for s, _ in seen] == ["", "sick", "nope"]
    assert all(agent.startswith("kube-probe/1.30") for _, agent in seen)


async def test_grpc_without_health_service_and_refused():
    server = aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        result = await probe({"grpc": {"port": port}})
    finally:
        await server.stop(None)
    assert result.result == "failure"
    assert result.output.startswith(
        "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"
    )
    port = closed_port()
    assert await probe({"grpc": {"port": port}, "timeoutSeconds": 1}) == ProbeResult(
        "failure",
        f'timeout: failed to connect service "127.0.0.1:{port}" within 1s: '
        "context deadline exceeded",
    )


# --------------------------------------------------------------------------------------
# Lifecycle handlers
# --------------------------------------------------------------------------------------


async def hook(handler: dict, *, timeout: float = 5, pod: dict | None = None, port: int = 0):
    return await run_handler(
        handler,
        runtime=SubprocessRuntime(),
        container_id="c1",
        pod_ip="127.0.0.1",
        container=with_port(port),
        timeout=timeout,
        pod=pod,
    )


async def test_exec_hook_success_and_failure_message():
    assert await hook({"exec": {"command": ["true"]}}) is None
    cmd = ["sh", "-c", "echo oops; echo bad >&2; exit 2"]
    message = await hook({"exec": {"command": cmd}}, pod=POD)
    assert message == (
        'Exec lifecycle hook ([sh -c echo oops; echo bad >&2; exit 2]) for Container "app" in '
        'Pod "web_default(uid-1)" failed - error: command \'sh -c echo oops; echo bad >&2; '
        'exit 2\' exited with 2: bad\n, message: "oops\\nbad\\n"'
    )


async def test_exec_hook_timeout():
    start = time.monotonic()
    message = await hook({"exec": {"command": ["sh", "-c", "sleep 5"]}}, timeout=0.5)
    assert time.monotonic() - start < 2.5
    assert message is not None
    assert 'failed - error: command "sh -c sleep 5" timed out, message: ""' in message


async def test_http_hook_fails_only_when_the_request_fails(http):
    assert await hook({"httpGet": {"path": "/hook", "port": "http"}}, port=http.port) is None
    assert http.seen[0][1]["User-Agent"] == "kube-lifecycle/1.30"
    # As the kubelet (kubernetes/kubernetes#56963): the status code is not checked.
    assert await hook({"httpGet": {"path": "/status/500", "port": http.port}}) is None
    port = closed_port()
    message = await hook({"httpGet": {"path": "/hook", "port": port}})
    assert message == (
        'HTTP lifecycle hook (/hook) for Container "app" failed - error: '
        f'Get "http://127.0.0.1:{port}/hook": dial tcp 127.0.0.1:{port}: connect: '
        "connection refused"
    )


async def test_sleep_hook_is_bounded_by_the_timeout():
    start = time.monotonic()
    assert await hook({"sleep": {"seconds": 30}}, timeout=0.2) is None
    assert 0.15 < time.monotonic() - start < 2


async def test_invalid_hook():
    message = await hook({"tcpSocket": {"port": 80}})
    assert message is not None
    assert message.startswith("Cannot run handler: invalid handler:")


# --------------------------------------------------------------------------------------
# Probe workers
# --------------------------------------------------------------------------------------


async def settle() -> None:
    for _ in range(40):
        await asyncio.sleep(0)


class FakeTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), future))
        await future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self.now = max(self.now, deadline)
            future.set_result(None)
            await settle()
        self.now = target
        await settle()


class ScriptedRuntime:
    """``exec_sync`` answering from a table: the exit code per (container id, command)."""

    def __init__(self) -> None:
        self.codes: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str]] = []

    async def exec_sync(self, container_id, cmd, timeout=0):
        self.calls.append((container_id, cmd[0]))
        code = self.codes.get((container_id, cmd[0]), 0)
        return f"{cmd[0]} said {code}".encode(), b"", code

    def count(self, container_id: str, command: str) -> int:
        return self.calls.count((container_id, command))


class Harness:
    def __init__(self) -> None:
        self.time = FakeTime()
        self.runtime = ScriptedRuntime()
        self.changes: list[str] = []
        self.events: list[tuple[str, str, str, str]] = []
        self.manager = ProbeManager(
            self.runtime,
            on_change=self.changes.append,
            on_event=lambda pod, c, kind, reason, msg: self.events.append((c, kind, reason, msg)),
            clock=self.time.clock,
            sleep=self.time.sleep,
        )

    def running(self, container_id: str, *, ago: float = 0.0) -> ContainerProbeState:
        return ContainerProbeState(container_id, True, self.time.now - ago, "127.0.0.1")

    def sync(self, pod: dict, state: ContainerProbeState | None) -> None:
        self.manager.sync_pod(pod, {"app": state} if state is not None else {})

    def reasons(self, reason: str) -> list[str]:
        return [msg for _, _, r, msg in self.events if r == reason]


@pytest.fixture
async def h():
    harness = Harness()
    yield harness
    await harness.manager.close()


def exec_probe(command: str, **settings) -> dict:
    return {"exec": {"command": [command]}, **settings}


def make_pod(uid: str = "uid-1", *, deleting: bool = False, **probes) -> dict:
    container: dict = {"name": "app", "image": "busybox"}
    for kind, spec in probes.items():
        container[f"{kind}Probe"] = spec
    meta = {"name": "web", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [container]}}


def probe_tasks(uid: str | None = None) -> list[asyncio.Task]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("probe ") and (uid is None or uid in t.get_name())
    ]


async def test_initial_results(h):
    pod = make_pod(liveness=exec_probe("live"), readiness=exec_probe("ready"))
    h.sync(pod, None)
    await h.time.advance(0)
    assert h.manager.readiness("uid-1", "app") is False  # readiness starts as failure
    assert h.manager.started("uid-1", "app") is True  # no startup probe
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None  # liveness starts as success
    assert h.runtime.calls == []  # nothing to probe before a container exists

    bare = make_pod("uid-2")
    h.manager.sync_pod(bare, {"app": h.running("c9")})
    assert h.manager.readiness("uid-2", "app") is True
    h.manager.sync_pod(bare, {"app": ContainerProbeState("c9", False, 0.0, "")})
    assert h.manager.readiness("uid-2", "app") is False
    assert h.manager.started("uid-2", "app") is False

    startup = make_pod("uid-3", startup=exec_probe("start"))
    h.manager.sync_pod(startup, {})
    assert h.manager.started("uid-3", "app") is False  # startup starts as unknown


async def test_readiness_flips_only_after_consecutive_results(h):
    spec = exec_probe("ready", periodSeconds=10, successThreshold=2, failureThreshold=3)
    h.sync(make_pod(readiness=spec), h.running("c1"))
    await h.time.advance(0)
    assert h.runtime.count("c1", "ready") == 1
    assert h.manager.readiness("uid-1", "app") is False
    await h.time.advance(9.9)
    assert h.runtime.count("c1", "ready") == 1
    await h.time.advance(0.1)
    assert h.runtime.count("c1", "ready") == 2
    assert h.manager.readiness("uid-1", "app") is True
    assert h.changes == ["uid-1"]

    h.runtime.codes["c1", "ready"] = 1
    await h.time.advance(20)
    assert h.manager.readiness("uid-1", "app") is True  # two failures: below the threshold
    await h.time.advance(10)
    assert h.manager.readiness("uid-1", "app") is False
    assert h.changes == ["uid-1", "uid-1"]
    assert h.reasons("Unhealthy") == ["Readiness probe failed: ready said 1"] * 3
    assert {kind for _, kind, _, _ in h.events} == {"Warning"}


async def test_not_ready_readiness_is_probed_at_once_on_sync(h):
    spec = exec_probe("ready", periodSeconds=10)
    pod = make_pod(readiness=spec)
    h.runtime.codes["c1", "ready"] = 1
    h.sync(pod, h.running("c1"))
    await h.time.advance(0)
    assert h.runtime.count("c1", "ready") == 1
    h.runtime.codes["c1", "ready"] = 0
    h.sync(pod, h.running("c1"))  # as the kubelet's status update: not ready -> probe now
    await h.time.advance(0)
    assert h.runtime.count("c1", "ready") == 2
    assert h.manager.readiness("uid-1", "app") is True
    h.sync(pod, h.running("c1"))  # ready: no extra probe
    await h.time.advance(0)
    assert h.runtime.count("c1", "ready") == 2


async def test_initial_delay_counts_from_started_at(h):
    spec = exec_probe("live", initialDelaySeconds=15, periodSeconds=10)
    h.sync(make_pod(liveness=spec), h.running("c1", ago=3))
    await h.time.advance(11.9)
    assert h.runtime.calls == []
    await h.time.advance(0.2)
    assert h.runtime.calls == [("c1", "live")]


async def test_liveness_failure_is_reported_once_per_container(h):
    spec = exec_probe("live", periodSeconds=10, failureThreshold=3)
    pod = make_pod(liveness=spec)
    h.runtime.codes["c1", "live"] = 1
    h.sync(pod, h.running("c1"))
    await h.time.advance(10)
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None
    await h.time.advance(10)
    assert h.manager.liveness_failed("uid-1", "app", "c1") == "Container app failed liveness probe"
    assert h.manager.liveness_failed("uid-1", "app", "other") is None
    assert h.changes == ["uid-1"]

    await h.time.advance(100)  # on hold until the container is replaced
    assert h.runtime.count("c1", "live") == 3
    assert h.reasons("Unhealthy") == ["Liveness probe failed: live said 1"] * 3
    assert h.changes == ["uid-1"]
    assert h.manager.liveness_failed("uid-1", "app", "c1") == "Container app failed liveness probe"

    h.sync(pod, h.running("c2"))
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None
    assert h.manager.liveness_failed("uid-1", "app", "c2") is None
    await h.time.advance(0)
    assert h.runtime.count("c2", "live") == 1  # probing resumed at once
    h.sync(pod, h.running("c2"))  # idempotent: no extra probe
    await h.time.advance(9)
    assert h.runtime.count("c2", "live") == 1
    await h.time.advance(1)
    assert h.runtime.count("c2", "live") == 2
    assert len(h.reasons("Unhealthy")) == 3


async def test_startup_gates_liveness_and_readiness(h):
    pod = make_pod(
        startup=exec_probe("start", periodSeconds=10, failureThreshold=5),
        liveness=exec_probe("live", periodSeconds=10),
        readiness=exec_probe("ready", periodSeconds=10),
    )
    h.runtime.codes["c1", "start"] = 1
    h.sync(pod, h.running("c1"))
    await h.time.advance(10)
    assert h.runtime.count("c1", "start") == 2
    assert h.runtime.count("c1", "live") == h.runtime.count("c1", "ready") == 0
    assert h.manager.started("uid-1", "app") is False
    assert h.manager.readiness("uid-1", "app") is False

    h.runtime.codes["c1", "start"] = 0
    await h.time.advance(10)
    assert h.manager.started("uid-1", "app") is True
    assert h.runtime.count("c1", "live") == h.runtime.count("c1", "ready") == 1
    assert h.manager.readiness("uid-1", "app") is True
    assert h.changes == ["uid-1", "uid-1"]  # started, then ready

    await h.time.advance(50)
    assert h.runtime.count("c1", "start") == 3  # held after its verdict
    assert h.runtime.count("c1", "live") == 6
    assert h.reasons("Unhealthy") == ["Startup probe failed: start said 1"] * 2


async def test_startup_failure_verdict_kills_the_container(h):
    pod = make_pod(
        startup=exec_probe("start", periodSeconds=10, failureThreshold=2),
        liveness=exec_probe("live"),
    )
    h.runtime.codes["c1", "start"] = 1
    h.sync(pod, h.running("c1"))
    await h.time.advance(10)
    assert h.manager.liveness_failed("uid-1", "app", "c1") == "Container app failed startup probe"
    assert h.manager.started("uid-1", "app") is False
    await h.time.advance(100)
    assert h.runtime.count("c1", "start") == 2
    assert h.runtime.count("c1", "live") == 0


async def test_errors_are_thrown_away_with_an_unknown_event(h):
    bad = {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 1}
    h.sync(make_pod(readiness=bad, liveness=bad), h.running("c1"))
    await h.time.advance(20)
    message = 'port "metrics" not found: container "app" has no port of that name'
    assert sorted(h.reasons("Unhealthy")) == sorted(
        [f"Liveness probe errored and resulted in unknown state: {message}"] * 3
        + [f"Readiness probe errored and resulted in unknown state: {message}"] * 3
    )
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None
    assert h.manager.readiness("uid-1", "app") is False
    assert h.changes == []


async def test_pod_deletion_forces_liveness_and_startup_success(h):
    pod = make_pod(
        deleting=True,
        startup=exec_probe("start", failureThreshold=1),
        liveness=exec_probe("live", failureThreshold=1),
        readiness=exec_probe("ready"),
    )
    for command in ("start", "live"):
        h.runtime.codes["c1", command] = 1
    h.sync(pod, h.running("c1"))
    await h.time.advance(30)
    assert h.runtime.count("c1", "start") == h.runtime.count("c1", "live") == 0
    assert h.manager.started("uid-1", "app") is True
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None
    assert h.runtime.count("c1", "ready") >= 1  # readiness goes on while terminating
    assert h.manager.readiness("uid-1", "app") is True
    assert sorted(t.get_name().split()[1] for t in probe_tasks()) == ["readiness"]


async def test_a_stopped_container_is_not_ready(h):
    pod = make_pod(readiness=exec_probe("ready"), liveness=exec_probe("live"))
    h.sync(pod, h.running("c1"))
    await h.time.advance(0)
    assert h.manager.readiness("uid-1", "app") is True
    h.sync(pod, ContainerProbeState("c1", False, h.time.now, "127.0.0.1"))
    assert h.manager.readiness("uid-1", "app") is False
    await h.time.advance(0)
    assert h.changes == ["uid-1", "uid-1"]
    assert h.manager.liveness_failed("uid-1", "app", "c1") is None
    await h.time.advance(30)
    assert h.runtime.count("c1", "ready") == 1  # a stopped container is not probed


async def test_remove_pod_and_close_end_every_task(h):
    for uid in ("uid-1", "uid-2"):
        pod = make_pod(uid, liveness=exec_probe("live"), readiness=exec_probe("ready"))
        h.manager.sync_pod(pod, {"app": h.running(f"c-{uid}")})
    await h.time.advance(10)
    assert len(probe_tasks()) == 4
    h.manager.remove_pod("uid-1")
    await settle()
    assert probe_tasks("uid-1") == []
    assert len(probe_tasks("uid-2")) == 2
    before = h.runtime.count("c-uid-1", "live")
    await h.time.advance(30)
    assert h.runtime.count("c-uid-1", "live") == before
    await h.manager.close()
    assert probe_tasks() == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_terminal_pods_are_not_probed(h):
    pod = make_pod(liveness=exec_probe("live"))
    h.sync(pod, h.running("c1"))
    await h.time.advance(0)
    assert len(probe_tasks()) == 1
    h.sync({**pod, "status": {"phase": "Succeeded"}}, h.running("c1"))
    await settle()
    assert probe_tasks() == []


async def test_a_failing_callback_does_not_stop_the_worker(h):
    def explode(uid: str) -> None:
        raise RuntimeError("boom")

    h.manager._on_change = explode
    h.sync(make_pod(readiness=exec_probe("ready")), h.running("c1"))
    await h.time.advance(20)
    assert h.runtime.count("c1", "ready") == 3
    assert h.manager.readiness("uid-1", "app") is True


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_probe_warning_event_on_a_real_clock(http):
    events: list[tuple[str, str, str, str]] = []
    changes: list[str] = []
    manager = ProbeManager(
        SubprocessRuntime(),
        on_change=changes.append,
        on_event=lambda pod, c, kind, reason, msg: events.append((c, kind, reason, msg)),
    )
    to = f"http://localhost:{http.port}/elsewhere"
    spec = {"httpGet": {"path": f"/redirect?to={to}", "port": http.port}, "periodSeconds": 1}
    try:
        manager.sync_pod(
            make_pod(readiness=spec),
            {"app": ContainerProbeState("c1", True, time.monotonic(), "127.0.0.1")},
        )
        await eventually(lambda: manager.readiness("uid-1", "app"))
        assert events[0] == (
            "app",
            "Warning",
            "ProbeWarning",
            "Readiness probe warning: Probe terminated redirects, Response body: ",
        )
        assert changes == ["uid-1"]
    finally:
        await manager.close()
    assert probe_tasks() == []
