"""kcore's conformance suites: one per slot and contribution type.

A plugin author runs them with ``kcore conformance --plugin NAME`` or from their own tests:
subclass a suite class (for example :class:`kcore.conformance.suites.store.StoreConformance`)
in a ``test_*.py`` file and override the fixture that builds the implementation under test
(``store_factory``). Capabilities the implementation declares it lacks become explicit skips
that name the capability.
"""
