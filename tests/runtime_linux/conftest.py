"""Fixtures for runtime_linux: a runtime on a fresh data dir with a cgroup root unique to
the test, and a busybox image built from the host's static busybox. Whatever a test leaves
running is stopped by the pids the runtime recorded, and its cgroups are removed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from kcore.conformance.testimages import build_busybox_layout
from kcore.settings import Settings

IMAGE = "kcore.test/busybox:latest"


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_layout(tmp_path_factory.mktemp("image") / "busybox")


def cleanup_runtime_dir(data_dir: Path) -> None:
    """Kill the monitors recorded under ``data_dir`` (their containers die with them)."""
    for record in (data_dir / "runtime" / "sandboxes").glob("*/sandbox.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            pid = json.loads(record.read_text())["pid"]
            os.kill(pid, signal.SIGKILL)


def remove_cgroup_root(parents: dict[str, Path]) -> None:
    deadline = time.monotonic() + 10
    for top in parents.values():
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            while d.exists():
                try:
                    for pid in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                    d.rmdir()
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


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
