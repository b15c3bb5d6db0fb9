"""runtime_linux: a CRI-like container runtime on Linux namespaces, cgroups and overlayfs.

Each pod sandbox has a small monitor process (``monitor.py``), started without forking the
daemon, that holds the pod's network, IPC and UTS namespaces, is the parent of the pod's
containers and records their exits, so containers outlive a daemon restart. Images come
from OCI layouts and archives (``kcore image import``), unpacked once per layer.
"""

from __future__ import annotations

from pathlib import Path

import click

from kcore import Settings, hookimpl


async def create_backend(settings: Settings):
    """The runtime slot's backend for ``settings``."""
    from kcore.images import ImageStore
    from kcore.interfaces import RuntimeBackend
    from kcore.plugins.runtime_linux.cgroups import CgroupDriver
    from kcore.plugins.runtime_linux.runtime import LinuxImageService, LinuxRuntime, check_host

    check_host()
    data_dir = Path(settings.data_dir)
    store = ImageStore(data_dir / "images")
    cgroups = CgroupDriver.detect(root_name=settings.option("runtime_cgroup_name", "kcore"))
    runtime = LinuxRuntime(data_dir / "runtime", store, cgroups)
    await runtime.start()
    return RuntimeBackend(
        runtime=runtime, images=LinuxImageService(store, runtime), close=runtime.close
    )


@hookimpl
def kcore_runtime(settings: Settings):
    return create_backend(settings)


@hookimpl
def kcore_add_commands():
    from kcore.plugins.runtime_linux.imagecli import image_group

    return [image_group]


@hookimpl
def kcore_add_options():
    return [
        click.Option(
            ["--runtime-cgroup-name"],
            envvar="KCORE_RUNTIME_CGROUP_NAME",
            help="runtime_linux: the cgroup, under the daemon's own, that holds every pod "
            "(default kcore).",
        ),
    ]
