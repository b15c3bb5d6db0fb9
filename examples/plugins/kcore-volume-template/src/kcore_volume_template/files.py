"""Publishing a volume's files all at once, in the layout of Kubernetes' AtomicWriter::

    ..2026_05_01_12_00_00.123456789/   one version of the files
    ..data -> ..2026_05_01_12_00_00.123456789
    index.html -> ..data/index.html    one symlink per top-level name

A new version is written into a fresh directory, then ``..data`` is switched to it with
one ``rename``: a reader that resolves ``..data`` once sees one version, never a mix
(``kcore.pods.atomic.read_version`` reads that way). Paths are checked before anything
is written, and files are only ever created inside the fresh directory, so nothing lands
outside the target.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from kcore import FieldError, Invalid
from kcore.pods.atomic import DATA_DIR

DATA_TMP = "..data_tmp"
MAX_PATH = 4096
MAX_NAME = 255

Files = Mapping[str, tuple[bytes, int]]
"""path -> (content, permission bits)"""


def invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", causes=[FieldError(field, message)])


def clean_path(path: object, field: str) -> str:
    """``path`` normalized (``a/./b//c`` -> ``a/b/c``); ``Invalid`` unless it is relative,
    has no ``..`` element, does not start with ``..`` and fits Kubernetes' limits."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise invalid(field, f"invalid path {path!r}")
    if path.startswith("/"):
        raise invalid(field, f"must be a relative path: {path}")
    if len(path.encode()) > MAX_PATH:
        raise invalid(field, f"must be at most {MAX_PATH} characters")
    parts = path.split("/")
    if ".." in parts:
        raise invalid(field, f"must not contain '..': {path}")
    if any(len(part.encode()) > MAX_NAME for part in parts):
        raise invalid(field, f"file names must be at most {MAX_NAME} characters")
    clean = posixpath.normpath(path)
    if clean == "." or clean.startswith(".."):
        raise invalid(field, f"must name a file and not start with '..': {path}")
    return clean


def check_tree(files: Files) -> None:
    """``Invalid`` when one path is a file and also the directory of another."""
    for path in files:
        parent = posixpath.dirname(path)
        while parent:
            if parent in files:
                raise invalid("path", f"{parent} is a file and a directory")
            parent = posixpath.dirname(parent)


def publish(target: Path, files: Files) -> bool:
    """Make ``files`` the content of ``target`` (an existing directory) in one step.
    Returns whether anything changed: the same files again write nothing."""
    check_tree(files)
    current = _current_version(target)
    names = {path.split("/", 1)[0] for path in files}
    for name in names:
        entry = target / name
        if entry.exists() and not entry.is_symlink():
            raise invalid("path", f"{name} exists in the volume and is not ours")
    if current is not None and _read(target / current) == dict(files):
        _link(target, names)
        return False
    version = _new_version_dir(target)
    try:
        for path, (data, mode) in sorted(files.items()):
            _write_file(target / version, path, data, mode)
        (target / DATA_TMP).unlink(missing_ok=True)
        os.symlink(version, target / DATA_TMP)
        os.rename(target / DATA_TMP, target / DATA_DIR)
    except BaseException:
        shutil.rmtree(target / version, ignore_errors=True)
        raise
    _link(target, names)
    for entry in os.listdir(target):
        if entry.startswith("..") and entry not in (version, DATA_DIR):
            old = target / entry
            if old.is_symlink() or not old.is_dir():
                old.unlink()
            else:
                shutil.rmtree(old)
        elif not entry.startswith("..") and entry not in names:
            if (
                os.path.islink(target / entry)
                and os.readlink(target / entry) == f"{DATA_DIR}/{entry}"
            ):
                (target / entry).unlink()
    return True


def remove(target: Path) -> None:
    """Remove the volume: the target and everything in it (symlinks are not followed)."""
    try:
        shutil.rmtree(target)
    except FileNotFoundError:
        pass


def _current_version(target: Path) -> str | None:
    try:
        return os.readlink(target / DATA_DIR)
    except OSError:
        return None


def _read(version_dir: Path) -> dict[str, tuple[bytes, int]] | None:
    out: dict[str, tuple[bytes, int]] = {}
    try:
        for root, _dirs, names in os.walk(version_dir):
            for name in names:
                path = Path(root, name)
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode):
                    return None
                out[path.relative_to(version_dir).as_posix()] = (
                    path.read_bytes(),
                    stat.S_IMODE(info.st_mode),
                )
    except OSError:
        return None
    return out


def _new_version_dir(target: Path) -> str:
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    while True:
        name = f"..{stamp}.{secrets.randbelow(10**9):09d}"
        try:
            os.mkdir(target / name, 0o755)
        except FileExistsError:
            continue
        os.chmod(target / name, 0o755)
        return name


def _write_file(top: Path, path: str, data: bytes, mode: int) -> None:
    *dirs, _name = path.split("/")
    directory = top
    for part in dirs:
        directory = directory / part
        directory.mkdir(mode=0o755, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(top / path, flags, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
        os.fchmod(fd, mode)  # not narrowed by the umask
    finally:
        os.close(fd)


def _link(target: Path, names: set[str]) -> None:
    """Each top-level ``name`` a symlink to ``..data/name``."""
    for name in sorted(names):
        link, want = target / name, f"{DATA_DIR}/{name}"
        if link.is_symlink() and os.readlink(link) == want:
            continue
        tmp = target / f"..link.{secrets.token_hex(4)}"
        os.symlink(want, tmp)
        os.rename(tmp, link)
