"""What the pull tests run on loopback: Debian's ``docker-registry`` processes, an aiohttp
server on a thread of its own (the token server, the fake registry), certificates, and
pushing images with ``skopeo`` or the registry's upload API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        import pytest

        pytest.skip(
            f"needs {', '.join(missing)} (apt install docker-registry skopeo apache2-utils)"
        )


# --------------------------------------------------------------------------- certificates


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_certs(folder: Path) -> Certs:
    """A CA, and a server certificate for 127.0.0.1 that it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kcore test CA"))
        .issuer_name(_name("kcore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = Certs(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return out


class TokenSigner:
    """Signs registry bearer tokens (RS256 JWTs carrying their certificate in ``x5c``),
    as docker-registry's ``auth: token`` checks them against ``rootcertbundle``."""

    def __init__(self, folder: Path, issuer: str) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("kcore test token issuer"))
            .issuer_name(_name("kcore test token issuer"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        self.bundle = folder / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.issuer = issuer

    def token(self, service: str, scope: str) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access = [{"type": kind, "name": name, "actions": actions.split(",")}]
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": "kcore-test",
            "aud": service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{b64(signature)}"


# --------------------------------------------------------------------------- servers


class ThreadedServer:
    """An aiohttp application on 127.0.0.1, served by an event loop on its own thread (so
    that synchronous fixtures and any test's loop can use it)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1)
        try:
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(runner.cleanup())
            self.loop.close()

    def start(self) -> ThreadedServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Registry:
    """One docker-registry process."""

    host: str  # 127.0.0.1:<port>, as image references name it
    scheme: str
    process: subprocess.Popen
    config: Path
    log: Path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        """By pid: SIGTERM, then SIGKILL after 5 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def start_registry(
    folder: Path,
    storage: Path,
    *,
    auth: dict | None = None,
    tls: Certs | None = None,
) -> Registry:
    """``docker-registry serve`` on a free loopback port, ready when this returns."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex}
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": http,
    }
    if auth is not None:
        config["auth"] = auth
    path = folder / "config.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    log = folder / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    registry = Registry(f"127.0.0.1:{port}", "https" if tls else "http", process, path, log)
    context = ssl.create_default_context(cafile=str(tls.ca)) if tls else None
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{registry.url}/v2/", timeout=2, context=context)
            break
        except urllib.error.HTTPError:
            break  # it answers (401 with auth)
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                registry.stop()
                raise RuntimeError(
                    f"docker-registry did not start: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.05)
    return registry


# --------------------------------------------------------------------------- images


def skopeo_push(layout: Path, ref_name: str, dest: str, *extra: str) -> None:
    """``skopeo copy oci:<layout>:<ref_name> docker://<dest>`` to a plain-HTTP registry."""
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            *extra,
            f"oci:{layout}:{ref_name}",
            f"docker://{dest}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@dataclass
class Image:
    """The blobs of one image, by hex digest, and its manifest."""

    blobs: dict[str, bytes]
    manifest: bytes
    config: bytes

    @property
    def manifest_digest(self) -> str:
        return "sha256:" + sha256(self.manifest)

    @property
    def id(self) -> str:
        return "sha256:" + sha256(self.config)

    @property
    def layers(self) -> list[dict]:
        return json.loads(self.manifest)["layers"]

    def descriptor(self, platform: dict | None = None) -> dict:
        desc: dict[str, Any] = {
            "mediaType": MEDIA_MANIFEST,
            "digest": self.manifest_digest,
            "size": len(self.manifest),
        }
        if platform:
            desc["platform"] = platform
        return desc


def make_image(
    layers: list[bytes],
    *,
    architecture: str,
    diff_ids: list[str] | None = None,
    layer_media: str = "application/vnd.oci.image.layer.v1.tar+gzip",
    cmd: tuple[str, ...] = ("sh",),
) -> Image:
    """An image from layer blobs (``diff_ids`` default to the blobs' gunzipped digests)."""
    import gzip

    if diff_ids is None:
        diff_ids = []
        for blob in layers:
            raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
            diff_ids.append("sha256:" + sha256(raw))
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": list(cmd)},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": f"sha256:{sha256(config)}",
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_media, "digest": f"sha256:{sha256(b)}", "size": len(b)}
                for b in layers
            ],
        },
        sort_keys=True,
    ).encode()
    blobs = {sha256(b): b for b in layers}
    blobs[sha256(config)] = config
    blobs[sha256(manifest)] = manifest
    return Image(blobs, manifest, config)


def read_layout_image(layout: Path) -> Image:
    """The one image of an OCI layout that ``kcore.conformance.testimages`` built."""
    index = json.loads((layout / "index.json").read_text())
    manifest_hex = index["manifests"][0]["digest"].partition(":")[2]
    blobs = {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}
    manifest = blobs[manifest_hex]
    config = blobs[json.loads(manifest)["config"]["digest"].partition(":")[2]]
    return Image(blobs, manifest, config)


def write_index_layout(dest: Path, ref_name: str, images: list[tuple[Image, dict]]) -> bytes:
    """An OCI layout whose ``ref_name`` is an image index of ``images`` (with platforms);
    returns the index's bytes."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for image, _ in images:
        for digest, data in image.blobs.items():
            (blobs / digest).write_bytes(data)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [image.descriptor(platform) for image, platform in images],
        },
        sort_keys=True,
    ).encode()
    (blobs / sha256(index)).write_bytes(index)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_INDEX,
                "digest": f"sha256:{sha256(index)}",
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }
        ],
    }
    (dest / "index.json").write_text(json.dumps(top))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return index


def write_image_layout(dest: Path, ref_name: str, image: Image) -> Path:
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in image.blobs.items():
        (blobs / digest).write_bytes(data)
    desc = image.descriptor()
    desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return dest


def _no_proxy_open(request: urllib.request.Request, timeout: float = 30) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(request, timeout=timeout)


def upload(
    registry_url: str, repo: str, tag: str, image: Image, media_type: str = MEDIA_MANIFEST
) -> None:
    """Push ``image`` through the distribution API's monolithic upload (for layers that
    skopeo would recompress)."""
    manifest_hex = sha256(image.manifest)
    for digest, data in image.blobs.items():
        if digest == manifest_hex:
            continue
        start = urllib.request.Request(
            f"{registry_url}/v2/{repo}/blobs/uploads/", method="POST", data=b""
        )
        with _no_proxy_open(start) as resp:
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = registry_url + location
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest=sha256:{digest}",
            method="PUT",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        with _no_proxy_open(put):
            pass
    put = urllib.request.Request(
        f"{registry_url}/v2/{repo}/manifests/{tag}",
        method="PUT",
        data=image.manifest,
        headers={"Content-Type": media_type},
    )
    with _no_proxy_open(put):
        pass
