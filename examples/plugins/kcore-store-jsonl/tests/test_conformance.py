"""JsonlStore passes kcore's store conformance suite: every test of
:class:`~kcore.conformance.suites.store.StoreConformance`, with the store built here
(``kcore conformance --plugin store_jsonl`` runs the same suite through the plugin)."""

from __future__ import annotations

import pytest
from kcore import Capability
from kcore.conformance.suites.store import StoreConformance

from kcore_store_jsonl import JsonlStore


class TestJsonlStore(StoreConformance):
    # A check needing one of these fails, rather than skips, if the store stops declaring it.
    expected_capabilities = frozenset(Capability)
    # The file is this store's alone: a new store is at revision 0, each write adds one.
    exclusive_backend = True

    @pytest.fixture
    def store_factory(self, kcore_settings_factory):
        # make(settings) opens the store of those settings again: the suite's reopen checks.
        async def make(settings=None) -> JsonlStore:
            settings = settings or kcore_settings_factory()
            return await JsonlStore.open(settings.data_dir / "store.jsonl")

        return make
