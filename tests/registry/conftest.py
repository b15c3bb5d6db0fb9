"""Fixtures of the pull tests: docker-registry processes on loopback sharing one storage
(plain HTTP, htpasswd basic auth, bearer tokens from a token server of the test, and TLS
with a CA of the test), test images pushed into them with skopeo, and a fake registry for
faults. Every process is stopped by its pid and every temporary directory removed, also
when a test fails."""

from __future__ import annotations

import base64
import gzip
import hashlib
import platform
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from kcore.conformance.testimages import build_busybox_layout, tar_layer
from kcore.images import ImageStore
from kcore.registry import MEDIA_DOCKER_MANIFEST, RegistryConfig

from .fakeregistry import FakeRegistry
from .servers import (
    Certs,
    Image,
    Registry,
    ThreadedServer,
    TokenSigner,
    make_certs,
    make_image,
    need,
    read_layout_image,
    skopeo_push,
    start_registry,
    upload,
    write_image_layout,
    write_index_layout,
)

USER, PASSWORD = "alice", "s3cret-pw"
TOKEN_SERVICE = "kcore-test-registry"
TOKEN_ISSUER = "kcore-test-issuer"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="kcore-registry-test-"))
    yield top
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def storage(workdir: Path) -> Path:
    """The filesystem storage every docker-registry of the run serves."""
    path = workdir / "storage"
    path.mkdir()
    return path


def _running(registry: Registry, request: pytest.FixtureRequest) -> Registry:
    request.addfinalizer(registry.stop)
    return registry


@pytest.fixture(scope="session")
def plain_registry(workdir: Path, storage: Path, request: pytest.FixtureRequest) -> Registry:
    need("docker-registry")
    return _running(start_registry(workdir / "plain", storage), request)


@pytest.fixture(scope="session")
def basic_registry(workdir: Path, storage: Path, request: pytest.FixtureRequest) -> Registry:
    need("docker-registry", "htpasswd")
    line = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    htpasswd = workdir / "htpasswd"
    htpasswd.write_text(line + "\n")
    auth = {"htpasswd": {"realm": "kcore-test", "path": str(htpasswd)}}
    return _running(start_registry(workdir / "basic", storage, auth=auth), request)


@dataclass
class TokenAuth:
    registry: Registry
    server: ThreadedServer
    requests: list[dict]
    signer: TokenSigner


@pytest.fixture(scope="session")
def token_registry(workdir: Path, storage: Path, request: pytest.FixtureRequest) -> TokenAuth:
    """docker-registry with ``auth: token``; the token server (ours) wants USER/PASSWORD."""
    need("docker-registry")
    signer = TokenSigner(workdir / "token", TOKEN_ISSUER)
    seen: list[dict] = []
    want = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    async def token(req: web.Request) -> web.Response:
        seen.append({"authorization": req.headers.get("Authorization", ""), **req.query})
        if req.headers.get("Authorization") != want:
            return web.json_response({"details": "invalid credentials"}, status=401)
        issued = signer.token(req.query.get("service", ""), req.query.get("scope", ""))
        return web.json_response({"token": issued, "expires_in": 600})

    app = web.Application()
    app.router.add_get("/token", token)
    server = ThreadedServer(app).start()
    request.addfinalizer(server.stop)
    auth = {
        "token": {
            "realm": f"{server.url}/token",
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(signer.bundle),
        }
    }
    registry = _running(start_registry(workdir / "tokenreg", storage, auth=auth), request)
    return TokenAuth(registry, server, seen, signer)


@pytest.fixture(scope="session")
def certs(workdir: Path) -> Certs:
    return make_certs(workdir / "certs")


@pytest.fixture(scope="session")
def tls_registry(
    workdir: Path, storage: Path, certs: Certs, request: pytest.FixtureRequest
) -> Registry:
    need("docker-registry")
    return _running(start_registry(workdir / "tls", storage, tls=certs), request)


@dataclass
class Pushed:
    """The images in the registries' storage, and what a pull of each must give."""

    busybox: Image  # test/busybox:1 (OCI manifest, gzip layer); also test/docker:1 (schema 2)
    docker_digest: str
    zstd_id: str  # test/zstd:1
    multi: Image  # test/multi:1: an index of OTHER_ARCH then this arch's image
    multi_index_digest: str
    shared: tuple[Image, Image]  # test/shared:1 and :2 share their first layer
    raw: Image  # test/raw:1: an uncompressed layer


def _tiny_layer(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    info.mtime = 946684800
    return gzip.compress(tar_layer([(info, data)]), mtime=0)


@pytest.fixture(scope="session")
def pushed(workdir: Path, plain_registry: Registry) -> Pushed:
    need("skopeo")
    host = plain_registry.host
    layouts = workdir / "layouts"

    busybox_layout = build_busybox_layout(layouts / "busybox", ref_name="img", gzip_layer=True)
    skopeo_push(busybox_layout, "img", f"{host}/test/busybox:1")
    skopeo_push(busybox_layout, "img", f"{host}/test/docker:1", "--format", "v2s2")
    busybox = read_layout_image(busybox_layout)

    zstd_layout = build_busybox_layout(layouts / "zstd", ref_name="img", applets=("sh", "cat"))
    skopeo_push(
        zstd_layout,
        "img",
        f"{host}/test/zstd:1",
        "--dest-compress-format",
        "zstd",
        "--dest-compress",
    )

    other = make_image([_tiny_layer("other-arch", b"not for this node\n")], architecture=OTHER_ARCH)
    index = write_index_layout(
        layouts / "multi",
        "img",
        [
            (other, {"os": "linux", "architecture": OTHER_ARCH}),
            (busybox, {"os": "linux", "architecture": HOST_ARCH}),
        ],
    )
    skopeo_push(layouts / "multi", "img", f"{host}/test/multi:1", "--all")

    base = busybox.blobs[busybox.layers[0]["digest"].partition(":")[2]]
    one = make_image([base, _tiny_layer("one", b"first\n")], architecture=HOST_ARCH)
    two = make_image([base, _tiny_layer("two", b"second\n" * 1000)], architecture=HOST_ARCH)
    for tag, image in (("1", one), ("2", two)):
        write_image_layout(layouts / f"shared{tag}", "img", image)
        skopeo_push(layouts / f"shared{tag}", "img", f"{host}/test/shared:{tag}")

    raw_layer = gzip.decompress(base)
    raw = make_image(
        [raw_layer],
        architecture=HOST_ARCH,
        layer_media="application/vnd.oci.image.layer.v1.tar",
        cmd=("true",),
    )
    upload(plain_registry.url, "test/raw", "1", raw)

    docker_manifest = _manifest_of(plain_registry, "test/docker", "1", MEDIA_DOCKER_MANIFEST)
    zstd_config = read_layout_image(zstd_layout).config
    return Pushed(
        busybox=busybox,
        docker_digest="sha256:" + hashlib.sha256(docker_manifest).hexdigest(),
        zstd_id="sha256:" + hashlib.sha256(zstd_config).hexdigest(),
        multi=busybox,
        multi_index_digest="sha256:" + hashlib.sha256(index).hexdigest(),
        shared=(one, two),
        raw=raw,
    )


def _manifest_of(registry: Registry, repo: str, tag: str, media: str) -> bytes:
    req = urllib.request.Request(
        f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": media}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == media, resp.headers["Content-Type"]
        return resp.read()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


@pytest.fixture
def config(plain_registry: Registry) -> RegistryConfig:
    """The plain registry listed as insecure; short timeouts and back-offs."""
    return RegistryConfig.from_options(
        insecure=[plain_registry.host], read_timeout=5, attempts=2, backoff=0.05
    )


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry().start()
    yield registry
    registry.stop()


@pytest.fixture
def fake_config(fake: FakeRegistry) -> RegistryConfig:
    return RegistryConfig.from_options(
        insecure=[fake.host], read_timeout=0.5, attempts=3, backoff=0.01
    )
