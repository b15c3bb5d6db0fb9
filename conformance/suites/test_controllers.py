"""Runs the controller conformance suite on the controllers of the plugins named with
``--kcore-plugin``::

    python -m pytest --pyargs kcore.conformance.suites.test_controllers --kcore-plugin controllers

(``kcore conformance --plugin controllers`` runs exactly this.) Plugin authors who test
controllers directly subclass
:class:`~kcore.conformance.suites.controllers.ControllerConformance` in their own tests and
override its ``make_controllers`` method instead.
"""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.controllers" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.controllers")

from kcore.conformance.suites.controllers import ControllerConformance


class TestControllers(ControllerConformance):
    pass
