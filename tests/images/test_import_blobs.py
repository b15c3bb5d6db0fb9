"""``ImageStore.import_blobs``, the way registry pulls add images: verification, names,
shared layers, and which names count as pulled (``local_image``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kcore.conformance.testimages import build_busybox_layout
from kcore.errors import BadRequest, Invalid, TemporaryError
from kcore.images import ImageStore

REPO = "registry.example:5000/team/app"


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict:
    """manifest, config, and the layer blob file of a gzip busybox image."""
    layout = build_busybox_layout(tmp_path_factory.mktemp("l") / "layout", gzip_layer=True)
    folder = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = (folder / index["manifests"][0]["digest"][7:]).read_bytes()
    parsed = json.loads(manifest)
    config = (folder / parsed["config"]["digest"][7:]).read_bytes()
    layer_digest = parsed["layers"][0]["digest"]
    return {
        "manifest": manifest,
        "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
        "config": config,
        "id": "sha256:" + hashlib.sha256(config).hexdigest(),
        "layer_digest": layer_digest,
        "layer": folder / layer_digest[7:],
        "diff_id": json.loads(config)["rootfs"]["diff_ids"][0],
    }


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def add(store: ImageStore, blobs: dict, **kwargs) -> dict:
    kwargs.setdefault("tags", [f"{REPO}:1"])
    kwargs.setdefault("digests", [f"{REPO}@{blobs['digest']}"])
    layers = kwargs.pop("layers", {blobs["layer_digest"]: blobs["layer"]})
    return store.import_blobs(blobs["manifest"], blobs["config"], layers, **kwargs)


def test_import_blobs_names_the_image_by_tag_digest_and_id(store, blobs):
    record = add(store, blobs)
    assert record["id"] == blobs["id"]
    assert record["repo_tags"] == [f"{REPO}:1"]
    assert record["repo_digests"] == [f"{REPO}@{blobs['digest']}"]
    for ref in (f"{REPO}:1", f"{REPO}@{blobs['digest']}", blobs["id"], blobs["id"][7:20]):
        assert store.status(ref)["id"] == blobs["id"], ref
    assert store.has_layer(blobs["diff_id"])
    assert store.read_blob(blobs["id"]) == blobs["config"]
    assert store.read_blob(blobs["digest"]) == blobs["manifest"]
    assert (store.layer_dirs(blobs["id"])[0] / "bin" / "busybox").is_file()


def test_present_layers_need_no_file(store, blobs):
    add(store, blobs)
    record = add(store, blobs, tags=[f"{REPO}:2"], layers={})
    assert record["repo_tags"] == [f"{REPO}:1", f"{REPO}:2"]


def test_a_missing_layer_is_a_temporary_error(store, blobs):
    with pytest.raises(TemporaryError, match="neither downloaded nor present"):
        add(store, blobs, layers={})
    assert store.list() == []


def test_every_blob_is_verified_again(store, blobs, tmp_path):
    wrong = tmp_path / "wrong"
    data = bytearray(blobs["layer"].read_bytes())
    data[100] ^= 0xFF
    wrong.write_bytes(bytes(data))
    with pytest.raises(Invalid, match="does not match its digest"):
        add(store, blobs, layers={blobs["layer_digest"]: wrong})
    with pytest.raises(Invalid, match="missing"):
        store.import_blobs(blobs["manifest"], blobs["config"] + b" ", {})
    with pytest.raises(BadRequest, match="repo digest"):
        add(store, blobs, digests=[f"{REPO}:1"])
    assert store.list() == []
    assert not any((store.root / "layers" / "sha256").iterdir())


def test_pulled_names_are_not_local_but_imported_and_tagged_ones_are(store, blobs, tmp_path):
    add(store, blobs)
    assert store.local_image(f"{REPO}:1") is None
    assert store.local_image(f"{REPO}@{blobs['digest']}") is None
    assert store.local_image(blobs["id"])["id"] == blobs["id"]
    store.tag(f"{REPO}:1", "mine:1")
    assert store.local_image("mine:1")["id"] == blobs["id"]
    assert store.local_image("absent:1") is None
    # Importing the same image under the pulled name makes that name local.
    layout = build_busybox_layout(tmp_path / "layout", gzip_layer=True, ref_name=f"{REPO}:1")
    store.import_path(layout)
    assert store.local_image(f"{REPO}:1")["id"] == blobs["id"]
    # ... and pulling it again makes it pulled again.
    add(store, blobs, layers={})
    assert store.local_image(f"{REPO}:1") is None


def test_the_index_blob_is_kept_and_removed_with_the_image(store, blobs):
    index = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    index_hex = hashlib.sha256(index).hexdigest()
    record = add(store, blobs, index=index, digests=[f"{REPO}@sha256:{index_hex}"])
    assert record["repo_digests"] == [f"{REPO}@sha256:{index_hex}"]
    assert store.read_blob(f"sha256:{index_hex}") == index
    store.remove(record["id"])
    assert store.read_blob(f"sha256:{index_hex}") is None
    assert store.list() == []
