"""The conformance suites' own tests use pytester to run a suite against broken stores."""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.store" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.store")


def pytest_configure(config: pytest.Config) -> None:
    # ``pytest_plugins = ["pytester"]`` is refused in a conftest below the rootdir when a
    # run starts above it (``pytest`` from the repository root), so load it here instead.
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
