"""The settings every slot factory and contribution hook receives."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path("/var/lib/kcore")


def default_data_dir() -> Path:
    """``$KCORE_DATA_DIR``, else ``/var/lib/kcore`` for root, else ``~/.local/share/kcore``.

    One default for every command, so that the daemon and ``kcore image ...`` see the same
    node state.
    """
    env = os.environ.get("KCORE_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return DEFAULT_DATA_DIR
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "kcore"


@dataclass(frozen=True)
class Settings:
    """What the command line decided: the data directory and the values of every option
    that plugins contributed through ``kcore_add_options`` (keyed by the option's Python
    name, e.g. ``etcd_endpoints`` for ``--etcd-endpoints``)."""

    data_dir: Path = field(default_factory=default_data_dir)
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        """The value of a plugin-contributed option, or ``default`` when it is unset."""
        value = self.options.get(name)
        return default if value is None else value
