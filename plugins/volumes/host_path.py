"""``hostPath``: a file or directory of the node, given to the pod's containers as it is.

Nothing is copied and nothing is mounted at the target: as in the kubelet, the runtime
bind-mounts the host path itself, which is the only way that works for every ``type``
(a socket or a device cannot be bind-mounted onto a directory). So the node agent asks
:meth:`HostPathSource.host_path` for the path and puts *that* into the container's mount
(``host_path`` of the CRI mount) instead of the target. ``setup`` runs the ``type``
checks, and creates the path for ``DirectoryOrCreate`` (0755) and ``FileOrCreate`` (0644,
parent not created), with the kubelet's messages; it leaves the target empty. ``teardown``
removes the target and never touches the host path.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kcore.errors import NotFound
from kcore.plugins.volumes.atomic_writer import invalid
from kcore.plugins.volumes.volume_dir import remove

_CHECKS: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "a directory"),
    "File": (stat.S_ISREG, "a file"),
    "Socket": (stat.S_ISSOCK, "a socket file"),
    "CharDevice": (stat.S_ISCHR, "a character device"),
    "BlockDevice": (stat.S_ISBLK, "a block device"),
}
TYPES = ("", "DirectoryOrCreate", "FileOrCreate", *_CHECKS)


class HostPathSource:
    type_name = "hostPath"

    def host_path(self, pod: Mapping[str, Any], volume: Mapping[str, Any]) -> Path:
        """The node path the runtime bind-mounts for this volume (checked: absolute, no
        ``..`` element)."""
        path = (volume.get("hostPath") or {}).get("path")
        if not isinstance(path, str) or not path:
            raise invalid("hostPath.path", "Required value")
        if not path.startswith("/"):
            raise invalid("hostPath.path", f"{path}: must be an absolute path")
        if ".." in path.split("/"):
            raise invalid("hostPath.path", "must not contain '..'")
        return Path(os.path.normpath(path))

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        path = self.host_path(pod, volume)
        kind = (volume.get("hostPath") or {}).get("type") or ""
        if kind not in TYPES:
            raise invalid("hostPath.type", f"{kind} is an invalid volume type")
        await asyncio.to_thread(check_type, path, kind)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        await asyncio.to_thread(remove, Path(target))


def check_type(path: Path, kind: str) -> None:
    """The kubelet's ``checkTypeInternal``: create what ``*OrCreate`` asks for, then check
    that ``path`` (symlinks followed) is of ``kind``."""
    if kind == "":
        return
    if kind == "DirectoryOrCreate" and not os.path.lexists(path):
        os.makedirs(path, 0o755, exist_ok=True)
        os.chmod(path, 0o755)
        return
    if kind == "FileOrCreate" and not os.path.lexists(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            # FileOrCreate does not create the parent directory; the kubelet's message.
            raise NotFound(f"open {path}: no such file or directory") from None
        os.fchmod(fd, 0o644)
        os.close(fd)
        return
    check, what = _CHECKS[kind.removesuffix("OrCreate")]
    message = f"hostPath type check failed: {path} is not {what}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NotFound(message) from None
    if not check(info.st_mode):
        raise invalid("hostPath.type", message)


__all__ = ["TYPES", "HostPathSource", "check_type"]
