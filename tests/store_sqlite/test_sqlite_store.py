"""What is particular to store_sqlite: persistence across reopen, the file lock, prefix
ranges in SQL, group commit and its failures, the writer thread and event loops. The
generic contract is checked by the conformance suite (test_sqlite_conformance.py)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from kcore.errors import (
    AlreadyExists,
    Conflict,
    Expired,
    Invalid,
    NotFound,
    PermanentError,
    TemporaryError,
)
from kcore.plugins.store_sqlite import backend
from kcore.plugins.store_sqlite.backend import Database, SqliteStore, prefix_end
from kcore.store import Capability, EventType, KeyValue, Store


@pytest.fixture
async def store():
    s = SqliteStore(":memory:")
    yield s
    await s.close()


async def _events(store, prefix, after, until):
    """The watch's events up to and including revision ``until``."""
    events = []
    watch = store.watch(prefix, after_revision=after)
    try:
        async with asyncio.timeout(10):
            async for event in watch:
                events.append(event)
                if event.revision >= until:
                    break
    finally:
        await watch.aclose()
    return events


def test_is_a_store_with_capabilities(tmp_path):
    async def main():
        on_file = SqliteStore(tmp_path / "a.db")
        in_memory = SqliteStore(":memory:")
        try:
            assert isinstance(on_file, Store)
            assert on_file.name == "store_sqlite"
            assert Capability.DURABLE in on_file.capabilities
            assert Capability.DURABLE not in in_memory.capabilities
            for s in (on_file, in_memory):
                assert {Capability.LIST_AT_REVISION, Capability.COMPACTION} <= s.capabilities
        finally:
            await on_file.close()
            await in_memory.close()

    asyncio.run(main())


def test_bad_options_are_invalid():
    with pytest.raises(Invalid):
        SqliteStore(":memory:", synchronous="SOMETIMES")
    with pytest.raises(Invalid):
        SqliteStore(":memory:", watch_queue_size=0)


# -- persistence -------------------------------------------------------------------------------


async def _history(store):
    """A small history: a and b created, a updated, b deleted, c created."""
    a1 = await store.create("/r/a", b"a1")
    b1 = await store.create("/r/b", b"b1")
    a2 = await store.update("/r/a", b"a2", expected_revision=a1.revision)
    b_gone = await store.delete("/r/b")
    c1 = await store.create("/r/c", b"c1")
    return a1, b1, a2, b_gone, c1


async def test_reopen_keeps_values_and_revisions_continue(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    a1, _, a2, _, c1 = await _history(store)
    await store.close()

    store = SqliteStore(path)
    try:
        assert await store.current_revision() == c1.revision == 5
        assert await store.get("/r/a") == a2
        assert await store.get("/r/c") == c1
        with pytest.raises(NotFound):
            await store.get("/r/b")
        assert (await store.list("/r/")).items == [a2, c1]
        # Revisions go on from where they were, and the checks still hold.
        with pytest.raises(AlreadyExists):
            await store.create("/r/a", b"again")
        with pytest.raises(Conflict):
            await store.update("/r/a", b"stale", expected_revision=a1.revision)
        b2 = await store.create("/r/b", b"b2")
        assert (b2.revision, b2.create_revision) == (6, 6)
        a3 = await store.update("/r/a", b"a3", expected_revision=a2.revision)
        assert (a3.revision, a3.create_revision) == (7, a1.revision)
    finally:
        await store.close()


async def test_reopen_keeps_history_for_list_at_revision_and_watch(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    a1, b1, a2, b_gone, c1 = await _history(store)
    await store.close()

    store = SqliteStore(path)
    try:
        at = {r: (await store.list("/r/", revision=r)).items for r in range(0, 6)}
        assert at == {
            0: [],
            1: [a1],
            2: [a1, b1],
            3: [a2, b1],
            4: [a2],
            5: [a2, c1],
        }
        events = await _events(store, "/r/", 0, c1.revision)
        assert [(e.type, e.kv, e.prev) for e in events] == [
            (EventType.ADDED, a1, None),
            (EventType.ADDED, b1, None),
            (EventType.MODIFIED, a2, a1),
            (EventType.DELETED, b_gone, b1),
            (EventType.ADDED, c1, None),
        ]
        assert b_gone.value == b"b1" and b_gone.revision == 4
        # A watch from before the reopen's revisions runs on into new writes.
        watch = store.watch("/r/", after_revision=3)
        try:
            async with asyncio.timeout(10):
                assert (await anext(watch)).kv == b_gone
                assert (await anext(watch)).kv == c1
                d = await store.create("/r/d", b"d")
                assert (await anext(watch)).kv == d
        finally:
            await watch.aclose()
    finally:
        await store.close()


async def test_compaction_persists_across_reopen(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    _, b1, a2, b_gone, c1 = await _history(store)
    await store.compact(4)
    await store.close()

    store = SqliteStore(path)
    try:
        with pytest.raises(Expired):
            await store.list("/r/", revision=3)
        assert (await store.list("/r/", revision=4)).items == [a2]
        with pytest.raises(Expired):
            await store.compact(3)
        with pytest.raises(Expired):
            await _events(store, "/r/", 2, 5)
        # From R - 1 the write at R (the delete) still comes with its prev.
        events = await _events(store, "/r/", 3, 5)
        assert [(e.type, e.kv, e.prev) for e in events] == [
            (EventType.DELETED, b_gone, b1),
            (EventType.ADDED, c1, None),
        ]
        await store.compact(4)  # the same revision again is fine
    finally:
        await store.close()


async def test_compaction_deletes_superseded_history_rows(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.create("/early", b"e")
    await store.delete("/early")
    await store.create("/k", b"0")
    for i in range(1, 10):
        await store.update("/k", str(i).encode())
    await store.create("/gone", b"x")
    await store.delete("/gone")
    await store.compact(await store.current_revision())
    await store.close()
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT revision, key, value FROM history ORDER BY revision").fetchall()
    finally:
        conn.close()
    # Gone: /early entirely, the older writes of /k. Kept: the last write of /k, the
    # delete at R (a watch from R - 1 needs it) and the row its event carries as prev.
    assert rows == [(12, "/k", b"9"), (13, "/gone", b"x"), (14, "/gone", None)]


async def test_revisions_are_not_reused_after_deleting_everything(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    await store.create("/k", b"")
    last = await store.delete("/k")
    await store.compact(last.revision)
    await store.close()
    store = SqliteStore(path)
    try:
        assert await store.current_revision() == last.revision
        assert (await store.create("/k", b"")).revision == last.revision + 1
    finally:
        await store.close()


async def test_one_store_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(backend, "OPEN_TIMEOUT", 0.1)
    path = tmp_path / "s.db"
    first = SqliteStore(path)
    await first.create("/k", b"v")
    second = SqliteStore(path)
    try:
        with pytest.raises(PermanentError, match="in use"):
            await second.get("/k")
        assert (await first.get("/k")).value == b"v"
    finally:
        await second.close()
        await first.close()
    third = SqliteStore(path)
    try:
        assert (await third.get("/k")).value == b"v"
    finally:
        await third.close()


async def test_unopenable_path_fails_every_call_instead_of_hanging(tmp_path):
    store = SqliteStore(tmp_path / "no" / "such" / "dir" / "s.db")
    async with asyncio.timeout(10):
        with pytest.raises(PermanentError, match="unable to open"):
            await store.get("/k")
        with pytest.raises(PermanentError):
            await store.create("/k", b"")
        with pytest.raises(PermanentError):
            await anext(store.watch("/", after_revision=0))
        await store.close()


async def test_refuses_a_database_from_a_newer_kcore(tmp_path):
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {backend.SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteStore(path)
    try:
        with pytest.raises(PermanentError, match="schema version"):
            await store.current_revision()
    finally:
        await store.close()


# -- keys and prefixes -------------------------------------------------------------------------


def test_prefix_end():
    assert prefix_end("") is None
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("\ud7ff") == "\ue000"
    for prefix in ["/registry/pods/", "a_%", "ü", "x\U0010ffff"]:
        end = prefix_end(prefix)
        assert prefix + "\U0010ffff" * 3 < end
        assert not (prefix + "\U0010ffff").startswith(end)


async def test_prefixes_are_byte_exact_at_the_edges_of_unicode(store):
    keys = ["p\U0010ffff", "p\U0010ffff\U0010ffff", "p\U0010ffffz", "q", "p\ud7ffx", "p\ue000"]
    for key in keys:
        await store.create(key, b"")
    for prefix in ["p", "p\U0010ffff", "p\ud7ff", "p\ue000", "", "q"]:
        want = sorted(k for k in keys if k.startswith(prefix))
        now = [kv.key for kv in (await store.list(prefix)).items]
        then = [kv.key for kv in (await store.list(prefix, revision=len(keys) - 1)).items]
        assert now == want, prefix
        assert then == [k for k in want if k != keys[-1]], prefix


async def test_keys_with_nul_characters(store):
    await store.create("/a", b"1")
    await store.create("/a\x00", b"2")
    await store.create("/a\x00b", b"3")
    assert [kv.key for kv in (await store.list("/a\x00")).items] == ["/a\x00", "/a\x00b"]
    assert (await store.get("/a\x00b")).value == b"3"


async def test_keys_that_are_not_text_are_invalid(store):
    with pytest.raises(Invalid):
        await store.create("/bad\ud800", b"")
    with pytest.raises(Invalid):
        await store.create(b"/bytes", b"")  # type: ignore[arg-type]
    with pytest.raises(Invalid):
        await store.create("/k", "text")  # type: ignore[arg-type]
    assert (await store.create("/k", bytearray(b"ok"))).value == b"ok"
    assert await store.current_revision() == 1


async def test_list_in_the_future_is_invalid_and_pages_are_limited(store):
    for i in range(5):
        await store.create(f"/k{i}", b"")
    with pytest.raises(Invalid):
        await store.list("/", revision=6)
    with pytest.raises(Invalid):
        await store.list("/", limit=-1)
    page = await store.list("/", revision=3, limit=2, start_after="/k0")
    assert ([kv.key for kv in page.items], page.revision, page.more) == (["/k1", "/k2"], 3, False)


# -- group commit ------------------------------------------------------------------------------


async def test_concurrent_writes_in_one_batch_keep_their_own_checks(store):
    base = await store.create("/cas", b"0")
    results = await asyncio.gather(
        store.create("/new", b"1"),
        store.create("/new", b"2"),
        store.update("/cas", b"3", expected_revision=base.revision),
        store.update("/cas", b"4", expected_revision=base.revision),
        store.delete("/missing"),
        store.create("/other", b"5"),
        return_exceptions=True,
    )
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["KeyValue", "AlreadyExists", "KeyValue", "Conflict", "NotFound", "KeyValue"]
    assert [r.revision for r in results if isinstance(r, KeyValue)] == [2, 3, 4]
    assert (await store.get("/cas")).value == b"3"
    assert await store.current_revision() == 4


async def test_a_failing_write_fails_alone_and_leaves_no_gap(store, monkeypatch):
    real = Database.create

    def flaky(db, key, value):
        if key == "/poison":
            db.conn.execute("INSERT INTO current (key, revision) VALUES ('/half', 99)")
            raise sqlite3.OperationalError("disk I/O error")
        return real(db, key, value)

    monkeypatch.setattr(Database, "create", flaky)
    results = await asyncio.gather(
        store.create("/a", b""),
        store.create("/poison", b""),
        store.create("/b", b""),
        return_exceptions=True,
    )
    assert isinstance(results[1], TemporaryError)
    assert [results[0].revision, results[2].revision] == [1, 2]
    assert await store.current_revision() == 2
    with pytest.raises(NotFound):
        await store.get("/half")
    events = await _events(store, "/", 0, 2)
    assert [e.kv.key for e in events] == ["/a", "/b"]


# -- threads and loops -------------------------------------------------------------------------


def test_store_made_outside_a_loop_works_in_successive_loops(tmp_path):
    store = SqliteStore(tmp_path / "s.db")

    async def first():
        return await store.create("/k", b"1")

    async def second():
        kv = await store.update("/k", b"2")
        await store.close()
        return kv

    assert asyncio.run(first()).revision == 1
    assert asyncio.run(second()).revision == 2


async def test_a_cancelled_call_does_not_disturb_the_store(store):
    await store.create("/k", b"v")
    task = asyncio.ensure_future(store.list("/"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.get("/k")).value == b"v"


async def test_calls_after_close_fail_and_watches_end(store):
    await store.create("/k", b"v")
    await store.close()
    with pytest.raises(PermanentError, match="closed"):
        await store.get("/k")
    with pytest.raises(StopAsyncIteration):
        await anext(store.watch("/", after_revision=0))
    await store.close()  # twice is fine


async def test_close_finishes_the_calls_queued_before_it(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    writes = [asyncio.ensure_future(store.create(f"/k{i}", b"")) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert [w.result().revision for w in writes] == list(range(1, 51))
    store = SqliteStore(path)
    try:
        assert await store.current_revision() == 50
    finally:
        await store.close()


async def test_a_crash_of_the_writer_thread_fails_calls_instead_of_hanging():
    store = SqliteStore(":memory:")
    await store.create("/k", b"")
    watch = store.watch("/", after_revision=0)
    assert (await anext(watch)).kv.key == "/k"

    def crash(db, batch, outbox):
        raise RuntimeError("boom")

    store._process_items = crash
    async with asyncio.timeout(10):
        with pytest.raises(PermanentError, match="RuntimeError: boom") as info:
            await store.get("/k")
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(PermanentError, match="has stopped: boom"):
            await store.get("/k")
        with pytest.raises(PermanentError, match="has stopped"):
            await anext(watch)
        await store.close()
