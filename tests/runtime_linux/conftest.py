"""Fixtures for runtime_linux: a runtime on a fresh data dir with a cgroup root unique to
the test, and a busybox image built from the host's static busybox. Whatever a test leaves
running is stopped by the pids the runtime recorded, and its cgroups are removed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
from hostnames import cleanup_runtime_dir, remove_cgroup_root

from kcore.settings import Settings

IMAGE = "kcore.test/busybox:latest"


@pytest.fixture
def linux_settings(tmp_path: Path):
    """Settings for runtime_linux: a fresh data dir and a cgroup root unique to the test."""
    from kcore.plugins.runtime_linux.cgroups import CgroupDriver

    name = f"kcore-test-{uuid.uuid4().hex[:12]}"
    settings = Settings(data_dir=tmp_path / "data", options={"runtime_cgroup_name": name})
    settings.data_dir.mkdir()
    yield settings
    cleanup_runtime_dir(settings.data_dir)
    remove_cgroup_root(CgroupDriver.detect(root_name=name).parent_paths())


@pytest.fixture
async def linux_backend(linux_settings: Settings, busybox_layout: Path):
    """A runtime_linux backend with the busybox image imported."""
    from kcore.plugins.runtime_linux import create_backend

    backend = await create_backend(linux_settings)
    await backend.images.import_image(busybox_layout)
    yield backend
    for sandbox in await backend.runtime.list_pod_sandbox():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(backend.runtime.remove_pod_sandbox(sandbox["id"]), 30)
    await backend.close()
