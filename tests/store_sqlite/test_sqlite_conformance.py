"""The shared store conformance suite, run on ``SqliteStore`` directly: on a file (the
daemon's default) and in memory, with the suite's fault fixtures (a writer thread that dies,
a write that fails half-way, a damaged file, a file of a newer schema, options out of
range)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid

import pytest

from kcore.conformance.suites.store import EVENT_TIMEOUT, StoreConformance
from kcore.plugins.store_sqlite.backend import _INSERT, SCHEMA_VERSION, SqliteStore, _Op
from kcore.store import Capability


class WriterCrash(BaseException):
    """Raised on the writer thread by ``crash_store``, as a bug there would be. Not an
    ``Exception``: nothing on the thread catches it on the way up."""


def fault_in_batch(fn, write):
    """An async context manager: hold the writer thread inside a batch, queue an operation
    running ``fn`` (a write or a read), let the suite queue its calls behind it, then let
    go: they are all in the next batch, after ``fn``."""

    @contextlib.asynccontextmanager
    async def inject(store: SqliteStore):
        holding, release = threading.Event(), threading.Event()

        def hold(db):
            holding.set()
            release.wait(EVENT_TIMEOUT)

        store._queue.put(_Op(hold, (), False, None, None))
        await asyncio.to_thread(holding.wait, EVENT_TIMEOUT)
        store._queue.put(_Op(fn, (), write, None, None))
        try:
            yield
        finally:
            release.set()

    return inject


def die(db):
    raise WriterCrash("the writer thread crashed (injected by the test)")


def half_write(db):
    """The first statement of a create, then an I/O error: the transaction is left open."""
    rev = db.revision + 1
    db.conn.execute(_INSERT, (rev, "/kcore-test/half-written", b"x", rev, None))
    raise sqlite3.OperationalError("disk I/O error (injected by the test)")


class SqliteFaults:
    exclusive_backend = True  # a store_sqlite file or memory database is its own

    @pytest.fixture
    def crash_store(self):
        return fault_in_batch(die, write=False)

    @pytest.fixture
    def fail_store_write(self):
        return fault_in_batch(half_write, write=True)


class TestSqliteStoreOnFile(SqliteFaults, StoreConformance):
    expected_capabilities = frozenset(Capability)

    @pytest.fixture
    def store_factory(self, kcore_settings_factory):
        async def make(settings=None):
            settings = settings or kcore_settings_factory()
            return SqliteStore(settings.data_dir / "store.db")

        return make

    @pytest.fixture
    def damage_store(self):
        async def damage(settings):
            """Zero every page of the table of current keys, in place."""
            path = settings.data_dir / "store.db"
            with contextlib.closing(sqlite3.connect(path)) as conn:
                size = conn.execute("PRAGMA page_size").fetchone()[0]
                pages = [
                    n
                    for (n,) in conn.execute(
                        "SELECT pageno FROM dbstat WHERE name = ?", ("current",)
                    )
                ]
            assert pages, "no pages of the table 'current' found"
            with open(path, "r+b") as file:
                for page in pages:
                    file.seek((page - 1) * size)
                    file.write(bytes(size))

        return damage

    @pytest.fixture
    def newer_version_store(self):
        async def mark(settings):
            with contextlib.closing(sqlite3.connect(settings.data_dir / "store.db")) as conn:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

        return mark

    @pytest.fixture
    def store_option_makers(self, tmp_path):
        def maker(**options):
            async def make():
                return SqliteStore(tmp_path / f"{uuid.uuid4().hex}.db", **options)

            return make

        return {
            "invalid": {
                "synchronous='FAST'": maker(synchronous="FAST"),
                "watch_queue_size=0": maker(watch_queue_size=0),
                "watch_queue_size=-5": maker(watch_queue_size=-5),
            },
            "valid": {
                "watch_queue_size=1": maker(watch_queue_size=1),
                "synchronous='normal', watch_queue_size=2": maker(
                    synchronous="normal", watch_queue_size=2
                ),
            },
        }


class TestSqliteStoreInMemory(SqliteFaults, StoreConformance):
    expected_capabilities = frozenset({Capability.LIST_AT_REVISION, Capability.COMPACTION})

    @pytest.fixture
    def store_factory(self):
        async def make():
            return SqliteStore(":memory:")

        return make
