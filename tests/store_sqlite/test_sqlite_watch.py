"""store_sqlite's watch fan-out: many watchers, slow watchers, paged replay."""

from __future__ import annotations

import asyncio
import random

import pytest

from kcore.errors import Expired
from kcore.plugins.store_sqlite import backend
from kcore.plugins.store_sqlite.backend import SqliteStore
from kcore.store import EventType, KeyValue, WatchEvent


@pytest.fixture
async def store():
    s = SqliteStore(":memory:")
    yield s
    await s.close()


class Recorder:
    """Random writes on a few keys; remembers the events they must cause."""

    def __init__(self, store, prefix, seed):
        self.store = store
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.latest: dict[str, KeyValue] = {}
        self.events: list[WatchEvent] = []

    async def write(self):
        key = self.prefix + self.rng.choice("abcdef")
        prev = self.latest.get(key)
        if prev is None:
            kv = await self.store.create(key, self.rng.randbytes(4))
            event = WatchEvent(EventType.ADDED, kv, None)
            self.latest[key] = kv
        elif self.rng.random() < 0.3:
            kv = await self.store.delete(key, expected_revision=prev.revision)
            event = WatchEvent(EventType.DELETED, kv, prev)
            del self.latest[key]
        else:
            kv = await self.store.update(
                key, self.rng.randbytes(4), expected_revision=prev.revision
            )
            event = WatchEvent(EventType.MODIFIED, kv, prev)
            self.latest[key] = kv
        self.events.append(event)


async def _collect(watch, count):
    events = []
    async with asyncio.timeout(30):
        while len(events) < count:
            events.append(await anext(watch))
    return events


async def test_many_watchers_see_every_write_once_in_order(store):
    writers = [Recorder(store, f"/w{n}/", seed=n) for n in range(4)]
    per_writer = 100
    total = per_writer * len(writers)
    watches = [store.watch("/", after_revision=0) for _ in range(60)]
    narrow = [store.watch("/w1/", after_revision=0) for _ in range(5)]
    try:
        readers = [asyncio.ensure_future(_collect(w, total)) for w in watches]
        narrow_readers = [asyncio.ensure_future(_collect(w, per_writer)) for w in narrow]

        async def run(writer):
            for _ in range(per_writer):
                await writer.write()

        await asyncio.gather(*(run(w) for w in writers))
        expected = sorted((e for w in writers for e in w.events), key=lambda e: e.revision)
        assert [e.revision for e in expected] == list(range(1, total + 1))
        for got in await asyncio.gather(*readers):
            assert got == expected
        for got in await asyncio.gather(*narrow_readers):
            assert got == writers[1].events
    finally:
        for w in watches + narrow:
            await w.aclose()


async def test_slow_watcher_expires_alone(store):
    store = SqliteStore(":memory:", watch_queue_size=50)
    try:
        first = await store.create("/k", b"0")
        slow = store.watch("/", after_revision=0)
        fast = store.watch("/", after_revision=0)
        assert (await anext(slow)).kv == first  # subscribed; then it reads no more
        fast_reader = asyncio.ensure_future(_collect(fast, 301))
        kv = first
        async with asyncio.timeout(30):
            for i in range(300):
                kv = await store.update("/k", str(i).encode(), expected_revision=kv.revision)
        events = await fast_reader
        assert [e.revision for e in events] == list(range(1, 302))
        with pytest.raises(Expired, match="behind"):
            async with asyncio.timeout(10):
                while True:
                    await anext(slow)
        # The fast watcher goes on.
        kv = await store.update("/k", b"after", expected_revision=kv.revision)
        assert (await asyncio.wait_for(anext(fast), 10)).kv == kv
        await fast.aclose()
    finally:
        await store.close()


async def test_overflow_during_replay_expires(store):
    store = SqliteStore(":memory:", watch_queue_size=5)
    try:
        for i in range(20):
            await store.create(f"/k{i}", b"")
        watch = store.watch("/", after_revision=0)
        assert (await anext(watch)).revision == 1
        for i in range(20, 40):
            await store.create(f"/k{i}", b"")
        got = []
        with pytest.raises(Expired):
            async with asyncio.timeout(10):
                async for event in watch:
                    got.append(event.revision)
        assert got == list(range(2, 2 + len(got)))
    finally:
        await store.close()


async def test_paged_replay_continues_into_live_events(store, monkeypatch):
    monkeypatch.setattr(backend, "REPLAY_PAGE", 7)
    rec = Recorder(store, "/p/", seed=1)
    other = Recorder(store, "/q/", seed=2)
    for _ in range(60):
        await rec.write()
        await other.write()
    watch = store.watch("/p/", after_revision=3)
    try:
        due = sum(1 for e in rec.events if e.revision > 3) + 30
        reader = asyncio.ensure_future(_collect(watch, due))
        await asyncio.sleep(0)
        for _ in range(30):
            await rec.write()
            await other.write()
        assert await reader == [e for e in rec.events if e.revision > 3]
    finally:
        await watch.aclose()


async def test_compaction_during_a_paged_replay_expires_the_watch(store, monkeypatch):
    monkeypatch.setattr(backend, "REPLAY_PAGE", 5)
    rec = Recorder(store, "/p/", seed=3)
    for _ in range(50):
        await rec.write()
    watch = store.watch("/p/", after_revision=0)
    got = [await anext(watch) for _ in range(3)]
    await store.compact(40)
    with pytest.raises(Expired):
        async with asyncio.timeout(10):
            async for event in watch:
                got.append(event)
    assert got == rec.events[: len(got)]
    assert len(got) == 5  # the first page, and not a single event after the gap


async def test_watchers_on_another_loop_in_another_thread(store):
    """Events reach a watcher on a different event loop (another thread) as well."""
    base = await store.current_revision()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch_elsewhere():
        watch = store.watch("/", after_revision=base)
        try:
            first = await anext(watch)
            loop.call_soon_threadsafe(started.set)
            rest = [await anext(watch) for _ in range(9)]
            return [first, *rest]
        finally:
            await watch.aclose()

    elsewhere = asyncio.ensure_future(asyncio.to_thread(asyncio.run, watch_elsewhere()))
    kvs = [await store.create("/k0", b"")]
    await asyncio.wait_for(started.wait(), 10)
    kvs += [await store.create(f"/k{i}", b"") for i in range(1, 10)]
    events = await asyncio.wait_for(elsewhere, 10)
    assert [e.kv for e in events] == kvs


async def test_close_ends_watches_on_every_loop(store):
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def wait_elsewhere():
        watch = store.watch("/", after_revision=0)
        await anext(watch)
        loop.call_soon_threadsafe(ready.set)
        return [e async for e in watch]

    elsewhere = asyncio.ensure_future(asyncio.to_thread(asyncio.run, wait_elsewhere()))
    await store.create("/k", b"")
    await asyncio.wait_for(ready.wait(), 10)
    await store.close()
    assert await asyncio.wait_for(elsewhere, 10) == []
