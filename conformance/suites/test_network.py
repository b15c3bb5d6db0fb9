"""Runs the network conformance suite on the network of the plugin named with
``--kcore-plugin``::

    python -m pytest --pyargs kcore.conformance.suites.test_network --kcore-plugin net_host

(``kcore conformance --plugin net_host`` runs exactly this.) Plugin authors who test a
network plugin directly subclass
:class:`~kcore.conformance.suites.network.NetworkConformance` in their own tests and
override the ``network_factory`` fixture instead.
"""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.network" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.network")

from kcore.conformance.suites.network import NetworkConformance


class TestNetwork(NetworkConformance):
    pass
