"""downwardAPI: pod fields with Go's quoting, resources divided and rounded up, the node's
allocatable where a container sets no limit, and label updates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcore.conformance.suites.volumes import make_pod, unmount_below, visible_files
from kcore.errors import Invalid, NotFound
from kcore.plugins.volumes import DownwardAPISource
from kcore.plugins.volumes.atomic_writer import DATA_DIR
from kcore.pods.fieldpath import format_map, go_quote, pod_field, split_subscript
from kcore.pods.resources import (
    container_resource_value,
    default_node_allocatable,
    quantity,
)

ALLOCATABLE = {"cpu": "4", "memory": "256Mi", "ephemeral-storage": "10Gi"}


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('say "hi" \\ bye', r'"say \"hi\" \\ bye"'),
        ("\a\b\f\n\r\t\v", r'"\a\b\f\n\r\t\v"'),
        ("\x00\x01\x1f\x7f", r'"\x00\x01\x1f\x7f"'),
        ("é 日本 😀", '"é 日本 😀"'),
        ("\u00a0\u0085\u200b", r'"\u00a0\u0085\u200b"'),
        ("\U000e0001", r'"\U000e0001"'),
    ],
)
def test_go_quote_matches_strconv_quote(text, quoted):
    assert go_quote(text) == quoted


def test_format_map_sorts_and_has_no_final_newline():
    assert format_map({"b": "2", "a": 'x"y', "c": "line\nbreak"}) == (
        'a="x\\"y"\nb="2"\nc="line\\nbreak"'
    )
    assert format_map({}) == ""


def test_split_subscript():
    assert split_subscript("metadata.labels['app']") == ("metadata.labels", "app")
    assert split_subscript("metadata.labels['a.b/c']") == ("metadata.labels", "a.b/c")
    assert split_subscript("metadata.labels") == ("metadata.labels", None)
    assert split_subscript("['x']") == ("['x']", None)


def test_pod_fields_for_volumes_and_for_env():
    pod = make_pod({"app": "web", "tier": "front"})
    pod["status"] = {
        "hostIP": "192.0.2.1",
        "hostIPs": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}],
        "podIP": "10.0.0.7",
        "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}],
    }

    def field(path: str, **kw) -> str:
        return pod_field(pod, {"fieldPath": path}, **kw)

    assert field("metadata.name") == "volumes"
    assert field("metadata.uid") == pod["metadata"]["uid"]
    assert field("metadata.labels") == 'app="web"\ntier="front"'
    assert field("metadata.annotations") == 'owner="team \\"blue\\""'
    assert field("metadata.labels['tier']") == "front"
    assert field("metadata.annotations['none']") == ""
    assert field("spec.nodeName", for_env=True) == "node-1"
    assert field("spec.serviceAccountName", for_env=True) == "default"
    assert field("status.podIP", for_env=True) == "10.0.0.7"
    assert field("status.podIPs", for_env=True) == "10.0.0.7,fd00::7"
    assert field("status.hostIPs", for_env=True) == "192.0.2.1,2001:db8::1"
    assert field("status.podIP", for_env=True, pod_ips=["10.9.9.9"]) == "10.9.9.9"
    with pytest.raises(Invalid, match=r"unsupported fieldPath: spec\.nodeName$"):
        field("spec.nodeName")
    with pytest.raises(Invalid, match=r"unsupported fieldPath: metadata\.labels$"):
        field("metadata.labels", for_env=True)
    with pytest.raises(Invalid, match="does not support subscript"):
        field("metadata.name['x']")
    with pytest.raises(Invalid, match="unsupported pod version: v2"):
        pod_field(pod, {"apiVersion": "v2", "fieldPath": "metadata.name"})


def test_quantities():
    assert quantity("250m") == quantity("0.25")
    assert quantity("1Gi") == 1 << 30
    assert quantity("128M") == 128_000_000
    assert quantity(3) == 3
    with pytest.raises(Invalid):
        quantity("lots")


@pytest.mark.parametrize(
    ("resources", "resource", "divisor", "value"),
    [
        ({"limits": {"cpu": "250m"}}, "limits.cpu", None, "1"),
        ({"limits": {"cpu": "250m"}}, "limits.cpu", "1m", "250"),
        ({"limits": {"cpu": "1.5"}}, "limits.cpu", "1", "2"),
        ({"limits": {"cpu": "0.5m"}}, "limits.cpu", "1m", "1"),
        ({"requests": {"cpu": "100m"}}, "requests.cpu", "1m", "100"),
        ({"limits": {"memory": "128M"}}, "limits.memory", "1Mi", "123"),
        ({"limits": {"memory": "1Gi"}}, "limits.memory", "1Mi", "1024"),
        ({"limits": {"memory": "1Gi"}}, "limits.memory", None, str(1 << 30)),
        ({"requests": {"memory": "64Mi"}}, "requests.memory", "1Mi", "64"),
        ({"limits": {"hugepages-2Mi": "4Mi"}}, "limits.hugepages-2Mi", "1Mi", "4"),
        ({}, "requests.memory", None, "0"),
        ({}, "requests.cpu", "1m", "0"),
        ({}, "limits.memory", "1Mi", "256"),  # node allocatable
        ({}, "limits.cpu", "1m", "4000"),
        ({}, "limits.ephemeral-storage", "1Gi", "10"),
        ({}, "limits.hugepages-1Gi", None, "0"),
    ],
)
def test_resource_values(resources, resource, divisor, value):
    container = {"name": "c", "resources": resources}
    assert container_resource_value(container, resource, divisor, ALLOCATABLE) == value


def test_unsupported_resource_and_bad_divisor():
    with pytest.raises(Invalid, match=r"unsupported container resource : limits\.gpu"):
        container_resource_value({}, "limits.gpu", None, ALLOCATABLE)
    with pytest.raises(Invalid):
        container_resource_value({}, "limits.cpu", "-1", ALLOCATABLE)


def test_default_node_allocatable_is_this_machine():
    allocatable = default_node_allocatable()
    assert quantity(allocatable["cpu"]) == os.cpu_count()
    assert quantity(allocatable["memory"]) > 0


@pytest.fixture
def target(tmp_path: Path):
    path = tmp_path / "vol"
    path.mkdir()
    try:
        yield path
    finally:
        unmount_below(tmp_path)


def downward_volume(*items: dict, **extra) -> dict:
    return {"name": "podinfo", "downwardAPI": {"items": list(items), **extra}}


async def test_volume_files_and_modes(target):
    pod = make_pod()
    pod["spec"]["initContainers"] = [{"name": "init", "resources": {"limits": {"cpu": "2"}}}]
    volume = downward_volume(
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "meta/uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o600},
        {
            "path": "cpu",
            "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"},
        },
        {
            "path": "init-cpu",
            "resourceFieldRef": {"containerName": "init", "resource": "limits.cpu"},
        },
        defaultMode=0o444,
    )
    await DownwardAPISource(ALLOCATABLE).setup(pod, volume, target, None)
    assert visible_files(target) == {
        "labels": b'app="web"',
        "meta/uid": pod["metadata"]["uid"].encode(),
        "cpu": b"500",
        "init-cpu": b"2",
    }
    assert os.stat(target / "labels").st_mode & 0o777 == 0o444
    assert os.stat(target / "meta/uid").st_mode & 0o777 == 0o600


async def test_label_change_lands_atomically_and_no_change_writes_nothing(target):
    source, pod = DownwardAPISource(ALLOCATABLE), make_pod()
    volume = downward_volume({"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}})
    await source.setup(pod, volume, target, None)
    first = os.readlink(target / DATA_DIR)
    await source.setup(pod, volume, target, None)
    assert os.readlink(target / DATA_DIR) == first
    pod["metadata"]["labels"]["version"] = "2"
    await source.setup(pod, volume, target, None)
    assert os.readlink(target / DATA_DIR) != first
    assert (target / "labels").read_bytes() == b'app="web"\nversion="2"'


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        (
            {"path": "x", "resourceFieldRef": {"resource": "limits.cpu"}},
            Invalid,
            "container name is required",
        ),
        (
            {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
            NotFound,
            "container nope not found",
        ),
        ({"path": "x"}, Invalid, "exactly one of fieldRef and resourceFieldRef"),
        (
            {"path": "x", "fieldRef": {"fieldPath": "status.podIP"}},
            Invalid,
            "unsupported fieldPath",
        ),
        (
            {"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}},
            Invalid,
            "must not contain '..'",
        ),
    ],
)
async def test_bad_items(target, item, error, message):
    with pytest.raises(error, match=message):
        await DownwardAPISource(ALLOCATABLE).setup(make_pod(), downward_volume(item), target, None)
    assert os.listdir(target) == []
