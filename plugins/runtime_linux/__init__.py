"""runtime_linux: a CRI-like container runtime on Linux namespaces, cgroups and overlayfs.

Each pod sandbox has a small monitor process (``monitor.py``), started without forking the
daemon, that holds the pod's network, IPC and UTS namespaces, is the parent of the pod's
containers and records their exits, so containers outlive a daemon restart. Images come
from registries (``kcore image pull``, CRI's ``PullImage``) or from OCI layouts and archives
(``kcore image import``), unpacked once per layer. The ``--registry-*`` options say how this
node reaches registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kcore import Settings, hookimpl

if TYPE_CHECKING:
    from kcore.registry import RegistryConfig


def registry_config(settings: Settings) -> RegistryConfig:
    """The node's registry configuration from the ``--registry-*`` options."""
    from kcore.registry import RegistryConfig

    return RegistryConfig.from_options(
        insecure=settings.option("registry_insecure", ()),
        ca=settings.option("registry_ca", ()),
        auth_file=settings.option("registry_auth_file"),
        read_timeout=settings.option("registry_read_timeout"),
    )


async def create_backend(settings: Settings):
    """The runtime slot's backend for ``settings``."""
    from kcore.images import ImageStore
    from kcore.interfaces import RuntimeBackend
    from kcore.plugins.runtime_linux.cgroups import CgroupDriver
    from kcore.plugins.runtime_linux.runtime import LinuxImageService, LinuxRuntime, check_host

    check_host()
    registry = registry_config(settings)
    data_dir = Path(settings.data_dir)
    store = ImageStore(data_dir / "images")
    cgroups = CgroupDriver.detect(root_name=settings.option("runtime_cgroup_name", "kcore"))
    runtime = LinuxRuntime(data_dir / "runtime", store, cgroups)
    await runtime.start()
    return RuntimeBackend(
        runtime=runtime,
        images=LinuxImageService(store, runtime, registry=registry),
        close=runtime.close,
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
        click.Option(
            ["--registry-insecure"],
            multiple=True,
            metavar="HOST[:PORT]",
            envvar="KCORE_REGISTRY_INSECURE",
            help="runtime_linux: a registry reached over plain HTTP, or HTTPS without "
            "verifying its certificate. Repeatable; comma lists too.",
        ),
        click.Option(
            ["--registry-ca"],
            multiple=True,
            metavar="HOST[:PORT]=PATH",
            envvar="KCORE_REGISTRY_CA",
            help="runtime_linux: a CA certificate file (PEM) trusted for that registry, on top "
            "of the system's. Repeatable.",
        ),
        click.Option(
            ["--registry-auth-file"],
            metavar="PATH",
            envvar="KCORE_REGISTRY_AUTH_FILE",
            help="runtime_linux: node-level registry credentials, a Docker config.json "
            '({"auths": {"HOST": {"auth": ...}}}), used when a pull brings none.',
        ),
        click.Option(
            ["--registry-read-timeout"],
            type=float,
            metavar="SECONDS",
            envvar="KCORE_REGISTRY_READ_TIMEOUT",
            help="runtime_linux: give up on a registry that sends nothing for this long "
            "(default 30).",
        ),
    ]
