"""Stores for testing the store conformance suite itself.

:class:`MemoryStore` is a small, correct, in-memory reference of the contract in
``kcore.store``. Every other class here breaks exactly one promise of that contract, so
that ``test_suite_catches_broken_stores.py`` can show the suite notices: a suite that
passes a broken store proves nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import ClassVar

from kcore.errors import AlreadyExists, Conflict, Expired, Invalid, NotFound, PermanentError
from kcore.store import Capability, EventType, KeyValue, ListResult, WatchEvent


class MemoryStore:
    """The reference: every write appends to one event log; reads replay it."""

    name = "memory"
    capabilities = frozenset({Capability.LIST_AT_REVISION, Capability.COMPACTION})

    def __init__(self) -> None:
        self._revision = 0
        self._compacted = 0
        self._current: dict[str, KeyValue] = {}
        self._log: list[WatchEvent] = []
        self._watchers: set[asyncio.Queue[WatchEvent | None]] = set()
        self._closed = False

    # -- writes ------------------------------------------------------------------------------

    def _commit(self, type_: EventType, kv: KeyValue, prev: KeyValue | None) -> None:
        self._revision = kv.revision
        if type_ is EventType.DELETED:
            del self._current[kv.key]
        else:
            self._current[kv.key] = kv
        event = WatchEvent(type_, kv, prev)
        self._log.append(event)
        for queue in self._watchers:
            queue.put_nowait(event)

    def _open(self) -> None:
        if self._closed:
            raise PermanentError(f"{self.name}: closed")

    def _check(self, key: str, expected_revision: int | None) -> KeyValue:
        self._open()
        current = self._current.get(key)
        if current is None:
            raise NotFound(key)
        if expected_revision is not None and expected_revision != current.revision:
            raise Conflict(f"{key}: revision is {current.revision}, not {expected_revision}")
        return current

    async def create(self, key: str, value: bytes) -> KeyValue:
        self._open()
        _check_types(key, value)
        if key in self._current:
            raise AlreadyExists(key)
        rev = self._revision + 1
        kv = KeyValue(key, bytes(value), rev, rev)
        self._commit(EventType.ADDED, kv, None)
        return kv

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        _check_types(key, value)
        prev = self._check(key, expected_revision)
        kv = KeyValue(key, bytes(value), self._revision + 1, prev.create_revision)
        self._commit(EventType.MODIFIED, kv, prev)
        return kv

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        prev = self._check(key, expected_revision)
        kv = KeyValue(key, prev.value, self._revision + 1, prev.create_revision)
        self._commit(EventType.DELETED, kv, prev)
        return kv

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue:
        self._open()
        try:
            return self._current[key]
        except KeyError:
            raise NotFound(key) from None

    def _snapshot(self, revision: int) -> dict[str, KeyValue]:
        state: dict[str, KeyValue] = {}
        for event in self._log:
            if event.revision > revision:
                break
            if event.type is EventType.DELETED:
                state.pop(event.kv.key, None)
            else:
                state[event.kv.key] = event.kv
        return state

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        self._open()
        _check_key(prefix)
        if start_after is not None:
            _check_key(start_after)
        if limit is not None and limit < 0:
            raise Invalid(f"negative limit {limit}")
        if revision is not None and revision > self._revision:
            raise Invalid(f"future revision {revision}")
        if revision is None or revision == self._revision:
            at, state = self._revision, self._current
        else:
            if revision < self._compacted:
                raise Expired(f"revision {revision} is compacted (at {self._compacted})")
            at, state = revision, self._snapshot(revision)
        items = sorted(
            (kv for k, kv in state.items() if k.startswith(prefix)), key=lambda kv: kv.key
        )
        if start_after is not None:
            items = [kv for kv in items if kv.key > start_after]
        more = limit is not None and len(items) > limit
        if limit is not None:
            items = items[:limit]
        return ListResult(items, at, more)

    async def current_revision(self) -> int:
        self._open()
        return self._revision

    # -- watch -------------------------------------------------------------------------------

    def watch(self, prefix: str, *, after_revision: int) -> AsyncIterator[WatchEvent]:
        return self._watch(_check_key(prefix), after_revision)

    def _backlog(self, prefix: str, after_revision: int) -> list[WatchEvent]:
        if after_revision < self._compacted - 1:
            raise Expired(f"revision {after_revision + 1} is compacted (at {self._compacted})")
        return [e for e in self._log if e.revision > after_revision and e.kv.key.startswith(prefix)]

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        if self._closed:
            return
        # Take the backlog and subscribe with no await in between: nothing falls in a gap.
        backlog = self._backlog(prefix, after_revision)
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            last = after_revision
            for event in backlog:
                yield event
                last = event.revision
            while (event := await queue.get()) is not None:
                if event.revision > last and event.kv.key.startswith(prefix):
                    yield event
                    last = event.revision
        finally:
            self._watchers.discard(queue)

    # -- maintenance -------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        self._open()
        if revision > self._revision:
            raise Invalid(f"cannot compact at {revision}: the store is at {self._revision}")
        if revision < self._compacted:
            raise Expired(f"already compacted at {self._compacted}")
        self._compacted = revision

    async def close(self) -> None:
        self._closed = True
        for queue in self._watchers:
            queue.put_nowait(None)


def _check_types(key: object, value: object) -> None:
    _check_key(key)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise Invalid("values are bytes")


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise Invalid("keys are str")
    try:
        key.encode()
    except UnicodeEncodeError:
        raise Invalid("keys are Unicode text") from None
    return key


class BareStore(MemoryStore):
    """A correct store that declares no optional capability: the suite must skip, naming
    each capability, the tests that need one."""

    capabilities = frozenset()


# -- broken stores -----------------------------------------------------------------------------


class CasIgnoringStore(MemoryStore):
    """Ignores ``expected_revision``: compare-and-swap never conflicts."""

    def _check(self, key: str, expected_revision: int | None) -> KeyValue:
        return super()._check(key, None)


class LostUpdateStore(MemoryStore):
    """Checks ``expected_revision`` and writes in two steps: under concurrency two
    read-modify-write cycles can both pass the check, and one update is lost."""

    async def update(
        self, key: str, value: bytes, *, expected_revision: int | None = None
    ) -> KeyValue:
        self._check(key, expected_revision)
        await asyncio.sleep(0)
        return await super().update(key, value)


class DroppingWatchStore(MemoryStore):
    """Every watch silently drops its fifth event."""

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        async for n, event in _aenumerate(super()._watch(prefix, after_revision), 1):
            if n != 5:
                yield event


class DuplicatingWatchStore(MemoryStore):
    """Every watch delivers its third event twice."""

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        async for n, event in _aenumerate(super()._watch(prefix, after_revision), 1):
            yield event
            if n == 3:
                yield event


class WatchGapStore(MemoryStore):
    """A watch replays history, then subscribes to live events after an await: the writes
    that land in between are lost (the classic race between replay and live)."""

    async def _watch(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        backlog = self._backlog(prefix, after_revision)
        last = after_revision
        for event in backlog:
            yield event
            last = event.revision
        await asyncio.sleep(0)
        async with aclosing(super()._watch(prefix, max(last, self._revision))) as live:
            async for event in live:
                yield event


class ListIgnoresRevisionStore(MemoryStore):
    """Claims ``LIST_AT_REVISION`` but always lists the current state (and says it read
    at the revision asked for)."""

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        result = await super().list(prefix, limit=limit, start_after=start_after)
        at = result.revision if revision is None else revision
        return ListResult(result.items, at, result.more)


class PatternPrefixStore(MemoryStore):
    """Matches prefixes like SQL ``LIKE 'prefix%'`` without escaping: ``_`` and ``%`` in
    a prefix act as wildcards."""

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        limit: int | None = None,
        start_after: str | None = None,
    ) -> ListResult:
        result = await super().list("", revision=revision)
        items = [kv for kv in result.items if _like_prefix(kv.key, prefix)]
        if start_after is not None:
            items = [kv for kv in items if kv.key > start_after]
        more = limit is not None and len(items) > limit
        return ListResult(items[:limit] if limit is not None else items, result.revision, more)


class NoOpCompactionStore(MemoryStore):
    """Claims ``COMPACTION`` but forgets nothing: old revisions never raise ``Expired``."""

    async def compact(self, revision: int) -> None:
        if revision > self._revision:
            raise Invalid(f"cannot compact at {revision}: the store is at {self._revision}")


class FailedWriteBumpsRevisionStore(MemoryStore):
    """A create that finds the key taken still consumes a revision."""

    async def create(self, key: str, value: bytes) -> KeyValue:
        if key in self._current:
            self._revision += 1
        return await super().create(key, value)


class StaleDeleteRevisionStore(MemoryStore):
    """``delete`` returns the last value with its old revision instead of the delete's."""

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KeyValue:
        prev = self._current.get(key)
        await super().delete(key, expected_revision=expected_revision)
        assert prev is not None
        return prev


class SlowWatcherLosesEventsStore(MemoryStore):
    """Keeps at most ``watch_backlog`` unread live events per watch and silently drops the
    rest, where it should end that watch with ``Expired``."""

    watch_backlog = 100

    def _commit(self, type_: EventType, kv: KeyValue, prev: KeyValue | None) -> None:
        full = [queue for queue in self._watchers if queue.qsize() >= self.watch_backlog]
        self._watchers.difference_update(full)
        try:
            super()._commit(type_, kv, prev)
        finally:
            self._watchers.update(full)


class CloseLeavesWatchesOpenStore(MemoryStore):
    """``close`` does not end the open watches: their readers wait forever."""

    async def close(self) -> None:
        self._closed = True


class AnswersAfterCloseStore(MemoryStore):
    """Goes on answering after ``close``, as if it were still open."""

    def _open(self) -> None:
        pass


class HangingGetStore(MemoryStore):
    """``get`` never returns. Records every instance that was closed, so a test can see
    that the suite closes a store even after a test timed out."""

    closed: ClassVar[list[HangingGetStore]] = []

    async def get(self, key: str) -> KeyValue:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        HangingGetStore.closed.append(self)
        await super().close()


async def _aenumerate(
    iterator: AsyncIterator[WatchEvent], start: int
) -> AsyncIterator[tuple[int, WatchEvent]]:
    counter = itertools.count(start)
    try:
        async for item in iterator:
            yield next(counter), item
    finally:
        await iterator.aclose()  # type: ignore[attr-defined]


def _like_prefix(key: str, pattern: str) -> bool:
    """``key LIKE pattern || '%'`` with ``_`` and ``%`` unescaped (case-sensitive)."""
    regex = "".join("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.match(regex, key, re.DOTALL) is not None


BROKEN_STORES = {
    cls.__name__: cls
    for cls in (
        CasIgnoringStore,
        LostUpdateStore,
        DroppingWatchStore,
        DuplicatingWatchStore,
        WatchGapStore,
        ListIgnoresRevisionStore,
        PatternPrefixStore,
        NoOpCompactionStore,
        FailedWriteBumpsRevisionStore,
        StaleDeleteRevisionStore,
        SlowWatcherLosesEventsStore,
        CloseLeavesWatchesOpenStore,
        AnswersAfterCloseStore,
    )
}
"""Every broken store, by class name (except :class:`HangingGetStore`, which hangs the
suite's tests until their timeout)."""
