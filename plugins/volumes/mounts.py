"""tmpfs mounts and their removal, through libc's ``mount(2)`` and ``umount2(2)``.

Mount points are read from ``/proc/self/mountinfo``: the node agent and the volume sources
run in the host's mount namespace, so what is listed there is what they mounted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

MS_NOSUID = 0x2
MS_NODEV = 0x4
MNT_DETACH = 0x2

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(rb"\\([0-7]{3})")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass(frozen=True)
class MountPoint:
    path: str
    fstype: str
    options: str


def _unescape(field: bytes) -> str:
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def mount_points() -> list[MountPoint]:
    """Every mount of this mount namespace, in mount order (a later one may hide an earlier
    one at the same path)."""
    out = []
    with open(MOUNTINFO, "rb") as fh:
        for line in fh:
            fields = line.split()
            sep = fields.index(b"-")
            out.append(
                MountPoint(_unescape(fields[4]), os.fsdecode(fields[sep + 1]), _unescape(fields[5]))
            )
    return out


def _is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def mounts_under(path: Path | str) -> list[MountPoint]:
    """The mounts at or below ``path``, deepest and latest first: the order to unmount them."""
    top = os.path.realpath(path)
    found = [m for m in mount_points() if _is_under(m.path, top)]
    found.reverse()
    found.sort(key=lambda m: m.path.count("/"), reverse=True)
    return found


def mount_at(path: Path | str) -> MountPoint | None:
    """The visible (latest) mount exactly at ``path``, if ``path`` is a mount point."""
    real = os.path.realpath(path)
    at = [m for m in mount_points() if m.path == real]
    return at[-1] if at else None


def mount_tmpfs(target: Path | str, *, size: int | None, mode: int, flags: int = 0) -> None:
    """Mount a new tmpfs of ``size`` bytes (the kernel's default when ``None``) at
    ``target``, its root directory with ``mode``."""
    options = f"mode={mode:o}" + (f",size={size}" if size else "")
    path = os.fsencode(os.path.realpath(target))
    if _libc.mount(b"tmpfs", path, b"tmpfs", flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs ({options}) on {target}: {os.strerror(err)}")


def unmount(path: str) -> None:
    """Unmount ``path``; lazily when it is busy; nothing when it is not mounted."""
    raw = os.fsencode(path)
    if _libc.umount2(raw, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and _libc.umount2(raw, MNT_DETACH) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return
    raise OSError(err, f"unmount {path}: {os.strerror(err)}")


def unmount_all(path: Path | str) -> None:
    """Unmount everything at or below ``path``, stacked mounts included."""
    for _ in range(64):
        found = mounts_under(path)
        if not found:
            return
        for mount in found:
            unmount(mount.path)
    raise OSError(errno.EBUSY, f"mounts under {path} keep coming back: {mounts_under(path)}")


__all__ = [
    "MS_NODEV",
    "MS_NOSUID",
    "MountPoint",
    "mount_at",
    "mount_points",
    "mount_tmpfs",
    "mounts_under",
    "unmount",
    "unmount_all",
]
