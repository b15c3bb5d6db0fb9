"""The streaming pod subresources: ``pods/log``, ``pods/exec`` and ``pods/attach``.

The API server checks a request as Kubernetes' does (the options, the pod, its container, its
node) and then hands the work to a :class:`PodStreams` provider, which the node agent
implements. Exec and attach speak the Kubernetes channel protocol over WebSocket
(``v5.channel.k8s.io``, ``v4.channel.k8s.io``), as kubectl 1.30 and later and the Python
client do. SPDY, which older kubectl speaks, is not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog
from aiohttp import WSMsgType, web
from multidict import MultiMapping

from kcore.errors import BadRequest, FieldError, Invalid, KcoreError
from kcore.interfaces import StreamSession

log = structlog.get_logger("kcore.apiserver")

# --------------------------------------------------------------------------------------
# What the node side implements
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    """``PodLogOptions`` as validated by the API server (``container`` is resolved apart)."""

    follow: bool = False
    previous: bool = False
    """The logs of the container's previous instance (``lastState.terminated``)."""
    tail_lines: int | None = None
    """The last N lines only (N >= 0)."""
    timestamps: bool = False
    """Prefix each line with its RFC 3339 time (nanoseconds) and a space, as the kubelet."""
    since_seconds: int | None = None
    """Only lines newer than this many seconds (> 0); never set together with since_time."""
    since_time: str | None = None
    """Only lines at or after this RFC 3339 time (``T`` and ``Z`` in upper case)."""
    limit_bytes: int | None = None
    """Stop after this many bytes (> 0), possibly mid-line."""


@runtime_checkable
class PodStreams(Protocol):
    """The node side of the streaming subresources.

    The API server has already found the pod, checked that it is bound to a node and chosen
    the container (one of its containers, init containers or ephemeral containers), so
    ``pod`` is the stored object and ``container`` a name in it. Errors are kcore errors
    (:class:`kcore.errors.NotFound`, :class:`kcore.errors.BadRequest` for a container that
    does not run, ...); the API server answers them as a Kubernetes ``Status`` with their
    code, or, once an exec or attach WebSocket is open, on its error channel.
    """

    async def logs(
        self, pod: Mapping[str, Any], container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        """The container's log as raw bytes, already formatted (timestamps prefixed when
        ``options.timestamps``). Raise before returning the iterator for anything that makes
        the request fail (a container that never started, no previous instance): errors
        raised while iterating, once the reply is under way, only end the stream.

        Without ``follow`` the iterator ends at the end of the log; with it, when the
        container ends. The API server calls ``aclose()`` on it when it is done with it (the
        client went away, or the server stops). An async generator function is accepted
        too; an error on its first step, within :data:`FIRST_CHUNK_WAIT`, is still a Status.
        """
        ...

    async def exec(
        self,
        pod: Mapping[str, Any],
        container: str,
        command: Sequence[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> StreamSession:
        """Start ``command`` in the container. The session's ``wait()`` is the command's
        exit code; the API server calls ``close()`` when it is done with the session (after
        the exit, or earlier when the client goes away)."""
        ...

    async def attach(
        self, pod: Mapping[str, Any], container: str, *, stdin: bool, tty: bool
    ) -> StreamSession:
        """Attach to the container's main process: its output from now on and, with
        ``stdin``, its standard input. The attach ends when ``read()`` returns ``None``;
        ``close()`` detaches and leaves the container running."""
        ...


# --------------------------------------------------------------------------------------
# Request checks, as Kubernetes' API server makes them
# --------------------------------------------------------------------------------------

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Kubernetes' reading of a boolean query parameter: ``0`` and ``false`` (any case) are
    false, anything else (even empty) is true, and an absent one is ``default``."""
    value = query.get(name)
    if value is None:
        return default
    return not (value == "0" or value.lower() == "false")


def _query_int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    try:
        return int(value.strip(), 10)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None


def log_options(query: Mapping[str, str], pod_name: str) -> LogOptions:
    """Parse and validate ``PodLogOptions`` from the query: 400 for a value that is not an
    integer or a time, 422 for one out of range (as Kubernetes' ``ValidatePodLogOptions``)."""
    tail_lines = _query_int(query, "tailLines")
    limit_bytes = _query_int(query, "limitBytes")
    since_seconds = _query_int(query, "sinceSeconds")
    since_time = query.get("sinceTime")
    if since_time is not None:
        since_time = since_time.strip().upper()
        try:
            if not _RFC3339.match(since_time):
                raise ValueError
            dt.datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(
                f"sinceTime must be an RFC 3339 time such as 2024-01-02T15:04:05Z, "
                f"got {since_time!r}"
            ) from None
    causes = []
    if tail_lines is not None and tail_lines < 0:
        causes.append(
            FieldError(
                "tailLines", f"Invalid value: {tail_lines}: must be greater than or equal to 0"
            )
        )
    if limit_bytes is not None and limit_bytes < 1:
        causes.append(
            FieldError("limitBytes", f"Invalid value: {limit_bytes}: must be greater than 0")
        )
    if since_seconds is not None and since_time is not None:
        causes.append(
            FieldError(
                "",
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                reason="FieldValueForbidden",
            )
        )
    elif since_seconds is not None and since_seconds < 1:
        causes.append(
            FieldError("sinceSeconds", f"Invalid value: {since_seconds}: must be greater than 0")
        )
    if causes:
        text = str(causes[0]) if len(causes) == 1 else f"[{', '.join(map(str, causes))}]"
        raise Invalid(f'PodLogOptions "{pod_name}" is invalid: {text}', causes)
    return LogOptions(
        follow=query_bool(query, "follow"),
        previous=query_bool(query, "previous"),
        tail_lines=tail_lines,
        timestamps=query_bool(query, "timestamps"),
        since_seconds=since_seconds,
        since_time=since_time,
        limit_bytes=limit_bytes,
    )


@dataclass(frozen=True)
class StreamOptions:
    """``PodExecOptions`` or ``PodAttachOptions`` (``command`` is empty for an attach)."""

    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def stream_options(query: MultiMapping[str], *, exec_: bool) -> StreamOptions:
    """The options of an exec (``command`` repeated, at least once) or an attach. Stdout and
    stderr default to true, as in Kubernetes; with a tty there is no separate stderr, as the
    kubelet has it."""
    command = tuple(query.getall("command", ())) if exec_ else ()
    if exec_ and not command:
        raise BadRequest("you must specify at least one command for the container")
    tty = query_bool(query, "tty")
    options = StreamOptions(
        command=command,
        stdin=query_bool(query, "stdin"),
        stdout=query_bool(query, "stdout", default=True),
        stderr=query_bool(query, "stderr", default=True) and not tty,
        tty=tty,
    )
    if not (options.stdin or options.stdout or options.stderr):
        raise BadRequest("you must specify at least 1 of stdin, stdout, stderr")
    return options


def _names(spec: Mapping[str, Any], key: str) -> list[str]:
    return [str(c.get("name")) for c in spec.get(key) or () if isinstance(c, Mapping)]


def select_container(pod: Mapping[str, Any], requested: str | None) -> str:
    """The container a request means: the one it names, else the pod's
    ``kubectl.kubernetes.io/default-container``, else the pod's only container."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = meta.get("name", "")
    containers = _names(spec, "containers")
    inits = _names(spec, "initContainers")
    known = {*containers, *inits, *_names(spec, "ephemeralContainers")}
    if requested:
        if requested not in known:
            raise BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    default = (meta.get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if default and default in known:
        return default
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise BadRequest(f"a container name must be specified for pod {name}")
    message = (
        f"a container name must be specified for pod {name}, "
        f"choose one of: [{' '.join(containers)}]"
    )
    if inits:
        message += f" or one of the init containers: [{' '.join(inits)}]"
    raise BadRequest(message)


def node_of(pod: Mapping[str, Any]) -> str:
    """The node the pod is bound to, or ``""``."""
    return str((pod.get("spec") or {}).get("nodeName") or "")


def require_node(pod: Mapping[str, Any]) -> str:
    node = node_of(pod)
    if not node:
        name = (pod.get("metadata") or {}).get("name", "")
        raise BadRequest(f"pod {name} does not have a host assigned")
    return node


# --------------------------------------------------------------------------------------
# pods/log: text/plain, streamed
# --------------------------------------------------------------------------------------

#: How long the reply's headers wait for the first log chunk, so that an error the provider
#: raises on its first step (rather than before returning its iterator) is still a Status.
FIRST_CHUNK_WAIT = 1.0
#: How often a quiet ``follow`` checks whether its client is still there.
DISCONNECT_POLL = 1.0


async def open_logs(
    streams: PodStreams, pod: Mapping[str, Any], container: str, options: LogOptions
) -> AsyncIterator[bytes]:
    """``streams.logs(...)``, whether it is a coroutine returning the iterator (as the
    protocol says) or an async generator function."""
    result: Any = streams.logs(pod, container, options)
    if inspect.isawaitable(result):
        result = await result
    return result


async def serve_log(
    request: web.Request, chunks: AsyncIterator[bytes], *, stopping: asyncio.Event
) -> web.StreamResponse:
    """Send ``chunks`` as a chunked ``text/plain`` reply, each as it comes; end when they
    end, the client goes away or the server stops, and ``aclose()`` them in any case."""
    pending: asyncio.Future[bytes] = asyncio.ensure_future(anext(chunks))
    stop = asyncio.ensure_future(stopping.wait())
    resp: web.StreamResponse | None = None
    try:
        await asyncio.wait(
            {pending, stop}, timeout=FIRST_CHUNK_WAIT, return_when=asyncio.FIRST_COMPLETED
        )
        if pending.done() and not pending.cancelled():
            error = pending.exception()
            if error is not None and not isinstance(error, StopAsyncIteration):
                raise error
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        while True:
            if not pending.done():
                await asyncio.wait(
                    {pending, stop}, timeout=DISCONNECT_POLL, return_when=asyncio.FIRST_COMPLETED
                )
                if stop.done() or request.transport is None or request.transport.is_closing():
                    break
                if not pending.done():
                    continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                break
            except Exception as exc:
                log.warning("log stream failed", path=request.path, error=str(exc))
                break
            if chunk:
                await resp.write(chunk)
            pending = asyncio.ensure_future(anext(chunks))
    except ConnectionResetError:
        if resp is None:
            raise
        return resp
    finally:
        stop.cancel()
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(Exception):
            await chunks.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def serve_empty_log(request: web.Request) -> web.Response:
    """The log of a pod not yet bound to a node: empty, as Kubernetes answers."""
    return web.Response(body=b"", headers={"Content-Type": "text/plain"})


# --------------------------------------------------------------------------------------
# pods/exec and pods/attach: the channel protocol over WebSocket
# --------------------------------------------------------------------------------------

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
#: The subprotocols served, most preferred first.
SUBPROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)

STDIN_CHANNEL = 0
STDOUT_CHANNEL = 1
STDERR_CHANNEL = 2
ERROR_CHANNEL = 3
RESIZE_CHANNEL = 4
#: v5: ``[255, n]`` closes stream n (the client's stdin, in practice).
CLOSE_CHANNEL = 255

NEEDS_WEBSOCKET = (
    "kcore serves pods/{sub} over WebSocket only (subprotocol v5.channel.k8s.io or "
    "v4.channel.k8s.io), not SPDY: use kubectl 1.30 or later, or a client that speaks "
    "WebSocket"
)


def _offered_protocols(request: web.Request) -> list[str]:
    return [
        p.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", ())
        for p in header.split(",")
        if p.strip()
    ]


def negotiate(request: web.Request, subresource: str) -> str:
    """The subprotocol to answer with: v5 if offered, else v4. A request that is not a
    WebSocket upgrade (SPDY from kubectl before 1.30, or a plain request), or that offers
    neither, is a 400."""
    if request.headers.get("Upgrade", "").strip().lower() != "websocket":
        raise BadRequest(NEEDS_WEBSOCKET.format(sub=subresource))
    offered = _offered_protocols(request)
    for protocol in SUBPROTOCOLS:
        if protocol in offered:
            return protocol
    raise BadRequest(
        f"none of the offered WebSocket subprotocols {offered} is served: kcore speaks "
        f"{' and '.join(SUBPROTOCOLS)}"
    )


def exit_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The error channel's last word on an exec, as the kubelet writes it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command "
            f"[{' '.join(command)}], exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure_status(error: BaseException) -> dict[str, Any]:
    """A provider error as the error channel carries it."""
    if isinstance(error, KcoreError):
        code, reason, message = error.code, error.reason, str(error)
    else:
        code, reason = 500, "InternalError"
        message = f"Internal error occurred: {type(error).__name__}: {error}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


async def serve_session(
    request: web.Request,
    subresource: str,
    options: StreamOptions,
    start: Callable[[], Awaitable[StreamSession]],
    *,
    stopping: asyncio.Event,
) -> web.WebSocketResponse:
    """Upgrade to WebSocket, ``start()`` the session and relay it until the process exits
    (then the status on the error channel and a normal close) or the client goes away (then
    the session is closed).

    As Kubernetes' server, the first frame is an empty one on the lowest output channel the
    client asked for (stdout, else stderr, else error): the client knows then that the
    streams are up. An error of ``start()`` is a Failure status on the error channel.
    """
    protocol = negotiate(request, subresource)
    ws = web.WebSocketResponse(protocols=(protocol,), compress=False, max_msg_size=1 << 20)
    if not ws.can_prepare(request).ok:
        raise BadRequest("the request is not a valid WebSocket handshake")
    await ws.prepare(request)
    session: StreamSession | None = None
    try:
        first = (
            STDOUT_CHANNEL
            if options.stdout
            else STDERR_CHANNEL
            if options.stderr
            else ERROR_CHANNEL
        )
        await _send(ws, first, b"")
        try:
            session = await start()
        except Exception as exc:
            if not isinstance(exc, KcoreError):
                log.exception("starting a stream session failed", path=request.path)
            await _send(ws, ERROR_CHANNEL, json.dumps(failure_status(exc)).encode())
            return ws
        await _relay(ws, session, options, subresource, protocol == V5_PROTOCOL, stopping)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except Exception:
        log.exception("stream session failed", path=request.path)
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, channel: int, data: bytes) -> None:
    await ws.send_bytes(bytes((channel,)) + data)


async def _relay(
    ws: web.WebSocketResponse,
    session: StreamSession,
    options: StreamOptions,
    subresource: str,
    v5: bool,
    stopping: asyncio.Event,
) -> None:
    feeder = asyncio.ensure_future(_feed(ws, session, options, v5))
    outcome = asyncio.ensure_future(_drain(ws, session, options, subresource))
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({feeder, outcome, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not outcome.done() or feeder.done():
            return  # the client went away, or the server is stopping
        try:
            status = outcome.result()
        except ConnectionResetError:
            return
        except Exception as exc:
            if not isinstance(exc, KcoreError):
                log.error("stream session failed", error=repr(exc))
            status = failure_status(exc)
        await _send(ws, ERROR_CHANNEL, json.dumps(status).encode())
    finally:
        for task in (feeder, outcome, stop):
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def _drain(
    ws: web.WebSocketResponse, session: StreamSession, options: StreamOptions, subresource: str
) -> dict[str, Any]:
    """Relay the output until it ends; the status to send then. An attach ends in Success,
    as the kubelet's does: its exit code is in the pod's status, not in the stream."""
    while (item := await session.read()) is not None:
        stream, data = item
        if stream == "stderr" and not options.tty:
            if options.stderr and data:
                await _send(ws, STDERR_CHANNEL, data)
        elif options.stdout and data:
            await _send(ws, STDOUT_CHANNEL, data)
    if subresource == "attach":
        return exit_status(0, ())
    return exit_status(await session.wait(), options.command)


async def _feed(
    ws: web.WebSocketResponse, session: StreamSession, options: StreamOptions, v5: bool
) -> None:
    """Relay stdin, resizes and (v5) the close of stdin, until the client goes away."""
    stdin_open = options.stdin
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            data = msg.data
        elif msg.type is WSMsgType.TEXT:
            data = msg.data.encode("utf-8")
        elif msg.type is WSMsgType.ERROR:
            break
        else:
            continue
        if not data:
            continue
        channel, payload = data[0], data[1:]
        try:
            if channel == STDIN_CHANNEL:
                if stdin_open and payload:
                    await session.write_stdin(payload)
            elif channel == RESIZE_CHANNEL:
                size = _terminal_size(payload)
                if size is not None:
                    await session.resize(*size)
            elif channel == CLOSE_CHANNEL and v5:
                if payload[:1] == bytes((STDIN_CHANNEL,)) and stdin_open:
                    stdin_open = False
                    await session.close_stdin()
        except (KcoreError, OSError) as exc:
            # The process is gone or no longer reads: the output side reports its end.
            log.debug("stream input dropped", channel=channel, error=str(exc))
            if channel == STDIN_CHANNEL:
                stdin_open = False


def _terminal_size(payload: bytes) -> tuple[int, int] | None:
    """``{"Width": w, "Height": h}`` (Go's JSON: keys in any case) as (width, height)."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    fields = {str(k).lower(): v for k, v in doc.items()}
    width, height = fields.get("width"), fields.get("height")
    for value in (width, height):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
            return None
    return width, height


__all__ = [
    "DEFAULT_CONTAINER_ANNOTATION",
    "SUBPROTOCOLS",
    "LogOptions",
    "PodStreams",
    "StreamOptions",
    "log_options",
    "select_container",
    "serve_log",
    "serve_session",
    "stream_options",
]
