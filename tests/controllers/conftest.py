"""Fixtures for the controller runtime and the built-in controllers: an in-process API on a
fresh in-memory store (no node agent: pods are just objects)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from inprocess_api import in_process_api

from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient, InProcessTransport
from kcore.plugins.store_sqlite.backend import SqliteStore


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
