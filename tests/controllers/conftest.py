"""Fixtures for the controller runtime and the built-in controllers: an in-process API on a
fresh in-memory store (no node agent: pods are just objects)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from daemon_process import start_daemon, stop_daemon
from inprocess_api import in_process_api

from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient, InProcessTransport
from kcore.plugins.store_sqlite.backend import SqliteStore

from .helpers import SIM_PLUGINS


@dataclass
class Cluster:
    api: ApiClient
    store: SqliteStore
    objects: ObjectStore

    def client(self) -> ApiClient:
        """Another client on the same API (a second controller manager's)."""
        return ApiClient(InProcessTransport(self.objects))


@pytest.fixture
async def cluster():
    async with in_process_api() as (api, store, objects):
        yield Cluster(api, store, objects)


@pytest.fixture(scope="module")
def sim_daemon(tmp_path_factory):
    """A daemon of its own per test module: API, controllers, scheduler, and a node agent on
    runtime_sim."""
    d = start_daemon(
        tmp_path_factory.mktemp("kcore-sim"), "--plugins", SIM_PLUGINS, node_agent=True
    )
    try:
        yield d
    finally:
        stop_daemon(d)
