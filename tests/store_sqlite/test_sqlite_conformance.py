"""The shared store conformance suite, run on ``SqliteStore`` directly: on a file (the
daemon's default) and in memory."""

from __future__ import annotations

import itertools

import pytest

from kcore.conformance.suites.store import StoreConformance
from kcore.plugins.store_sqlite.backend import SqliteStore


class TestSqliteStoreOnFile(StoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path):
        counter = itertools.count()

        async def make():
            return SqliteStore(tmp_path / f"store{next(counter)}.db")

        return make


class TestSqliteStoreInMemory(StoreConformance):
    @pytest.fixture
    def store_factory(self):
        async def make():
            return SqliteStore(":memory:")

        return make
