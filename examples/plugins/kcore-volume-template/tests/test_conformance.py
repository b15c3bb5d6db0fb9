"""TemplateSource passes kcore's volume source conformance suite with the cases it
declares (``kcore conformance --plugin volume_template`` runs the same suite through the
plugin)."""

from __future__ import annotations

import pytest
from kcore.conformance.suites.volumes import VolumeSourceConformance

from kcore_volume_template import TemplateSource


class TestTemplateSource(VolumeSourceConformance):
    volume_cases = TemplateSource().conformance()

    @pytest.fixture
    def volume_sources_factory(self):
        return lambda settings=None: [TemplateSource()]
