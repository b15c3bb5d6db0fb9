"""The layout Kubernetes' AtomicWriter gives a volume directory (``..data`` names the
current version directory; top-level names link through it), and reading it
consistently. Writers are volume-source plugins; readers are the node agent, tests and
the volume conformance suite."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = "..data"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_version(target: Path | str) -> dict[str, bytes] | None:
    """Every file of the current version, or ``None`` when a write swapped versions while
    they were being read (read again). This is the reader's side of the layout: note the
    version ``..data`` names, read that directory, and keep the result only if ``..data``
    still names it (a published version never changes, and is removed only once replaced)."""
    try:
        version = os.readlink(os.path.join(target, DATA_DIR))
        top = os.open(os.path.join(target, version), _DIR_FLAGS)
    except FileNotFoundError:
        return None
    out: dict[str, bytes] = {}
    stack = [("", os.dup(top))]
    try:
        while stack:
            prefix, dfd = stack.pop()
            try:
                for entry in os.scandir(dfd):
                    if entry.is_dir(follow_symlinks=False):
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=dfd)
                        stack.append((f"{prefix}{entry.name}/", child))
                    else:
                        ffd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                        with os.fdopen(ffd, "rb") as fh:
                            out[prefix + entry.name] = fh.read()
            finally:
                os.close(dfd)
    except FileNotFoundError:
        return None
    finally:
        os.close(top)
        for _prefix, dfd in stack:
            os.close(dfd)
    try:
        return out if os.readlink(os.path.join(target, DATA_DIR)) == version else None
    except FileNotFoundError:
        return None


__all__ = ["DATA_DIR", "read_version"]
