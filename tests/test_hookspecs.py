"""The hookspecs read like a manual: documented, typed, prefixed."""

from __future__ import annotations

import inspect

import pytest

from kcore import hookspecs

SPECS = sorted(hookspecs._all_specs().items())


def test_there_are_hookspecs_for_every_area():
    names = {name for name, _ in SPECS}
    assert {
        "kcore_store",
        "kcore_runtime",
        "kcore_network",
        "kcore_volume_sources",
        "kcore_controllers",
        "kcore_node_services",
        "kcore_scheduler_filters",
        "kcore_scheduler_scores",
        "kcore_admission_checks",
        "kcore_add_commands",
        "kcore_add_options",
    } <= names
    assert set(hookspecs.SLOT_HOOKS.values()) <= names


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_each_hookspec_is_documented_and_typed(name, spec):
    doc = inspect.getdoc(spec) or ""
    assert len(doc.splitlines()) >= 3, (
        f"{name} needs a docstring saying what it receives and returns"
    )
    assert ":returns:" in doc, f"{name}: say what it returns"
    assert "Called" in doc, f"{name}: say when it is called"
    sig = inspect.signature(spec)
    for param in sig.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) is untyped"
        assert f":param {param.name}:" in doc, f"{name}: document {param.name}"
    assert sig.return_annotation is not inspect.Signature.empty
