"""The target directory of one volume: filling it (on disk or on its own tmpfs) and
removing it with everything mounted below it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from kcore.errors import Invalid
from kcore.plugins.volumes.atomic_writer import AtomicWriter, FileProjection, validate_payload
from kcore.plugins.volumes.mounts import (
    MS_NODEV,
    MS_NOSUID,
    mount_at,
    mount_tmpfs,
    unmount_all,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def check_target(target: Path) -> None:
    """``target`` must be a directory itself, not a symlink to one."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        raise Invalid(f"volume directory {target} does not exist") from None
    if not stat.S_ISDIR(info.st_mode):
        raise Invalid(f"volume directory {target} is not a directory")


def ensure_tmpfs(target: Path, size: int | None, *, mode: int = 0o755, flags: int = 0) -> None:
    """Mount a tmpfs at ``target`` unless one is there already; refuse any other mount."""
    check_target(target)
    current = mount_at(target)
    if current is None:
        mount_tmpfs(target, size=size, mode=mode, flags=flags)
    elif current.fstype != "tmpfs":
        raise Invalid(f"volume directory {target} is a {current.fstype} mount, not tmpfs")


def materialize(
    target: Path, payload: Mapping[str, FileProjection], *, tmpfs_size: int | None = None
) -> bool:
    """Write ``payload`` atomically into ``target``; with ``tmpfs_size``, on a tmpfs of its
    own (never on disk). The payload is checked before anything is mounted or written.
    Returns whether the content changed."""
    files = validate_payload(payload)
    check_target(target)
    if tmpfs_size is not None:
        ensure_tmpfs(target, tmpfs_size, flags=MS_NOSUID | MS_NODEV)
    return AtomicWriter(target).write(files)


def remove(target: Path) -> None:
    """Unmount everything at or below ``target``, then remove it and all it holds. Symlinks
    are removed, never followed; a missing ``target`` is fine."""
    if not os.path.lexists(target):
        return
    if os.path.islink(target) or not os.path.isdir(target):
        os.unlink(target)
        return
    unmount_all(target)
    fd = os.open(target, _DIR_FLAGS)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.name, dir_fd=fd)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(target)


__all__ = ["check_target", "ensure_tmpfs", "materialize", "remove"]
