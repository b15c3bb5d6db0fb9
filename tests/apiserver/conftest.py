"""Fixtures for the API server: in-process over HTTP (fast), and the real daemon."""

from __future__ import annotations

import contextlib

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemon_process import start_daemon, stop_daemon

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore


class Client:
    """A thin JSON client over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(
        self, method, path, body=None, *, content_type="application/json", raw=None, headers=None
    ):
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            import json

            data = json.dumps(body).encode()
        if data is not None and content_type:
            hdrs["Content-Type"] = content_type
        skip = () if content_type else ("Content-Type",)
        async with self.session.request(
            method, self.base + path, data=data, headers=hdrs, skip_auto_headers=skip
        ) as resp:
            text = await resp.text()
            import json

            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            return resp.status, payload


@pytest.fixture
async def api(tmp_path):
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = APIServer(objects, token="secret-token")
    ts = TestServer(server.app())
    await ts.start_server()
    session = aiohttp.ClientSession(headers={"Authorization": "Bearer secret-token"})
    try:
        client = Client(session, str(ts.make_url("")).rstrip("/"))
        client.store = store
        yield client
    finally:
        await session.close()
        await ts.close()
        await store.close()


@pytest.fixture(scope="module", params=["store_sqlite", "store_etcd"])
def daemon(request, tmp_path_factory):
    """A running daemon on each store: the end-to-end tests run on both."""
    data_dir = tmp_path_factory.mktemp("kcore-data")
    with contextlib.ExitStack() as stack:
        extra: tuple[str, ...] = ()
        if request.param == "store_etcd":
            from store_etcd.etcd_servers import running_clusters

            make = stack.enter_context(running_clusters(tmp_path_factory.mktemp("etcd-logs")))
            cluster = make()
            extra = (
                "--plugins=store_etcd,controllers",
                f"--etcd-endpoints={cluster.endpoints}",
                "--etcd-prefix=/kcore-e2e-*",
            )
        # with the controllers, so that namespaces (the namespace controller) go away
        d = start_daemon(data_dir, *extra, daemon_args=("--controllers",))
        try:
            yield d
        finally:
            stop_daemon(d)
