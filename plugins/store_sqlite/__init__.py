"""store_sqlite: the embedded default store, on the standard library's sqlite3.

Nothing to install; durable across ``kill -9`` (WAL, ``synchronous=FULL`` by default).
The database lives at ``<data-dir>/store/kcore.db`` unless ``--sqlite-path`` says otherwise;
``--sqlite-path=:memory:`` gives a throwaway store for tests.
"""

from __future__ import annotations

from pathlib import Path

import click

from kcore import PermanentError, Settings, hookimpl


@hookimpl
def kcore_store(settings: Settings):
    from kcore.plugins.store_sqlite.backend import SqliteStore

    path = settings.option("sqlite_path")
    if path is None:
        path = Path(settings.data_dir) / "store" / "kcore.db"
    if str(path) != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentError(
                f"store_sqlite: cannot make the directory of {path}: {exc.strerror}"
            ) from exc
    return SqliteStore(path, synchronous=settings.option("sqlite_synchronous", "FULL"))


@hookimpl
def kcore_add_options():
    return [
        click.Option(
            ["--sqlite-path"],
            envvar="KCORE_SQLITE_PATH",
            help="store_sqlite: database file (default <data-dir>/store/kcore.db; :memory: for tests).",
        ),
        click.Option(
            ["--sqlite-synchronous"],
            envvar="KCORE_SQLITE_SYNCHRONOUS",
            type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
            help="store_sqlite: FULL survives power loss; NORMAL survives a process crash only.",
        ),
    ]
