"""emptyDir on disk and in memory, and hostPath with every ``type``."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from kcore.conformance.suites.volumes import make_pod, mounts_under, unmount_below
from kcore.errors import Invalid, NotFound, NotSupported
from kcore.plugins.volumes import EmptyDirSource, HostPathSource

MiB = 1 << 20
ALLOCATABLE = {"cpu": "4", "memory": "256Mi"}


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


def tmpfs_size(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def pod_with_memory_limits(*limits: str | None) -> dict:
    pod = make_pod()
    pod["spec"]["containers"] = [
        {"name": f"c{i}", "resources": {"limits": {"memory": m}} if m else {}}
        for i, m in enumerate(limits)
    ]
    return pod


async def test_empty_dir_on_disk_is_the_target_itself_open_to_all(target):
    source = EmptyDirSource(ALLOCATABLE)
    volume = {"name": "scratch", "emptyDir": {}}
    await source.setup(make_pod(), volume, target, None)
    assert mounts_under(target) == []
    assert os.stat(target).st_mode & 0o7777 == 0o777
    (target / "deep" / "er").mkdir(parents=True)
    (target / "deep" / "er" / "f").write_text("x")
    await source.setup(make_pod(), volume, target, None)
    assert (target / "deep" / "er" / "f").read_text() == "x"
    await source.teardown(make_pod(), volume, target)
    assert not target.exists()


async def test_empty_dir_teardown_removes_symlinks_not_what_they_point_to(scratch, target):
    outside = scratch / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    source = EmptyDirSource(ALLOCATABLE)
    volume = {"name": "scratch", "emptyDir": {}}
    await source.setup(make_pod(), volume, target, None)
    (target / "link").symlink_to(outside)
    (target / "file-link").symlink_to(outside / "keep")
    await source.teardown(make_pod(), volume, target)
    assert (outside / "keep").read_text() == "keep"


@pytest.mark.parametrize(
    ("limits", "size_limit", "expected"),
    [
        ((None,), "8Mi", 8 * MiB),  # no pod limit: sizeLimit under allocatable
        ((None,), None, 256 * MiB),  # no pod limit, no sizeLimit: node allocatable
        (("16Mi", "16Mi"), None, 32 * MiB),  # the pod's memory limit
        (("16Mi", "16Mi"), "64Mi", 32 * MiB),  # capped by the pod's limit
        (("16Mi", "16Mi"), "4Mi", 4 * MiB),
    ],
)
async def test_memory_empty_dir_is_a_tmpfs_sized_as_the_kubelet_sizes_it(
    target, limits, size_limit, expected
):
    source = EmptyDirSource(ALLOCATABLE)
    volume = {"name": "m", "emptyDir": {"medium": "Memory"}}
    if size_limit:
        volume["emptyDir"]["sizeLimit"] = size_limit
    pod = pod_with_memory_limits(*limits)
    await source.setup(pod, volume, target, None)
    assert [fs for _, fs in mounts_under(target)] == ["tmpfs"]
    assert tmpfs_size(target) == expected
    assert os.stat(target).st_mode & 0o7777 == 0o777
    await source.setup(pod, volume, target, None)
    assert len(mounts_under(target)) == 1, "setup again mounted again"
    (target / "f").write_bytes(b"x" * 1000)
    await source.teardown(pod, volume, target)
    assert mounts_under(target) == [] and not target.exists()


async def test_memory_empty_dir_is_full_at_its_size(target):
    source = EmptyDirSource(ALLOCATABLE)
    volume = {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    await source.setup(make_pod(), volume, target, None)
    with pytest.raises(OSError, match="No space left"):
        (target / "big").write_bytes(b"x" * (2 * MiB))


@pytest.mark.parametrize(
    ("medium", "error"),
    [("Disk", Invalid), ("HugePages", NotSupported), ("HugePages-2Mi", NotSupported)],
)
async def test_unknown_or_unsupported_medium(target, medium, error):
    with pytest.raises(error):
        await EmptyDirSource(ALLOCATABLE).setup(
            make_pod(), {"name": "m", "emptyDir": {"medium": medium}}, target, None
        )
    assert mounts_under(target) == []


# -- hostPath ----------------------------------------------------------------------------------


def host_volume(path: Path | str, kind: str | None = None) -> dict:
    source: dict = {"path": str(path)}
    if kind is not None:
        source["type"] = kind
    return {"name": "host", "hostPath": source}


async def test_host_path_is_handed_to_the_runtime_and_the_target_left_alone(scratch, target):
    source = HostPathSource()
    volume = host_volume(scratch / "data" / ".." / "data", "")
    with pytest.raises(Invalid, match=r"\.\."):
        source.host_path(make_pod(), volume)
    volume = host_volume(f"{scratch}//data/", "")
    assert source.host_path(make_pod(), volume) == scratch / "data"
    await source.setup(make_pod(), volume, target, None)
    assert os.listdir(target) == []
    assert not (scratch / "data").exists(), 'type "" checks and creates nothing'


async def test_directory_or_create_makes_0755_dirs_whatever_the_umask(scratch, target):
    path = scratch / "a" / "b"
    old = os.umask(0o077)
    try:
        await HostPathSource().setup(
            make_pod(), host_volume(path, "DirectoryOrCreate"), target, None
        )
    finally:
        os.umask(old)
    assert path.is_dir() and os.stat(path).st_mode & 0o7777 == 0o755


async def test_file_or_create_makes_a_0644_file_but_not_its_parent(scratch, target):
    path = scratch / "f"
    await HostPathSource().setup(make_pod(), host_volume(path, "FileOrCreate"), target, None)
    assert path.is_file() and os.stat(path).st_mode & 0o7777 == 0o644
    path.write_text("kept")
    await HostPathSource().setup(make_pod(), host_volume(path, "FileOrCreate"), target, None)
    assert path.read_text() == "kept"
    with pytest.raises(NotFound, match="no such file or directory"):
        await HostPathSource().setup(
            make_pod(), host_volume(scratch / "no" / "f", "FileOrCreate"), target, None
        )
    assert not (scratch / "no").exists()


@pytest.fixture
def host_things(scratch: Path):
    things = {"dir": scratch / "dir", "file": scratch / "file", "sock": scratch / "sock"}
    things["dir"].mkdir()
    things["file"].write_text("x")
    things["char"] = scratch / "char"
    os.mknod(things["char"], 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    things["block"] = scratch / "block"
    os.mknod(things["block"], 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    things["link-to-dir"] = scratch / "link-to-dir"
    things["link-to-dir"].symlink_to(things["dir"])
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(things["sock"]))
    try:
        yield things
    finally:
        sock.close()


MATCHES = {
    "Directory": {"dir", "link-to-dir"},
    "DirectoryOrCreate": {"dir", "link-to-dir"},
    "File": {"file"},
    "FileOrCreate": {"file"},
    "Socket": {"sock"},
    "CharDevice": {"char"},
    "BlockDevice": {"block"},
}
WORDS = {
    "Directory": "a directory",
    "DirectoryOrCreate": "a directory",
    "File": "a file",
    "FileOrCreate": "a file",
    "Socket": "a socket file",
    "CharDevice": "a character device",
    "BlockDevice": "a block device",
}


@pytest.mark.parametrize("kind", sorted(MATCHES))
async def test_type_checks_with_kubelet_messages(host_things, target, kind):
    source = HostPathSource()
    for name, path in host_things.items():
        volume = host_volume(path, kind)
        if name in MATCHES[kind]:
            await source.setup(make_pod(), volume, target, None)
            continue
        with pytest.raises(Invalid) as caught:
            await source.setup(make_pod(), volume, target, None)
        assert str(caught.value) == f"hostPath type check failed: {path} is not {WORDS[kind]}"


@pytest.mark.parametrize("kind", ["Directory", "File", "Socket", "CharDevice", "BlockDevice"])
async def test_a_missing_path_is_not_found(scratch, target, kind):
    path = scratch / "missing"
    with pytest.raises(NotFound) as caught:
        await HostPathSource().setup(make_pod(), host_volume(path, kind), target, None)
    assert str(caught.value) == f"hostPath type check failed: {path} is not {WORDS[kind]}"


async def test_invalid_type_and_relative_path(scratch, target):
    with pytest.raises(Invalid, match="Pipe is an invalid volume type"):
        await HostPathSource().setup(make_pod(), host_volume(scratch, "Pipe"), target, None)
    with pytest.raises(Invalid, match="absolute"):
        await HostPathSource().setup(make_pod(), host_volume("rel/path", ""), target, None)


async def test_host_path_teardown_never_touches_the_host(scratch, target):
    data = scratch / "data"
    data.mkdir()
    (data / "keep").write_text("keep")
    volume = host_volume(data, "Directory")
    await HostPathSource().setup(make_pod(), volume, target, None)
    await HostPathSource().teardown(make_pod(), volume, target)
    await HostPathSource().teardown(make_pod(), volume, target)
    assert (data / "keep").read_text() == "keep"
    assert not target.exists()
