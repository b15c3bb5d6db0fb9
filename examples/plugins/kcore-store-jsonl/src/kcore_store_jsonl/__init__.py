"""store_jsonl: a kcore store on one append-only file of JSON lines.

Install the package and load it in place of the default store::

    kcore --plugins store_jsonl,runtime_linux,net_bridge,volumes,controllers,scheduler

The file is ``<data-dir>/store/kcore.jsonl`` unless ``--jsonl-path`` says otherwise;
``--jsonl-fsync never`` trades durability across a crash for speed (the store then no
longer declares the ``durable`` capability).
"""

from __future__ import annotations

from pathlib import Path

import click
from kcore import Settings, hookimpl

from kcore_store_jsonl.store import JsonlStore

__all__ = ["JsonlStore"]


@hookimpl
def kcore_store(settings: Settings):
    path = settings.option("jsonl_path") or Path(settings.data_dir) / "store" / "kcore.jsonl"
    fsync = settings.option("jsonl_fsync", "always") != "never"
    return JsonlStore.open(path, fsync=fsync)  # an awaitable: kcore awaits it


@hookimpl
def kcore_add_options():
    return [
        click.Option(
            ["--jsonl-path"],
            envvar="KCORE_JSONL_PATH",
            type=click.Path(dir_okay=False),
            help="store_jsonl: the store's file (default <data-dir>/store/kcore.jsonl).",
        ),
        click.Option(
            ["--jsonl-fsync"],
            envvar="KCORE_JSONL_FSYNC",
            type=click.Choice(["always", "never"]),
            help="store_jsonl: fsync each write (always, the default) or leave it to the OS.",
        ),
    ]
