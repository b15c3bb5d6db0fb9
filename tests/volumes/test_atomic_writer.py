"""The AtomicWriter: its layout, no-op writes, path checks, and that it never writes
outside its target, whatever the target holds."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from kcore.errors import Invalid
from kcore.plugins.volumes.atomic_writer import (
    DATA_DIR,
    AtomicWriter,
    FileProjection,
    read_version,
    validate_path,
)

VERSION = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$")


def files(**contents: str) -> dict[str, FileProjection]:
    return {k.replace("__", "/"): FileProjection(v.encode()) for k, v in contents.items()}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "vol"
    path.mkdir()
    return path


def test_layout_is_kubernetes_atomic_writer_layout(target):
    assert AtomicWriter(target).write(files(a="1", conf__b="2"))
    entries = sorted(os.listdir(target))
    (version,) = [e for e in entries if VERSION.match(e)]
    assert entries == sorted([version, DATA_DIR, "a", "conf"])
    assert os.readlink(target / DATA_DIR) == version
    assert os.readlink(target / "a") == f"{DATA_DIR}/a"
    assert os.readlink(target / "conf") == f"{DATA_DIR}/conf"
    assert (target / "conf" / "b").read_text() == "2"
    assert os.stat(target / version).st_mode & 0o777 == 0o755
    assert os.stat(target / version / "conf").st_mode & 0o777 == 0o755


def test_modes_are_applied_whatever_the_umask(target):
    old = os.umask(0o077)
    try:
        AtomicWriter(target).write(
            {"open": FileProjection(b"x", 0o666), "closed": FileProjection(b"y", 0o400)}
        )
    finally:
        os.umask(old)
    assert os.stat(target / "open").st_mode & 0o7777 == 0o666
    assert os.stat(target / "closed").st_mode & 0o7777 == 0o400


def test_unchanged_payload_writes_nothing(target):
    writer = AtomicWriter(target)
    assert writer.write(files(a="1", b="2"))
    version = os.readlink(target / DATA_DIR)
    assert not writer.write(files(a="1", b="2"))
    assert os.readlink(target / DATA_DIR) == version
    # a mode change is a change
    assert writer.write({"a": FileProjection(b"1", 0o600), "b": FileProjection(b"2")})
    assert os.readlink(target / DATA_DIR) != version


def test_update_swaps_versions_and_removes_the_old_one_and_stale_names(target):
    writer = AtomicWriter(target)
    writer.write(files(a="1", gone="x", dir__gone="y"))
    first = os.readlink(target / DATA_DIR)
    assert writer.write(files(a="2", new="3"))
    second = os.readlink(target / DATA_DIR)
    assert second != first
    assert sorted(os.listdir(target)) == sorted([second, DATA_DIR, "a", "new"])
    assert read_version(target) == {"a": b"2", "new": b"3"}


def test_empty_payload_leaves_an_empty_volume(target):
    writer = AtomicWriter(target)
    writer.write(files(a="1"))
    writer.write({})
    assert [e for e in os.listdir(target) if not e.startswith("..")] == []


def test_a_leftover_version_from_a_crash_is_removed(target):
    stale = target / "..2020_01_01_00_00_00.1"
    stale.mkdir()
    (stale / "x").write_text("half written")
    AtomicWriter(target).write(files(a="1"))
    assert not stale.exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "must not be empty"),
        ("/etc/passwd", "must be relative path"),
        ("../x", "must not contain '..'"),
        ("a/../../x", "must not contain '..'"),
        ("a/..", "must not contain '..'"),
        ("..x", "must not start with '..'"),
        ("./..data", "must not start with '..'"),
        ("..data/x", "must not start with '..'"),
        ("x" * 256, "filenames must be less than or equal to 255 characters"),
        ("/".join(["d"] * 2049), "must be less than or equal to 4096 characters"),
        (".", "must name a file"),
        ("a\x00b", "NUL"),
    ],
)
def test_bad_paths_are_invalid_with_kubernetes_messages(target, path, message):
    with pytest.raises(Invalid, match=re.escape(message)):
        AtomicWriter(target).write({path: FileProjection(b"x")})
    assert os.listdir(target) == []


def test_path_limits_are_inclusive():
    assert validate_path("x" * 255) == "x" * 255
    long = "/".join(["d"] * 2047) + "/xx"
    assert len(long) == 4096
    assert validate_path(long) == long
    assert validate_path("a//b/./c") == "a/b/c"


def test_a_file_that_is_also_a_directory_is_invalid(target):
    with pytest.raises(Invalid, match="is a file and a directory"):
        AtomicWriter(target).write(files(a="1", a__b="2"))


def test_bad_modes_are_invalid(target):
    with pytest.raises(Invalid, match="0777"):
        AtomicWriter(target).write({"a": FileProjection(b"1", 0o1777)})


def test_a_symlinked_target_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError):
        AtomicWriter(tmp_path / "link").write(files(a="1"))
    assert os.listdir(real) == []


def test_symlinks_planted_in_the_target_are_never_written_through(tmp_path, target):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a").write_text("precious")
    # a top-level name and ..data that point outside, and a version dir that is a symlink
    (target / "a").symlink_to(outside / "a")
    (target / DATA_DIR).symlink_to(outside)
    (target / "..2020_01_01_00_00_00.7").symlink_to(outside)
    AtomicWriter(target).write(files(a="mine"))
    assert (outside / "a").read_text() == "precious"
    assert sorted(os.listdir(outside)) == ["a"]
    assert os.readlink(target / "a") == f"{DATA_DIR}/a"
    assert (target / "a").read_text() == "mine"
    assert not os.path.lexists(target / "..2020_01_01_00_00_00.7")


def test_a_real_file_in_the_way_is_refused_and_kept(target):
    (target / "a").write_text("not ours")
    with pytest.raises(Invalid, match="not a symlink"):
        AtomicWriter(target).write(files(a="1"))
    assert (target / "a").read_text() == "not ours"
    assert os.listdir(target) == ["a"], "nothing is published when a name is in the way"


def test_read_version_is_consistent_while_writers_swap(target):
    writer = AtomicWriter(target)
    versions = [{f"k{i}": f"{n}-{i}".encode() * 2000 for i in range(4)} for n in range(40)]
    writer.write({k: FileProjection(v) for k, v in versions[0].items()})
    seen, stop = [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            snapshot = read_version(target)
            if snapshot is not None:
                seen.append(snapshot in versions)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in versions[1:]:
            writer.write({k: FileProjection(v) for k, v in version.items()})
    finally:
        stop.set()
        reader.join()
    assert seen and all(seen)
