"""``kcore image pull|import|ls|rm``: the node's image store from the command line.

The commands work on ``<data-dir>/images`` directly, under the store's lock, so they are
safe while a daemon uses the same store. ``pull`` reaches registries as the daemon does
(the ``--registry-*`` options).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click

from kcore.errors import BadRequest, KcoreError, NotFound
from kcore.images import ImageStore
from kcore.registry import PullProgress, pull
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


_STATUS_WORDS = {
    "waiting": "Waiting",
    "downloading": "Downloading",
    "downloaded": "Download complete",
    "exists": "Already exists",
    "unpacking": "Unpacking",
    "done": "Pull complete",
}


class PullDisplay:
    """``kcore image pull``'s progress: one line per layer and a total line, redrawn in
    place on a terminal; on anything else, one plain line per layer step."""

    REDRAW_EVERY = 0.1

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.layers: dict[str, PullProgress] = {}
        self.printed: set[tuple[str, str]] = set()
        self.drawn_lines = 0
        self.last_draw = 0.0
        self.started = time.monotonic()
        self.lock = threading.Lock()  # the store reports from a worker thread

    def line(self, event: PullProgress) -> str:
        words = _STATUS_WORDS.get(event.status, event.status)
        if event.status in ("downloading", "unpacking"):
            return f"{event.layer}: {words} {human_size(event.done)}/{human_size(event.total)}"
        return f"{event.layer}: {words}"

    def total_line(self) -> str:
        fetching = [e for e in self.layers.values() if e.status != "exists"]
        total = sum(e.total for e in fetching)
        done = sum(
            e.total if e.status in ("downloaded", "unpacking", "done") else e.done for e in fetching
        )
        return f"total: {human_size(done)}/{human_size(total)}"

    def __call__(self, event: PullProgress) -> None:
        with self.lock:
            before = self.layers.get(event.layer)
            self.layers[event.layer] = event
            if self.tty:
                changed = before is None or before.status != event.status
                now = time.monotonic()
                if changed or now - self.last_draw >= self.REDRAW_EVERY:
                    self._redraw()
                    self.last_draw = now
            elif (event.layer, event.status) not in self.printed:
                self.printed.add((event.layer, event.status))
                self.out.write(self.line(event) + "\n")
                self.out.flush()

    def _redraw(self) -> None:
        lines = [self.line(e) for e in self.layers.values()] + [self.total_line()]
        up = f"\x1b[{self.drawn_lines}F" if self.drawn_lines else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn_lines = len(lines)

    def finish(self) -> None:
        with self.lock:
            if self.tty:
                self._redraw()
            else:
                self.out.write(self.total_line() + "\n")
            took = time.monotonic() - self.started
            self.out.write(f"pulled in {took:.2f}s\n")
            self.out.flush()


@click.group("image")
def image_group() -> None:
    """Images on this node: pull from registries, import OCI layouts and archives, list,
    remove."""


@image_group.command("pull")
@click.argument("ref")
@click.option("--username", "-u", help="Registry user name.")
@click.option("--password", "-p", help="Registry password (prompted for when missing).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
@_one_line_errors
def pull_cmd(
    ctx: click.Context,
    ref: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
) -> None:
    """Pull REF (busybox, registry:5000/app:1, app@sha256:...) from its registry.

    Progress goes to stdout, one line per layer; the last line is the image id. The
    --registry-* options (insecure hosts, CA files, credentials file) go before `image`."""
    from kcore.plugins.runtime_linux import registry_config

    if (password or password_stdin) and not username:
        raise BadRequest("--password and --password-stdin need --username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif username and password is None:
        password = click.prompt("Password", hide_input=True, err=True)
    auth = {"username": username, "password": password or ""} if username else None
    settings = _settings(ctx)
    display = PullDisplay(sys.stdout)
    result = asyncio.run(
        pull(_store(ctx), ref, auth=auth, config=registry_config(settings), progress=display)
    )
    display.finish()
    click.echo(f"Digest: {result.digest}")
    click.echo(f"Pulled {result.reference}")
    click.echo(result.image["id"])


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
