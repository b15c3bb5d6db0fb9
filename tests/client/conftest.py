"""Fixtures for the API client: one ``api`` fixture, run once per transport.

``api.client`` is an :class:`ApiClient` over the in-process transport or over HTTP to an
in-process API server; ``api.store`` is the store underneath both (tests compact it)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer
from daemon_process import start_daemon, stop_daemon

from kcore.apiserver.objects import ObjectStore
from kcore.apiserver.server import APIServer
from kcore.client import ApiClient, HttpTransport, InProcessTransport
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore


@dataclass
class Api:
    client: ApiClient
    store: SqliteStore
    objects: ObjectStore
    transport: str


@pytest.fixture(params=["inprocess", "http"])
async def api(request):
    store = SqliteStore(":memory:")
    objects = ObjectStore(store)
    await bootstrap(objects)
    server = None
    if request.param == "inprocess":
        client = ApiClient(InProcessTransport(objects))
    else:
        server = TestServer(APIServer(objects, token="t").app())
        await server.start_server()
        client = ApiClient(HttpTransport(str(server.make_url("")), token="t"))
    try:
        yield Api(client, store, objects, request.param)
    finally:
        await client.close()
        if server is not None:
            await server.close()
        await store.close()


# -- the real daemon, for `kcore ctl` ---------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("kcore-ctl"))
    try:
        yield d
    finally:
        stop_daemon(d)
