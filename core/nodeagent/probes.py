"""The kubelet's prober: container probes, lifecycle hook handlers and the probe workers.

:func:`run_probe` runs one probe (``exec``, ``httpGet``, ``tcpSocket``, ``grpc``) the way
the kubelet's ``pkg/probe`` packages do, with their output texts, so events read as they
do on a real node. :func:`run_handler` runs a ``postStart`` or ``preStop`` handler
(``exec``, ``httpGet``, ``sleep``) as the kubelet's ``lifecycle`` handler runner.

:class:`ProbeManager` keeps one :class:`ProbeWorker` (one asyncio task) per pod, container
and probe type, as the kubelet's ``prober/worker.go``: results flip only after
``failureThreshold``/``successThreshold`` consecutive results, liveness and readiness wait
for the startup probe, and a liveness failure or a startup verdict holds the worker until
the container is replaced. The pod worker feeds it container states with
:meth:`ProbeManager.sync_pod` and reads :meth:`~ProbeManager.readiness`,
:meth:`~ProbeManager.started` and :meth:`~ProbeManager.liveness_failed`; ``on_change`` tells
it when to sync again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import aiohttp
import structlog
from multidict import CIMultiDict

from kcore.errors import TemporaryError

log = structlog.get_logger("kcore.nodeagent.probes")

KUBE_MINOR_VERSION = "1.30"
PROBE_USER_AGENT = f"kube-probe/{KUBE_MINOR_VERSION}"
LIFECYCLE_USER_AGENT = f"kube-lifecycle/{KUBE_MINOR_VERSION}"

MAX_BODY_BYTES = 10 * 1024
"""An httpGet probe reads at most this much of the body (KK ``pkg/probe/http``)."""
MAX_EXEC_OUTPUT_BYTES = 10 * 1024
"""An exec probe keeps at most this much of its output (KK ``pkg/probe/exec``)."""
MAX_REDIRECTS = 10
MAX_PROBE_ATTEMPTS = 3
"""A probe that errors is tried this many times in a row (KL ``prober.go`` maxProbeRetries)."""
EXEC_GRACE_SECONDS = 1.0
"""How long past its timeout an ``exec_sync`` may take before the prober gives up itself."""

DEFAULT_INITIAL_DELAY_SECONDS = 0
DEFAULT_PERIOD_SECONDS = 10
DEFAULT_TIMEOUT_SECONDS = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3

PROBE_TYPES = ("liveness", "readiness", "startup")
SPEC_KEYS = {"liveness": "livenessProbe", "readiness": "readinessProbe", "startup": "startupProbe"}
INITIAL_RESULTS = {"liveness": "success", "readiness": "failure", "startup": "unknown"}

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding")
_HEALTH_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

Result = Literal["success", "failure", "unknown"]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome. ``unknown`` means the probe could not be run (its output is the
    error); ``warning`` marks a success the kubelet reports as ``ProbeWarning`` (an httpGet
    whose redirect left the host)."""

    result: Result
    output: str = ""
    warning: bool = False


class _ProbeError(Exception):
    """The probe cannot be built (unknown port name, no address): an unknown result."""


# --------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------


async def run_probe(
    probe: Mapping[str, Any],
    *,
    runtime: Any,
    container_id: str,
    pod_ip: str,
    container: Mapping[str, Any],
) -> ProbeResult:
    """Run ``probe`` (a pod spec probe, camelCase) once against the container.

    Network probes go to the action's ``host`` or else ``pod_ip``; every probe gets
    ``timeoutSeconds`` (default 1). Never raises for a probe that fails or cannot run:
    that is a ``failure`` or an ``unknown`` result.
    """
    timeout = float(probe.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
    try:
        if probe.get("exec") is not None:
            return await _exec_probe(probe["exec"], runtime, container_id, container, timeout)
        if probe.get("httpGet") is not None:
            return await _http_probe(probe["httpGet"], container, pod_ip, timeout)
        if probe.get("tcpSocket") is not None:
            return await _tcp_probe(probe["tcpSocket"], container, pod_ip, timeout)
        if probe.get("grpc") is not None:
            return await _grpc_probe(probe["grpc"], pod_ip, timeout)
    except _ProbeError as e:
        return ProbeResult("unknown", str(e))
    name = container.get("name", "")
    return ProbeResult("unknown", f"missing probe handler for container {_go_quote(name)}")


async def _exec_probe(
    action: Mapping[str, Any],
    runtime: Any,
    container_id: str,
    container: Mapping[str, Any],
    timeout: float,
) -> ProbeResult:
    env = {e.get("name", ""): e.get("value") or "" for e in container.get("env") or ()}
    cmd = [expand_static(str(arg), env) for arg in action.get("command") or ()]
    try:
        stdout, stderr, code = await _exec_sync(runtime, container_id, cmd, timeout)
    except TimeoutError:
        return ProbeResult("failure", f"command {_go_quote(' '.join(cmd))} timed out")
    except Exception as e:
        return ProbeResult("unknown", str(e) or type(e).__name__)
    data = (stdout[:MAX_EXEC_OUTPUT_BYTES] + stderr)[:MAX_EXEC_OUTPUT_BYTES]
    output = data.decode("utf-8", "replace")
    return ProbeResult("success" if code == 0 else "failure", output)


async def _exec_sync(
    runtime: Any, container_id: str, cmd: Sequence[str], timeout: float | None
) -> tuple[bytes, bytes, int]:
    """``exec_sync`` with its timeout reported as :class:`TimeoutError`, and enforced here
    too (with a little grace) should the runtime overrun it."""
    guard = None if not timeout else timeout + EXEC_GRACE_SECONDS
    try:
        async with asyncio.timeout(guard):
            stdout, stderr, code = await runtime.exec_sync(container_id, list(cmd), timeout or 0)
    except TemporaryError as e:
        raise TimeoutError(str(e)) from e
    return _bytes(stdout), _bytes(stderr), int(code)


async def _http_probe(
    action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, timeout: float
) -> ProbeResult:
    outcome = await _http_get(action, container, pod_ip, timeout, PROBE_USER_AGENT)
    if outcome.error is not None:
        return ProbeResult("failure", outcome.error)
    status = outcome.status or 0
    if 200 <= status < 400:
        if status >= 300:
            return ProbeResult(
                "success",
                f"Probe terminated redirects, Response body: {outcome.body}",
                warning=True,
            )
        return ProbeResult("success", outcome.body)
    return ProbeResult("failure", f"HTTP probe failed with statuscode: {status}")


async def _tcp_probe(
    action: Mapping[str, Any], container: Mapping[str, Any], pod_ip: str, timeout: float
) -> ProbeResult:
    port = resolve_port(action.get("port"), container)
    host = _target_host(action, pod_ip)
    hostport = _join_host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return ProbeResult("failure", f"dial tcp {hostport}: i/o timeout")
    except OSError as e:
        return ProbeResult("failure", _dial_error(host, hostport, e))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult("success", "")


async def _grpc_probe(action: Mapping[str, Any], pod_ip: str, timeout: float) -> ProbeResult:
    """``grpc.health.v1.Health/Check``, plaintext; only ``SERVING`` passes (KK
    ``pkg/probe/grpc``). The messages are encoded here; grpcio comes with aetcd."""
    try:
        import grpc
        from grpc import aio
    except ImportError:
        return ProbeResult("unknown", "gRPC probes need the grpcio package, which is missing")
    if not pod_ip:
        raise _ProbeError("the pod has no IP address yet")
    port = action.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _ProbeError(f"invalid port number: {port}")
    addr = _join_host_port(pod_ip, port)
    service = str(action.get("service") or "")
    request = _protobuf_string(1, service)
    deadline = _go_duration(timeout)
    options = [("grpc.primary_user_agent", PROBE_USER_AGENT)]
    async with aio.insecure_channel(addr, options=options) as channel:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except TimeoutError:
            return ProbeResult(
                "failure",
                f"timeout: failed to connect service {_go_quote(addr)} within {deadline}: "
                "context deadline exceeded",
            )
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        remaining = max(timeout - (loop.time() - start), 0.001)
        try:
            response = await check(request, timeout=remaining)
        except aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return ProbeResult(
                    "failure",
                    "error: this server does not implement the grpc health protocol "
                    f"(grpc.health.v1.Health): {e.details()}",
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ProbeResult(
                    "failure", f"timeout: health rpc did not complete within {deadline}"
                )
            name = "".join(part.capitalize() for part in code.name.split("_"))
            return ProbeResult(
                "failure",
                f"error: health rpc probe failed: rpc error: code = {name} desc = {e.details()}",
            )
    status = _protobuf_varint_field(bytes(response), 1)
    if status != 1:
        name = _HEALTH_STATUS.get(status, str(status))
        return ProbeResult("failure", f"service unhealthy (responded with {_go_quote(name)})")
    return ProbeResult("success", "service healthy")


# --------------------------------------------------------------------------------------
# Lifecycle hooks
# --------------------------------------------------------------------------------------


async def run_handler(
    handler: Mapping[str, Any],
    *,
    runtime: Any,
    container_id: str,
    pod_ip: str,
    container: Mapping[str, Any],
    timeout: float,
    pod: Mapping[str, Any] | None = None,
) -> str | None:
    """Run a ``postStart`` or ``preStop`` handler; ``None`` on success, else the kubelet's
    message (``Exec lifecycle hook ([cmd]) for Container "c" in Pod "p" failed - error:
    ..., message: "<output>"``). ``pod``, when given, is named in the message.

    ``timeout`` bounds the whole handler (``0``: no limit). As the kubelet, an ``httpGet``
    hook fails only when the request fails, whatever the status code, and a ``sleep`` cut
    short by ``timeout`` is no failure.
    """
    limit = timeout if timeout and timeout > 0 else None
    where = f"for Container {_go_quote(container.get('name', ''))}"
    if pod is not None:
        where += f" in Pod {_go_quote(_format_pod(pod))}"
    if handler.get("exec") is not None:
        command = [str(arg) for arg in handler["exec"].get("command") or ()]
        output = b""
        try:
            stdout, stderr, code = await _exec_sync(runtime, container_id, command, limit)
        except TimeoutError:
            error = f"command {_go_quote(' '.join(command))} timed out"
        except Exception as e:
            error = str(e) or type(e).__name__
        else:
            if code == 0:
                return None
            text = stderr.decode("utf-8", "replace")
            error = f"command '{' '.join(command)}' exited with {code}: {text}"
            output = stdout + stderr
        return (
            f"Exec lifecycle hook ([{' '.join(command)}]) {where} failed - error: {error}, "
            f"message: {_go_quote(output.decode('utf-8', 'replace'))}"
        )
    if handler.get("httpGet") is not None:
        action = handler["httpGet"]
        try:
            outcome = await _http_get(action, container, pod_ip, limit, LIFECYCLE_USER_AGENT)
            error = outcome.error
        except _ProbeError as e:
            error = str(e)
        if error is None:
            return None
        return f"HTTP lifecycle hook ({action.get('path') or ''}) {where} failed - error: {error}"
    if handler.get("sleep") is not None:
        seconds = float(handler["sleep"].get("seconds") or 0)
        await asyncio.sleep(min(seconds, limit) if limit is not None else seconds)
        return None
    return f"Cannot run handler: invalid handler: {dict(handler)}"


# --------------------------------------------------------------------------------------
# HTTP GET, as the kubelet's probe client
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HttpOutcome:
    status: int | None = None
    body: str = ""
    error: str | None = None


async def _http_get(
    action: Mapping[str, Any],
    container: Mapping[str, Any],
    pod_ip: str,
    timeout: float | None,
    user_agent: str,
) -> _HttpOutcome:
    """GET the action's URL as Go's client in KK ``pkg/probe/http`` does: no keep-alive,
    no compression, TLS unverified, redirects followed while they stay on the host."""
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = _target_host(action, pod_ip)
    port = resolve_port(action.get("port"), container)
    url = _format_url(scheme, host, port, str(action.get("path") or ""))
    headers, host_header = _request_headers(action.get("httpHeaders") or (), user_agent)
    first_host = urlsplit(url).hostname
    current = url
    referer: str | None = None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=False, force_close=True),
        skip_auto_headers=_AUTO_HEADERS,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
    )
    try:
        async with session, asyncio.timeout(timeout):
            for sent in itertools.count(1):
                request_headers = CIMultiDict(headers)
                if host_header is not None:
                    request_headers["Host"] = host_header
                if referer is not None and "Referer" not in headers:
                    request_headers["Referer"] = referer
                async with session.get(
                    current, headers=request_headers, allow_redirects=False
                ) as response:
                    location = None
                    if response.status in _REDIRECT_STATUSES:
                        location = response.headers.get("Location")
                    if location is not None:
                        target = urljoin(current, location)
                        if urlsplit(target).hostname == first_host:
                            if sent >= MAX_REDIRECTS:
                                return _HttpOutcome(
                                    error=f'Get "{target}": stopped after {MAX_REDIRECTS} redirects'
                                )
                            if urlsplit(location).scheme:
                                host_header = None  # Go keeps Host only through relative ones
                            referer = None
                            if not (current.startswith("https:") and target.startswith("http:")):
                                referer = current
                            current = target
                            continue
                    body = await _read_at_most(response.content, MAX_BODY_BYTES)
                    return _HttpOutcome(
                        status=response.status, body=body.decode("utf-8", "replace")
                    )
    except TimeoutError:
        reason = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        return _HttpOutcome(error=f'Get "{current}": {reason}')
    except aiohttp.ClientConnectorError as e:
        parts = urlsplit(current)
        target_host = parts.hostname or ""
        target_port = parts.port or (443 if parts.scheme == "https" else 80)
        hostport = _join_host_port(target_host, target_port)
        return _HttpOutcome(
            error=f'Get "{current}": {_dial_error(target_host, hostport, e.os_error)}'
        )
    except (aiohttp.ClientError, OSError, ValueError) as e:
        return _HttpOutcome(error=f'Get "{current}": {str(e) or type(e).__name__}')
    raise AssertionError("unreachable")  # pragma: no cover


def _request_headers(
    http_headers: Iterable[Mapping[str, Any]], user_agent: str
) -> tuple[CIMultiDict[str], str | None]:
    """The probe's headers with the kubelet's defaults; an empty ``User-Agent`` or
    ``Accept`` removes the default. ``Host`` is returned apart: it overrides the URL's."""
    headers: CIMultiDict[str] = CIMultiDict()
    for header in http_headers:
        headers.add(str(header.get("name", "")), str(header.get("value") or ""))
    host = headers.get("Host") or None
    headers.popall("Host", None)
    if "User-Agent" not in headers:
        headers["User-Agent"] = user_agent
    elif headers["User-Agent"] == "":
        headers.popall("User-Agent")
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif headers["Accept"] == "":
        headers.popall("Accept")
    return headers, host


async def _read_at_most(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def resolve_port(port: Any, container: Mapping[str, Any]) -> int:
    """A probe's port: a number, a ``ports[].name`` of the container, or a number in a
    string (KK ``pkg/probe`` ResolveContainerPort)."""
    if isinstance(port, bool) or port is None:
        raise _ProbeError(f"invalid port: {port!r}")
    if isinstance(port, int):
        value = port
    else:
        name = str(port)
        named = [p for p in container.get("ports") or () if p.get("name") == name]
        if named:
            value = int(named[0].get("containerPort") or 0)
        elif re.fullmatch(r"[+-]?[0-9]+", name):
            value = int(name)
        else:
            raise _ProbeError(
                f"port {_go_quote(name)} not found: container "
                f"{_go_quote(container.get('name', ''))} has no port of that name"
            )
    if not 0 < value < 65536:
        raise _ProbeError(f"invalid port number: {value}")
    return value


def expand_static(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` from the container's ``env`` values; unknown names stay as written and
    ``$$`` is a literal ``$`` (KL ``ExpandContainerCommandOnlyStatic``)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            following = text[i + 1]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _target_host(action: Mapping[str, Any], pod_ip: str) -> str:
    host = str(action.get("host") or pod_ip or "")
    if not host:
        raise _ProbeError("the pod has no IP address yet")
    return host


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _format_url(scheme: str, host: str, port: int, path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{_join_host_port(host, port)}{path}"


def _dial_error(host: str, hostport: str, error: BaseException) -> str:
    """A connect error in Go's words (``dial tcp 10.0.0.5:80: connect: connection refused``)."""
    if isinstance(error, socket.gaierror):
        return f"dial tcp: lookup {host}: {str(error.strerror or error).lower()}"
    if isinstance(error, TimeoutError):
        return f"dial tcp {hostport}: i/o timeout"
    if isinstance(error, OSError) and error.errno:
        return f"dial tcp {hostport}: connect: {os.strerror(error.errno).lower()}"
    return f"dial tcp {hostport}: {error}"


def _go_quote(text: str) -> str:
    """Near enough Go's ``%q``."""
    return json.dumps(text, ensure_ascii=False)


def _go_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def _format_pod(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def _bytes(data: Any) -> bytes:
    if isinstance(data, str):
        return data.encode()
    return bytes(data or b"")


def _protobuf_string(field: int, value: str) -> bytes:
    if not value:
        return b""
    raw = value.encode()
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _protobuf_varint_field(data: bytes, field: int) -> int:
    """The last value of varint ``field`` in a protobuf message (0 when absent)."""
    value, pos = 0, 0
    try:
        while pos < len(data):
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                item, pos = _read_varint(data, pos)
                if number == field:
                    value = item
            elif wire == 2:
                size, pos = _read_varint(data, pos)
                pos += size
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            else:
                break
    except IndexError:
        pass
    return value


# --------------------------------------------------------------------------------------
# Probe workers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerProbeState:
    """What the pod worker knows of one container: its id (``None`` before creation),
    whether it runs, when it started (on the manager's ``clock``) and the pod's IP."""

    container_id: str | None
    running: bool
    started_at: float
    pod_ip: str


OnChange = Callable[[str], None]
OnEvent = Callable[[Mapping[str, Any], str, str, str, str], None]


class ProbeWorker:
    """Probes one container of one pod for one probe type, as KL ``prober/worker.go``.

    Its result belongs to ``container_id``; :meth:`ProbeManager.sync_pod` resets it to the
    initial result when a new container appears.
    """

    def __init__(
        self,
        manager: ProbeManager,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        probe_type: str,
        spec: Mapping[str, Any],
    ) -> None:
        self.manager = manager
        self.pod = pod
        self.container = container
        self.probe_type = probe_type
        self.spec = spec
        self.state: ContainerProbeState | None = None
        self.container_id: str | None = None
        self.result: str = INITIAL_RESULTS[probe_type]
        self.failure_message: str | None = None
        """Set when a liveness failure or startup failure verdict holds the worker."""
        self.on_hold = False
        self.finished = False
        self._last: str | None = None
        self._run = 0
        self._triggered = False
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def pod_uid(self) -> str:
        return str((self.pod.get("metadata") or {}).get("uid", ""))

    @property
    def container_name(self) -> str:
        return str(self.container.get("name", ""))

    def _setting(self, key: str, default: int) -> int:
        value = self.spec.get(key)
        return int(value) if value else default

    @property
    def period(self) -> float:
        return float(self._setting("periodSeconds", DEFAULT_PERIOD_SECONDS))

    def update(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        spec: Mapping[str, Any],
        state: ContainerProbeState | None,
        *,
        wake: bool,
    ) -> None:
        """Take the pod's latest view; a new container id resets the result."""
        self.pod, self.container, self.spec = pod, container, spec
        previous, self.state = self.state, state
        changed = False
        if state is not None and state.container_id and state.container_id != self.container_id:
            if not self.finished:
                self.container_id = state.container_id
                self.result = INITIAL_RESULTS[self.probe_type]
                self.failure_message = None
                self.on_hold = False
                self._last, self._run = None, 0
            changed = True
        if (previous is None) != (state is None) or (
            previous is not None and state is not None and previous.running != state.running
        ):
            changed = True
        if changed and wake:
            self.trigger()

    def trigger(self) -> None:
        """Probe now rather than at the next period (KL's manual trigger)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        else:
            self._triggered = True

    async def run(self) -> None:
        while True:
            try:
                delay = await self._step()
            except Exception:
                log.exception(
                    "probe worker step failed",
                    pod=self.pod_uid,
                    container=self.container_name,
                    probe=self.probe_type,
                )
                delay = self.period
            if delay is None:
                self.finished = True
                return
            await self._wait(delay)

    async def _step(self) -> float | None:
        """One round of KL ``doProbe``; the seconds until the next, ``None`` to stop."""
        period = self.period
        state = self.state
        if state is None or not state.container_id or self.on_hold:
            return period
        if not state.running:
            if self.probe_type != "liveness":
                self._set("failure")
            return period
        meta = self.pod.get("metadata") or {}
        if meta.get("deletionTimestamp") and self.probe_type in ("liveness", "startup"):
            self._set("success")
            return None
        delay = self._setting("initialDelaySeconds", DEFAULT_INITIAL_DELAY_SECONDS)
        elapsed = self.manager._clock() - state.started_at
        if elapsed < delay:
            return min(period, delay - elapsed)
        started = self.manager.started(self.pod_uid, self.container_name)
        if self.probe_type == "startup" and started:
            return period  # nothing left to do until a new container
        if self.probe_type != "startup" and not started:
            return period  # liveness and readiness wait for the startup probe
        container_id = self.container_id
        result = await self._probe(state)
        if result is None or container_id != self.container_id:
            return period  # errored, or the container was replaced meanwhile
        if result == self._last:
            self._run += 1
        else:
            self._last, self._run = result, 1
        failures = self._setting("failureThreshold", DEFAULT_FAILURE_THRESHOLD)
        successes = self._setting("successThreshold", DEFAULT_SUCCESS_THRESHOLD)
        if (result == "failure" and self._run < failures) or (
            result == "success" and self._run < successes
        ):
            return period
        if (self.probe_type == "liveness" and result == "failure") or self.probe_type == "startup":
            self.on_hold, self._run = True, 0
            if result == "failure":
                self.failure_message = (
                    f"Container {self.container_name} failed {self.probe_type} probe"
                )
        self._set(result)
        return period

    async def _probe(self, state: ContainerProbeState) -> str | None:
        """Run the probe (errors tried again, up to 3 times), record its events and return
        ``success``/``failure``; ``None`` when it errored (the result is thrown away)."""
        kind = self.probe_type.capitalize()
        outcome = ProbeResult("unknown", "not run")
        for _ in range(MAX_PROBE_ATTEMPTS):
            try:
                outcome = await run_probe(
                    self.spec,
                    runtime=self.manager._runtime,
                    container_id=self.container_id or "",
                    pod_ip=state.pod_ip,
                    container=self.container,
                )
            except Exception as e:
                outcome = ProbeResult("unknown", str(e) or type(e).__name__)
            if outcome.result != "unknown":
                break
        if outcome.result == "unknown":
            self._event(
                "Unhealthy", f"{kind} probe errored and resulted in unknown state: {outcome.output}"
            )
            return None
        if outcome.result == "failure":
            self._event("Unhealthy", f"{kind} probe failed: {outcome.output}")
        elif outcome.warning:
            self._event("ProbeWarning", f"{kind} probe warning: {outcome.output}")
        return outcome.result

    def _set(self, result: str) -> None:
        if result == self.result:
            return
        self.result = result
        if self.probe_type == "startup" and result == "success":
            self.manager._wake(self.pod_uid, self.container_name, ("liveness", "readiness"))
        self.manager._notify(self.pod_uid)

    def _event(self, reason: str, message: str) -> None:
        try:
            self.manager._on_event(self.pod, self.container_name, "Warning", reason, message)
        except Exception:
            log.exception("probe event callback failed", pod=self.pod_uid, reason=reason)

    async def _wait(self, delay: float) -> None:
        if self._triggered:
            self._triggered = False
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(self.manager._sleep(delay))
        sleeper.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
            self._triggered = False
            if not sleeper.done():
                sleeper.cancel()
                await asyncio.wait({sleeper})
            if not sleeper.cancelled() and sleeper.exception() is not None:
                log.warning("probe sleep failed", error=str(sleeper.exception()))


class ProbeManager:
    """The node agent's probe workers, per pod, container and probe type.

    Call :meth:`sync_pod` at each pod sync, before reading :meth:`readiness`,
    :meth:`started` or :meth:`liveness_failed`. ``on_change(pod_uid)`` is called when a
    result flips (the pod should be synced again); ``on_event(pod, container_name, type,
    reason, message)`` for ``Unhealthy`` and ``ProbeWarning`` events. ``clock`` and
    ``sleep`` are injectable so that tests need not wait out real periods.
    """

    def __init__(
        self,
        runtime: Any,
        *,
        on_change: OnChange,
        on_event: OnEvent,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._runtime = runtime
        self._on_change = on_change
        self._on_event = on_event
        self._clock = clock
        self._sleep = sleep
        self._workers: dict[tuple[str, str, str], ProbeWorker] = {}
        self._states: dict[str, dict[str, ContainerProbeState]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- the pod worker's side ----------------------------------------------------------

    def sync_pod(
        self, pod: Mapping[str, Any], containers: Mapping[str, ContainerProbeState]
    ) -> None:
        """Start, update, reset and stop the pod's workers to match ``pod`` and the states
        of its containers (by name). Idempotent."""
        if self._closed:
            return
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        self._states[uid] = dict(containers)
        wanted: set[tuple[str, str, str]] = set()
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            for container in _probed_containers(pod):
                name = str(container.get("name", ""))
                for probe_type in PROBE_TYPES:
                    spec = container.get(SPEC_KEYS[probe_type])
                    if not spec:
                        continue
                    key = (uid, name, probe_type)
                    wanted.add(key)
                    worker = self._workers.get(key)
                    state = containers.get(name)
                    if worker is None:
                        worker = ProbeWorker(self, pod, container, probe_type, spec)
                        self._workers[key] = worker
                        worker.update(pod, container, spec, state, wake=False)
                        worker.task = asyncio.get_running_loop().create_task(
                            worker.run(), name=f"probe {probe_type} {uid}/{name}"
                        )
                        continue
                    worker.update(pod, container, spec, state, wake=True)
                    if (
                        probe_type == "readiness"
                        and state is not None
                        and state.running
                        and worker.result != "success"
                    ):
                        worker.trigger()
        for key in [k for k in self._workers if k[0] == uid and k not in wanted]:
            self._stop(key)

    def remove_pod(self, pod_uid: str) -> None:
        """Stop every worker of the pod and forget its results."""
        self._states.pop(pod_uid, None)
        for key in [k for k in self._workers if k[0] == pod_uid]:
            self._stop(key)

    def readiness(self, pod_uid: str, container_name: str) -> bool:
        """Whether the container is ready: running (as last synced), started, and its
        readiness probe passed, or it has none."""
        state = self._states.get(pod_uid, {}).get(container_name)
        if state is not None and not state.running:
            return False
        if not self.started(pod_uid, container_name):
            return False
        worker = self._workers.get((pod_uid, container_name, "readiness"))
        return worker is None or worker.result == "success"

    def started(self, pod_uid: str, container_name: str) -> bool:
        """Whether the container has started: running (as last synced) and its startup
        probe passed, or it has none."""
        state = self._states.get(pod_uid, {}).get(container_name)
        if state is not None and not state.running:
            return False
        worker = self._workers.get((pod_uid, container_name, "startup"))
        return worker is None or worker.finished or worker.result == "success"

    def liveness_failed(self, pod_uid: str, container_name: str, container_id: str) -> str | None:
        """``Container <c> failed liveness probe`` (or ``startup probe``) when that probe
        gave up on this container, which is then to be killed; else ``None``."""
        for probe_type in ("liveness", "startup"):
            worker = self._workers.get((pod_uid, container_name, probe_type))
            if worker is not None and worker.container_id == container_id:
                if worker.failure_message is not None:
                    return worker.failure_message
        return None

    async def close(self) -> None:
        """Stop every worker and wait until all have ended."""
        self._closed = True
        for key in list(self._workers):
            self._stop(key)
        self._states.clear()
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    # -- the workers' side --------------------------------------------------------------

    def _stop(self, key: tuple[str, str, str]) -> None:
        worker = self._workers.pop(key)
        task = worker.task
        if task is not None and not task.done():
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _notify(self, pod_uid: str) -> None:
        try:
            self._on_change(pod_uid)
        except Exception:
            log.exception("probe change callback failed", pod=pod_uid)

    def _wake(self, pod_uid: str, container_name: str, probe_types: Iterable[str]) -> None:
        for probe_type in probe_types:
            worker = self._workers.get((pod_uid, container_name, probe_type))
            if worker is not None:
                worker.trigger()


def _probed_containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """App containers and sidecars (init containers with ``restartPolicy: Always``)."""
    spec = pod.get("spec") or {}
    sidecars = [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    return [*sidecars, *(spec.get("containers") or ())]


__all__ = [
    "INITIAL_RESULTS",
    "LIFECYCLE_USER_AGENT",
    "PROBE_TYPES",
    "PROBE_USER_AGENT",
    "ContainerProbeState",
    "ProbeManager",
    "ProbeResult",
    "ProbeWorker",
    "expand_static",
    "resolve_port",
    "run_handler",
    "run_probe",
]
