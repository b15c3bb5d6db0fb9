"""What the file gives beyond one process: a reopened store is the same store, a torn
last line is dropped, compaction shrinks the file, and kcore finds the plugin by name."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from kcore import Capability, EventType, Expired, PermanentError, Settings

from kcore_store_jsonl import JsonlStore, kcore_store


def run(coro):
    return asyncio.run(coro)


async def history(path: Path) -> list[int]:
    """Five writes on a new store; the revisions."""
    store = await JsonlStore.open(path)
    try:
        revs = [
            (await store.create("/a", b"1")).revision,
            (await store.create("/b", b"1")).revision,
            (await store.update("/a", b"2")).revision,
            (await store.delete("/b")).revision,
            (await store.update("/a", b"3")).revision,
        ]
    finally:
        await store.close()
    return revs


def test_a_reopened_store_has_the_same_state_and_history(tmp_path):
    path = tmp_path / "s.jsonl"
    revs = run(history(path))

    async def check():
        store = await JsonlStore.open(path)
        try:
            assert await store.current_revision() == revs[-1]
            a = await store.get("/a")
            assert (a.value, a.revision, a.create_revision) == (b"3", revs[4], revs[0])
            then = await store.list("/", revision=revs[1])
            assert [(kv.key, kv.value) for kv in then.items] == [("/a", b"1"), ("/b", b"1")]
            watch = store.watch("/", after_revision=revs[1])
            events = [await anext(watch) for _ in range(3)]
            await watch.aclose()
            assert [e.type for e in events] == [
                EventType.MODIFIED,
                EventType.DELETED,
                EventType.MODIFIED,
            ]
            assert events[1].prev.value == b"1"
            assert (await store.create("/c", b"")).revision == revs[-1] + 1
        finally:
            await store.close()

    run(check())


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "s.jsonl"
    revs = run(history(path))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"r": 6, "k": "/c", "v": "eA=')  # the process died here

    async def check():
        store = await JsonlStore.open(path)
        try:
            assert await store.current_revision() == revs[-1]
            assert path.read_bytes() == whole
            kv = await store.create("/c", b"x")
            assert kv.revision == revs[-1] + 1
        finally:
            await store.close()
        reopened = await JsonlStore.open(path)
        try:
            assert (await reopened.get("/c")).value == b"x"
        finally:
            await reopened.close()

    run(check())


def test_damage_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "s.jsonl"
    run(history(path))
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(PermanentError, match=r"s\.jsonl:2: unreadable"):
        run(JsonlStore.open(path))


def test_compaction_rewrites_the_file_and_survives_a_reopen(tmp_path):
    path = tmp_path / "s.jsonl"
    revs = run(history(path))

    async def compact_and_write():
        store = await JsonlStore.open(path)
        try:
            for i in range(50):
                await store.update("/a", str(i).encode())
            before = path.stat().st_size
            now = await store.current_revision()
            await store.compact(now)
            assert path.stat().st_size < before / 10
            return now
        finally:
            await store.close()

    compacted = run(compact_and_write())
    header = json.loads(path.read_bytes().splitlines()[0])
    assert header == {"compacted": compacted, "revision": compacted}

    async def check():
        store = await JsonlStore.open(path)
        try:
            assert await store.current_revision() == compacted
            assert (await store.get("/a")).value == b"49"
            assert (await store.get("/a")).create_revision == revs[0]
            with pytest.raises(Expired):
                await store.list("/", revision=revs[-1])
            at = await store.list("/", revision=compacted)
            assert [(kv.key, kv.value) for kv in at.items] == [("/a", b"49")]
            watch = store.watch("/", after_revision=compacted - 1)
            event = await anext(watch)
            await watch.aclose()
            assert (event.type, event.kv.value) == (EventType.MODIFIED, b"49")
            with pytest.raises(Expired):
                await anext(store.watch("/", after_revision=compacted - 2))
        finally:
            await store.close()

    run(check())


def test_the_hook_makes_a_store_under_the_data_dir(tmp_path):
    async def check():
        store = await kcore_store(Settings(data_dir=tmp_path))
        try:
            await store.create("/x", b"y")
            assert Capability.DURABLE in store.capabilities
        finally:
            await store.close()
        assert (tmp_path / "store" / "kcore.jsonl").exists()
        options = {"jsonl_path": str(tmp_path / "f.jsonl"), "jsonl_fsync": "never"}
        fast = await kcore_store(Settings(data_dir=tmp_path, options=options))
        try:
            assert Capability.DURABLE not in fast.capabilities
            assert fast.path == tmp_path / "f.jsonl"
        finally:
            await fast.close()

    run(check())


def test_kcore_finds_the_plugin_by_its_entry_point_name():
    # The kcore of this environment, whatever else is on PATH.
    proc = subprocess.run(
        [sys.executable, "-m", "kcore.cli", "--plugins", "store_jsonl", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert (entry["name"], entry["slots"], entry["version"]) == ("store_jsonl", ["store"], "0.1.0")
    assert "kcore_store" in entry["hooks"]
