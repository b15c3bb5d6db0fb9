"""Runs the store conformance suite on the store of the plugin named with ``--kcore-plugin``::

    python -m pytest --pyargs kcore.conformance.suites.test_store --kcore-plugin store_sqlite

(``kcore conformance`` runs exactly this.) Plugin authors who test a store class directly
subclass :class:`~kcore.conformance.suites.store.StoreConformance` in their own tests and
override the ``store_factory`` fixture instead.
"""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.store" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.store")

from kcore.conformance.suites.store import StoreConformance


class TestStore(StoreConformance):
    pass
