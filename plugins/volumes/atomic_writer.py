"""Kubernetes' AtomicWriter (``pkg/volume/util/atomic_writer.go``): a volume's files are
replaced all at once, so that a reader sees one version or the next, never a mix.

The layout inside the target directory::

    ..2024_05_01_12_00_00.123456789/   one version of the payload (mode 0755)
    ..data -> ..2024_05_01_12_00_00.123456789
    key -> ..data/key                  one symlink per top-level name of the payload

A write puts the new payload in a fresh version directory, points ``..data_tmp`` at it
and renames that over ``..data`` (one atomic step), adds the top-level symlinks that are
new, removes those that are gone, then removes the old version. A payload equal to what
is there (same paths, bytes and modes) writes nothing.

A reader of one file just opens ``key``. A reader that needs several files from one version
notes the version ``..data`` names, reads them from that directory, and checks that
``..data`` still names it afterwards (see :func:`kcore.pods.atomic.read_version`): a published version never
changes, and is removed only after it has been replaced.

Every file and directory is created through directory descriptors with ``O_NOFOLLOW``
inside a version directory the writer has just made, so nothing is ever written outside
the target, whatever symlinks the target holds.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kcore.errors import FieldError, Invalid
from kcore.pods.atomic import DATA_DIR, read_version

DATA_TMP = "..data_tmp"
MAX_PATH_LENGTH = 4096
MAX_FILE_NAME_LENGTH = 255
VERSION_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$")
"""``..<UTC 2006_01_02_15_04_05>.<random>``: the name of one version directory."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def invalid(field: str, message: str) -> Invalid:
    """``Invalid`` whose message is exactly the kubelet's, with the field as its cause."""
    return Invalid(message, causes=[FieldError(field, message)])


@dataclass(frozen=True)
class FileProjection:
    """One file of a payload: its bytes and its permission bits."""

    data: bytes
    mode: int = 0o644


def validate_path(path: str, field: str = "path") -> str:
    """The cleaned form of a payload path, or ``Invalid`` with Kubernetes' message: it must
    be relative, have no ``..`` element, not start with ``..``, names of at most 255 and a
    whole of at most 4096 characters."""

    def bad(message: str) -> Invalid:
        return invalid(field, message)

    if not isinstance(path, str) or not path:
        raise bad(f"invalid path: must not be empty: {path!r}")
    if "\x00" in path:
        raise bad(f"invalid path: must not contain a NUL character: {path!r}")
    if path.startswith("/"):
        raise bad(f"invalid path: must be relative path: {path}")
    if len(path.encode()) > MAX_PATH_LENGTH:
        raise bad(f"invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters")
    for element in path.split("/"):
        if element == "..":
            raise bad(f"invalid path: must not contain '..': {path}")
        if len(element.encode()) > MAX_FILE_NAME_LENGTH:
            raise bad(
                "invalid path: filenames must be less than or equal to "
                f"{MAX_FILE_NAME_LENGTH} characters"
            )
    clean = posixpath.normpath(path)
    if clean == ".":
        raise bad(f"invalid path: must name a file: {path}")
    if clean.startswith(".."):
        raise bad(f"invalid path: must not start with '..': {path}")
    return clean


def validate_mode(mode: object, field: str = "mode") -> int:
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise invalid(field, f"{mode!r}: must be a number between 0 and 0777 (octal)")
    return mode


def validate_payload(payload: Mapping[str, FileProjection]) -> dict[str, FileProjection]:
    """The payload with cleaned paths; ``Invalid`` for a bad path or mode, or for a path that
    is a file in one entry and a directory in another."""
    files: dict[str, FileProjection] = {}
    for path, projection in payload.items():
        files[validate_path(path)] = projection
        validate_mode(projection.mode)
    for path in files:
        parent = posixpath.dirname(path)
        while parent:
            if parent in files:
                raise invalid("path", f"invalid payload: {parent} is a file and a directory")
            parent = posixpath.dirname(parent)
    return files


def _lock_for(target: Path) -> threading.Lock:
    key = os.path.realpath(target)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


class AtomicWriter:
    """Writes payloads into ``target``, an existing directory, one whole version at a time.

    Writes to one target are serialized; the writer never follows a symlink it did not make.
    """

    def __init__(self, target: Path | str) -> None:
        self.target = Path(target)

    def write(self, payload: Mapping[str, FileProjection]) -> bool:
        """Make ``payload`` the content of the target. Returns whether anything changed."""
        files = validate_payload(payload)
        with _lock_for(self.target):
            fd = os.open(self.target, _DIR_FLAGS)
            try:
                return self._write(fd, files)
            finally:
                os.close(fd)

    def _write(self, fd: int, files: dict[str, FileProjection]) -> bool:
        old = _current_version(fd)
        names = {path.split("/", 1)[0] for path in files}
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise invalid("path", f"{name} exists in the volume and is not a symlink")
        if old is not None and _read_tree(fd, old) == {
            p: (f.data, f.mode) for p, f in files.items()
        }:
            _link_top_level(fd, names)
            return False
        new = _make_version_dir(fd)
        try:
            _write_tree(fd, new, files)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(DATA_TMP, dir_fd=fd)
            os.symlink(new, DATA_TMP, dir_fd=fd)
            os.rename(DATA_TMP, DATA_DIR, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            shutil.rmtree(new, dir_fd=fd, ignore_errors=True)
            raise
        _link_top_level(fd, names)
        _unlink_stale_top_level(fd, names)
        for entry in os.listdir(fd):
            if entry != new and VERSION_DIR.match(entry):
                if stat.S_ISLNK(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                    os.unlink(entry, dir_fd=fd)
                else:
                    shutil.rmtree(entry, dir_fd=fd, ignore_errors=True)
        return True


def _current_version(fd: int) -> str | None:
    """The version directory ``..data`` names, if it is one the writer made."""
    try:
        name = os.readlink(DATA_DIR, dir_fd=fd)
    except OSError:
        return None
    return name if VERSION_DIR.match(name) else None


def _read_tree(fd: int, name: str) -> dict[str, tuple[bytes, int]] | None:
    """``{path: (bytes, mode)}`` of the regular files under ``name``; ``None`` when the tree
    holds anything else (a symlink, a device ...) or cannot be read."""
    out: dict[str, tuple[bytes, int]] = {}
    try:
        top = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        return None
    try:
        stack = [("", top)]
        while stack:
            prefix, dfd = stack.pop()
            try:
                for entry in os.scandir(dfd):
                    info = entry.stat(follow_symlinks=False)
                    path = prefix + entry.name
                    if stat.S_ISDIR(info.st_mode):
                        stack.append((path + "/", os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)))
                    elif stat.S_ISREG(info.st_mode):
                        ffd = os.open(
                            entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd
                        )
                        with os.fdopen(ffd, "rb") as fh:
                            out[path] = (fh.read(), stat.S_IMODE(info.st_mode))
                    else:
                        return None
            finally:
                if dfd != top:
                    os.close(dfd)
    except OSError:
        return None
    finally:
        os.close(top)
        for _prefix, dfd in stack:
            os.close(dfd)
    return out


def _make_version_dir(fd: int) -> str:
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    while True:
        name = f"..{stamp}.{secrets.randbelow(10**10)}"
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            continue
        dfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
        try:
            os.fchmod(dfd, 0o755)
        finally:
            os.close(dfd)
        return name


def _write_tree(fd: int, name: str, files: dict[str, FileProjection]) -> None:
    top = os.open(name, _DIR_FLAGS, dir_fd=fd)
    try:
        for path in sorted(files):
            *dirs, base = path.split("/")
            dfd = os.dup(top)
            try:
                for element in dirs:
                    try:
                        os.mkdir(element, 0o755, dir_fd=dfd)
                    except FileExistsError:
                        pass
                    child = os.open(element, _DIR_FLAGS, dir_fd=dfd)
                    os.close(dfd)
                    dfd = child
                    os.fchmod(dfd, 0o755)
                projection = files[path]
                ffd = os.open(
                    base,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    projection.mode,
                    dir_fd=dfd,
                )
                try:
                    view = memoryview(projection.data)
                    while view:
                        view = view[os.write(ffd, view) :]
                    os.fchmod(ffd, projection.mode)
                finally:
                    os.close(ffd)
            finally:
                os.close(dfd)
    finally:
        os.close(top)


def _link_top_level(fd: int, names: set[str]) -> None:
    """Make each ``name`` a symlink to ``..data/name``; replace a symlink that points
    elsewhere; refuse to touch anything that is not a symlink."""
    for name in sorted(names):
        want = f"{DATA_DIR}/{name}"
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            os.symlink(want, name, dir_fd=fd)
            continue
        if not stat.S_ISLNK(info.st_mode):
            raise invalid("path", f"{name} exists in the volume and is not a symlink")
        if os.readlink(name, dir_fd=fd) != want:
            tmp = f"..link_tmp.{secrets.token_hex(4)}"
            os.symlink(want, tmp, dir_fd=fd)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)


def _unlink_stale_top_level(fd: int, names: set[str]) -> None:
    """Remove the symlinks into ``..data`` whose names the payload no longer has."""
    for entry in os.listdir(fd):
        if entry.startswith("..") or entry in names:
            continue
        try:
            if os.readlink(entry, dir_fd=fd) == f"{DATA_DIR}/{entry}":
                os.unlink(entry, dir_fd=fd)
        except OSError:
            continue


__all__ = [
    "DATA_DIR",
    "MAX_FILE_NAME_LENGTH",
    "MAX_PATH_LENGTH",
    "AtomicWriter",
    "FileProjection",
    "invalid",
    "read_version",
    "validate_mode",
    "validate_path",
    "validate_payload",
]
