"""The store contract (``kcore.store``) on the standard library's ``sqlite3``.

Durability
    The database runs in WAL mode. With ``synchronous="FULL"`` (the default) every commit
    syncs the write-ahead log before the write is acknowledged, so an acknowledged write
    survives ``kill -9`` and a power loss. ``"NORMAL"`` syncs only at checkpoints: an
    acknowledged write survives a crash of the process (the OS still has it) but the last
    writes may be lost when the machine loses power. ``":memory:"`` keeps nothing.

Threads
    All sqlite work runs on one dedicated thread that owns the only connection; the event
    loop never blocks on it. A coroutine puts an operation on the thread's queue and awaits
    a future that the thread resolves with ``loop.call_soon_threadsafe``. The thread takes
    whatever has queued up as one batch and commits consecutive writes of the batch in one
    transaction (group commit: one fsync for many writes). Each write still checks its own
    preconditions against the state left by the writes before it, so compare-and-swap and
    ordering are exactly as if they had committed one by one; a write that fails its check
    changes nothing. A read in a batch first commits the writes queued before it, so reads
    only ever see committed state. The database file is locked exclusively: one store per
    file, which is what makes an in-memory revision counter safe.

Watches
    There is no polling. After a batch commits, the thread hands the batch's events, in
    commit order, to each event loop that has watchers, with one ``call_soon_threadsafe``
    per loop and batch (the callbacks run in the order they were scheduled, so events keep
    revision order). The same callback resolves the batch's futures after it has fanned the
    events out: when a write's ``await`` returns, the event is already queued for every
    watcher on the caller's loop. A new watch registers on the writer thread and reads the
    history in the same step, so every later commit reaches it live and every earlier one
    is in the history it replays: nothing is missed; live events at or below the revision
    the replay reached are skipped, so nothing repeats. Each watcher has a bounded queue; a
    watcher whose queue overflows ends with ``Expired`` while writers and other watchers
    carry on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog

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

log = structlog.get_logger("kcore.plugins.store_sqlite")

SCHEMA_VERSION = 1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS history (
        revision INTEGER PRIMARY KEY,       -- the global revision of this write
        key TEXT NOT NULL,
        value BLOB,                         -- NULL for a delete (a tombstone)
        create_revision INTEGER NOT NULL,   -- the create that started this life of the key
        prev_revision INTEGER               -- the key's previous row, NULL for a create
    )""",
    "CREATE INDEX IF NOT EXISTS history_by_key ON history (key, revision)",
    # The live keys, each pointing at its latest row in history (which holds the value).
    """CREATE TABLE IF NOT EXISTS current (
        key TEXT PRIMARY KEY,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # name = 'compacted': the revision of the last compaction.
    """CREATE TABLE IF NOT EXISTS meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
"""The tables, one statement each."""

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")

MAX_BATCH = 512
"""Operations the writer thread takes from its queue at most per batch."""

REPLAY_PAGE = 1000
"""History rows a watch replays per trip to the writer thread."""

OPEN_TIMEOUT = 2.0
"""Seconds to wait at open for a database file that another store holds."""

_GET = """
SELECT h.value, h.revision, h.create_revision
FROM current AS c JOIN history AS h ON h.revision = c.revision
WHERE c.key = ?
"""

_INSERT = (
    "INSERT INTO history (revision, key, value, create_revision, prev_revision)"
    " VALUES (?, ?, ?, ?, ?)"
)

_REPLAY = """
SELECT h.revision, h.key, h.value, h.create_revision, p.value, p.revision, p.create_revision
FROM history AS h LEFT JOIN history AS p ON p.revision = h.prev_revision
WHERE h.revision > ? AND h.revision <= ? {keys}
ORDER BY h.revision
LIMIT ?
"""

# Forget, below R, every row that a newer row below R supersedes, and every tombstone.
# What stays is all a read at R or later needs: the latest row of each key at R, and the
# row before each write at R or later (the ``prev`` of its watch event).
_COMPACT = """
DELETE FROM history
WHERE revision < :r AND (
    value IS NULL
    OR EXISTS (
        SELECT 1 FROM history AS newer
        WHERE newer.key = history.key AND newer.revision > history.revision
          AND newer.revision < :r
    )
)
"""


def prefix_end(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (``None``
    when there is none, as for ``""``), so that ``prefix <= key < prefix_end(prefix)``
    matches exactly the keys starting with ``prefix``. sqlite compares text bytewise in
    UTF-8, which orders like code points, as Python does."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                code = 0xE000
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _key_range(column: str, prefix: str, start_after: str | None) -> tuple[str, list[str]]:
    """SQL conditions (each starting with ``AND``) and parameters for keys under
    ``prefix`` after ``start_after``."""
    sql: list[str] = []
    params: list[str] = []
    if start_after is not None and start_after >= prefix:
        sql.append(f"AND {column} > ?")
        params.append(start_after)
    elif prefix:
        sql.append(f"AND {column} >= ?")
        params.append(prefix)
    end = prefix_end(prefix)
    if end is not None:
        sql.append(f"AND {column} < ?")
        params.append(end)
    return " ".join(sql), params


def _check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str):
        raise Invalid(f"{what} must be a str, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"{what} {key!r} is not valid Unicode text: {exc.reason}") from None
    return key


def _check_value(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise Invalid(f"value must be bytes, not {type(value).__name__}")


def _storage_error(exc: BaseException) -> KcoreError:
    """What a caller sees for a failure on the writer thread: always a ``KcoreError``,
    chaining the original as its ``__cause__``."""
    if isinstance(exc, KcoreError):
        return exc
    if isinstance(exc, sqlite3.OperationalError):
        # Disk full, I/O error, database locked by someone else: may pass.
        err: KcoreError = TemporaryError(f"store_sqlite: {exc}")
    else:
        # A damaged file (DatabaseError), or a bug on the writer thread.
        err = PermanentError(f"store_sqlite: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


# -- the database: synchronous, used by the writer thread only ----------------------------------


class Database:
    """The sqlite side of the store. Not thread-safe: only the writer thread uses it.

    Writes assume an open transaction (the caller commits); each checks its preconditions
    before it changes anything, so one that raises a :class:`KcoreError` changed nothing.
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self.revision = 0
        """The revision of the last write (committed, or in the open transaction)."""
        self.compacted = 0
        conn = sqlite3.connect(path, isolation_level=None, timeout=OPEN_TIMEOUT)
        try:
            if path != ":memory:":
                # One store per file: the in-memory revision counter relies on it.
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise PermanentError(f"store_sqlite: {path}: cannot use WAL mode ({mode})")
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA cache_size = -32768")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise PermanentError(
                    f"store_sqlite: {path} has schema version {version}; "
                    f"this kcore knows up to {SCHEMA_VERSION}"
                )
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
            row = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
            self.compacted = row[0] if row else 0
            top = conn.execute("SELECT max(revision) FROM history").fetchone()[0] or 0
            self.revision = max(top, self.compacted)
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc):
                raise PermanentError(
                    f"{path} is in use by another store (one store per database file): {exc}"
                ) from exc
            raise
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    # -- transactions ------------------------------------------------------------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    # -- writes ------------------------------------------------------------------------------

    def create(self, key: str, value: bytes) -> tuple[KeyValue, WatchEvent]:
        rev = self.revision + 1
        cur = self.conn.execute(
            "INSERT INTO current (key, revision) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            (key, rev),
        )
        if cur.rowcount != 1:
            raise AlreadyExists(f"{key} already exists")
        self.conn.execute(_INSERT, (rev, key, value, rev, None))
        self.revision = rev
        kv = KeyValue(key, value, rev, rev)
        return kv, WatchEvent(EventType.ADDED, kv, None)

    def _current(self, key: str, expected_revision: int | None) -> KeyValue:
        row = self.conn.execute(_GET, (key,)).fetchone()
        if row is None:
            raise NotFound(f"{key} not found")
        kv = KeyValue(key, row[0], row[1], row[2])
        if expected_revision is not None and expected_revision != kv.revision:
            raise Conflict(
                f"{key} is at revision {kv.revision}, not the expected {expected_revision}"
            )
        return kv

    def update(
        self, key: str, value: bytes, expected_revision: int | None
    ) -> tuple[KeyValue, WatchEvent]:
        prev = self._current(key, expected_revision)
        rev = self.revision + 1
        self.conn.execute(_INSERT, (rev, key, value, prev.create_revision, prev.revision))
        self.conn.execute("UPDATE current SET revision = ? WHERE key = ?", (rev, key))
        self.revision = rev
        kv = KeyValue(key, value, rev, prev.create_revision)
        return kv, WatchEvent(EventType.MODIFIED, kv, prev)

    def delete(self, key: str, expected_revision: int | None) -> tuple[KeyValue, WatchEvent]:
        prev = self._current(key, expected_revision)
        rev = self.revision + 1
        self.conn.execute(_INSERT, (rev, key, None, prev.create_revision, prev.revision))
        self.conn.execute("DELETE FROM current WHERE key = ?", (key,))
        self.revision = rev
        kv = KeyValue(key, prev.value, rev, prev.create_revision)
        return kv, WatchEvent(EventType.DELETED, kv, prev)

    def compact(self, revision: int) -> tuple[None, None]:
        if revision > self.revision:
            raise Invalid(f"cannot compact at revision {revision}: the store is at {self.revision}")
        if revision < self.compacted:
            raise Expired(
                f"cannot compact at revision {revision}: already compacted at {self.compacted}"
            )
        if revision > self.compacted:
            self.conn.execute(_COMPACT, {"r": revision})
            self.conn.execute(
                "INSERT INTO meta (name, value) VALUES ('compacted', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (revision,),
            )
            self.compacted = revision
        return None, None

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> KeyValue:
        return self._current(key, None)

    def current_revision(self) -> int:
        return self.revision

    def list(
        self, prefix: str, revision: int | None, limit: int | None, start_after: str | None
    ) -> ListResult:
        if revision is not None and revision != self.revision:
            if revision > self.revision:
                raise Invalid(
                    f"revision {revision} is in the future: the store is at {self.revision}"
                )
            if revision < self.compacted:
                raise Expired(
                    f"revision {revision} has been compacted (compacted at {self.compacted})"
                )
        else:
            revision = None
        if limit is not None and limit < 0:
            raise Invalid(f"limit must not be negative, got {limit}")
        fetch = -1 if limit is None else limit + 1
        if revision is None:
            keys, params = _key_range("c.key", prefix, start_after)
            sql = f"""
                SELECT c.key, h.value, c.revision, h.create_revision
                FROM current AS c JOIN history AS h ON h.revision = c.revision
                WHERE 1 {keys}
                ORDER BY c.key LIMIT ?"""
            rows = self.conn.execute(sql, (*params, fetch)).fetchall()
        else:
            # Each key's latest row at the revision, found walking the (key, revision)
            # index in key order: no sort, and LIMIT stops the walk early.
            keys, params = _key_range("h.key", prefix, start_after)
            sql = f"""
                SELECT h.key, h.value, h.revision, h.create_revision
                FROM history AS h
                WHERE h.revision <= ? {keys}
                  AND NOT EXISTS (
                      SELECT 1 FROM history AS newer
                      WHERE newer.key = h.key AND newer.revision > h.revision
                        AND newer.revision <= ?
                  )
                  AND h.value IS NOT NULL
                ORDER BY h.key LIMIT ?"""
            rows = self.conn.execute(sql, (revision, *params, revision, fetch)).fetchall()
        more = limit is not None and len(rows) > limit
        if more:
            del rows[limit:]
        items = [KeyValue(key, value, rev, create) for key, value, rev, create in rows]
        return ListResult(items, self.revision if revision is None else revision, more)

    def replay(self, prefix: str, after: int, upto: int) -> tuple[list[WatchEvent], bool]:
        """The events under ``prefix`` with ``after < revision <= upto``, at most a page of
        them; and whether there may be more."""
        if after < self.compacted - 1:
            raise Expired(
                f"revision {after + 1} has been compacted (compacted at {self.compacted})"
            )
        if after >= upto:
            return [], False
        keys, params = _key_range("h.key", prefix, None)
        rows = self.conn.execute(
            _REPLAY.format(keys=keys), (after, upto, *params, REPLAY_PAGE)
        ).fetchall()
        events = []
        for rev, key, value, create, prev_value, prev_rev, prev_create in rows:
            prev = None if prev_rev is None else KeyValue(key, prev_value, prev_rev, prev_create)
            if value is None:
                if prev is None:
                    raise Expired(f"the history of {key} before revision {rev} is gone")
                events.append(
                    WatchEvent(EventType.DELETED, KeyValue(key, prev.value, rev, create), prev)
                )
            else:
                kind = EventType.ADDED if prev is None else EventType.MODIFIED
                events.append(WatchEvent(kind, KeyValue(key, value, rev, create), prev))
        return events, len(rows) == REPLAY_PAGE


# -- the async side ----------------------------------------------------------------------------


class _Op:
    """One call queued for the writer thread."""

    __slots__ = ("args", "fn", "future", "loop", "write")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        write: bool,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.write = write
        self.loop = loop
        self.future = future


_CLOSE = object()
"""Queued by ``close()``: the thread finishes what is queued before it, then stops."""

_WAKE = object()
"""Put on a watcher's queue to wake its reader after the watcher ended."""


class _Watcher:
    """One open watch: its filter, its loop and its bounded queue. The queue and ``end``
    belong to the watcher's loop; the writer thread reads ``done`` and sets ``upto`` only
    before it registers the watcher."""

    def __init__(self, prefix: str, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.prefix = prefix
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size)
        self.upto = 0
        """Events at or below this revision come from the replay, not from live fan-out."""
        self.done = False
        self.error: BaseException | None = None

    def offer(self, events: Sequence[WatchEvent]) -> None:
        if self.done:
            return
        for event in events:
            if event.kv.revision <= self.upto or not event.kv.key.startswith(self.prefix):
                continue
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.end(
                    Expired(
                        f"watcher on {self.prefix!r} fell too far behind: more than "
                        f"{self.queue.maxsize} events unread at revision {event.kv.revision}"
                    )
                )
                log.warning("watcher fell behind", prefix=self.prefix, revision=event.kv.revision)
                return

    def end(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.error = error
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_WAKE)


def _deliver(
    events: Sequence[WatchEvent],
    watchers: Sequence[_Watcher],
    results: Sequence[tuple[asyncio.Future[Any], Any, BaseException | None]],
) -> None:
    """Runs on a loop: fan a batch's events out, then resolve the batch's futures."""
    for watcher in watchers:
        watcher.offer(events)
    for future, result, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _end_watchers(watchers: Sequence[_Watcher], error: BaseException | None) -> None:
    for watcher in watchers:
        watcher.end(error)


class _Outbox:
    """What a batch sends back to the loops, gathered so that each loop gets one callback."""

    def __init__(self) -> None:
        self.events: list[WatchEvent] = []
        self.results: dict[asyncio.AbstractEventLoop, list[Any]] = {}

    def resolve(self, op: _Op, result: Any, error: BaseException | None = None) -> None:
        """Queue ``op``'s answer. The first answer queued for an op wins (``_deliver``
        skips a future that is done), so a batch that fails can answer every op again."""
        if op.loop is not None and op.future is not None:
            self.results.setdefault(op.loop, []).append((op.future, result, error))


class SqliteStore:
    """The embedded store: see the module docstring for durability, threads and ordering.

    ``path`` is a database file (created if missing; its directory must exist) or
    ``":memory:"``. ``synchronous`` is sqlite's ``PRAGMA synchronous``: ``"FULL"`` makes an
    acknowledged write survive power loss, ``"NORMAL"`` only a crash of the process.
    ``watch_queue_size`` bounds how many events a watcher may leave unread before its
    watch ends with ``Expired``.

    The store may be made outside an event loop; every call works from whichever loop
    awaits it. Call :meth:`close` when done: it stops the writer thread.

    Beyond the contract: ``list`` at a revision above the current one raises ``Invalid``
    (etcd's "future revision"); a call cancelled by its caller may still take effect once
    it is queued; calls after ``close`` raise ``PermanentError``.
    """

    name = "store_sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        watch_queue_size: int = 10000,
    ) -> None:
        self.path = os.fspath(path)
        mode = str(synchronous).upper()
        if mode not in SYNCHRONOUS_MODES:
            raise Invalid(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if watch_queue_size < 1:
            raise Invalid("watch_queue_size must be at least 1")
        self.synchronous = mode
        self.watch_queue_size = watch_queue_size
        caps = {Capability.LIST_AT_REVISION, Capability.COMPACTION}
        if self.path != ":memory:":
            caps.add(Capability.DURABLE)
        self.capabilities: frozenset[Capability] = frozenset(caps)

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        """Guards ``_stopped`` together with queueing, so nothing is queued after the end."""
        self._stopped = False
        self._failure: BaseException | None = None
        self._watchers: list[_Watcher] = []
        self._watchers_lock = threading.Lock()
        self._finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._db: Database | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"store_sqlite {self.path}", daemon=True
        )
        self._thread.start()

    @property
    def watch_backlog(self) -> int:
        """The store contract's ``watch_backlog``: events a watch may leave unread before it
        ends with ``Expired`` (``watch_queue_size``)."""
        return self.watch_queue_size

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r}, synchronous={self.synchronous!r})"

    # -- the contract --------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        key, value = _check_key(key), _check_value(value)
        return await self._call(Database.create, (key, value), write=True)

    async def get(self, key: str) -> KeyValue:
        return await self._call(Database.get, (_check_key(key),))

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        _check_key(prefix, "prefix")
        if start_after is not None:
            _check_key(start_after, "start_after")
        return await self._call(Database.list, (prefix, revision, limit, start_after))

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        key, value = _check_key(key), _check_value(value)
        return await self._call(Database.update, (key, value, expected_revision), write=True)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        return await self._call(Database.delete, (_check_key(key), expected_revision), write=True)

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[WatchEvent]:
        _check_key(prefix, "prefix")
        return self._watch(prefix, after_revision)

    async def current_revision(self) -> int:
        return await self._call(Database.current_revision, ())

    async def compact(self, revision: int) -> None:
        await self._call(Database.compact, (revision,), write=True)

    async def close(self) -> None:
        """Finish the queued calls, end the open watches, close the database."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._queue.put(_CLOSE)
        await asyncio.wrap_future(self._finished)

    # -- calls to the writer thread --------------------------------------------------------------

    async def _call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], write: bool = False
    ) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self._stopped:
                raise self._stopped_error()
            self._queue.put(_Op(fn, args, write, loop, future))
        return await future

    def _stopped_error(self) -> KcoreError:
        if self._failure is not None:
            err = PermanentError(f"store_sqlite ({self.path}) has stopped: {self._failure}")
            err.__cause__ = self._failure
            return err
        return PermanentError(f"store_sqlite ({self.path}) is closed")

    # -- watches -----------------------------------------------------------------------------

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        watcher = _Watcher(prefix, asyncio.get_running_loop(), self.watch_queue_size)
        try:
            try:
                events, more = await self._call(self._register, (watcher, after_revision))
            except PermanentError:
                if self._stopped and self._failure is None:
                    return  # closed: a watch of a closed store just ends
                raise
            cursor = after_revision
            while True:
                for event in events:
                    if watcher.done:
                        break
                    yield event
                    cursor = event.kv.revision
                if not more or watcher.done:
                    break
                try:
                    events, more = await self._call(Database.replay, (prefix, cursor, watcher.upto))
                except PermanentError:
                    if self._stopped and self._failure is None:
                        return
                    raise
            while not watcher.done:
                event = await watcher.queue.get()
                if event is not _WAKE and not watcher.done:
                    yield event
            if watcher.error is not None:
                raise watcher.error
        finally:
            watcher.done = True
            with self._watchers_lock:
                with contextlib.suppress(ValueError):
                    self._watchers.remove(watcher)

    def _register(
        self, db: Database, watcher: _Watcher, after_revision: int
    ) -> tuple[list[WatchEvent], bool]:
        """On the writer thread: subscribe ``watcher`` to live events and read the first
        page of its history, in one step (no commit can fall in between)."""
        if after_revision < db.compacted - 1:
            raise Expired(
                f"revision {after_revision + 1} has been compacted (compacted at {db.compacted})"
            )
        watcher.upto = max(db.revision, after_revision)
        with self._watchers_lock:
            self._watchers.append(watcher)
        return db.replay(watcher.prefix, after_revision, watcher.upto)

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._db = Database(self.path, self.synchronous)
        except BaseException as exc:
            log.error("store_sqlite: cannot open the database", path=self.path, error=str(exc))
            self._stop(exc)
            return
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._process(self._db, batch):
                    break
        except BaseException as exc:
            # The batch's calls have their answers (_process); the rest fail in _stop.
            log.exception("store_sqlite writer thread failed", path=self.path)
            self._stop(exc)
        else:
            self._stop(None)

    def _process(self, db: Database, batch: list[Any]) -> bool:
        """Run one batch; False when it held the close request. If the batch fails
        unexpectedly (a bug, not a failed write), every call of it not answered yet gets
        the error and the failure goes on up: the thread stops."""
        outbox = _Outbox()
        try:
            return self._process_items(db, batch, outbox)
        except BaseException as exc:
            error = _storage_error(exc)
            for item in batch:
                if isinstance(item, _Op):
                    outbox.resolve(item, None, error)
            raise
        finally:
            self._send(outbox)

    def _process_items(self, db: Database, batch: list[Any], outbox: _Outbox) -> bool:
        writes: list[_Op] = []
        for item in batch:
            if item is _CLOSE:
                self._commit(db, writes, outbox)
                return False
            op: _Op = item
            if op.write:
                writes.append(op)
                continue
            self._commit(db, writes, outbox)
            writes = []
            try:
                result = op.fn(db, *op.args)
            except Exception as exc:
                outbox.resolve(op, None, _storage_error(exc))
            else:
                outbox.resolve(op, result)
        self._commit(db, writes, outbox)
        return True

    def _commit(self, db: Database, writes: list[_Op], outbox: _Outbox) -> None:
        """Apply ``writes`` in one transaction. If the transaction itself fails, run them
        again one transaction each, so that one bad write does not fail the others."""
        if not writes:
            return
        saved = db.revision, db.compacted
        done: list[tuple[_Op, Any, BaseException | None, WatchEvent | None]] = []
        try:
            db.begin()
            for op in writes:
                try:
                    result, event = op.fn(db, *op.args)
                except KcoreError as exc:
                    done.append((op, None, exc, None))
                else:
                    done.append((op, result, None, event))
            db.commit()
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                db.rollback()
            db.revision, db.compacted = saved
            if len(writes) > 1:
                for op in writes:
                    self._commit(db, [op], outbox)
            else:
                outbox.resolve(writes[0], None, _storage_error(exc))
            return
        for op, result, error, event in done:
            if event is not None:
                outbox.events.append(event)
            outbox.resolve(op, result, error)

    def _send(self, outbox: _Outbox) -> None:
        """Schedule, per loop, the fan-out of the events and then the futures' results."""
        watchers: list[_Watcher] = []
        if outbox.events:
            with self._watchers_lock:
                self._watchers = [w for w in self._watchers if not w.done]
                watchers = list(self._watchers)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Watcher]] = {}
        for watcher in watchers:
            by_loop.setdefault(watcher.loop, []).append(watcher)
        for loop in by_loop.keys() | outbox.results.keys():
            try:
                loop.call_soon_threadsafe(
                    _deliver, outbox.events, by_loop.get(loop, ()), outbox.results.get(loop, ())
                )
            except RuntimeError:
                # The loop is closed: nobody is waiting there any more.
                for watcher in by_loop.get(loop, ()):
                    watcher.done = True

    def _stop(self, failure: BaseException | None) -> None:
        """End of the thread: fail what is still queued, end the watches, close."""
        with self._lock:
            self._stopped = True
            if failure is not None:
                self._failure = failure
            pending = []
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        outbox = _Outbox()
        for op in pending:
            if isinstance(op, _Op):
                outbox.resolve(op, None, self._stopped_error())
        self._send(outbox)
        with self._watchers_lock:
            watchers, self._watchers = self._watchers, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Watcher]] = {}
        for watcher in watchers:
            by_loop.setdefault(watcher.loop, []).append(watcher)
        error = None if failure is None else self._stopped_error()
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_end_watchers, group, error)
        if self._db is not None:
            try:
                self._db.close()
            except Exception as exc:
                log.warning("store_sqlite: closing the database failed", error=str(exc))
        self._finished.set_result(None)
