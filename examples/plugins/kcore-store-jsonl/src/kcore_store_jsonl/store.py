"""A kcore store on one append-only file of JSON lines.

Every successful write appends one line and is then applied in memory, so the file is the
store's history and the memory a cache of it::

    {"r": 7, "k": "/registry/pods/default/web", "v": "<base64>", "c": 5}    a put
    {"r": 8, "k": "/registry/pods/default/web", "d": true}                  a delete

``r`` is the write's revision, ``c`` the revision that created the key's current life (a
put with ``c == r`` is a create). Opening the store replays the file; a torn last line (the
process died in the middle of a write) is cut off, as that write was never acknowledged.

``compact(R)`` forgets history older than R and rewrites the file to what is still needed:
a first line ``{"compacted": R, "revision": N}``, the keys as of revision R - 1, then
every write from R on. The rewrite goes to a new file that replaces the old one in one
rename, so a crash leaves one or the other.

Blocking file work runs in a thread (``asyncio.to_thread``); one ``asyncio.Lock`` orders
the writes, which makes compare-and-swap a plain comparison.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kcore import (
    AlreadyExists,
    Capability,
    Conflict,
    EventType,
    Expired,
    Invalid,
    KeyValue,
    ListResult,
    NotFound,
    PermanentError,
    TemporaryError,
    WatchEvent,
)

WATCH_BACKLOG = 10_000
"""Events a watcher may fall behind before its watch ends with ``Expired``."""


class JsonlStore:
    """The store; make one with ``await JsonlStore.open(path)``."""

    name = "store_jsonl"

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        caps = {Capability.LIST_AT_REVISION, Capability.COMPACTION}
        if fsync:
            caps.add(Capability.DURABLE)  # an acknowledged write is on disk
        self.capabilities = frozenset(caps)
        self._revision = 0
        self._compacted = 0
        self._base: dict[str, KeyValue] = {}
        """The keys as of revision ``_compacted - 1``: where list-at-revision starts."""
        self._log: list[WatchEvent] = []
        """Every write from revision ``_compacted`` on."""
        self._current: dict[str, KeyValue] = {}
        self._watchers: set[asyncio.Queue[WatchEvent | BaseException | None]] = set()
        self._lock = asyncio.Lock()
        self._file: Any = None
        self._lockfile: Any = None
        """``<path>.lock``, flocked while the store is open: one store per file."""
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, fsync: bool = True) -> JsonlStore:
        store = cls(Path(path), fsync=fsync)
        try:
            await asyncio.to_thread(store._load)
        except BaseException as exc:
            await asyncio.to_thread(store._release)
            if isinstance(exc, OSError):
                raise PermanentError(
                    f"{store.path}: cannot open the store: {exc.strerror}"
                ) from exc
            raise
        return store

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue:
        self._check_open()
        try:
            return self._current[key]
        except KeyError:
            raise NotFound(key) from None

    async def current_revision(self) -> int:
        self._check_open()
        return self._revision

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        self._check_open()
        _check_key(prefix)
        if start_after is not None:
            _check_key(start_after)
        if limit is not None and limit < 0:
            raise Invalid(f"limit must not be negative, got {limit}")
        if revision is not None and revision > self._revision:
            raise Invalid(f"revision {revision} is in the future: the store is at {self._revision}")
        if revision is None or revision == self._revision:
            at, state = self._revision, self._current
        elif revision < self._compacted:
            raise Expired(f"revision {revision} is compacted (compacted at {self._compacted})")
        else:
            at, state = revision, self._state_at(revision)
        items = sorted((kv for k, kv in state.items() if k.startswith(prefix)), key=_by_key)
        if start_after is not None:
            items = [kv for kv in items if kv.key > start_after]
        more = limit is not None and len(items) > limit
        return ListResult(items[:limit] if limit is not None else items, at, more)

    def _state_at(self, revision: int) -> dict[str, KeyValue]:
        state = dict(self._base)
        for event in self._log:
            if event.revision > revision:
                break
            _apply(state, event)
        return state

    # -- writes ----------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KeyValue:
        key, value = _check_key(key), _check_value(value)
        async with self._lock:
            self._check_open()
            if key in self._current:
                raise AlreadyExists(key)
            rev = self._revision + 1
            kv = KeyValue(key, value, rev, rev)
            await self._write(WatchEvent(EventType.ADDED, kv, None))
            return kv

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        value = _check_value(value)
        async with self._lock:
            prev = self._existing(key, expected_revision)
            kv = KeyValue(key, value, self._revision + 1, prev.create_revision)
            await self._write(WatchEvent(EventType.MODIFIED, kv, prev))
            return kv

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        async with self._lock:
            prev = self._existing(key, expected_revision)
            kv = KeyValue(key, prev.value, self._revision + 1, prev.create_revision)
            await self._write(WatchEvent(EventType.DELETED, kv, prev))
            return kv

    def _existing(self, key: str, expected_revision: int | None) -> KeyValue:
        self._check_open()
        current = self._current.get(key)
        if current is None:
            raise NotFound(key)
        if expected_revision is not None and expected_revision != current.revision:
            raise Conflict(f"{key}: revision is {current.revision}, not {expected_revision}")
        return current

    async def _write(self, event: WatchEvent) -> None:
        """Append ``event`` to the file, then make it visible: readers and watchers never
        see a write that is not on disk."""
        await asyncio.to_thread(self._append, _record(event))
        self._commit(event)

    def _commit(self, event: WatchEvent) -> None:
        self._revision = event.revision
        _apply(self._current, event)
        self._log.append(event)
        for queue in list(self._watchers):
            if queue.qsize() >= WATCH_BACKLOG:
                self._watchers.discard(queue)
                queue.put_nowait(Expired("the watcher fell too far behind"))
            else:
                queue.put_nowait(event)

    # -- watch -----------------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[WatchEvent]:
        return self._watch(_check_key(prefix), after_revision)

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return
        if after_revision < self._compacted - 1:
            raise Expired(f"revision {after_revision + 1} is compacted (at {self._compacted})")
        # Take the backlog and subscribe with no await in between: nothing falls in a gap.
        backlog = [e for e in self._log if e.revision > after_revision]
        queue: asyncio.Queue[WatchEvent | BaseException | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            for event in backlog:
                if event.kv.key.startswith(prefix):
                    yield event
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if item.kv.key.startswith(prefix):
                    yield item
        finally:
            self._watchers.discard(queue)

    # -- compaction and closing --------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        async with self._lock:
            self._check_open()
            if revision > self._revision:
                raise Invalid(f"cannot compact at {revision}: the store is at {self._revision}")
            if revision < self._compacted:
                raise Expired(f"already compacted at {self._compacted}")
            base = self._state_at(revision - 1)
            log = [e for e in self._log if e.revision >= revision]
            await asyncio.to_thread(self._rewrite, revision, base, log)
            self._compacted, self._base, self._log = revision, base, log

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            for queue in self._watchers:
                queue.put_nowait(None)
            self._watchers.clear()
            await asyncio.to_thread(self._release)

    def _check_open(self) -> None:
        if self._closed:
            raise PermanentError(f"{self.name}: the store is closed")

    # -- the file (in a thread) --------------------------------------------------------------------

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = self.path.with_name(self.path.name + ".lock").open("ab")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PermanentError(f"{self.path} is in use by another store") from None
        data = self.path.read_bytes() if self.path.exists() else b""
        good, number = 0, 0  # bytes of whole, readable lines; lines read
        while good < len(data):
            end = data.find(b"\n", good)
            number += 1
            try:
                if end < 0:
                    raise ValueError("no newline at the end")
                self._replay(json.loads(data[good:end]))
            except (ValueError, KeyError, TypeError) as exc:
                if 0 <= end < len(data) - 1:  # not the last line: real damage
                    raise PermanentError(f"{self.path}:{number}: unreadable: {exc}") from None
                break  # a torn last write: it was never acknowledged
            good = end + 1
        if good < len(data):
            os.truncate(self.path, good)
        self._file = self.path.open("ab", buffering=0)

    def _release(self) -> None:
        """Close the file, then give up the lock."""
        for file in (self._file, self._lockfile):
            if file is not None:
                file.close()

    def _replay(self, record: dict[str, Any]) -> None:
        if "compacted" in record:
            self._compacted, self._revision = int(record["compacted"]), int(record["revision"])
            return
        rev, key = int(record["r"]), str(record["k"])
        if "v" in record:
            kv = KeyValue(key, base64.b64decode(record["v"]), rev, int(record["c"]))
            prev = self._current.get(key)
            event = WatchEvent(EventType.ADDED if prev is None else EventType.MODIFIED, kv, prev)
        else:
            prev = self._current[key]
            kv = KeyValue(key, prev.value, rev, prev.create_revision)
            event = WatchEvent(EventType.DELETED, kv, prev)
        if rev < self._compacted:  # the compacted file's base: state, not history
            _apply(self._base, event)
        else:
            self._log.append(event)
        _apply(self._current, event)
        self._revision = max(self._revision, rev)

    def _append(self, line: bytes) -> None:
        """Append ``line`` whole, or leave the file as it was and raise ``TemporaryError``
        (a full disk, say: the write may pass later)."""
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise TemporaryError(f"{self.path}: cannot append: {exc.strerror}") from exc

    def _rewrite(self, compacted: int, base: dict[str, KeyValue], log: list[WatchEvent]) -> None:
        tmp = self.path.with_name(self.path.name + ".compacting")
        with tmp.open("wb") as fh:
            header = {"compacted": compacted, "revision": self._revision}
            fh.write(json.dumps(header).encode() + b"\n")
            for kv in sorted(base.values(), key=lambda kv: kv.revision):
                fh.write(_record(WatchEvent(EventType.ADDED, kv, None)))
            for event in log:
                fh.write(_record(event))
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        if self.fsync:
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self._file = self.path.open("ab", buffering=0)


def _record(event: WatchEvent) -> bytes:
    kv = event.kv
    if event.type is EventType.DELETED:
        record: dict[str, Any] = {"r": kv.revision, "k": kv.key, "d": True}
    else:
        value = base64.b64encode(kv.value).decode()
        record = {"r": kv.revision, "k": kv.key, "v": value, "c": kv.create_revision}
    return json.dumps(record).encode() + b"\n"


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise Invalid(f"a key must be a str, not {type(key).__name__}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Invalid(f"key {key!r} is not valid Unicode text: {exc.reason}") from None
    return key


def _check_value(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise Invalid(f"a value must be bytes, not {type(value).__name__}")
    return bytes(value)


def _apply(state: dict[str, KeyValue], event: WatchEvent) -> None:
    if event.type is EventType.DELETED:
        state.pop(event.kv.key, None)
    else:
        state[event.kv.key] = event.kv


def _by_key(kv: KeyValue) -> str:
    return kv.key
