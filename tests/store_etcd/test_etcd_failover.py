"""store_etcd when etcd misbehaves: a member of a three-member cluster dies during a stream
of writes and watches, and a single etcd restarts while a watch is open. Writes keep
succeeding, no acknowledged write is lost, and every watch sees every change exactly once."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import pytest

from kcore import EventType, KeyValue, NotFound, TemporaryError, WatchEvent
from kcore.plugins.store_etcd.backend import EtcdStore

EVENT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Write:
    type: EventType
    kv: KeyValue
    prev: bytes | None


def view(event: WatchEvent) -> tuple:
    prev = None if event.prev is None else bytes(event.prev.value)
    return (str(event.type), event.kv.key, bytes(event.kv.value), event.kv.revision, prev)


def write_view(write: Write) -> tuple:
    return (str(write.type), write.kv.key, bytes(write.kv.value), write.kv.revision, write.prev)


async def read_until(watch, sentinel: str, events: list[WatchEvent]) -> None:
    """Append the watch's events to ``events`` until the one on ``sentinel``."""
    while True:
        event = await asyncio.wait_for(anext(watch), EVENT_TIMEOUT)
        if event.kv.key == sentinel:
            return
        events.append(event)


async def settle(call):
    """Retry a read until etcd answers (used to learn the outcome of an unacknowledged write)."""
    for _ in range(100):
        try:
            return await call()
        except TemporaryError:
            await asyncio.sleep(0.1)
    raise AssertionError("etcd did not answer for 10 s")


class Writer:
    """Creates its own keys and bumps its own counter with compare-and-swap. A write that
    fails with TemporaryError (outcome unknown) is looked up afterwards, so that in the end
    ``done`` holds exactly the writes that took effect, acknowledged or not."""

    def __init__(self, store: EtcdStore, name: str) -> None:
        self.store = store
        self.name = name
        self.done: list[Write] = []
        self.acknowledged: list[Write] = []
        self.unknown = 0
        self.counter: KeyValue | None = None

    async def step(self, i: int) -> None:
        store, counter = self.store, f"/w/{self.name}/counter"
        if self.counter is None or i % 3:
            key, value = f"/w/{self.name}/k{i:05}", f"{i}".encode()
            try:
                kv = await store.create(key, value)
            except TemporaryError:
                self.unknown += 1
                try:
                    kv = await settle(lambda: store.get(key))
                except NotFound:
                    return  # it did not happen
            else:
                self.acknowledged.append(Write(EventType.ADDED, kv, None))
            self.done.append(Write(EventType.ADDED, kv, None))
            return
        prev, value = self.counter, f"{i}".encode()
        try:
            kv = await store.update(counter, value, expected_revision=prev.revision)
        except TemporaryError:
            self.unknown += 1
            kv = await settle(lambda: store.get(counter))
            if kv.revision == prev.revision:
                return  # it did not happen
        else:
            self.acknowledged.append(Write(EventType.MODIFIED, kv, bytes(prev.value)))
        self.done.append(Write(EventType.MODIFIED, kv, bytes(prev.value)))
        self.counter = kv

    async def start_counter(self) -> None:
        kv = await self.store.create(f"/w/{self.name}/counter", b"0")
        self.done.append(Write(EventType.ADDED, kv, None))
        self.acknowledged.append(Write(EventType.ADDED, kv, None))
        self.counter = kv


@pytest.mark.slow
async def test_cluster_member_dies_during_writes_and_watches(etcd_factory):
    """Three members; the store talks to the leader, which is killed (SIGKILL) mid-stream.
    The store moves to another member, writes go on, and the watches opened before, and one
    opened during the outage, deliver exactly the writes that took effect."""
    cluster = etcd_factory(size=3)
    leader = cluster.leader()
    others = [m for m in cluster.members if m is not leader]
    store = EtcdStore(
        [m.client_url for m in [leader, *others]],
        prefix="/kcore-test-*",
        compaction_interval=0,
        retry_timeout=20,
    )
    try:
        base = await store.current_revision()
        assert store.current_endpoint.target.endswith(f":{leader.client_port}")
        watches = [store.watch("/w/", after_revision=base) for _ in range(2)]
        seen: list[list[WatchEvent]] = [[] for _ in range(3)]
        readers = [
            asyncio.ensure_future(read_until(w, "/w/~sentinel", s))
            for w, s in zip(watches, seen, strict=False)
        ]
        writers = [Writer(store, f"writer{n}") for n in range(4)]
        for writer in writers:
            await writer.start_counter()

        killed = asyncio.Event()
        after_kill = 0

        async def run(writer: Writer) -> None:
            nonlocal after_kill
            i = 1
            while after_kill < 300:
                await writer.step(i)
                i += 1
                if killed.is_set():
                    after_kill += 1

        tasks = [asyncio.ensure_future(run(w)) for w in writers]
        while sum(len(w.done) for w in writers) < 150:
            await asyncio.sleep(0.01)
        acknowledged_before = sum(len(w.acknowledged) for w in writers)
        leader.kill()
        killed.set()
        late_watch = store.watch("/w/", after_revision=base)
        readers.append(asyncio.ensure_future(read_until(late_watch, "/w/~sentinel", seen[2])))
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        await store.create("/w/~sentinel", b"")
        await asyncio.wait_for(asyncio.gather(*readers), 60)

        assert not store.current_endpoint.target.endswith(f":{leader.client_port}"), (
            "the store still uses the dead member"
        )
        unknown = sum(w.unknown for w in writers)
        assert unknown <= 2 * len(writers), f"{unknown} writes failed with TemporaryError"
        acknowledged_after = sum(len(w.acknowledged) for w in writers) - acknowledged_before
        assert acknowledged_after >= 300 - unknown, "writes did not keep succeeding"
        expected = sorted((write_view(x) for w in writers for x in w.done), key=lambda v: v[3])
        for n, events in enumerate(seen):
            got = [view(e) for e in events]
            revisions = [v[3] for v in got]
            assert revisions == sorted(set(revisions)), f"watch {n} repeated or reordered events"
            missing = [v for v in expected if v not in got]
            extra = [v for v in got if v not in expected]
            assert not missing and not extra, (
                f"watch {n}: {len(missing)} events missing (first {missing[:3]}), "
                f"{len(extra)} unexpected (first {extra[:3]})"
            )
            assert got == expected
        # Every acknowledged write is there, on the surviving members.
        listed = {kv.key: kv for kv in (await store.list("/w/")).items}
        for writer in writers:
            for write in writer.acknowledged:
                if write.type is EventType.ADDED and not write.kv.key.endswith("counter"):
                    assert listed[write.kv.key] == write.kv, f"lost {write.kv}"
            assert listed[f"/w/{writer.name}/counter"] == writer.counter
    finally:
        await store.close()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
async def test_watch_resumes_across_an_etcd_restart(etcd_factory, sig):
    """A single etcd is stopped (or killed) and started again while a watch waits for its
    next event: calls fail with TemporaryError meanwhile, and the watch resumes by itself
    and sees every change before and after, nothing twice."""
    cluster = etcd_factory(size=1)
    [member] = cluster.members
    store = EtcdStore(cluster.endpoints, prefix="/kcore-test-*", compaction_interval=0)
    try:
        base = await store.current_revision()
        watch = store.watch("/r/", after_revision=base)
        before = [await store.create(f"/r/a{i}", f"{i}".encode()) for i in range(20)]
        got = [await asyncio.wait_for(anext(watch), EVENT_TIMEOUT) for _ in before]
        assert [(e.kv.key, e.kv.revision) for e in got] == [(kv.key, kv.revision) for kv in before]
        waiting = asyncio.ensure_future(anext(watch))

        member.stop(sig)
        impatient = EtcdStore(
            cluster.endpoints, prefix=store.prefix, compaction_interval=0, retry_timeout=0.5
        )
        try:
            with pytest.raises(TemporaryError):
                await impatient.create("/r/while-down", b"")
            with pytest.raises(TemporaryError):
                await impatient.get("/r/a0")
        finally:
            await impatient.close()
        assert not waiting.done(), "the watch ended or yielded while etcd was down"

        cluster.start(member)
        after = []
        for i in range(20):
            after.append(await store.update(f"/r/a{i}", f"{i}-after".encode()))
        await store.create("/r/~sentinel", b"")
        first = await asyncio.wait_for(waiting, EVENT_TIMEOUT)
        events = [first]
        await read_until(watch, "/r/~sentinel", events)
        assert [(str(e.type), e.kv.key, e.kv.revision, bytes(e.kv.value)) for e in events] == [
            ("MODIFIED", kv.key, kv.revision, bytes(kv.value)) for kv in after
        ]
        assert [bytes(e.prev.value) for e in events] == [bytes(kv.value) for kv in before]
        # Durable: what was acknowledged before the restart is still there.
        listed = (await store.list("/r/a")).items
        assert [(kv.key, kv.create_revision) for kv in listed] == sorted(
            (kv.key, kv.revision) for kv in before
        )
        await watch.aclose()
    finally:
        await store.close()
