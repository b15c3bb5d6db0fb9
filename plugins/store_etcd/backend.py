"""The kcore store contract on an etcd v3 cluster.

Keys
    A store key must begin with ``/``; it lives in etcd under ``prefix + key`` (with the
    default prefix ``/kcore``, ``/registry/core/pods/default/web`` is the etcd key
    ``/kcore/registry/core/pods/default/web``). So the store's keys are exactly the etcd keys
    beginning with ``prefix + "/"``, and a store on ``/kcore`` never sees one on ``/kcore2``.
    A prefix ending in ``*`` is a template: each store instance replaces the ``*`` with a
    random suffix and starts on a fresh, empty keyspace, which is what the conformance suite
    and tests want on a shared etcd (nothing is deleted afterwards).

Revisions
    etcd's own: ``KeyValue.revision`` is the mod revision, ``create_revision`` the create
    revision, ``current_revision()`` the revision in a linearizable read's header. etcd has one
    revision for the whole cluster, so anything else writing to it makes the revision jump,
    as the contract allows. Each write is one transaction: create is ``version(k) == 0 ->
    put``; update and delete compare ``version(k) > 0`` (and ``mod_revision(k) == expected``)
    and read the key otherwise, to tell ``NotFound`` from ``Conflict``.

Compaction, shifted by one
    ``compact(R)`` is etcd's ``compact(R - 1)``. A watch event's previous value (``prev``) is
    read by etcd at the event's revision - 1, so after etcd's ``compact(R)`` the write at R
    would lose its ``prev``; after ``compact(R - 1)`` it keeps it. The contract's promises
    then hold exactly: a list at N first reads at N - 1 in the same read-only transaction,
    which etcd refuses exactly when N is below the store's compaction, and a watch after A
    opens etcd's watch at A (not A + 1), which etcd refuses exactly when A is below the
    compaction - 1. etcd compaction done by anyone else (etcdctl, kube-apiserver, another
    store) is seen the same way: etcd's ``compact(C)`` is the store's ``compact(C + 1)``.
    With ``compaction_interval`` > 0 the store also compacts by itself as kube-apiserver
    does: every interval it bumps the global key ``compact_rev_key`` by a compare-and-swap
    on its version (so that of all stores and API servers sharing the cluster, one
    compacts per interval) and compacts etcd at the revision seen one interval before.

Watches
    Each watch is one gRPC watch stream with ``prev_kv``, read by a task into a bounded
    queue (a slow reader slows the stream down; nothing is dropped). The task remembers the
    revision of the last response it received; when the stream breaks (member stopped,
    etcd restarted, connection lost, member without a leader) it opens a new one on the
    next reachable endpoint from that revision, with exponential back-off, so the reader
    sees every event exactly once. If the history it needs was compacted meanwhile, the
    watch raises ``Expired``.

Endpoints and errors
    Calls go to one endpoint at a time and carry etcd's ``hasleader`` metadata, so a
    member cut off from its leader refuses them instead of serving stale data or hanging.
    A call that fails because its endpoint is unreachable or leaderless moves to the next
    endpoint and is retried with back-off for up to ``retry_timeout`` seconds. Reads are
    retried after any transient error; writes only when etcd cannot have received them:
    the outcome of a write cut off in flight is unknown, so it raises ``TemporaryError``
    and the caller decides (etcd's Go client does the same). Compacted revisions raise
    ``Expired``, future ones ``Invalid``, connection failures ``TemporaryError``.

The client is aetcd's etcd v3 protocol layer (``aetcd.rpc``: generated messages and stubs)
on grpc.aio channels of this module's own: aetcd's ``Client`` takes a single host without
TLS, cannot range at a revision or with a limit, and its watch does not resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from aetcd import rpc

from kcore import (
    AlreadyExists,
    Capability,
    Conflict,
    EventType,
    Expired,
    Invalid,
    KcoreError,
    KeyValue,
    ListResult,
    NotFound,
    PermanentError,
    TemporaryError,
    WatchEvent,
)

log = structlog.get_logger("kcore.plugins.store_etcd")

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
DEFAULT_PREFIX = "/kcore"
DEFAULT_COMPACTION_INTERVAL = 300.0
COMPACT_REV_KEY = b"compact_rev_key"
"""The key kube-apiserver's compactor uses too: one compaction per interval cluster-wide."""

METADATA = (("hasleader", "true"),)
"""etcd refuses requests on a member that has no leader (``etcdserver: no leader``)."""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

LIST_TIMEOUT = 60.0
"""Seconds one attempt of a ``list`` may take (a large prefix takes a while to send)."""

BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0

_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
_NOT_SENT = ("failed to connect", "connection refused", "dns resolution", "no leader")
"""Error details that mean etcd did not receive the request: safe to retry a write."""


# -- endpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    target: str
    """``host:port`` as gRPC takes it."""
    secure: bool

    def __str__(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.target}"


def parse_endpoints(spec: str | Sequence[str], *, tls: bool = False) -> list[Endpoint]:
    """``http://h:p,https://h:p,h:p`` (or a list): several endpoints of one cluster. Without
    a scheme an endpoint uses TLS when ``tls`` (TLS files were given); the port defaults to
    2379."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    endpoints: list[Endpoint] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest = ("https" if tls else "http"), item
        rest = rest.rstrip("/")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise Invalid(f"etcd endpoint {item!r} is not http://HOST:PORT or https://HOST:PORT")
        if not rest.rpartition("]")[2].count(":"):
            rest += ":2379"
        endpoints.append(Endpoint(rest, scheme == "https"))
    if not endpoints:
        raise Invalid("no etcd endpoint given")
    return endpoints


def resolve_prefix(prefix: str) -> str:
    """The etcd key prefix: without a trailing ``/``; a trailing ``*`` becomes a random suffix."""
    if not isinstance(prefix, str):
        raise Invalid(f"etcd prefix must be a str, not {type(prefix).__name__}")
    if prefix.endswith("*"):
        prefix = prefix[:-1] + secrets.token_hex(6)
    if "*" in prefix:
        raise Invalid(f"etcd prefix {prefix!r}: '*' may only end it")
    return prefix.rstrip("/")


def _credentials(cacert: str | None, cert: str | None, key: str | None) -> grpc.ChannelCredentials:
    if (cert is None) != (key is None):
        raise Invalid("etcd client TLS needs both a certificate and its key")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise Invalid(f"cannot read etcd TLS file {path}: {exc.strerror}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(cacert), private_key=read(key), certificate_chain=read(cert)
    )


# -- errors --------------------------------------------------------------------------------------


def _details(exc: grpc.aio.AioRpcError) -> str:
    return exc.details() or str(exc.code())


def _not_sent(exc: grpc.aio.AioRpcError) -> bool:
    details = _details(exc).lower()
    return exc.code() == grpc.StatusCode.UNAVAILABLE and any(s in details for s in _NOT_SENT)


def _retryable(exc: grpc.aio.AioRpcError, mutating: bool) -> bool:
    if _COMPACTED in _details(exc) or _FUTURE in _details(exc):
        return False
    if mutating:
        return _not_sent(exc)
    return exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _error(exc: grpc.aio.AioRpcError, what: str, *, mutating: bool = False) -> KcoreError:
    """The kcore error for a failed etcd call."""
    code, details = exc.code(), _details(exc)
    message = f"store_etcd: {what}: {details}"
    if _COMPACTED in details:
        return Expired(message)
    if _FUTURE in details:
        return Invalid(message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        if mutating and not _not_sent(exc):
            message += " (the write may or may not have taken effect)"
        return TemporaryError(message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if "larger than max" in details or "too large" in details:
            return Invalid(message)
        if "space exceeded" in details:
            return PermanentError(message)
        return TemporaryError(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return Invalid(message)
    return PermanentError(message)


# -- the connection ------------------------------------------------------------------------------


class _Connection:
    """Channels to the endpoints (opened as needed), the one in use, and retries."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        credentials: grpc.ChannelCredentials | None,
        timeout: float,
        retry_timeout: float,
    ) -> None:
        self.endpoints = endpoints
        self.credentials = credentials
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.current = 0
        self.closing = False
        self._channels: dict[int, grpc.aio.Channel] = {}
        self._kv: dict[int, rpc.KVStub] = {}

    def channel(self, index: int) -> grpc.aio.Channel:
        channel = self._channels.get(index)
        if channel is None:
            endpoint = self.endpoints[index]
            if endpoint.secure:
                if self.credentials is None:
                    self.credentials = grpc.ssl_channel_credentials()
                channel = grpc.aio.secure_channel(
                    endpoint.target, self.credentials, options=CHANNEL_OPTIONS
                )
            else:
                channel = grpc.aio.insecure_channel(endpoint.target, options=CHANNEL_OPTIONS)
            self._channels[index] = channel
        return channel

    def kv(self) -> tuple[int, rpc.KVStub]:
        index = self.current
        stub = self._kv.get(index)
        if stub is None:
            stub = self._kv[index] = rpc.KVStub(self.channel(index))
        return index, stub

    def failed(self, index: int) -> None:
        """The endpoint at ``index`` failed a call: move on to the next, unless another
        failure did already."""
        if index == self.current and len(self.endpoints) > 1:
            self.current = (index + 1) % len(self.endpoints)
            log.info(
                "store_etcd: switching endpoint",
                failed=str(self.endpoints[index]),
                now=str(self.endpoints[self.current]),
            )

    async def call(
        self, method: str, request: Any, *, what: str, mutating: bool, timeout: float | None = None
    ) -> Any:
        """Call a KV method, moving between endpoints and retrying as the module says;
        ``timeout`` bounds each attempt (default: the connection's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_timeout
        delay = BACKOFF_MIN
        while True:
            index, stub = self.kv()
            try:
                return await getattr(stub, method)(
                    request, timeout=timeout or self.timeout, metadata=METADATA
                )
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.closing and task is not None and not task.cancelling():
                    # Not our caller's cancellation: close() ended the channel under us.
                    raise PermanentError(f"store_etcd: {what}: the store was closed") from None
                raise
            except grpc.aio.AioRpcError as exc:
                if not _retryable(exc, mutating) or loop.time() + delay > deadline:
                    where = f"{what} at {self.endpoints[index]}"
                    raise _error(exc, where, mutating=mutating) from None
                log.debug(
                    "store_etcd: retrying",
                    what=what,
                    endpoint=str(self.endpoints[index]),
                    error=_details(exc),
                )
                self.failed(index)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, BACKOFF_MAX)

    async def close(self) -> None:
        """Close the channels, letting calls in flight finish for up to a call's timeout;
        those still running then fail with ``PermanentError``."""
        self.closing = True
        channels, self._channels, self._kv = list(self._channels.values()), {}, {}
        for channel in channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=self.timeout)


# -- keys and values -----------------------------------------------------------------------------


def _check_key(key: object, what: str = "key") -> bytes:
    if not isinstance(key, str):
        raise Invalid(f"{what} must be a str, not {type(key).__name__}")
    if not key.startswith("/"):
        raise Invalid(f"{what} {key!r} does not begin with '/' (store_etcd keys must)")
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{what} {key!r} is not valid Unicode text: {exc.reason}") from None


def _check_text(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise Invalid(f"{what} must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{what} {text!r} is not valid Unicode text: {exc.reason}") from None


def _check_value(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise Invalid(f"value must be bytes, not {type(value).__name__}")


def _check_revision(revision: object, what: str, minimum: int) -> int:
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < minimum:
        raise Invalid(f"{what} must be an int of at least {minimum}, got {revision!r}")
    return revision


def _prefix_end(prefix: bytes) -> bytes:
    """The first byte string after every string beginning with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _version(key: bytes, result: int, version: int = 0) -> Any:
    return rpc.Compare(key=key, target=rpc.Compare.VERSION, result=result, version=version)


# -- the store -----------------------------------------------------------------------------------


class EtcdStore:
    """The kcore store on etcd v3 (see the module docstring for the design).

    ``endpoints`` are one cluster's client URLs (a comma-separated string or a list);
    ``cacert``, ``cert`` and ``key`` are PEM files for TLS (the CA that signed the servers,
    and this client's certificate and key). ``prefix`` is the etcd key prefix (a trailing
    ``*`` gives a fresh keyspace per instance). ``compaction_interval`` seconds of history
    are kept by periodic compaction (0: never compact by itself). ``timeout`` bounds each
    call to etcd and ``retry_timeout`` the retries of one store call. A watch holds at most
    ``watch_queue_size`` unread etcd responses (each up to 1000 revisions); then it stops
    reading from etcd until its reader catches up.

    The store connects when first used, to the event loop it is first used on; it must be
    used from that loop only. Beyond the contract: keys must begin with ``/``; ``list`` at a
    future revision raises ``Invalid``; calls after ``close`` raise ``PermanentError``.
    """

    name = "store_etcd"
    capabilities: frozenset[Capability] = frozenset(
        {Capability.LIST_AT_REVISION, Capability.COMPACTION, Capability.DURABLE}
    )

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        prefix: str = DEFAULT_PREFIX,
        cacert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        compaction_interval: float = DEFAULT_COMPACTION_INTERVAL,
        timeout: float = 5.0,
        retry_timeout: float = 15.0,
        watch_queue_size: int = 64,
    ) -> None:
        tls = any(f is not None for f in (cacert, cert, key))
        self.endpoints = parse_endpoints(endpoints, tls=tls)
        self.prefix = resolve_prefix(prefix)
        if compaction_interval < 0:
            raise Invalid("compaction_interval must not be negative")
        if watch_queue_size < 1:
            raise Invalid("watch_queue_size must be at least 1")
        self.compaction_interval = float(compaction_interval)
        self.watch_queue_size = watch_queue_size
        self._credentials = _credentials(cacert, cert, key) if tls else None
        self._timeout = timeout
        self._retry_timeout = retry_timeout
        self._root = self.prefix.encode("utf-8") + b"/"
        self._cut = len(self._root) - 1
        self._conn: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._feeds: set[_WatchFeed] = set()
        self._closed = False

    def __repr__(self) -> str:
        endpoints = ",".join(str(e) for e in self.endpoints)
        return f"EtcdStore({endpoints!r}, prefix={self.prefix!r})"

    @property
    def current_endpoint(self) -> Endpoint:
        """The endpoint calls go to now."""
        return self.endpoints[self._conn.current if self._conn else 0]

    # -- the contract --------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        ekey, value = self._key(key), _check_value(value)
        request = rpc.TxnRequest(
            compare=[_version(ekey, rpc.Compare.EQUAL)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=ekey, value=value))],
        )
        response = await self._call("Txn", request, f"create {key}", mutating=True)
        if not response.succeeded:
            raise AlreadyExists(f"{key} already exists")
        revision = response.header.revision
        return KeyValue(key, value, revision, revision)

    async def get(self, key: str) -> KeyValue:
        ekey = self._key(key)
        response = await self._call("Range", rpc.RangeRequest(key=ekey), f"get {key}")
        if not response.kvs:
            raise NotFound(f"{key} not found")
        return self._kv(response.kvs[0])

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        eprefix = _check_text(prefix, "prefix")
        after = None if start_after is None else _check_text(start_after, "start_after")
        if revision is not None:
            _check_revision(revision, "revision", 1)
        if limit is not None:
            _check_revision(limit, "limit", 0)
        low: bytes | None
        if not eprefix:
            low = self._root
        elif eprefix.startswith(b"/"):
            low = self._root[:-1] + eprefix
        else:
            low = None  # every key begins with "/": nothing can begin with this prefix
        high = _prefix_end(low) if low is not None else b""
        if after is not None and low is not None:
            if after[:1] > b"/":
                low = None
            elif after[:1] == b"/":
                low = max(low, self._root[:-1] + after + b"\0")
                if low >= high:
                    low = None
        if low is None or limit == 0:
            request = rpc.RangeRequest(key=self._root, count_only=True)
        else:
            request = rpc.RangeRequest(key=low, range_end=high, limit=limit or 0)
        what = f"list {prefix}" + ("" if revision is None else f" at revision {revision}")
        if revision is None:
            response = await self._call("Range", request, what, timeout=LIST_TIMEOUT)
            read_at = response.header.revision
        else:
            request.revision = revision
            # etcd refuses the read at revision - 1 exactly when the store has compacted
            # past ``revision`` (see "Compaction, shifted by one").
            check = rpc.RangeRequest(key=self._root, count_only=True, revision=max(revision - 1, 1))
            txn = rpc.TxnRequest(
                success=[rpc.RequestOp(request_range=check), rpc.RequestOp(request_range=request)]
            )
            response = await self._call("Txn", txn, what, timeout=LIST_TIMEOUT)
            response = response.responses[1].response_range
            read_at = revision
        items = [self._kv(kv) for kv in response.kvs] if not request.count_only else []
        more = bool(response.more) if not request.count_only else False
        if limit == 0 and low is not None:
            more = await self._any(low, high, revision)
        return ListResult(items, read_at, more)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        ekey, value = self._key(key), _check_value(value)
        put = rpc.PutRequest(key=ekey, value=value, prev_kv=True)
        response = await self._write(key, ekey, expected_revision, rpc.RequestOp(request_put=put))
        prev = response.responses[0].response_put.prev_kv
        return KeyValue(key, value, response.header.revision, prev.create_revision)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        ekey = self._key(key)
        delete = rpc.DeleteRangeRequest(key=ekey, prev_kv=True)
        op = rpc.RequestOp(request_delete_range=delete)
        response = await self._write(key, ekey, expected_revision, op)
        prev = response.responses[0].response_delete_range.prev_kvs[0]
        return KeyValue(key, prev.value, response.header.revision, prev.create_revision)

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[WatchEvent]:
        eprefix = _check_text(prefix, "prefix")
        _check_revision(after_revision, "after_revision", 0)
        if not eprefix:
            low, high = self._root, _prefix_end(self._root)
        elif eprefix.startswith(b"/"):
            low = self._root[:-1] + eprefix
            high = _prefix_end(low)
        else:
            # Matches no key of this store: watch one etcd key it never writes.
            low, high = self._root[:-1] + b"\0", b""
        return self._watch(low, high, after_revision)

    async def current_revision(self) -> int:
        request = rpc.RangeRequest(key=self._root, count_only=True)
        response = await self._call("Range", request, "read the current revision")
        return response.header.revision

    async def compact(self, revision: int) -> None:
        _check_revision(revision, "revision", 0)
        current = await self.current_revision()
        if revision > current:
            raise Invalid(f"cannot compact at revision {revision}: the store is at {current}")
        if revision <= 1:
            # Nothing is older than etcd's first revision: done, unless compacted past it.
            if not await self._readable_at(1):
                raise Expired(f"store_etcd: cannot compact at {revision}: compacted past it")
            return
        try:
            await self._call(
                "Compact", rpc.CompactionRequest(revision=revision - 1), f"compact at {revision}"
            )
        except Expired:
            # etcd refuses to compact at or below where it already has; at exactly there,
            # this compaction is done already.
            if not await self._readable_at(revision - 1):
                raise

    async def close(self) -> None:
        """End the open watches, stop compacting, close the channels."""
        if self._closed:
            return
        self._closed = True
        tasks = [task for feed in list(self._feeds) if (task := feed.stop()) is not None]
        if self._compactor is not None:
            self._compactor.cancel()
            tasks.append(self._compactor)
        if tasks:
            await asyncio.wait(tasks)
        if self._conn is not None:
            await self._conn.close()

    # -- helpers -------------------------------------------------------------------------------

    def _key(self, key: object) -> bytes:
        return self._root[:-1] + _check_key(key)

    def _kv(self, kv: Any) -> KeyValue:
        return KeyValue(
            kv.key[self._cut :].decode("utf-8"), kv.value, kv.mod_revision, kv.create_revision
        )

    def _connection(self) -> _Connection:
        if self._closed:
            raise PermanentError(f"store_etcd ({self.prefix}) is closed")
        loop = asyncio.get_running_loop()
        if self._conn is None:
            self._loop = loop
            self._conn = _Connection(
                self.endpoints, self._credentials, self._timeout, self._retry_timeout
            )
            if self.compaction_interval > 0:
                self._compactor = loop.create_task(
                    self._compact_periodically(), name="store_etcd compactor"
                )
        elif loop is not self._loop:
            raise PermanentError("store_etcd: a store works on the event loop it was first used on")
        return self._conn

    async def _call(
        self,
        method: str,
        request: Any,
        what: str,
        *,
        mutating: bool = False,
        timeout: float | None = None,
    ) -> Any:
        return await self._connection().call(
            method, request, what=what, mutating=mutating, timeout=timeout
        )

    async def _write(self, key: str, ekey: bytes, expected_revision: int | None, op: Any) -> Any:
        """Run ``op`` on an existing key, compare-and-swap on ``expected_revision``."""
        compare = [_version(ekey, rpc.Compare.GREATER)]
        if expected_revision is not None:
            _check_revision(expected_revision, "expected_revision", 0)
            compare.append(
                rpc.Compare(
                    key=ekey,
                    target=rpc.Compare.MOD,
                    result=rpc.Compare.EQUAL,
                    mod_revision=expected_revision,
                )
            )
        request = rpc.TxnRequest(
            compare=compare,
            success=[op],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=ekey))],
        )
        what = f"{'update' if op.HasField('request_put') else 'delete'} {key}"
        response = await self._call("Txn", request, what, mutating=True)
        if response.succeeded:
            return response
        current = response.responses[0].response_range.kvs
        if not current:
            raise NotFound(f"{key} not found")
        raise Conflict(f"{key} is at revision {current[0].mod_revision}, not {expected_revision}")

    async def _any(self, low: bytes, high: bytes, revision: int | None) -> bool:
        request = rpc.RangeRequest(key=low, range_end=high, count_only=True)
        if revision is not None:
            request.revision = revision
        return (await self._call("Range", request, "count keys")).count > 0

    async def _readable_at(self, revision: int) -> bool:
        request = rpc.RangeRequest(key=self._root, count_only=True, revision=revision)
        try:
            await self._call("Range", request, f"read at revision {revision}")
        except Expired:
            return False
        return True

    async def _compact_periodically(self) -> None:
        clock, seen = 0, 0
        while True:
            await asyncio.sleep(self.compaction_interval)
            try:
                clock, seen = await self._compact_once(clock, seen)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store_etcd: periodic compaction failed", error=str(exc))

    async def _compact_once(self, clock: int, seen: int) -> tuple[int, int]:
        """One round of kube-apiserver's compactor: claim the round by a compare-and-swap
        on ``compact_rev_key``'s version (``clock``); the winner compacts at ``seen``, the
        revision of the previous round. Returns the new clock and revision."""
        request = rpc.TxnRequest(
            compare=[_version(COMPACT_REV_KEY, rpc.Compare.EQUAL, clock)],
            success=[
                rpc.RequestOp(
                    request_put=rpc.PutRequest(key=COMPACT_REV_KEY, value=str(seen).encode())
                )
            ],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=COMPACT_REV_KEY))],
        )
        conn = self._connection()
        response = await conn.call("Txn", request, what="claim a compaction", mutating=True)
        now = response.header.revision
        if not response.succeeded:
            kvs = response.responses[0].response_range.kvs
            return (kvs[0].version if kvs else 0), now
        if seen:
            try:
                await conn.call(
                    "Compact",
                    rpc.CompactionRequest(revision=seen),
                    what=f"compact at {seen}",
                    mutating=False,
                )
                log.info("store_etcd: compacted", revision=seen)
            except Expired:
                pass  # compacted further already
        return clock + 1, now

    # -- watches -------------------------------------------------------------------------------

    async def _watch(self, low: bytes, high: bytes, after: int) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return
        feed = _WatchFeed(self, low, high, after)
        self._feeds.add(feed)
        try:
            feed.start()
            while True:
                item = await feed.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                for event in item:
                    if feed.stopped:
                        return
                    yield event
        finally:
            self._feeds.discard(feed)
            task = feed.stop()
            if task is not None:
                await asyncio.wait([task])


_END = object()


class _Interrupted(Exception):
    """The watch stream broke; open a new one."""


class _WatchFeed:
    """The task that reads one etcd watch stream into a queue, resuming it when it breaks."""

    def __init__(self, store: EtcdStore, low: bytes, high: bytes, after: int) -> None:
        self.store = store
        self.low, self.high = low, high
        self.last = after
        """Every event up to this revision has been received."""
        self.queue: asyncio.Queue[Any] = asyncio.Queue(store.watch_queue_size)
        """Lists of events (one per etcd response), then an error or the end mark."""
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.delay = BACKOFF_MIN

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="store_etcd watch")

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the task and leave only the end mark in the queue."""
        self.stopped = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_END)
        return task

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._stream()
                except _Interrupted as exc:
                    log.info(
                        "store_etcd: watch interrupted, resuming",
                        after=self.last,
                        error=str(exc),
                        retry_in=round(self.delay, 3),
                    )
                await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
                self.delay = min(self.delay * 2, BACKOFF_MAX)
        except KcoreError as exc:
            await self.queue.put(exc)
        except Exception as exc:
            error = PermanentError(f"store_etcd: the watch failed: {exc!r}")
            error.__cause__ = exc
            await self.queue.put(error)

    async def _stream(self) -> None:
        conn = self.store._connection()
        index = conn.current
        call = rpc.WatchStub(conn.channel(index)).Watch(metadata=METADATA)
        create = rpc.WatchCreateRequest(
            key=self.low,
            range_end=self.high,
            # From ``last`` rather than ``last + 1``: see "Compaction, shifted by one".
            start_revision=max(self.last, 1),
            prev_kv=True,
        )
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise _Interrupted("etcd ended the watch stream")
                await self._handle(response)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN,
            ):
                conn.failed(index)
                raise _Interrupted(_details(exc)) from None
            raise _error(exc, "watch") from None
        finally:
            call.cancel()

    async def _handle(self, response: Any) -> None:
        if response.compact_revision:
            raise Expired(
                f"store_etcd: watch from revision {self.last + 1}: history before revision "
                f"{response.compact_revision + 1} has been compacted"
            )
        if response.canceled:
            reason = response.cancel_reason or "no reason given"
            if "no leader" in reason:
                raise _Interrupted(reason)
            raise PermanentError(f"store_etcd: etcd cancelled the watch: {reason}")
        if response.created:
            self.delay = BACKOFF_MIN
        batch: list[WatchEvent] = []
        error: Expired | None = None
        for event in response.events:
            if event.kv.mod_revision > self.last:
                try:
                    batch.append(self._event(event))
                except Expired as exc:
                    error = exc
                    break
        if batch:
            await self.queue.put(batch)
            self.last = batch[-1].revision
        if error is not None:
            raise error

    def _event(self, event: Any) -> WatchEvent:
        store, kv = self.store, event.kv
        has_prev = event.HasField("prev_kv")
        if event.type == rpc.Event.PUT and kv.create_revision == kv.mod_revision:
            return WatchEvent(EventType.ADDED, store._kv(kv), None)
        if not has_prev:
            # etcd reads the previous value at revision - 1: it was compacted away
            # while this watch was behind.
            raise Expired(
                f"store_etcd: the value before revision {kv.mod_revision} of "
                f"{kv.key[store._cut :].decode('utf-8', 'replace')} has been compacted"
            )
        prev = store._kv(event.prev_kv)
        if event.type == rpc.Event.PUT:
            return WatchEvent(EventType.MODIFIED, store._kv(kv), prev)
        gone = KeyValue(prev.key, prev.value, kv.mod_revision, prev.create_revision)
        return WatchEvent(EventType.DELETED, gone, prev)
