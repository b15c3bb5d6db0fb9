"""Rendering, refusing, and being found by kcore."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
from kcore import Invalid, Settings
from kcore.conformance.suites.volumes import FakeApi, make_pod
from kcore.pods.atomic import read_version

from kcore_volume_template import DRIVER, TemplateSource, kcore_volume_sources
from kcore_volume_template.render import render

POD = make_pod({"app": "web", "tier": "front"})
POD["status"] = {"podIP": "10.244.0.7", "hostIP": "192.0.2.1"}
SITE = {
    "kind": "ConfigMap",
    "metadata": {"name": "site", "namespace": "kcore-conformance"},
    "data": {"index.html": "<h1>{{ metadata.name }}</h1>"},
}


def volume(**attributes: str) -> dict:
    return {"name": "site", "csi": {"driver": DRIVER, "volumeAttributes": attributes}}


def setup(volume: dict, target, objects=(SITE,)) -> None:
    asyncio.run(TemplateSource().setup(POD, volume, target, FakeApi(objects)))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{metadata.name}}.{{ metadata.namespace }}", "volumes.kcore-conformance"),
        ("{{ metadata.labels }}", 'app="web"\ntier="front"'),
        ("{{ metadata.labels['missing'] }}", ""),
        ("{{ status.podIP }} on {{ spec.nodeName }}", "10.244.0.7 on node-1"),
        ("no placeholders {here} or { {there} }", "no placeholders {here} or { {there} }"),
    ],
)
def test_placeholders_are_pod_fields(template, expected):
    assert render(template, POD, field="f") == expected


@pytest.mark.parametrize("expression", ["spec.containers", "__import__('os')", "metadata"])
def test_a_placeholder_that_names_no_pod_field_is_invalid(expression):
    with pytest.raises(Invalid) as caught:
        render("x {{ " + expression + " }} y", POD, field="configmap site key index.html")
    assert str(caught.value).startswith(f"configmap site key index.html: {{{{ {expression} }}}}")
    assert caught.value.causes[0].field == "configmap site key index.html"


def test_a_bad_template_writes_nothing(tmp_path):
    config_map = {
        "kind": "ConfigMap",
        "metadata": {"name": "site", "namespace": "kcore-conformance"},
        "data": {"a.txt": "fine", "b.txt": "{{ spec.containers }}"},
    }
    target = tmp_path / "volume"
    target.mkdir()
    with pytest.raises(Invalid):
        setup(volume(configMap="site"), target, [config_map])
    assert list(target.iterdir()) == []


@pytest.mark.parametrize(
    ("attributes", "field", "message"),
    [
        ({}, "configMap", "a ConfigMap name is required"),
        ({"configMap": "site", "configmap": "x"}, "configmap", "unknown attribute"),
        ({"configMap": "site", "optional": True}, "optional", "True: must be a string"),
        ({"configMap": "site", "optional": "yes"}, "optional", 'must be "true" or "false"'),
        ({"configMap": "site", "defaultMode": "0999"}, "defaultMode", "must be octal digits"),
        ({"configMap": "site", "defaultMode": "1777"}, "defaultMode", "between 0 and 0777"),
        ({"configMap": "site", "items": "index.html"}, "items", "must be a JSON list"),
        ({"configMap": "site", "items": '{"key": "a"}'}, "items", "must be a JSON list"),
        (
            {"configMap": "site", "items": '[{"key": "index.html", "mode": "rw"}]'},
            "items[0].mode",
            "must be octal digits",
        ),
    ],
)
def test_bad_volume_attributes_are_invalid(tmp_path, attributes, field, message):
    with pytest.raises(Invalid) as caught:
        setup(volume(**attributes), tmp_path)
    [cause] = caught.value.causes
    assert cause.field == f"csi.volumeAttributes.{field}"
    assert message in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_attributes_the_kubelet_adds_are_ignored_and_modes_may_be_json_numbers(tmp_path):
    items = '[{"key": "index.html", "path": "i.html", "mode": 384}]'  # 384 == 0o600
    kubelet = {"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "x"}
    setup(volume(configMap="site", items=items, **kubelet), tmp_path)
    assert read_version(tmp_path) == {"i.html": b"<h1>volumes</h1>"}
    assert (tmp_path / "i.html").stat().st_mode & 0o777 == 0o600


def test_a_volume_of_another_driver_is_refused(tmp_path):
    other = {"name": "site", "csi": {"driver": "other.example.com", "volumeAttributes": {}}}
    with pytest.raises(Invalid) as caught:
        setup(other, tmp_path)
    assert "this source is the driver template.examples.kcore.io" in str(caught.value)


def test_a_changed_configmap_is_a_new_version(tmp_path):
    target = tmp_path / "volume"
    target.mkdir()
    site = volume(configMap="site")
    config_map = {
        "kind": "ConfigMap",
        "metadata": {"name": "site", "namespace": "kcore-conformance"},
        "data": {"hello.txt": "hello {{ metadata.name }}"},
    }
    api = FakeApi([config_map])
    source = TemplateSource()
    asyncio.run(source.setup(POD, site, target, api))
    assert read_version(target) == {"hello.txt": b"hello volumes"}
    api.replace([{**config_map, "data": {"bye.txt": "bye {{ metadata.labels['tier'] }}"}}])
    asyncio.run(source.setup(POD, site, target, api))
    assert read_version(target) == {"bye.txt": b"bye front"}
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("..")) == ["bye.txt"]


def test_the_hook_contributes_the_source():
    [source] = kcore_volume_sources(Settings())
    assert source.type_name == "csi:template.examples.kcore.io" and source.read_only


def test_kcore_finds_the_plugin_by_its_entry_point_name():
    # The kcore of this environment, whatever else is on PATH.
    proc = subprocess.run(
        [sys.executable, "-m", "kcore.cli", "--plugins", "volume_template", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert (entry["name"], entry["slots"]) == ("volume_template", [])
    assert entry["hooks"] == ["kcore_volume_sources"]
