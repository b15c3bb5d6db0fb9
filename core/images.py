"""The node's image store, shared by the runtimes: OCI images imported from files or
pulled from registries (:mod:`kcore.registry`), unpacked per layer.

Layout under ``root`` (``<data-dir>/images``)::

    blobs/sha256/<hex>          manifests and configs, by digest
    layers/sha256/<diff-id>/    one unpacked layer, shared by every image that has it
    index.json                  the image records, replaced atomically
    lock                        flock: writers hold it exclusively, readers never take it
    tmp/                        work space of the writer holding the lock
    downloads/sha256/           layer blobs of registry pulls under way (``<hex>.partial``
                                while downloading, resumed by the next attempt)

Every blob is checked against its descriptor (sha256 and size) and every layer's
uncompressed stream against the config's ``rootfs.diff_ids`` before anything is moved into
place, so a failed import leaves nothing behind. Layers are written entry by entry, never
following a symbolic link, and OCI whiteouts become overlayfs whiteouts, so that a layer
directory can serve as an overlayfs ``lowerdir`` as it is.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import zstandard

from kcore.errors import BadRequest, Invalid, NotFound, NotSupported, TemporaryError

Progress = Callable[[str, int, int], None]

INDEX_SCHEMA = 1
MAX_JSON_BLOB = 8 << 20
CHUNK = 1 << 20
PROGRESS_STEP = 256 << 10

MEDIA_INDEX = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MEDIA_MANIFEST = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
UNSUPPORTED_MAGIC = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
}
UNSUPPORTED_ARCHIVE_MAGIC = {ZSTD_MAGIC: "zstd", **UNSUPPORTED_MAGIC}

OPAQUE_MARKER = ".wh..wh..opq"
WHITEOUT_PREFIX = ".wh."
OPAQUE_XATTR = "trusted.overlay.opaque"

_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# --------------------------------------------------------------------------- references

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"\w[\w.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?([0-9a-f]{12,64})")


def _parse_reference(ref: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of a reference, by Docker's rules."""
    if not isinstance(ref, str) or not ref:
        raise BadRequest("image reference is empty")

    def bad(why: str) -> BadRequest:
        return BadRequest(f"invalid image reference {ref!r}: {why}")

    name, at, digest = ref.partition("@")
    if at:
        if not _DIGEST_RE.fullmatch(digest):
            raise bad("the digest must be sha256:<64 lowercase hex digits>")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise bad(f"bad tag {tag!r}")
    if not name:
        raise bad("no repository name")
    if _HEX64_RE.fullmatch(name):
        raise bad("a 64-hex-digit name is an image id, not a repository")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        domain, path = parts[0], parts[1:]
        if not _DOMAIN_RE.fullmatch(domain):
            raise bad(f"bad registry {domain!r}")
    else:
        domain, path = "docker.io", parts
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _PATH_COMPONENT_RE.fullmatch(component):
            if _PATH_COMPONENT_RE.fullmatch(component.lower()):
                raise bad("repository names must be lowercase")
            raise bad(f"bad repository name component {component!r}")
    repository = f"{domain}/{'/'.join(path)}"
    if len(repository) > 255:
        raise bad("the repository name is longer than 255 characters")
    return repository, tag, digest or None


def parse_reference(ref: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference: ``busybox:1.36`` ->
    ``("docker.io/library/busybox", "1.36", None)``. Raises ``BadRequest``."""
    return _parse_reference(ref)


def normalize_reference(ref: str) -> str:
    """The fully qualified form of an image reference, as Docker spells it.

    ``busybox`` -> ``docker.io/library/busybox:latest``; a digest is kept, and ``:latest``
    is added only when there is neither a tag nor a digest. Raises ``BadRequest``.
    """
    repository, tag, digest = _parse_reference(ref)
    out = repository
    if tag:
        out += f":{tag}"
    if digest:
        out += f"@{digest}"
    elif not tag:
        out += ":latest"
    return out


def _normalize_tag(ref: str) -> str:
    repository, tag, digest = _parse_reference(ref)
    if digest:
        raise BadRequest(f"invalid tag {ref!r}: a tag cannot carry a digest")
    return f"{repository}:{tag or 'latest'}"


def _repository(tag: str) -> str:
    return _parse_reference(tag)[0]


# --------------------------------------------------------------------------- streams


class _HashingReader:
    """Counts and hashes what passes through ``read``; reports progress now and then."""

    def __init__(self, f: Any, on_progress: Callable[[int], None] | None = None) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.count = 0
        self._on_progress = on_progress
        self._reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if data:
            self.sha256.update(data)
            self.count += len(data)
            if self._on_progress and self.count - self._reported >= PROGRESS_STEP:
                self._reported = self.count
                self._on_progress(self.count)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def hexdigest(self) -> str:
        return self.sha256.hexdigest()


class _Prefixed:
    """``head`` (bytes already read from ``rest``) followed by ``rest``."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)


# --------------------------------------------------------------------------- sources


def _clean_parts(name: str) -> list[str] | None:
    """The components of a relative archive path, or None when it is absolute or escapes."""
    if name.startswith("/"):
        return None
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(component)
    return parts


class _Source:
    """The files of an image source (a directory or a tar archive), by relative path."""

    label: str

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def read_json(self, name: str, what: str) -> Any:
        if not self.exists(name):
            raise Invalid(f"{self.label}: {what} {name} is missing")
        if self.size(name) > MAX_JSON_BLOB:
            raise Invalid(f"{self.label}: {what} {name} is larger than {MAX_JSON_BLOB} bytes")
        with self.open(name) as f:
            data = f.read(MAX_JSON_BLOB + 1)
        return _loads(data, f"{self.label}: {what} {name}")


class _DirSource(_Source):
    def __init__(self, top: Path) -> None:
        self.top = top
        self.label = str(top)

    def _path(self, name: str) -> Path:
        parts = _clean_parts(name)
        if not parts:
            raise Invalid(f"{self.label}: path {name!r} leaves the image directory")
        return self.top.joinpath(*parts)

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def open(self, name: str) -> IO[bytes]:
        return self._path(name).open("rb")


class _TarSource(_Source):
    def __init__(self, tf: tarfile.TarFile, label: str) -> None:
        self.tf = tf
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in tf.getmembers():
            parts = _clean_parts(member.name)
            if parts:
                self.members["/".join(parts)] = member

    def _member(self, name: str) -> tarfile.TarInfo | None:
        for _ in range(16):
            parts = _clean_parts(name)
            member = self.members.get("/".join(parts)) if parts else None
            if member is None or not (member.issym() or member.islnk()):
                return member
            if member.issym():
                name = f"{os.path.dirname(member.name)}/{member.linkname}"
            else:
                name = member.linkname
        return None

    def exists(self, name: str) -> bool:
        member = self._member(name)
        return member is not None and member.isfile()

    def size(self, name: str) -> int:
        member = self._member(name)
        if member is None:
            raise Invalid(f"{self.label}: {name} is missing")
        return member.size

    def open(self, name: str) -> IO[bytes]:
        member = self._member(name)
        f = self.tf.extractfile(member) if member is not None else None
        if f is None:
            raise Invalid(f"{self.label}: {name} is missing")
        return f


class _BlobSource(_Source):
    """Blobs that a registry pull fetched and verified: manifest and config in memory, layer
    blobs as files, each under ``blobs/sha256/<hex>`` as in an OCI layout."""

    def __init__(self, label: str, data: dict[str, bytes], files: dict[str, Path]) -> None:
        self.label = label
        self.data = {f"blobs/sha256/{k}": v for k, v in data.items()}
        self.files = {f"blobs/sha256/{k}": Path(v) for k, v in files.items()}

    def exists(self, name: str) -> bool:
        return name in self.data or (name in self.files and self.files[name].is_file())

    def size(self, name: str) -> int:
        if name in self.data:
            return len(self.data[name])
        if name in self.files:
            return self.files[name].stat().st_size
        raise Invalid(f"{self.label}: {name} is missing")

    def open(self, name: str) -> IO[bytes]:
        if name in self.data:
            return io.BytesIO(self.data[name])
        try:
            return self.files[name].open("rb")
        except (KeyError, FileNotFoundError):
            raise TemporaryError(
                f"{self.label}: layer {name.rpartition('/')[2][:12]} was neither downloaded nor "
                "present in the store (removed meanwhile?); pull again"
            ) from None


@contextlib.contextmanager
def _open_source(source: Path, scratch: Path) -> Iterator[_Source]:
    """The source, whatever its form: directory, tar, or gzip-compressed tar."""
    if source.is_dir():
        yield _DirSource(source)
        return
    if not source.exists():
        raise NotFound(f"{source}: no such file or directory")
    if not source.is_file():
        raise BadRequest(f"{source}: not a directory or a regular file")
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(source.open("rb"))
        head = f.read(8)
        f.seek(0)
        if head.startswith(GZIP_MAGIC):
            plain = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
            try:
                with gzip.GzipFile(fileobj=f) as gz:
                    shutil.copyfileobj(gz, plain, CHUNK)
            except (OSError, EOFError, zlib.error) as exc:
                raise Invalid(f"{source}: broken gzip stream: {exc}") from None
            plain.seek(0)
            f = plain
        else:
            for magic, kind in UNSUPPORTED_ARCHIVE_MAGIC.items():
                if head.startswith(magic):
                    raise NotSupported(
                        f"{source}: {kind}-compressed archives are not supported (use tar or tar.gz)"
                    )
        try:
            tf = stack.enter_context(tarfile.open(fileobj=f, mode="r:"))
            src = _TarSource(tf, str(source))
        except (tarfile.TarError, EOFError) as exc:
            raise BadRequest(
                f"{source}: not an OCI layout directory, an OCI archive or a docker archive "
                f"(not a tar file: {exc})"
            ) from None
        yield src


# --------------------------------------------------------------------------- reading images


@dataclass
class _Layer:
    path: str  # in the source
    label: str  # short digest for progress and messages
    diff_id: str  # hex
    digest: str | None = None  # hex of the (maybe compressed) blob; None in docker archives
    size: int | None = None
    media_type: str = ""


@dataclass
class _Plan:
    """One image of a source, its manifest and config already verified."""

    config: bytes
    config_digest: str  # hex
    manifest: bytes | None
    manifest_digest: str | None  # hex
    names: list[str]
    layers: list[_Layer]
    what: str
    parsed_config: dict[str, Any] = field(default_factory=dict)
    # A registry pull says which repo digests name the image (the digest it resolved, maybe
    # of an index), and which other manifests (that index) to keep with it.
    repo_digests: list[str] | None = None
    pulled: bool = False
    extra_blobs: dict[str, bytes] = field(default_factory=dict)


def _loads(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{what}: not valid JSON ({exc})") from None


def _digest_hex(desc: Any, what: str) -> str:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise Invalid(f"{what}: descriptor without a digest")
    digest = desc["digest"]
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256":
        raise NotSupported(f"{what}: digest {digest!r}: only sha256 digests are supported")
    if not _HEX64_RE.fullmatch(hexpart):
        raise Invalid(f"{what}: malformed digest {digest!r}")
    return hexpart


def _descriptor_size(desc: dict, what: str) -> int:
    size = desc.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Invalid(f"{what}: descriptor {desc.get('digest')} has no valid size")
    return size


def _read_blob(src: _Source, desc: Any, what: str) -> tuple[bytes, str]:
    """A small JSON blob named by ``desc``, checked against its digest and size."""
    hexdigest = _digest_hex(desc, what)
    size = _descriptor_size(desc, what)
    name = f"blobs/sha256/{hexdigest}"
    if not src.exists(name):
        raise Invalid(f"{src.label}: {what} sha256:{hexdigest} is missing (no {name})")
    actual = src.size(name)
    if actual != size:
        raise Invalid(
            f"{src.label}: {what} sha256:{hexdigest} is {actual} bytes, its descriptor says {size}"
        )
    if size > MAX_JSON_BLOB:
        raise Invalid(f"{src.label}: {what} sha256:{hexdigest} is larger than {MAX_JSON_BLOB}")
    with src.open(name) as f:
        data = f.read(size)
    got = hashlib.sha256(data).hexdigest()
    if got != hexdigest:
        raise Invalid(
            f"{src.label}: {what} sha256:{hexdigest} does not match its digest "
            f"(content is sha256:{got})"
        )
    return data, hexdigest


def _host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCH.get(machine, machine)


def _platform_ok(p: Any) -> bool:
    if not isinstance(p, dict):
        return True
    return (p.get("os"), p.get("architecture")) == _host_platform()


def _names(annotations: Any, label: str) -> list[str]:
    """Tags named by a descriptor's annotations. A bare ref.name such as ``latest`` names
    only a tag (OCI layouts written by skopeo): without a repository it cannot tag."""
    if not isinstance(annotations, dict):
        return []
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if not name:
        ref = annotations.get(ANNOTATION_REF_NAME)
        if isinstance(ref, str) and any(c in ref for c in "/:@"):
            name = ref
    if not isinstance(name, str) or not name:
        return []
    try:
        repository, tag, digest = _parse_reference(name)
    except BadRequest as exc:
        raise BadRequest(f"{label}: {exc}") from None
    return [] if digest and not tag else [f"{repository}:{tag or 'latest'}"]


def _config_of(data: bytes, what: str) -> dict:
    config = _loads(data, what)
    if not isinstance(config, dict):
        raise Invalid(f"{what}: not a JSON object")
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise Invalid(f"{what}: no rootfs.diff_ids")
    for d in diff_ids:
        if not isinstance(d, str) or not _DIGEST_RE.fullmatch(d):
            raise Invalid(f"{what}: malformed diff_id {d!r} (only sha256 is supported)")
    container = config.get("config")
    if container is not None and not isinstance(container, dict):
        raise Invalid(f"{what}: 'config' is not an object")
    return config


def _manifest_plan(
    src: _Source, desc: dict, names: list[str], what: str, *, require_layers: bool = True
) -> _Plan:
    data, manifest_hex = _read_blob(src, desc, f"manifest of {what}")
    manifest = _loads(data, f"{src.label}: manifest sha256:{manifest_hex}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise Invalid(f"{src.label}: manifest sha256:{manifest_hex} has no layers list")
    config_bytes, config_hex = _read_blob(src, manifest.get("config"), f"config of {what}")
    config = _config_of(config_bytes, f"{src.label}: config sha256:{config_hex}")
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        raise Invalid(
            f"{src.label}: manifest sha256:{manifest_hex} has {len(manifest['layers'])} layers "
            f"but its config lists {len(diff_ids)} diff_ids"
        )
    layers = []
    for number, (ldesc, diff_id) in enumerate(zip(manifest["layers"], diff_ids, strict=True), 1):
        lwhat = f"layer {number} of {what}"
        hexdigest = _digest_hex(ldesc, lwhat)
        media_type = str(ldesc.get("mediaType", ""))
        layer = _Layer(
            path=f"blobs/sha256/{hexdigest}",
            label=hexdigest[:12],
            diff_id=diff_id.partition(":")[2],
            digest=hexdigest,
            size=_descriptor_size(ldesc, lwhat),
            media_type=media_type,
        )
        if require_layers and not src.exists(layer.path):
            raise Invalid(f"{src.label}: {lwhat}: blob sha256:{hexdigest} is missing")
        layers.append(layer)
    return _Plan(
        config_bytes, config_hex, data, manifest_hex, names, layers, what, parsed_config=config
    )


def _descriptor_plan(src: _Source, desc: Any, names: list[str], what: str, depth: int = 0) -> _Plan:
    if depth > 4:
        raise Invalid(f"{src.label}: image indexes nested too deeply")
    media_type = desc.get("mediaType") if isinstance(desc, dict) else None
    if media_type in MEDIA_MANIFEST:
        return _manifest_plan(src, desc, names, what)
    data, hexdigest = _read_blob(src, desc, f"manifest of {what}")
    obj = _loads(data, f"{src.label}: blob sha256:{hexdigest}")
    media_type = media_type or (obj.get("mediaType") if isinstance(obj, dict) else None)
    if not isinstance(obj, dict):
        raise Invalid(f"{src.label}: blob sha256:{hexdigest} is not a JSON object")
    if media_type in MEDIA_INDEX or (media_type is None and "manifests" in obj):
        children = obj.get("manifests")
        if not isinstance(children, list):
            raise Invalid(f"{src.label}: index sha256:{hexdigest} has no manifests list")
        fitting = [c for c in children if isinstance(c, dict) and _platform_ok(c.get("platform"))]
        if not fitting:
            have = sorted(
                f"{c['platform'].get('os')}/{c['platform'].get('architecture')}"
                for c in children
                if isinstance(c, dict) and isinstance(c.get("platform"), dict)
            )
            raise NotSupported(
                f"{src.label}: {what} has no image for {'/'.join(_host_platform())} "
                f"(it has: {', '.join(have) or 'none'})"
            )
        return _descriptor_plan(src, fitting[0], names, what, depth + 1)
    if media_type in MEDIA_MANIFEST or (media_type is None and "layers" in obj):
        return _manifest_plan(src, desc, names, what)
    raise NotSupported(f"{src.label}: {what}: unsupported media type {media_type!r}")


def _oci_plans(src: _Source) -> list[_Plan]:
    index = src.read_json("index.json", "OCI image index")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise Invalid(f"{src.label}: index.json lists no manifests")
    plans = []
    for number, desc in enumerate(manifests, 1):
        if not isinstance(desc, dict):
            raise Invalid(f"{src.label}: index.json: manifest {number} is not an object")
        if not _platform_ok(desc.get("platform")):
            continue
        names = _names(desc.get("annotations"), src.label)
        what = names[0] if names else f"image {number} in index.json"
        plans.append(_descriptor_plan(src, desc, names, what))
    if not plans:
        raise NotSupported(f"{src.label}: index.json has no image for {'/'.join(_host_platform())}")
    return plans


def _docker_plans(src: _Source) -> list[_Plan]:
    entries = src.read_json("manifest.json", "docker archive manifest")
    if not isinstance(entries, list) or not entries:
        raise Invalid(f"{src.label}: manifest.json lists no images")
    plans = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise Invalid(f"{src.label}: manifest.json: entry {number} has no Config")
        try:
            names = [_normalize_tag(t) for t in entry.get("RepoTags") or []]
        except BadRequest as exc:
            raise BadRequest(f"{src.label}: manifest.json: {exc}") from None
        what = names[0] if names else f"image {number} in manifest.json"
        config_name = entry["Config"]
        if not src.exists(config_name):
            raise Invalid(f"{src.label}: config {config_name} of {what} is missing")
        if src.size(config_name) > MAX_JSON_BLOB:
            raise Invalid(f"{src.label}: config {config_name} is larger than {MAX_JSON_BLOB}")
        with src.open(config_name) as f:
            config_bytes = f.read(MAX_JSON_BLOB + 1)
        config_hex = hashlib.sha256(config_bytes).hexdigest()
        named = re.fullmatch(r"(?:.*/)?(?:sha256[:/])?([0-9a-f]{64})(?:\.json)?", config_name)
        if named and named.group(1) != config_hex:
            raise Invalid(
                f"{src.label}: config {config_name} does not match its digest "
                f"(content is sha256:{config_hex})"
            )
        config = _config_of(config_bytes, f"{src.label}: config {config_name}")
        diff_ids = config["rootfs"]["diff_ids"]
        layer_names = entry.get("Layers")
        if not isinstance(layer_names, list) or len(layer_names) != len(diff_ids):
            raise Invalid(
                f"{src.label}: manifest.json: {what} names "
                f"{len(layer_names) if isinstance(layer_names, list) else 'no'} layers "
                f"but its config lists {len(diff_ids)} diff_ids"
            )
        layers = []
        for lnumber, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True), 1):
            if not isinstance(name, str) or not src.exists(name):
                raise Invalid(f"{src.label}: layer {lnumber} of {what} ({name}) is missing")
            hexdigest = diff_id.partition(":")[2]
            layers.append(_Layer(path=name, label=hexdigest[:12], diff_id=hexdigest))
        plans.append(
            _Plan(config_bytes, config_hex, None, None, names, layers, what, parsed_config=config)
        )
    return plans


def _read_plans(src: _Source) -> list[_Plan]:
    if src.exists("index.json") and (src.exists("oci-layout") or not src.exists("manifest.json")):
        plans = _oci_plans(src)
    elif src.exists("manifest.json"):
        plans = _docker_plans(src)
    else:
        raise BadRequest(
            f"{src.label}: neither an OCI image layout (no index.json) "
            "nor a docker archive (no manifest.json)"
        )
    merged: dict[tuple[str, str | None], _Plan] = {}
    for plan in plans:
        key = (plan.config_digest, plan.manifest_digest)
        if key in merged:
            merged[key].names += [n for n in plan.names if n not in merged[key].names]
        else:
            merged[key] = plan
    return list(merged.values())


# --------------------------------------------------------------------------- layer extraction


class _LayerWriter:
    """Writes the entries of one layer tar under ``top``, never following a symlink.

    Every path is resolved component by component from a directory descriptor with
    ``O_NOFOLLOW``, so that no entry can write outside ``top``.
    """

    def __init__(self, top: Path, label: str) -> None:
        self.top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.label = label
        self.dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}
        self.as_root = os.geteuid() == 0

    def close(self) -> None:
        os.close(self.top_fd)

    def _refuse(self, name: str, why: str) -> Invalid:
        return Invalid(f"layer {self.label}: refusing entry {name!r}: {why}")

    def _parts(self, name: str, *, what: str = "path") -> tuple[str, ...]:
        if name.startswith("/"):
            raise self._refuse(name, f"absolute {what}")
        parts = _clean_parts(name)
        if parts is None:
            raise self._refuse(name, f"{what} escapes the layer with '..'")
        return tuple(parts)

    @contextlib.contextmanager
    def _dir(self, parts: Sequence[str], entry: str, *, create: bool, what: str) -> Iterator[int]:
        """A descriptor of the directory ``parts``, refusing symlinks on the way."""
        fd = os.dup(self.top_fd)
        try:
            for i, component in enumerate(parts):
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    child = os.open(component, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise self._refuse(entry, f"{what} does not exist in this layer") from None
                    os.mkdir(component, 0o755, dir_fd=fd)
                    child = os.open(component, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    where = "/".join(parts[: i + 1])
                    if stat.S_ISLNK(os.lstat(component, dir_fd=fd).st_mode):
                        raise self._refuse(
                            entry, f"{what} goes through the symbolic link {where!r}"
                        ) from None
                    raise self._refuse(
                        entry, f"{where!r} in its {what} is not a directory"
                    ) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _remove(self, pfd: int, name: str, parts: tuple[str, ...]) -> None:
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(name, dir_fd=pfd)
            n = len(parts)
            for key in [k for k in self.dirs if k[:n] == parts]:
                del self.dirs[key]
        else:
            os.unlink(name, dir_fd=pfd)

    def _owner_mode_time(self, m: tarfile.TarInfo, name: str, pfd: int, *, mode: bool) -> None:
        if self.as_root:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if mode:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
        ns = int(m.mtime * 1_000_000_000)
        os.utime(name, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = self._parts(m.name)
        if not parts:
            return  # the layer's root: its mode comes from the directory overlayfs mounts
        base = parts[-1]
        if base in ("..", "."):
            raise self._refuse(m.name, "bad name")
        with self._dir(parts[:-1], m.name, create=True, what="parent directory") as pfd:
            if base.startswith(WHITEOUT_PREFIX):
                self._whiteout(m.name, parts, pfd)
                return
            if m.isdir():
                try:
                    is_dir = stat.S_ISDIR(os.lstat(base, dir_fd=pfd).st_mode)
                except FileNotFoundError:
                    is_dir = False
                if not is_dir:
                    self._remove(pfd, base, parts)
                    os.mkdir(base, 0o755, dir_fd=pfd)
                self.dirs[parts] = m
                return
            if m.islnk():
                self._hardlink(m, parts, pfd)
                return
            self._remove(pfd, base, parts)
            if m.isreg():
                self._file(tf, m, base, pfd)
            elif m.issym():
                os.symlink(m.linkname, base, dir_fd=pfd)
                self._owner_mode_time(m, base, pfd, mode=False)
            elif m.ischr() or m.isblk():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
                self._owner_mode_time(m, base, pfd, mode=True)
            elif m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
                self._owner_mode_time(m, base, pfd, mode=True)

    def _file(self, tf: tarfile.TarFile, m: tarfile.TarInfo, base: str, pfd: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            data = tf.extractfile(m)
            if data is not None:
                shutil.copyfileobj(data, out, CHUNK)
            out.flush()
            if self.as_root:
                os.fchown(fd, m.uid, m.gid)
            os.fchmod(fd, m.mode & 0o7777)
            ns = int(m.mtime * 1_000_000_000)
            os.utime(fd, ns=(ns, ns))

    def _hardlink(self, m: tarfile.TarInfo, parts: tuple[str, ...], pfd: int) -> None:
        target = self._parts(m.linkname, what="hardlink target")
        if not target:
            raise self._refuse(m.name, "hardlink to the layer's root")
        if target == parts:
            return
        with self._dir(target[:-1], m.name, create=False, what="hardlink target") as tfd:
            try:
                st = os.lstat(target[-1], dir_fd=tfd)
            except FileNotFoundError:
                raise self._refuse(
                    m.name, f"hardlink target {m.linkname!r} does not exist in this layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise self._refuse(m.name, f"hardlink target {m.linkname!r} is a directory")
            self._remove(pfd, parts[-1], parts)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, entry: str, parts: tuple[str, ...], pfd: int) -> None:
        base = parts[-1]
        if base == OPAQUE_MARKER:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk and the like)
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise self._refuse(entry, "whiteout of nothing")
        self._remove(pfd, name, (*parts[:-1], name))
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)

    def finish(self) -> None:
        """Directory metadata last: writing their entries changed their mtimes."""
        for parts, m in sorted(self.dirs.items(), key=lambda kv: -len(kv[0])):
            try:
                with self._dir(parts, m.name, create=False, what="directory") as fd:
                    if self.as_root:
                        os.fchown(fd, m.uid, m.gid)
                    os.fchmod(fd, m.mode & 0o7777)
                    ns = int(m.mtime * 1_000_000_000)
                    os.utime(fd, ns=(ns, ns))
            except Invalid:
                continue


# --------------------------------------------------------------------------- the store


def _public(record: dict) -> dict:
    return {k: copy.deepcopy(v) for k, v in record.items() if not k.startswith("_")}


def _user_fields(user: Any) -> tuple[dict | None, str]:
    name = str(user or "").partition(":")[0]
    if not name:
        return None, ""
    if name.isdigit():
        return {"value": int(name)}, ""
    return None, name


class ImageStore:
    """The images of one node, shared safely by the daemon and ``kcore image``.

    ``unpack=False`` keeps metadata only: layers are verified but not written (for a
    simulated runtime that never mounts them).
    """

    def __init__(self, root: Path, *, unpack: bool = True) -> None:
        self.root = Path(root)
        self.unpack = unpack
        self._cache: tuple[tuple[int, int, int], dict] | None = None

    @property
    def _index_path(self) -> Path:
        return self.root / "index.json"

    @property
    def _tmp(self) -> Path:
        return self.root / "tmp"

    def _layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / "sha256" / diff_id.partition(":")[2]

    @property
    def download_dir(self) -> Path:
        """Where registry pulls keep layer blobs while they download (never an image)."""
        return self.root / "downloads" / "sha256"

    # ----------------------------------------------------------------- index and lock

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            for sub in ("blobs/sha256", "layers/sha256", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._clear_tmp()  # whatever is there was left by a writer that died
            try:
                yield
            finally:
                self._clear_tmp()
        finally:
            os.close(fd)

    def _clear_tmp(self) -> None:
        with os.scandir(self._tmp) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def _read_index(self, *, for_update: bool = False) -> dict:
        """The index as last written; shared with the cache unless ``for_update``."""
        try:
            with open(self._index_path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if self._cache is None or self._cache[0] != key:
                    index = _loads(f.read(), f"image index {self._index_path}")
                    if not isinstance(index, dict) or not isinstance(index.get("images"), list):
                        raise Invalid(f"image index {self._index_path} is corrupt")
                    index.setdefault("layers", {})
                    self._cache = (key, index)
                index = self._cache[1]
        except FileNotFoundError:
            index = {"schemaVersion": INDEX_SCHEMA, "images": [], "layers": {}}
        return copy.deepcopy(index) if for_update else index

    def _write_index(self, index: dict) -> None:
        data = json.dumps(index, indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=".index.json.", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self._index_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _write_blob(self, hexdigest: str, data: bytes) -> None:
        path = self.root / "blobs" / "sha256" / hexdigest
        if path.is_file() and path.stat().st_size == len(data):
            return
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    @staticmethod
    def _find(index: dict, ref: str) -> dict | None:
        images = index["images"]
        if not isinstance(ref, str) or not ref:
            raise BadRequest("image reference is empty")
        hexid = _ID_PREFIX_RE.fullmatch(ref)
        if hexid and len(hexid.group(1)) == 64:
            wanted = f"sha256:{hexid.group(1)}"
            return next((r for r in images if r["id"] == wanted), None)
        if not ref.startswith("sha256:"):
            try:
                repository, tag, digest = _parse_reference(ref)
            except BadRequest:
                if not hexid:
                    raise
            else:
                if digest:
                    wanted = f"{repository}@{digest}"
                    return next((r for r in images if wanted in r["repo_digests"]), None)
                wanted = f"{repository}:{tag or 'latest'}"
                found = next((r for r in images if wanted in r["repo_tags"]), None)
                if found is not None or not hexid:
                    return found
        if hexid:
            prefix = f"sha256:{hexid.group(1)}"
            matches = [r for r in images if r["id"].startswith(prefix)]
            if len(matches) > 1:
                raise BadRequest(f"image id prefix {ref!r} is ambiguous")
            return matches[0] if matches else None
        return None

    # ----------------------------------------------------------------- reading

    def status(self, ref: str) -> dict | None:
        """The image named by a tag, an id, an id prefix (12+ hex digits) or a repo digest."""
        record = self._find(self._read_index(), ref)
        return _public(record) if record is not None else None

    def local_image(self, ref: str) -> dict | None:
        """The image ``ref`` names when this node gave it that name (an import, a tag, or
        an image id), not a registry pull: such a name has no registry to resolve it again."""
        index = self._read_index()
        record = self._find(index, ref)
        if record is None:
            return None
        with contextlib.suppress(BadRequest):
            repository, tag, digest = _parse_reference(ref)
            name = f"{repository}@{digest}" if digest else f"{repository}:{tag or 'latest'}"
            if name in record.get("_pulled", ()):
                return None
        return _public(record)

    def has_layer(self, diff_id: str) -> bool:
        """Whether the layer with this uncompressed digest (``sha256:<hex>``) is in place."""
        return self._layer_present(diff_id.partition(":")[2], self._read_index()["layers"])

    def read_blob(self, digest: str) -> bytes | None:
        """A manifest or config the store keeps (``sha256:<hex>``), verified; else None."""
        hexdigest = digest.partition(":")[2]
        if not digest.startswith("sha256:") or not _HEX64_RE.fullmatch(hexdigest):
            return None
        try:
            data = (self.root / "blobs" / "sha256" / hexdigest).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == hexdigest else None

    def layer_dirs(self, image_id: str) -> list[Path]:
        """The image's unpacked layers, lowest first (overlayfs wants them reversed)."""
        record = self._find(self._read_index(), image_id)
        if record is None:
            raise NotFound(f"image {image_id} not found")
        diff_ids = list(dict.fromkeys(reversed(record["layers"])))[::-1]
        dirs = []
        for diff_id in diff_ids:
            path = self._layer_dir(diff_id)
            if not path.is_dir():
                raise NotFound(f"layer {diff_id} of image {record['id']} is not unpacked")
            dirs.append(path)
        return dirs

    def fs_usage(self) -> dict:
        """Bytes and inodes the store takes on disk (hard links counted once)."""
        seen: set[tuple[int, int]] = set()
        used = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames]:
                with contextlib.suppress(FileNotFoundError):
                    st = os.lstat(os.path.join(dirpath, name))
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        used += st.st_blocks * 512
        return {"mountpoint": str(self.root), "used_bytes": used, "inodes_used": len(seen)}

    # ----------------------------------------------------------------- writing

    def import_path(
        self,
        source: Path,
        *,
        tags: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> list[dict]:
        """Import every image of an OCI layout (directory or tar) or a docker archive.

        ``tags`` are added to the image (moved from any image holding them); only a source
        with one image takes them. Nothing is kept unless everything verifies.
        """
        source = Path(source)
        extra = list(dict.fromkeys(_normalize_tag(t) for t in tags))
        report = progress or (lambda label, done, total: None)
        with self._locked():
            with _open_source(source, self._tmp) as src:
                plans = _read_plans(src)
                if extra and len(plans) != 1:
                    raise BadRequest(
                        f"{source}: holds {len(plans)} images; tags can be given for one only"
                    )
                index = self._read_index(for_update=True)
                staged = self._stage_layers(src, plans, index["layers"], report)
            return self._commit(index, plans, staged, extra)

    def import_blobs(
        self,
        manifest: bytes,
        config: bytes,
        layers: Mapping[str, Path],
        *,
        tags: Sequence[str] = (),
        digests: Sequence[str] = (),
        index: bytes | None = None,
        source: str = "registry",
        progress: Progress | None = None,
    ) -> dict:
        """Add an image that a registry pull fetched: its ``manifest`` and ``config`` as
        fetched, and ``layers``, the files of the layer blobs the store lacks, by blob digest
        (``sha256:<hex>``). Everything is verified as ``import_path`` does (digests, sizes,
        diff_ids), then the image is recorded with ``tags`` and ``digests``
        (``<repository>@sha256:<hex>``, the digest the pull resolved, maybe that of
        ``index``, which is kept too). Those names count as pulled (see
        :meth:`local_image`). Nothing is kept unless everything verifies.
        """
        names = list(dict.fromkeys(_normalize_tag(t) for t in tags))
        repo_digests = []
        for d in digests:
            repository, tag, digest = _parse_reference(d)
            if not digest or tag:
                raise BadRequest(f"invalid repo digest {d!r}: want <repository>@sha256:<hex>")
            repo_digests.append(f"{repository}@{digest}")
        manifest_hex = hashlib.sha256(manifest).hexdigest()
        parsed = _loads(manifest, f"{source}: manifest sha256:{manifest_hex}")
        media_type = parsed.get("mediaType") if isinstance(parsed, dict) else None
        desc = {
            "mediaType": media_type or "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{manifest_hex}",
            "size": len(manifest),
        }
        blobs = {manifest_hex: manifest, hashlib.sha256(config).hexdigest(): config}
        files = {}
        for digest, path in layers.items():
            hexdigest = _digest_hex({"digest": digest}, f"{source}: layer")
            files[hexdigest] = Path(path)
        src = _BlobSource(source, blobs, files)
        what = names[0] if names else (repo_digests[0] if repo_digests else source)
        report = progress or (lambda label, done, total: None)
        with self._locked():
            plan = _manifest_plan(src, desc, names, what, require_layers=False)
            plan.repo_digests = repo_digests
            plan.pulled = True
            if index is not None:
                plan.extra_blobs[hashlib.sha256(index).hexdigest()] = index
            image_index = self._read_index(for_update=True)
            staged = self._stage_layers(src, [plan], image_index["layers"], report)
            return self._commit(image_index, [plan], staged, [])[0]

    def _layer_present(self, diff_id: str, known: dict) -> bool:
        key = f"sha256:{diff_id}"
        return key in known and (not self.unpack or self._layer_dir(key).is_dir())

    def _stage_layers(
        self, src: _Source, plans: list[_Plan], known: dict, report: Progress
    ) -> dict[str, tuple[Path | None, int]]:
        staged: dict[str, tuple[Path | None, int]] = {}
        for plan in plans:
            for layer in plan.layers:
                if layer.diff_id in staged or self._layer_present(layer.diff_id, known):
                    total = layer.size if layer.size is not None else src.size(layer.path)
                    report(layer.label, total, total)
                    continue
                staged[layer.diff_id] = self._verify_layer(src, layer, report)
        return staged

    def _verify_layer(
        self, src: _Source, layer: _Layer, report: Progress
    ) -> tuple[Path | None, int]:
        """Stream one layer blob: check its digests, and unpack it into a temp dir."""
        total = layer.size if layer.size is not None else src.size(layer.path)
        report(layer.label, 0, total)
        top = Path(tempfile.mkdtemp(prefix=f"layer-{layer.label}-", dir=self._tmp))
        os.chmod(top, 0o755)
        with src.open(layer.path) as raw:
            blob = _HashingReader(raw, lambda n: report(layer.label, n, total))
            head = blob.read(6)
            for magic, kind in UNSUPPORTED_MAGIC.items():
                if head.startswith(magic):
                    raise NotSupported(
                        f"layer {layer.label}: {kind}-compressed layers are not supported "
                        "(only tar, tar+gzip and tar+zstd)"
                    )
            stream: Any = _Prefixed(head, blob)
            if head.startswith(GZIP_MAGIC):
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            elif head.startswith(ZSTD_MAGIC):
                stream = zstandard.ZstdDecompressor().stream_reader(
                    stream, read_across_frames=True, closefd=False
                )
            diff = _HashingReader(stream)
            try:
                if self.unpack and head:  # an empty blob is an empty layer
                    self._extract(diff, top, layer.label)
                diff.drain()
                blob.drain()
            except (tarfile.TarError, OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # a real I/O error of ours, not a broken stream
                blob.drain()
                self._check_blob(layer, blob)
                raise Invalid(f"layer blob {layer.label}: not a valid tar stream: {exc}") from None
        self._check_blob(layer, blob)
        if diff.hexdigest != layer.diff_id:
            raise Invalid(
                f"layer blob {layer.path}: uncompressed content is sha256:{diff.hexdigest}, "
                f"the config's diff_id says sha256:{layer.diff_id}"
            )
        report(layer.label, total, total)
        return (top if self.unpack else None), diff.count

    @staticmethod
    def _check_blob(layer: _Layer, blob: _HashingReader) -> None:
        if layer.digest is not None and blob.hexdigest != layer.digest:
            raise Invalid(
                f"layer blob sha256:{layer.digest} does not match its digest "
                f"(content is sha256:{blob.hexdigest})"
            )
        if layer.size is not None and blob.count != layer.size:
            raise Invalid(
                f"layer blob sha256:{layer.digest} is {blob.count} bytes, "
                f"its descriptor says {layer.size}"
            )

    @staticmethod
    def _extract(stream: Any, top: Path, label: str) -> None:
        writer = _LayerWriter(top, label)
        try:
            with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tf:
                for member in tf:
                    writer.add(tf, member)
            writer.finish()
        finally:
            writer.close()

    def _commit(
        self,
        index: dict,
        plans: list[_Plan],
        staged: dict[str, tuple[Path | None, int]],
        extra: list[str],
    ) -> list[dict]:
        before = copy.deepcopy(index)
        moved = False
        for diff_id, (path, size) in staged.items():
            if path is not None:
                dest = self._layer_dir(f"sha256:{diff_id}")
                if dest.exists():  # left by a writer that died before writing the index
                    shutil.rmtree(dest)
                os.rename(path, dest)
                moved = True
            index["layers"][f"sha256:{diff_id}"] = {"size": size}
        if moved:
            os.sync()  # the layers are on disk before the index names them
        records = []
        for plan in plans:
            self._write_blob(plan.config_digest, plan.config)
            if plan.manifest is not None and plan.manifest_digest is not None:
                self._write_blob(plan.manifest_digest, plan.manifest)
            for hexdigest, data in plan.extra_blobs.items():
                self._write_blob(hexdigest, data)
            records.append(self._merge(index, plan, extra))
        if index != before:
            self._write_index(index)
        return [_public(r) for r in records]

    def _merge(self, index: dict, plan: _Plan, extra: list[str]) -> dict:
        image_id = f"sha256:{plan.config_digest}"
        record = next((r for r in index["images"] if r["id"] == image_id), None)
        if record is None:
            container = plan.parsed_config.get("config") or {}
            uid, username = _user_fields(container.get("User"))
            diff_ids = list(plan.parsed_config["rootfs"]["diff_ids"])
            record = {
                "id": image_id,
                "repo_tags": [],
                "repo_digests": [],
                "size": sum(index["layers"][d]["size"] for d in diff_ids),
                "uid": uid,
                "username": username,
                "pinned": False,
                "layers": diff_ids,
                "config": container,
                "created": time.time_ns(),
                "_manifests": [],
            }
            index["images"].append(record)
        names = list(dict.fromkeys([*plan.names, *extra]))
        for other in index["images"]:
            if other is not record:
                other["repo_tags"] = [t for t in other["repo_tags"] if t not in names]
        record["repo_tags"] = list(dict.fromkeys([*record["repo_tags"], *names]))
        repo_digests: list[str] = []
        if plan.manifest_digest:
            manifests = [plan.manifest_digest, *plan.extra_blobs]
            for digest in (f"sha256:{m}" for m in manifests):
                if digest not in record["_manifests"]:
                    record["_manifests"].append(digest)
            repo_digests = plan.repo_digests
            if repo_digests is None:
                repo_digests = [f"{_repository(n)}@sha256:{plan.manifest_digest}" for n in names]
            record["repo_digests"] = list(dict.fromkeys([*record["repo_digests"], *repo_digests]))
        given = {*names, *repo_digests}
        for other in index["images"]:
            if "_pulled" in other:
                other["_pulled"] = [n for n in other["_pulled"] if n not in given]
        if plan.pulled:
            record["_pulled"] = list(dict.fromkeys([*record.get("_pulled", []), *given]))
        return record

    def remove(self, ref: str) -> bool:
        """Remove the image, all its tags, and the layers and blobs no other image uses.

        False when there was no such image."""
        with self._locked():
            index = self._read_index(for_update=True)
            record = self._find(index, ref)
            if record is None:
                return False
            index["images"] = [r for r in index["images"] if r is not record]
            used_layers = {d for r in index["images"] for d in r["layers"]}
            used_blobs = {r["id"] for r in index["images"]}
            used_blobs.update(m for r in index["images"] for m in r.get("_manifests", []))
            index["layers"] = {k: v for k, v in index["layers"].items() if k in used_layers}
            self._write_index(index)
            self._collect(self.root / "layers" / "sha256", used_layers)
            self._collect(self.root / "blobs" / "sha256", used_blobs)
        return True

    def _collect(self, folder: Path, used: set[str]) -> None:
        """Delete what the index no longer names; a directory first leaves by a rename."""
        with os.scandir(folder) as it:
            entries = list(it)
        for entry in entries:
            if f"sha256:{entry.name}" in used:
                continue
            if entry.is_dir(follow_symlinks=False):
                doomed = self._tmp / f"gc-{entry.name}"
                os.rename(entry.path, doomed)
                shutil.rmtree(doomed)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def tag(self, ref: str, new_tag: str) -> dict:
        """Point ``new_tag`` at the image named by ``ref``, moving it from any other image."""
        tag = _normalize_tag(new_tag)
        with self._locked():
            index = self._read_index(for_update=True)
            record = self._find(index, ref)
            if record is None:
                raise NotFound(f"image {ref} not found")
            for other in index["images"]:
                other["repo_tags"] = [t for t in other["repo_tags"] if t != tag]
                if "_pulled" in other:
                    other["_pulled"] = [n for n in other["_pulled"] if n != tag]
            record["repo_tags"].append(tag)
            self._write_index(index)
            return _public(record)

    def list(self) -> list[dict]:
        """Every image, in import order."""
        return [_public(r) for r in self._read_index()["images"]]


__all__ = ["ImageStore", "normalize_reference", "parse_reference"]
