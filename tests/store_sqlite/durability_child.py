"""Writes to a file-backed SqliteStore until it is killed; the kill -9 test runs it.

Usage: ``python durability_child.py PATH SYNCHRONOUS WRITERS``. Each of WRITERS tasks
creates its own keys and updates each once; right after each write's ``await`` returns
(the write is acknowledged), the task prints ``<revision> <key> <value>`` and flushes
(values hold no spaces).
The first line is ``ready <pid>``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from kcore.plugins.store_sqlite.backend import SqliteStore


async def writer(store: SqliteStore, n: int) -> None:
    i = 0
    while True:
        key = f"/registry/durability/w{n}/k{i:07d}"
        kv = await store.create(key, f"created-{n}-{i}".encode())
        print(kv.revision, key, kv.value.decode(), flush=True)
        kv = await store.update(key, f"updated-{n}-{i}".encode(), expected_revision=kv.revision)
        print(kv.revision, key, kv.value.decode(), flush=True)
        i += 1


async def main(path: str, synchronous: str, writers: int) -> None:
    store = SqliteStore(path, synchronous=synchronous)
    await store.current_revision()
    print("ready", os.getpid(), flush=True)
    await asyncio.gather(*(writer(store, n) for n in range(writers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
