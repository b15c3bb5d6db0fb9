"""A watcher that stops reading must not stall writers or other watchers: its backlog is
bounded, and once it overflows the watcher gets a 410 ERROR event and its stream ends."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp.test_utils import TestServer

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore

CMS = "/api/v1/namespaces/default/configmaps"
WRITES = 400


async def test_a_stalled_watcher_is_cut_off_with_410_and_nobody_else_waits():
    store = SqliteStore(":memory:", watch_queue_size=50)
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = TestServer(APIServer(objects).app())
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    # The stalled watcher: a raw connection whose socket buffer we never drain.
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"GET {CMS}?watch=true&resourceVersion=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        async with aiohttp.ClientSession() as session:
            seen: list[str] = []

            async def fast_watcher(resp: aiohttp.ClientResponse) -> None:
                async for line in resp.content:
                    event = json.loads(line)
                    seen.append(event["object"]["metadata"]["name"])
                    if len(seen) == WRITES:
                        return

            big = "x" * 20_000  # fills the stalled watcher's socket buffers quickly
            async with session.get(base + CMS + "?watch=true&resourceVersion=1") as resp:
                reading = asyncio.ensure_future(fast_watcher(resp))
                loop = asyncio.get_running_loop()
                started = loop.time()
                for i in range(WRITES):
                    body = {"metadata": {"name": f"c{i}"}, "data": {"big": big}}
                    async with session.post(base + CMS, json=body) as created:
                        assert created.status == 201
                writes_took = loop.time() - started
                await asyncio.wait_for(reading, 30)
            assert seen == [f"c{i}" for i in range(WRITES)]
            assert writes_took < 30, "writers must not wait for the stalled watcher"
        # Now drain the stalled watcher: its stream ends with a 410 ERROR event.
        raw = await asyncio.wait_for(reader.read(), 30)
        lines = [line for line in raw.split(b"\n") if line.startswith(b'{"type"')]
        last = json.loads(lines[-1])
        assert last["type"] == "ERROR"
        assert last["object"]["code"] == 410 and last["object"]["reason"] == "Expired"
        assert len(lines) < WRITES, "the stalled watcher did not get everything buffered"
    finally:
        writer.close()
        await server.close()
        await store.close()
