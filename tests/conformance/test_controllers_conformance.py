"""kcore's own controllers and its scheduler pass the controller conformance suite.

The classes run the suite in this process on the controllers the plugins contribute (with
``--allocate-node-cidrs``, so that node IPAM is among them); the last test runs it the way
an outside author does, through ``kcore conformance``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from kcore.conformance.suites.controllers import ControllerConformance, scenarios_of
from kcore.plugin_host import PluginHost
from kcore.settings import Settings

OPTIONS = {"allocate_node_cidrs": True}


def _settings(settings: Settings) -> Settings:
    return Settings(data_dir=settings.data_dir, options={**OPTIONS, **settings.options})


class TestBuiltinControllers(ControllerConformance):
    def make_controllers(self, plugins: Any, settings: Settings) -> list[Any]:
        return PluginHost(["controllers"]).controllers(_settings(settings))


class TestScheduler(ControllerConformance):
    def make_controllers(self, plugins: Any, settings: Settings) -> list[Any]:
        return PluginHost(["scheduler"]).controllers(settings)

    def make_extra(self, plugins: Any, settings: Settings) -> dict[str, Any]:
        return super().make_extra(["scheduler"], settings)


def test_every_built_in_controller_declares_scenarios(tmp_path) -> None:
    settings = _settings(Settings(data_dir=tmp_path))
    controllers = PluginHost(["controllers", "scheduler"]).controllers(settings)
    without = [c.name for c in controllers if not scenarios_of(c)]
    assert not without, f"controllers without conformance scenarios: {without}"
    assert len(controllers) >= 12


def test_kcore_conformance_runs_the_suite_on_a_plugin(tmp_path) -> None:
    """What an outside author types; the suite applies to a plugin that contributes
    controllers, and the report names it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kcore",
            "conformance",
            "--plugin",
            "scheduler",
            "--suite",
            "controllers",
            "--",
            "-k",
            "converges_from or writes_nothing",
            "--basetemp",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "suites controllers" in proc.stdout, proc.stdout[-2000:]
    assert re.search(r"\b[1-9]\d* passed", proc.stdout), proc.stdout[-2000:]
