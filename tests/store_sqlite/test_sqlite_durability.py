"""Every acknowledged write survives ``kill -9`` of the process that made it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kcore.plugins.store_sqlite.backend import SqliteStore

CHILD = Path(__file__).with_name("durability_child.py")
ACKS_BEFORE_KILL = 1500


def _run_child_and_kill(path: Path, synchronous: str, log: Path) -> list[tuple[int, str, str]]:
    """Start the writer, read acknowledgements, SIGKILL it mid-write, return every
    acknowledgement it printed (also those still in the pipe)."""
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), synchronous, "8"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    killed = False
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.split() == ["ready", str(proc.pid)], (first, log.read_text())
        lines = []
        while len(lines) < ACKS_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line.endswith("\n"), f"the writer died early: {log.read_text()}"
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # What the child printed before it died was acknowledged too; a torn last line not.
        lines += [
            line for line in proc.stdout.read().splitlines(keepends=True) if line.endswith("\n")
        ]
    finally:
        if not killed:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    acks = []
    for line in lines:
        revision, key, value = line.split()
        acks.append((int(revision), key, value))
    return acks


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_acknowledged_writes_survive_kill_9(tmp_path, synchronous):
    path = tmp_path / "kill.db"
    acks = _run_child_and_kill(path, synchronous, tmp_path / "child.log")
    assert len(acks) >= ACKS_BEFORE_KILL
    assert len({rev for rev, _, _ in acks}) == len(acks), "a revision was acknowledged twice"

    async def check() -> None:
        store = SqliteStore(path, synchronous=synchronous)
        try:
            now = await store.current_revision()
            assert now >= max(rev for rev, _, _ in acks)
            history = {}
            async with asyncio.timeout(60):
                watch = store.watch("/registry/durability/", after_revision=0)
                async for event in watch:
                    history[event.kv.revision] = event
                    if event.kv.revision == now:
                        break
                await watch.aclose()
            assert sorted(history) == list(range(1, now + 1)), "the revisions have a gap"
            for revision, key, value in acks:
                event = history[revision]
                assert (event.kv.key, event.kv.value) == (key, value.encode())
            # The current state is the last write of each key, and the store goes on.
            current = await store.list("/registry/durability/")
            last = {e.kv.key: e.kv for e in sorted(history.values(), key=lambda e: e.revision)}
            assert current.items == sorted(last.values(), key=lambda kv: kv.key)
            after = await store.create("/registry/durability/after", b"x")
            assert after.revision == now + 1
        finally:
            await store.close()

    asyncio.run(check())
