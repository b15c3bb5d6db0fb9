"""The node image store: imports from every source form, digests, sharing, hostile layers."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from kcore.conformance import testimages
from kcore.conformance.testimages import (
    build_busybox_layout,
    build_docker_archive,
    build_layout_from_layers,
    build_oci_archive,
    tar_layer,
)
from kcore.errors import BadRequest, Invalid, NotFound, NotSupported
from kcore.images import ImageStore, normalize_reference

BUSYBOX = "kcore.test/busybox:latest"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One of each source form, built once: they are deterministic."""
    top = tmp_path_factory.mktemp("sources")
    return {
        "layout": build_busybox_layout(top / "layout"),
        "oci": build_oci_archive(top / "oci.tar", ref_name="kcore.test/oci:1", gzip_layer=True),
        "docker": build_docker_archive(top / "docker.tar", ref_name="kcore.test/docker:1"),
    }


@pytest.fixture
def store(tmp_path):
    return ImageStore(tmp_path / "images")


def tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its inode (a file replaced gets a new one)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            out[str(path.relative_to(root))] = path.lstat().st_ino
    return out


def entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_000_000_000
    for key, value in kw.items():
        setattr(info, key, value)
    return info


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("foo/bar:1", "docker.io/foo/bar:1"),
        ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        ("quay.io/a/b/c:v2", "quay.io/a/b/c:v2"),
        ("kcore.test/busybox", "kcore.test/busybox:latest"),
        ("a@sha256:" + "a" * 64, "docker.io/library/a@sha256:" + "a" * 64),
        ("a:1@sha256:" + "b" * 64, "docker.io/library/a:1@sha256:" + "b" * 64),
    ],
)
def test_normalize_reference(ref, expected):
    assert normalize_reference(ref) == expected


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("a b", "bad repository name"),
        ("busybox:", "bad tag"),
        ("busybox@sha256:abc", "digest"),
        ("a" * 64, "image id"),
        ("foo//bar", "bad repository name"),
    ],
)
def test_invalid_references_are_refused_clearly(ref, message):
    with pytest.raises(BadRequest, match=message):
        normalize_reference(ref)


# --------------------------------------------------------------------------- importing


def test_import_layout_directory(store, sources):
    [record] = store.import_path(sources["layout"])
    assert record["id"].startswith("sha256:") and len(record["id"]) == 71
    assert record["repo_tags"] == [BUSYBOX]
    [digest] = record["repo_digests"]
    assert digest.startswith("kcore.test/busybox@sha256:")
    assert record["config"]["Cmd"] == ["sh"]
    assert record["uid"] is None and record["username"] == "" and record["pinned"] is False
    assert store.list() == [record]
    [layer] = store.layer_dirs(record["id"])
    assert record["layers"] == [f"sha256:{layer.name}"]
    assert record["size"] > (layer / "bin" / "busybox").stat().st_size
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777
    assert (layer / "etc" / "passwd").read_bytes().startswith(b"root:x:0:0:")
    assert os.access(layer / "bin" / "busybox", os.X_OK)


def test_import_oci_archive_with_a_gzip_layer(store, sources):
    [record] = store.import_path(sources["oci"])
    assert record["repo_tags"] == ["kcore.test/oci:1"]
    [layer] = store.layer_dirs(record["id"])
    assert (layer / "bin" / "busybox").stat().st_size > 100_000


def test_import_docker_archive(store, sources):
    [record] = store.import_path(sources["docker"])
    assert record["repo_tags"] == ["kcore.test/docker:1"]
    assert record["repo_digests"] == []
    assert store.status("kcore.test/docker:1")["id"] == record["id"]


def test_import_gzip_compressed_archive_is_detected_by_content(store, sources, tmp_path):
    packed = tmp_path / "image.bin"
    packed.write_bytes(gzip.compress(sources["docker"].read_bytes()))
    [record] = store.import_path(packed)
    assert record["repo_tags"] == ["kcore.test/docker:1"]


def test_builds_are_deterministic(tmp_path):
    one = build_busybox_layout(tmp_path / "one")
    two = build_busybox_layout(tmp_path / "two")
    assert (one / "index.json").read_bytes() == (two / "index.json").read_bytes()


def test_reimport_is_a_no_op(store, sources):
    [first] = store.import_path(sources["layout"])
    before = tree(store.root)
    [again] = store.import_path(sources["layout"])
    assert again == first
    assert tree(store.root) == before


def test_a_layer_already_present_is_not_unpacked_again(store, sources, tmp_path):
    [first] = store.import_path(sources["layout"])
    [layer] = store.layer_dirs(first["id"])
    marker = layer / "marker"
    marker.write_text("still here")
    inode = layer.stat().st_ino
    seen = []
    other = build_busybox_layout(tmp_path / "other", ref_name="kcore.test/other:1", cmd=["true"])
    [second] = store.import_path(other, progress=lambda *a: seen.append(a))
    assert second["id"] != first["id"]
    assert second["layers"] == first["layers"]
    assert store.layer_dirs(second["id"]) == [layer]
    assert layer.stat().st_ino == inode and marker.exists()
    assert seen and all(done == total for _, done, total in seen)


def test_progress_reports_bytes_of_each_layer(store, sources):
    seen = []
    store.import_path(sources["oci"], progress=lambda *a: seen.append(a))
    labels = {label for label, _, _ in seen}
    assert len(labels) == 1
    assert seen[0][1] == 0 and seen[-1][1] == seen[-1][2] > 0


def test_tags_are_added_and_move_from_the_image_that_had_them(store, sources, tmp_path):
    [bb] = store.import_path(sources["layout"], tags=["mine:1"])
    assert bb["repo_tags"] == [BUSYBOX, "docker.io/library/mine:1"]
    other = build_busybox_layout(tmp_path / "other", ref_name=BUSYBOX, cmd=["true"])
    [new] = store.import_path(other)
    assert store.status(BUSYBOX)["id"] == new["id"]
    assert store.status(bb["id"])["repo_tags"] == ["docker.io/library/mine:1"]
    store.tag(new["id"], "mine:1")
    dangling = store.status(bb["id"])
    assert dangling is not None and dangling["repo_tags"] == []
    assert len(store.list()) == 2


def test_tags_need_a_single_image_source(store, sources, tmp_path):
    layout = tmp_path / "two"
    shutil.copytree(sources["layout"], layout)
    other = build_busybox_layout(tmp_path / "other", ref_name="kcore.test/other:1", cmd=["id"])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] += json.loads((other / "index.json").read_text())["manifests"]
    (layout / "index.json").write_text(json.dumps(index))
    for blob in (other / "blobs" / "sha256").iterdir():
        shutil.copy(blob, layout / "blobs" / "sha256" / blob.name)
    with pytest.raises(BadRequest, match="holds 2 images"):
        store.import_path(layout, tags=["x"])
    records = store.import_path(layout)
    assert sorted(r["repo_tags"][0] for r in records) == [BUSYBOX, "kcore.test/other:1"]


def test_image_without_a_command_imports(store, tmp_path):
    layout = build_busybox_layout(tmp_path / "nocmd", cmd=None)
    [record] = store.import_path(layout)
    assert "Cmd" not in record["config"] and "Entrypoint" not in record["config"]


@pytest.mark.parametrize(
    ("user", "uid", "username"),
    [
        ("1000", {"value": 1000}, ""),
        ("65534:65534", {"value": 65534}, ""),
        ("nobody", None, "nobody"),
    ],
)
def test_user_fields(store, tmp_path, user, uid, username):
    layer = tar_layer([(entry("etc/", tarfile.DIRTYPE, 0o755), None)])
    layout = build_layout_from_layers(tmp_path / "l", [layer], config={"User": user})
    [record] = store.import_path(layout)
    assert (record["uid"], record["username"]) == (uid, username)


def test_metadata_only_store_keeps_no_layers(tmp_path, sources):
    store = ImageStore(tmp_path / "images", unpack=False)
    [record] = store.import_path(sources["layout"])
    assert store.status(BUSYBOX)["size"] == record["size"] > 0
    assert not any((tmp_path / "images" / "layers" / "sha256").iterdir())
    with pytest.raises(NotFound):
        store.layer_dirs(record["id"])
    # The same store root with unpacking: the missing layer is unpacked then.
    full = ImageStore(tmp_path / "images")
    full.import_path(sources["layout"])
    assert (full.layer_dirs(record["id"])[0] / "bin" / "busybox").exists()


# --------------------------------------------------------------------------- finding, removing


def test_status_by_every_kind_of_reference(store, sources):
    [record] = store.import_path(sources["layout"], tags=["busybox:1"])
    hexid = record["id"].partition(":")[2]
    for ref in (
        BUSYBOX,
        "kcore.test/busybox",
        "busybox:1",
        "docker.io/library/busybox:1",
        record["id"],
        hexid,
        hexid[:12],
        f"sha256:{hexid[:20]}",
        record["repo_digests"][0],
    ):
        assert store.status(ref) == record, ref
    assert store.status("busybox") is None
    assert store.status("0" * 64) is None
    assert store.status("0" * 12) is None
    with pytest.raises(BadRequest):
        store.status("No Such")
    with pytest.raises(NotFound):
        store.layer_dirs("busybox")


def test_remove_takes_all_tags_and_unused_layers(store, sources, tmp_path):
    [bb] = store.import_path(sources["layout"], tags=["second:1"])
    other = build_busybox_layout(tmp_path / "other", ref_name="kcore.test/other:1", cmd=["id"])
    [ot] = store.import_path(other)
    [layer] = store.layer_dirs(bb["id"])
    unique = build_layout_from_layers(
        tmp_path / "u", [tar_layer([(entry("only-here"), b"x")])], ref_name="kcore.test/u:1"
    )
    [un] = store.import_path(unique)
    [unique_layer] = store.layer_dirs(un["id"])

    assert store.remove("second:1") is True
    assert store.status(BUSYBOX) is None and store.status("second:1") is None
    assert layer.is_dir(), "still used by the other image"
    assert store.remove(un["id"]) is True
    assert not unique_layer.exists()
    assert store.remove("kcore.test/other:1") is True
    assert not layer.exists()
    assert store.list() == []
    assert not any((store.root / "blobs" / "sha256").iterdir())
    assert not any((store.root / "layers" / "sha256").iterdir())
    assert store.remove("kcore.test/other:1") is False
    assert store.remove(ot["id"]) is False


def test_fs_usage_counts_the_store(store, sources):
    empty = store.fs_usage()
    assert empty["used_bytes"] == 0 and empty["mountpoint"] == str(store.root)
    store.import_path(sources["layout"])
    usage = store.fs_usage()
    assert usage["used_bytes"] > 1_000_000 and usage["inodes_used"] > 50


# --------------------------------------------------------------------------- broken sources


def _imported(store, sources):
    store.import_path(sources["docker"])
    return tree(store.root), (store.root / "index.json").read_bytes()


def test_blob_digest_mismatch_leaves_nothing_behind(store, sources, tmp_path):
    before = _imported(store, sources)
    layer = tar_layer([(entry("a"), b"a" * 5000)])
    layout = build_layout_from_layers(tmp_path / "bad", [layer], corrupt_digest=True)
    digest = hashlib.sha256(layer).hexdigest()
    with pytest.raises(Invalid, match=f"sha256:{digest} does not match its digest"):
        store.import_path(layout)
    assert _imported(store, sources) == before


def test_diff_id_mismatch_leaves_nothing_behind(store, sources, tmp_path):
    before = _imported(store, sources)
    layer = gzip.compress(tar_layer([(entry("a"), b"a")]))
    layout = build_layout_from_layers(tmp_path / "bad", [layer], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(Invalid, match="diff_id says sha256:0000"):
        store.import_path(layout)
    assert _imported(store, sources) == before


@pytest.mark.parametrize("what", ["config", "manifest", "layer"])
def test_missing_blobs_are_named(store, tmp_path, what):
    layer = tar_layer([(entry("a"), b"a")])
    layout = build_layout_from_layers(tmp_path / "l", [layer])
    index = json.loads((layout / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].partition(":")[2]
    manifest = json.loads((layout / "blobs" / "sha256" / manifest_hex).read_text())
    victim = {
        "manifest": manifest_hex,
        "config": manifest["config"]["digest"].partition(":")[2],
        "layer": manifest["layers"][0]["digest"].partition(":")[2],
    }[what]
    (layout / "blobs" / "sha256" / victim).unlink()
    with pytest.raises(Invalid, match=rf"{what}.*sha256:{victim}.*missing"):
        store.import_path(layout)
    assert store.list() == []


def test_zstd_layers_import_and_broken_zstd_is_invalid(store, tmp_path):
    import zstandard

    raw = tar_layer([(entry("hello.txt"), b"hello zstd\n")])
    packed = zstandard.ZstdCompressor().compress(raw)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layout = build_layout_from_layers(tmp_path / "z", [packed], diff_ids=[diff_id])
    (record,) = store.import_path(layout)
    (layer,) = store.layer_dirs(record["id"])
    assert (layer / "hello.txt").read_bytes() == b"hello zstd\n"
    broken = build_layout_from_layers(tmp_path / "b", [b"\x28\xb5\x2f\xfd" + b"\0" * 100])
    with pytest.raises(Invalid, match="not a valid tar stream"):
        store.import_path(broken)
    assert [r["id"] for r in store.list()] == [record["id"]]


def test_other_digest_algorithms_are_refused(store, tmp_path):
    layout = build_layout_from_layers(tmp_path / "l", [tar_layer([(entry("f"), b"x")])])
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha512:" + "0" * 128
    (layout / "index.json").write_text(json.dumps(index))
    with pytest.raises(NotSupported, match="only sha256"):
        store.import_path(layout)


def test_not_an_image(store, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello")
    with pytest.raises(BadRequest, match="not a tar file"):
        store.import_path(junk)
    (tmp_path / "dir").mkdir()
    with pytest.raises(BadRequest, match=r"no index\.json"):
        store.import_path(tmp_path / "dir")
    with pytest.raises(NotFound):
        store.import_path(tmp_path / "absent")


# --------------------------------------------------------------------------- layer contents


def test_whiteouts_become_overlayfs_whiteouts(store, tmp_path):
    layer = tar_layer(
        [
            (entry("a/", tarfile.DIRTYPE, 0o755), None),
            (entry("a/.wh.gone"), b""),
            (entry("c/.wh..wh..opq"), b""),
            (entry("c/keep"), b"k"),
            (entry(".wh.top"), b""),
        ]
    )
    layout = build_layout_from_layers(tmp_path / "l", [layer])
    [record] = store.import_path(layout)
    [top] = store.layer_dirs(record["id"])
    for path in (top / "a" / "gone", top / "top"):
        st = path.lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "c", "trusted.overlay.opaque") == b"y"
    assert (top / "c" / "keep").read_bytes() == b"k"
    assert not list(top.rglob(".wh.*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="owners and device nodes need root")
def test_modes_owners_times_links_and_devices_are_kept(store, tmp_path):
    layer = tar_layer(
        [
            (entry("d/", tarfile.DIRTYPE, 0o711, uid=7, gid=8, mtime=1234), None),
            (entry("d/suid", mode=0o4755, uid=1000, gid=2000, mtime=5678), b"#!/bin/sh\n"),
            (entry("d/abs", tarfile.SYMTYPE, 0o777, linkname="/bin/busybox"), None),
            (entry("d/hard", tarfile.LNKTYPE, linkname="d/suid"), None),
            (entry("d/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3), None),
            (entry("d/fifo", tarfile.FIFOTYPE, 0o600), None),
        ]
    )
    layout = build_layout_from_layers(tmp_path / "l", [layer])
    [record] = store.import_path(layout)
    [top] = store.layer_dirs(record["id"])
    d = (top / "d").lstat()
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, int(d.st_mtime)) == (0o711, 7, 8, 1234)
    f = (top / "d" / "suid").lstat()
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_gid, int(f.st_mtime)) == (
        0o4755,
        1000,
        2000,
        5678,
    )
    assert os.readlink(top / "d" / "abs") == "/bin/busybox"
    assert (top / "d" / "hard").lstat().st_ino == f.st_ino and f.st_nlink == 2
    null = (top / "d" / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO((top / "d" / "fifo").lstat().st_mode)


def test_a_file_replaces_a_symlink_without_following_it(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = tar_layer(
        [
            (entry("f", tarfile.SYMTYPE, 0o777, linkname=str(outside / "victim")), None),
            (entry("f"), b"inside"),
        ]
    )
    [record] = store.import_path(build_layout_from_layers(tmp_path / "l", [layer]))
    [top] = store.layer_dirs(record["id"])
    assert (top / "f").read_bytes() == b"inside" and not (top / "f").is_symlink()
    assert list(outside.iterdir()) == []


def _hostile(tmp_path: Path) -> dict[str, tuple[list, str]]:
    outside = tmp_path / "outside"
    victim = tmp_path / "victim" / "secret"
    # The layer is unpacked at <store>/tmp/<layer>/: three levels below tmp_path.
    up = "../../../"
    return {
        "absolute": ([(entry(f"{outside}/abs"), b"x")], "absolute path"),
        "dotdot": ([(entry(f"ok/{up}{up}outside/dotdot"), b"x")], "escapes the layer"),
        "symlink-parent": (
            [
                (entry("evil", tarfile.SYMTYPE, 0o777, linkname=str(outside)), None),
                (entry("evil/through"), b"x"),
            ],
            "symbolic link 'evil'",
        ),
        "relative-symlink-parent": (
            [
                (entry("sub/", tarfile.DIRTYPE, 0o755), None),
                (entry("sub/evil", tarfile.SYMTYPE, 0o777, linkname=f"../{up}outside"), None),
                (entry("sub/evil/deeper/through"), b"x"),
            ],
            "symbolic link 'sub/evil'",
        ),
        "hardlink-escape": (
            [(entry("h", tarfile.LNKTYPE, linkname=f"{up}victim/secret"), None)],
            "hardlink target escapes",
        ),
        "hardlink-absolute": (
            [(entry("h", tarfile.LNKTYPE, linkname=str(victim)), None)],
            "absolute hardlink target",
        ),
        "hardlink-through-symlink": (
            [
                (entry("s", tarfile.SYMTYPE, 0o777, linkname=str(victim.parent)), None),
                (entry("h", tarfile.LNKTYPE, linkname="s/secret"), None),
            ],
            "hardlink target goes through the symbolic link 's'",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "absolute",
        "dotdot",
        "symlink-parent",
        "relative-symlink-parent",
        "hardlink-escape",
        "hardlink-absolute",
        "hardlink-through-symlink",
    ],
)
def test_hostile_layers_are_refused_and_write_nothing_outside(store, sources, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = tmp_path / "victim" / "secret"
    victim.parent.mkdir()
    victim.write_text("secret")
    entries, message = _hostile(tmp_path)[case]
    before = _imported(store, sources)
    layout = build_layout_from_layers(tmp_path / "layout", [tar_layer(entries)])
    with pytest.raises(Invalid) as caught:
        store.import_path(layout)
    assert message in str(caught.value)
    assert "refusing entry" in str(caught.value)
    assert list(outside.iterdir()) == []
    assert victim.stat().st_nlink == 1 and victim.read_text() == "secret"
    assert _imported(store, sources) == before


# --------------------------------------------------------------------------- concurrency

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kcore.images import ImageStore
    store = ImageStore(Path(sys.argv[1]))
    for _ in range(3):
        for source in sys.argv[2:]:
            store.import_path(Path(source))
    """
)


def test_concurrent_imports_from_two_processes(store, sources, tmp_path):
    other = build_busybox_layout(tmp_path / "other", ref_name="kcore.test/other:1", cmd=["id"])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store.root), *paths],
            stderr=subprocess.PIPE,
            text=True,
        )
        for paths in (
            [str(sources["layout"]), str(sources["docker"])],
            [str(other), str(sources["oci"]), str(sources["layout"])],
        )
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    index = json.loads((store.root / "index.json").read_text())
    tags = sorted(t for r in index["images"] for t in r["repo_tags"])
    assert tags == sorted(
        [BUSYBOX, "kcore.test/docker:1", "kcore.test/oci:1", "kcore.test/other:1"]
    )
    assert [p.name for p in (store.root / "tmp").iterdir()] == []
    for record in store.list():
        assert store.layer_dirs(record["id"])


def test_testimages_refuse_a_dynamic_busybox(monkeypatch, tmp_path):
    fake = tmp_path / "busybox"
    shutil.copy("/bin/ls", fake)  # dynamically linked on every Debian
    monkeypatch.setattr(testimages.shutil, "which", lambda name: str(fake))
    with pytest.raises(RuntimeError, match="busybox-static"):
        testimages.busybox_path()
    monkeypatch.setattr(testimages.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="busybox-static"):
        testimages.busybox_path()
