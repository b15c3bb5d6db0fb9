"""JsonlStore passes kcore's store conformance suite: every test of
:class:`~kcore.conformance.suites.store.StoreConformance`, with the store built here
(``kcore conformance --plugin store_jsonl`` runs the same suite through the plugin)."""

from __future__ import annotations

import itertools

import pytest
from kcore.conformance.suites.store import StoreConformance

from kcore_store_jsonl import JsonlStore


class TestJsonlStore(StoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path):
        counter = itertools.count()

        async def make() -> JsonlStore:
            return await JsonlStore.open(tmp_path / f"store{next(counter)}.jsonl")

        return make
