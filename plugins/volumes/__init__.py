"""volumes: the built-in volume sources, as the kubelet materializes them.

``emptyDir``, ``hostPath``, ``configMap``, ``secret``, ``downwardAPI`` and ``projected``
(see each module). The node agent calls ``setup(pod, volume, target, api)`` with an
existing, empty ``target`` before it starts the pod's containers, again at every pod sync
(an unchanged volume writes nothing; a changed ConfigMap, Secret or label lands in one
atomic step), and ``teardown(pod, volume, target)`` when the pod is gone. Then:

- ``teardown`` unmounts everything at or below ``target`` and removes it, contents and
  directory; it is idempotent.
- ``hostPath`` is the exception to "the target holds the volume": the node agent
  bind-mounts ``HostPathSource.host_path(pod, volume)`` into the containers instead of
  the target (see :mod:`.host_path`). A node agent tells it apart by that method.
- Errors are kcore's categories with the kubelet's messages (``configmap "c" not
  found``), for the node agent to report as ``FailedMount``: ``MountVolume.SetUp failed
  for volume "<v>" : <message>``.
- ``secret`` and ``projected`` live on a tmpfs of their own, never on disk.
- Item paths are checked before anything is written: relative, no ``..``, not starting
  with ``..``, names up to 255 and paths up to 4096 characters, else ``Invalid``.

:mod:`kcore.pods.env` builds containers' environments (``env``, ``envFrom``,
``$(VAR)``) from the same sources.
"""

from __future__ import annotations

from kcore import Settings, VolumeSource, hookimpl
from kcore.plugins.volumes.config_map import ConfigMapSource
from kcore.plugins.volumes.downward_api import DownwardAPISource
from kcore.plugins.volumes.empty_dir import EmptyDirSource
from kcore.plugins.volumes.host_path import HostPathSource
from kcore.plugins.volumes.projected import ProjectedSource
from kcore.plugins.volumes.secret import SecretSource
from kcore.pods.resources import default_node_allocatable


def volume_sources(node_allocatable: dict[str, str] | None = None) -> list[VolumeSource]:
    """One of each source, sharing ``node_allocatable`` (default: this machine's CPUs and
    memory)."""
    allocatable = node_allocatable or default_node_allocatable()
    return [
        EmptyDirSource(allocatable),
        HostPathSource(),
        ConfigMapSource(),
        SecretSource(allocatable),
        DownwardAPISource(allocatable),
        ProjectedSource(allocatable),
    ]


@hookimpl
def kcore_volume_sources(settings: Settings) -> list[VolumeSource]:
    return volume_sources()


__all__ = [
    "ConfigMapSource",
    "DownwardAPISource",
    "EmptyDirSource",
    "HostPathSource",
    "ProjectedSource",
    "SecretSource",
    "kcore_volume_sources",
    "volume_sources",
]
