"""Runs the volume source conformance suite on the sources of the plugins named with
``--kcore-plugin``::

    python -m pytest --pyargs kcore.conformance.suites.test_volumes --kcore-plugin volumes

(``kcore conformance --plugin volumes`` runs exactly this.) Plugin authors who test their
sources directly subclass
:class:`~kcore.conformance.suites.volumes.VolumeSourceConformance` in their own tests and
override the ``volume_sources_factory`` fixture instead.
"""

from __future__ import annotations

import sys

import pytest

if "kcore.conformance.suites.volumes" not in sys.modules:
    # Plain asserts in the suite then explain themselves as they do in a test module.
    pytest.register_assert_rewrite("kcore.conformance.suites.volumes")

from kcore.conformance.suites.volumes import VolumeSourceConformance


class TestVolumeSources(VolumeSourceConformance):
    pass
