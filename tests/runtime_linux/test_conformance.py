"""The runtime conformance suite on runtime_linux, with a cgroup root unique to the run
that is removed afterwards (as is everything the suite started)."""

from __future__ import annotations

import uuid

import pytest
from hostnames import cleanup_runtime_dir, remove_cgroup_root

from kcore.conformance.suites.runtime import RuntimeConformance
from kcore.settings import Settings


class TestRuntimeLinuxConformance(RuntimeConformance):
    @pytest.fixture
    def runtime_factory(self, tmp_path):
        from kcore.plugins.runtime_linux import create_backend
        from kcore.plugins.runtime_linux.cgroups import CgroupDriver

        name = f"kcore-conf-{uuid.uuid4().hex[:12]}"
        made: list[Settings] = []

        async def make(settings: Settings | None = None):
            if settings is None:
                data_dir = tmp_path / f"data{len(made)}"
                data_dir.mkdir()
                settings = Settings(data_dir=data_dir)
            settings = Settings(
                data_dir=settings.data_dir,
                options={**settings.options, "runtime_cgroup_name": name},
            )
            made.append(settings)
            return await create_backend(settings)

        yield make
        for settings in made:
            cleanup_runtime_dir(settings.data_dir)
        remove_cgroup_root(CgroupDriver.detect(root_name=name).parent_paths())
