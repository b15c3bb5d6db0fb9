"""A registry that misbehaves: wrong bytes, downloads cut short and resumed, error answers,
stalls. After every failure the store's images and layers are as they were."""

from __future__ import annotations

import gzip
import os
import tarfile
import time

import pytest

from kcore.conformance.testimages import tar_layer
from kcore.errors import Forbidden, Invalid, NotFound, TemporaryError
from kcore.images import ImageStore
from kcore.registry import RegistryConfig, pull

from .fakeregistry import FakeRegistry
from .servers import Image, make_image
from .test_pull import snapshot

REPO = "team/app"


def random_layer(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = 946684800
    return gzip.compress(tar_layer([(info, os.urandom(size))]), compresslevel=1, mtime=0)


@pytest.fixture(scope="module")
def image() -> Image:
    """Two layers of ~300 kB of random data each."""
    return make_image(
        [random_layer("a", 300_000), random_layer("b", 300_000)],
        architecture=_arch(),
    )


def _arch() -> str:
    from kcore.registry import host_platform

    return host_platform()[1]


def blob_hex(image: Image, n: int) -> str:
    return image.layers[n]["digest"].partition(":")[2]


@pytest.fixture
def ref(fake: FakeRegistry, image: Image) -> str:
    fake.add(REPO, "1", image)
    return f"{fake.host}/{REPO}:1"


def partials(store: ImageStore) -> dict[str, int]:
    folder = store.download_dir
    if not folder.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in folder.iterdir()}


# --------------------------------------------------------------------------- wrong bytes


async def test_layer_digest_mismatch(store, fake, fake_config, ref, image):
    bad = blob_hex(image, 1)
    fake.faults.corrupt.add(bad)
    before = snapshot(store)
    with pytest.raises(Invalid, match=rf"sha256:{bad} does not match its digest"):
        await pull(store, ref, config=fake_config)
    assert snapshot(store) == before
    assert f"{bad}.partial" not in partials(store) and bad not in partials(store)


async def test_manifest_digest_header_mismatch(store, fake, fake_config, ref):
    fake.faults.wrong_digest_header = True
    with pytest.raises(Invalid, match=r"registry says its digest is sha256:0000"):
        await pull(store, ref, config=fake_config)
    assert store.list() == []


async def test_manifest_by_digest_must_match(store, fake, fake_config, image):
    fake.add(REPO, "1", image)
    fake.faults.corrupt.add(image.manifest_digest[7:])
    with pytest.raises(Invalid, match=rf"@{image.manifest_digest} does not match its digest"):
        await pull(store, f"{fake.host}/{REPO}@{image.manifest_digest}", config=fake_config)
    assert store.list() == []


async def test_config_digest_mismatch(store, fake, fake_config, ref, image):
    fake.faults.corrupt.add(image.id[7:])
    with pytest.raises(Invalid, match=rf"config of .* sha256:{image.id[7:]} does not match"):
        await pull(store, ref, config=fake_config)
    assert store.list() == []


# --------------------------------------------------------------------------- cut short, resumed


async def test_cut_short_download_resumes_in_the_same_pull(store, fake, fake_config, ref, image):
    victim = blob_hex(image, 0)
    fake.faults.cut[victim] = [100_000]
    result = await pull(store, ref, config=fake_config)
    assert result.image["id"] == image.id
    gets = fake.requests(rf"/blobs/sha256:{victim}$")
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    resumed_from = int(gets[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_from <= 100_000
    total = sum(layer["size"] for layer in image.layers)
    assert result.bytes_downloaded == total  # nothing fetched twice


async def test_failed_pull_leaves_a_partial_that_the_next_pull_resumes(
    store, fake, fake_config, ref, image
):
    victim = blob_hex(image, 1)
    fake.faults.cut[victim] = [50_000] * fake_config.attempts  # each attempt gets further
    before = snapshot(store)
    with pytest.raises(TemporaryError, match="cut short"):
        await pull(store, ref, config=fake_config)
    assert snapshot(store) == before
    kept = partials(store)[f"{victim}.partial"]
    assert kept > 0
    fake.seen.clear()
    result = await pull(store, ref, config=fake_config)
    assert result.image["id"] == image.id
    (get,) = fake.requests(rf"/blobs/sha256:{victim}$")
    assert get.headers["Range"] == f"bytes={kept}-"
    assert partials(store) == {}


async def test_resume_when_the_registry_ignores_range(store, fake, fake_config, ref, image):
    victim = blob_hex(image, 0)
    fake.faults.cut[victim] = [120_000]
    fake.faults.ignore_range = True
    result = await pull(store, ref, config=fake_config)
    assert result.image["id"] == image.id


async def test_a_corrupt_partial_is_downloaded_again(store, fake, fake_config, ref, image):
    victim = blob_hex(image, 0)
    store.download_dir.mkdir(parents=True)
    (store.download_dir / f"{victim}.partial").write_bytes(b"garbage" * 1000)
    result = await pull(store, ref, config=fake_config)
    assert result.image["id"] == image.id
    ranges = [s.headers.get("Range") for s in fake.requests(rf"/blobs/sha256:{victim}$")]
    assert ranges == ["bytes=7000-", None]


# --------------------------------------------------------------------------- error answers


async def test_server_errors_are_retried(store, fake, fake_config, ref, image):
    fake.faults.status["/manifests/1"] = [500]
    fake.faults.status[f"/blobs/sha256:{blob_hex(image, 0)}"] = [503, 502]
    result = await pull(store, ref, config=fake_config)
    assert result.image["id"] == image.id


async def test_persistent_server_error(store, fake, fake_config, ref, image):
    victim = f"/blobs/sha256:{blob_hex(image, 0)}"
    fake.faults.status[victim] = [500] * 10
    before = snapshot(store)
    with pytest.raises(TemporaryError, match=r"answered 500 .*injected 500"):
        await pull(store, ref, config=fake_config)
    assert len(fake.requests(victim + "$")) == fake_config.attempts
    assert snapshot(store) == before


async def test_unauthorized_and_not_found(store, image):
    fake = FakeRegistry(auth="basic").start()
    try:
        fake.add(REPO, "1", image)
        config = RegistryConfig.from_options(insecure=[fake.host], attempts=1)
        with pytest.raises(Forbidden, match=r"pull access denied for .*authorization failed"):
            await pull(store, f"{fake.host}/{REPO}:1", config=config)
        auth = {"username": fake.user, "password": fake.password}
        with pytest.raises(NotFound, match="manifest unknown"):
            await pull(store, f"{fake.host}/{REPO}:2", config=config, auth=auth)
        del fake.blobs[blob_hex(image, 1)]
        with pytest.raises(NotFound, match="blob unknown"):
            await pull(store, f"{fake.host}/{REPO}:1", config=config, auth=auth)
        assert store.list() == []
    finally:
        fake.stop()


async def test_a_stall_times_out(store, fake, ref, image):
    fake.faults.stall[blob_hex(image, 0)] = 1000
    config = RegistryConfig.from_options(
        insecure=[fake.host], read_timeout=0.3, attempts=2, backoff=0.01
    )
    before = snapshot(store)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match=r"stalled \(no data for 0.3s\)"):
        await pull(store, ref, config=config)
    assert time.monotonic() - started < 5
    assert snapshot(store) == before


async def test_one_failed_layer_fails_the_pull(store, fake, fake_config, ref, image):
    fake.faults.status[f"/blobs/sha256:{blob_hex(image, 1)}"] = [404] * 5
    fake.blob_delay = 0.2
    with pytest.raises(NotFound):
        await pull(store, ref, config=fake_config)
    assert store.list() == []


async def test_downloads_are_concurrent_and_bounded(store, fake, image):
    layers = [random_layer(f"l{n}", 20_000) for n in range(6)]
    many = make_image(layers, architecture=_arch())
    fake.add(REPO, "many", many)
    fake.blob_delay = 0.2
    config = RegistryConfig.from_options(insecure=[fake.host], max_concurrent_downloads=3)
    result = await pull(store, f"{fake.host}/{REPO}:many", config=config)
    assert result.layers_downloaded == 6
    assert fake.max_in_flight == 3
