"""store_sqlite passes the store conformance suite, in memory and on disk."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kcore.conformance.suites.store import StoreConformance
from kcore.plugins.store_sqlite.backend import SqliteStore


class TestSqliteInMemory(StoreConformance):
    @pytest.fixture
    def store_factory(self):
        async def make() -> SqliteStore:
            return SqliteStore(":memory:")

        return make


class TestSqliteFile(StoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path):
        counter = itertools.count()

        async def make() -> SqliteStore:
            return SqliteStore(tmp_path / f"store{next(counter)}.db")

        return make
