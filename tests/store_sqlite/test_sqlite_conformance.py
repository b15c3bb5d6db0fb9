"""The shared store conformance suite, run on ``SqliteStore`` directly: on a file (the
daemon's default) and in memory."""

from __future__ import annotations

import pytest

from kcore.conformance.suites.store import StoreConformance
from kcore.plugins.store_sqlite.backend import SqliteStore
from kcore.store import Capability


class TestSqliteStoreOnFile(StoreConformance):
    expected_capabilities = frozenset(Capability)

    @pytest.fixture
    def store_factory(self, kcore_settings_factory):
        async def make(settings=None):
            settings = settings or kcore_settings_factory()
            return SqliteStore(settings.data_dir / "store.db")

        return make


class TestSqliteStoreInMemory(StoreConformance):
    expected_capabilities = frozenset({Capability.LIST_AT_REVISION, Capability.COMPACTION})

    @pytest.fixture
    def store_factory(self):
        async def make():
            return SqliteStore(":memory:")

        return make
