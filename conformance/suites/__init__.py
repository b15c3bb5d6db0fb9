"""The suites. Each module defines a ``*Conformance`` base class to subclass, and a
``test_*`` module that runs it against the plugins named with ``--kcore-plugin``."""
