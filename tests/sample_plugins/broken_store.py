"""A store plugin that breaks compare-and-swap and declares no optional capability: what
``kcore conformance`` must report as failed (with the capabilities' tests skipped).

Its stores come from ``tests/conformance/broken_stores.py``, which must be importable
(``tests/conformance`` on ``PYTHONPATH``)."""

from broken_stores import CasIgnoringStore

from kcore import hookimpl


class BrokenStore(CasIgnoringStore):
    capabilities = frozenset()


@hookimpl
def kcore_store(settings):
    return BrokenStore()
