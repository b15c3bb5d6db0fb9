"""An API on an in-memory store_sqlite, reached in-process: what unit tests of controllers,
the scheduler and the node agent run against."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from kcore.apiserver.objects import ObjectStore
from kcore.client import ApiClient
from kcore.client.inprocess import InProcessTransport
from kcore.daemon import bootstrap
from kcore.plugins.store_sqlite.backend import SqliteStore


@contextlib.asynccontextmanager
async def in_process_api(
    admission_checks: Iterable[Any] = (),
) -> AsyncIterator[tuple[ApiClient, SqliteStore, ObjectStore]]:
    """``(client, store, objects)`` with the system namespaces made; closed afterwards.
    ``admission_checks`` run on every write, as the daemon runs its plugins'."""
    store = SqliteStore(":memory:")
    objects = ObjectStore(store, admission_checks=admission_checks)
    await bootstrap(objects)
    api = ApiClient(InProcessTransport(objects))
    try:
        yield api, store, objects
    finally:
        await api.close()
        await store.close()
