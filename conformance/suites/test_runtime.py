"""Runs the runtime conformance suite on the runtime of the plugin named with
``--kcore-plugin``::

    python -m pytest --pyargs kcore.conformance.suites.test_runtime --kcore-plugin runtime_sim

(``kcore conformance --plugin runtime_sim`` runs exactly this.) Plugin authors who test a
runtime directly subclass :class:`~kcore.conformance.suites.runtime.RuntimeConformance` in
their own tests and override the ``runtime_factory`` fixture instead.
"""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.runtime" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.runtime")

from kcore.conformance.suites.runtime import RuntimeConformance


class TestRuntime(RuntimeConformance):
    pass
