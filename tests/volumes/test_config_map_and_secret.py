"""configMap and secret volumes: keys, items, modes, optional, the kubelet's messages,
secrets kept off the disk, and updates."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from kcore.conformance.suites.volumes import (
    NAMESPACE,
    FakeApi,
    make_pod,
    mounts_under,
    unmount_below,
    visible_files,
)
from kcore.errors import Invalid, NotFound
from kcore.plugins.volumes import ConfigMapSource, SecretSource
from kcore.plugins.volumes.atomic_writer import DATA_DIR

ALLOCATABLE = {"cpu": "2", "memory": "64Mi"}


def config_map(name: str = "app", data=None, binary=None) -> dict:
    obj = {"kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE}}
    obj["data"] = data if data is not None else {"a.conf": "A", "b.conf": "B"}
    if binary:
        obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    return obj


def secret(name: str = "creds", data=None) -> dict:
    data = data if data is not None else {"user": b"admin", "pass": b"\x00hunter2\xff"}
    return {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


@pytest.fixture
def scratch(tmp_path: Path):
    try:
        yield tmp_path
    finally:
        unmount_below(tmp_path)


@pytest.fixture
def target(scratch: Path) -> Path:
    path = scratch / "vol"
    path.mkdir()
    return path


def modes(target: Path) -> dict[str, int]:
    return {p: os.stat(target / p).st_mode & 0o7777 for p in visible_files(target)}


async def test_every_key_with_data_and_binary_data(target):
    api = FakeApi([config_map(binary={"logo.png": b"\x89PNG\x00"})])
    await ConfigMapSource().setup(
        make_pod(), {"name": "c", "configMap": {"name": "app"}}, target, api
    )
    assert visible_files(target) == {"a.conf": b"A", "b.conf": b"B", "logo.png": b"\x89PNG\x00"}
    assert set(modes(target).values()) == {0o644}
    assert mounts_under(target) == [], "a configMap lives on disk, like the kubelet's"


async def test_items_choose_keys_paths_and_modes(target):
    volume = {
        "name": "c",
        "configMap": {
            "name": "app",
            "defaultMode": 0o440,
            "items": [
                {"key": "a.conf", "path": "etc/app/a.conf"},
                {"key": "a.conf", "path": "copy", "mode": 0o600},
            ],
        },
    }
    await ConfigMapSource().setup(make_pod(), volume, target, FakeApi([config_map()]))
    assert visible_files(target) == {"etc/app/a.conf": b"A", "copy": b"A"}
    assert modes(target) == {"etc/app/a.conf": 0o440, "copy": 0o600}


async def test_missing_config_map_and_key_messages(target):
    api = FakeApi([config_map()])
    with pytest.raises(NotFound) as caught:
        await ConfigMapSource().setup(
            make_pod(), {"name": "c", "configMap": {"name": "x"}}, target, api
        )
    assert str(caught.value) == 'configmap "x" not found'
    volume = {"name": "c", "configMap": {"name": "app", "items": [{"key": "k", "path": "k"}]}}
    with pytest.raises(NotFound) as caught:
        await ConfigMapSource().setup(make_pod(), volume, target, api)
    assert str(caught.value) == "configmap references non-existent config key: k"
    assert os.listdir(target) == []


async def test_optional_tolerates_a_missing_object_and_missing_keys(target):
    api = FakeApi([config_map()])
    source = ConfigMapSource()
    volume = {
        "name": "c",
        "configMap": {
            "name": "app",
            "optional": True,
            "items": [{"key": "nope", "path": "nope"}, {"key": "a.conf", "path": "a"}],
        },
    }
    await source.setup(make_pod(), volume, target, api)
    assert visible_files(target) == {"a": b"A"}
    # the ConfigMap goes away: the volume empties
    await source.setup(make_pod(), volume, target, FakeApi())
    assert visible_files(target) == {}


@pytest.mark.parametrize("mode", [-1, 0o1000, "420", True])
async def test_bad_modes_are_invalid(target, mode):
    for volume in (
        {"name": "c", "configMap": {"name": "app", "defaultMode": mode}},
        {
            "name": "c",
            "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "a", "mode": mode}]},
        },
    ):
        with pytest.raises(Invalid):
            await ConfigMapSource().setup(make_pod(), volume, target, FakeApi([config_map()]))


@pytest.mark.parametrize("path", ["../x", "/x", "..x", "a/../../x"])
async def test_hostile_item_paths_write_nothing(scratch, target, path):
    volume = {"name": "c", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": path}]}}
    with pytest.raises(Invalid, match="invalid path"):
        await ConfigMapSource().setup(make_pod(), volume, target, FakeApi([config_map()]))
    assert sorted(os.listdir(scratch)) == ["vol"] and os.listdir(target) == []


async def test_keys_that_are_hostile_paths_are_refused_too(target):
    api = FakeApi([config_map(data={"../evil": "x"})])
    with pytest.raises(Invalid):
        await ConfigMapSource().setup(
            make_pod(), {"name": "c", "configMap": {"name": "app"}}, target, api
        )


async def test_update_swaps_atomically_and_unchanged_data_writes_nothing(target):
    api, source = FakeApi([config_map()]), ConfigMapSource()
    volume = {"name": "c", "configMap": {"name": "app"}}
    await source.setup(make_pod(), volume, target, api)
    first = os.readlink(target / DATA_DIR)
    await source.setup(make_pod(), volume, target, FakeApi([config_map()]))
    assert os.readlink(target / DATA_DIR) == first
    api.replace([config_map(data={"a.conf": "A2", "c.conf": "C"})])
    await source.setup(make_pod(), volume, target, api)
    assert os.readlink(target / DATA_DIR) != first
    assert visible_files(target) == {"a.conf": b"A2", "c.conf": b"C"}
    assert sorted(os.listdir(target)) == sorted(
        [os.readlink(target / DATA_DIR), DATA_DIR, "a.conf", "c.conf"]
    )


# -- secret ------------------------------------------------------------------------------------


async def test_secret_data_is_decoded_onto_a_tmpfs(target):
    api = FakeApi([secret()])
    volume = {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}}
    await SecretSource(ALLOCATABLE).setup(make_pod(), volume, target, api)
    assert visible_files(target) == {"user": b"admin", "pass": b"\x00hunter2\xff"}
    assert set(modes(target).values()) == {0o400}
    assert [fs for _, fs in mounts_under(target)] == ["tmpfs"]
    await SecretSource(ALLOCATABLE).setup(make_pod(), volume, target, api)
    assert len(mounts_under(target)) == 1


async def test_secret_never_touches_the_disk_below_its_tmpfs(scratch, target):
    await SecretSource(ALLOCATABLE).setup(
        make_pod(), {"name": "s", "secret": {"secretName": "creds"}}, target, FakeApi([secret()])
    )
    # A non-recursive bind of the parent shows the directory under the tmpfs: empty.
    below = scratch / "below"
    below.mkdir()
    subprocess.run(["mount", "--bind", str(scratch), str(below)], check=True)
    try:
        assert os.listdir(below / "vol") == []
    finally:
        subprocess.run(["umount", str(below)], check=True)


async def test_secret_messages_and_optional(target):
    source = SecretSource(ALLOCATABLE)
    with pytest.raises(NotFound) as caught:
        await source.setup(
            make_pod(), {"name": "s", "secret": {"secretName": "x"}}, target, FakeApi()
        )
    assert str(caught.value) == 'secret "x" not found'
    assert mounts_under(target) == [], "nothing is mounted for a volume that fails"
    volume = {"name": "s", "secret": {"secretName": "creds", "items": [{"key": "k", "path": "k"}]}}
    with pytest.raises(NotFound) as caught:
        await source.setup(make_pod(), volume, target, FakeApi([secret()]))
    assert str(caught.value) == "references non-existent secret key: k"
    volume = {"name": "s", "secret": {"secretName": "x", "optional": True}}
    await source.setup(make_pod(), volume, target, FakeApi())
    assert visible_files(target) == {}


async def test_secret_with_bad_base64_is_invalid(target):
    bad = {
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": NAMESPACE},
        "data": {"k": "%%%"},
    }
    with pytest.raises(Invalid, match="base64"):
        await SecretSource(ALLOCATABLE).setup(
            make_pod(), {"name": "s", "secret": {"secretName": "creds"}}, target, FakeApi([bad])
        )


async def test_a_mount_that_is_not_tmpfs_is_refused_for_a_secret(scratch, target):
    subprocess.run(["mount", "-t", "ramfs", "ramfs", str(target)], check=True)
    with pytest.raises(Invalid, match="ramfs mount, not tmpfs"):
        await SecretSource(ALLOCATABLE).setup(
            make_pod(),
            {"name": "s", "secret": {"secretName": "creds"}},
            target,
            FakeApi([secret()]),
        )
    assert os.listdir(target) == []
    await SecretSource(ALLOCATABLE).teardown(make_pod(), {}, target)
    assert mounts_under(scratch) == [] and not target.exists()
