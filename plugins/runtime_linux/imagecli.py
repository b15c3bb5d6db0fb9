"""``kcore image import|ls|rm``: the node's image store from the command line.

The commands work on ``<data-dir>/images`` directly, under the store's lock, so they are
safe while a daemon uses the same store.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click

from kcore.errors import KcoreError, NotFound
from kcore.images import ImageStore
from kcore.settings import Settings


def _settings(ctx: click.Context) -> Settings:
    """The settings of the ``kcore`` command line (its state object carries them)."""
    current: click.Context | None = ctx
    while current is not None:
        obj = current.obj
        if isinstance(obj, Settings):
            return obj
        settings = getattr(obj, "settings", None)
        if isinstance(settings, Settings):
            return settings
        current = current.parent
    return Settings()


def _store(ctx: click.Context) -> ImageStore:
    return ImageStore(Path(_settings(ctx).data_dir) / "images")


def _fail(message: str) -> None:
    click.echo(f"kcore: error: {message}", err=True)


def _one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A store error ends the command with one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (KcoreError, OSError) as exc:
            _fail(str(exc) if isinstance(exc, KcoreError) else f"{exc.strerror}: {exc.filename}")
            click.get_current_context().exit(1)

    return wrapper


def human_size(size: int) -> str:
    """Decimal units with three significant digits, as crictl prints them."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{size}B"
    return f"{value:.3g}{unit}"


class _ProgressDisplay:
    """Per layer: its short digest and bytes done of total, redrawn on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.finished: set[str] = set()
        self.drawn = ""

    def __call__(self, label: str, done: int, total: int) -> None:
        if label in self.finished:
            return
        line = f"{label}: {human_size(done)}/{human_size(total)}"
        if done >= total:
            self.finished.add(label)
            self._write(line + " done", final=True)
        elif self.tty:
            self._write(line, final=False)

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            pad = " " * max(0, len(self.drawn) - len(line))
            self.out.write(f"\r{line}{pad}" + ("\n" if final else ""))
            self.drawn = "" if final else line
        else:
            self.out.write(line + "\n")
        self.out.flush()


@click.group("image")
def image_group() -> None:
    """Images on this node: import OCI layouts and archives, list, remove."""


@image_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--tag",
    "-t",
    "tags",
    multiple=True,
    metavar="NAME[:TAG]",
    help="Also tag the image (the source must hold one image). Repeatable.",
)
@click.pass_context
@_one_line_errors
def import_cmd(ctx: click.Context, path: Path, tags: tuple[str, ...]) -> None:
    """Import the images of an OCI layout (directory or tar) or a `docker save` tarball.

    Progress goes to stderr; the id and tags of each imported image to stdout."""
    display = _ProgressDisplay(sys.stderr)
    records = _store(ctx).import_path(path, tags=tags, progress=display)
    for record in records:
        name = record["repo_tags"][0] if record["repo_tags"] else record["id"]
        click.echo(f"Imported {name}", err=True)
        click.echo(" ".join([record["id"], *record["repo_tags"]]))


def _rows(records: list[dict]) -> list[tuple[str, str, str, str]]:
    rows = []
    for record in records:
        short_id = record["id"].partition(":")[2][:13]
        size = human_size(record["size"])
        names = [tag.rpartition(":") for tag in record["repo_tags"]]
        if not names:
            repos = [d.partition("@")[0] for d in record["repo_digests"]]
            names = [(repo, ":", "<none>") for repo in dict.fromkeys(repos)] or [
                ("<none>", ":", "<none>")
            ]
        for repo, _, tag in names:
            rows.append((repo, tag, short_id, size))
    return rows


@image_group.command("ls")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.pass_context
@_one_line_errors
def ls_cmd(ctx: click.Context, output: str) -> None:
    """List the images, one line per tag, like `crictl images`."""
    records = _store(ctx).list()
    if output == "json":
        click.echo(json.dumps({"images": records}, indent=2))
        return
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE"), *_rows(records)]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for row in rows:
        click.echo("   ".join(row[c].ljust(widths[c]) for c in range(3)) + "   " + row[3])


@image_group.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
@_one_line_errors
def rm_cmd(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Remove images by tag, id or id prefix; their layers go when no image uses them."""
    store = _store(ctx)
    failed = False
    for ref in refs:
        try:
            record = store.status(ref)
            if record is None or not store.remove(record["id"]):
                raise NotFound(f"no such image {ref}")
        except KcoreError as exc:
            _fail(str(exc))
            failed = True
            continue
        for name in record["repo_tags"] or [record["id"]]:
            click.echo(f"Deleted: {name}")
    if failed:
        ctx.exit(1)


__all__ = ["image_group"]
