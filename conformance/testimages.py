"""Test images built from the host's static busybox: no registry, no network.

Every builder is deterministic (fixed mtimes, owners and JSON key order), so two builds
with the same arguments give the same digests. Standard library only: the runtime
conformance suite and kcore's own tests both use this module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import struct
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MTIME = 946684800  # 2000-01-01T00:00:00Z
CREATED = "2000-01-01T00:00:00Z"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
DEFAULT_APPLETS = (
    "sh",
    "true",
    "false",
    "echo",
    "cat",
    "ls",
    "ps",
    "sleep",
    "hostname",
    "id",
    "mount",
    "env",
    "pwd",
    "mkdir",
    "touch",
    "rm",
    "wc",
    "head",
    "tail",
    "grep",
    "sed",
    "kill",
    "nc",
    "wget",
    "httpd",
    "dd",
    "stat",
    "readlink",
    "test",
    "printf",
    "uname",
    "top",
    "ln",
    "chmod",
    "ip",
    "ifconfig",
    "seq",
    "yes",
    "sync",
    "umount",
    "cut",
    "tr",
    "date",
    "timeout",
    "cp",
    "mv",
    "df",
    "du",
    "chown",
    "ping",
    "whoami",
    "find",
    "xargs",
    "sort",
    "uniq",
    "tee",
    "nslookup",
    "dirname",
    "basename",
    "realpath",
    "watch",
    "sha256sum",
    "md5sum",
    "vi",
    "free",
    "nproc",
    "awk",
    "[",
)

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnobody:x:65534:\n"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
PT_INTERP = 3


def busybox_path() -> Path:
    """The host's statically linked busybox (Debian: ``apt install busybox-static``)."""
    found = shutil.which("busybox")
    if found is None:
        raise RuntimeError("busybox is not installed: apt install busybox-static")
    path = Path(found).resolve()
    if _has_interpreter(path):
        raise RuntimeError(
            f"{path} is dynamically linked and cannot run inside an image: "
            "apt install busybox-static"
        )
    return path


def _has_interpreter(path: Path) -> bool:
    """Whether the ELF file names a program interpreter (a PT_INTERP program header)."""
    with path.open("rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise RuntimeError(f"{path} is not an ELF executable")
        wide = ident[4] == 2
        order = "<" if ident[5] == 1 else ">"
        if wide:
            header = struct.unpack(order + "HHIQQQIHHHHHH", f.read(48))
        else:
            header = struct.unpack(order + "HHIIIIIHHHHHH", f.read(36))
        phoff, phentsize, phnum = header[4], header[8], header[9]
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(order + "I", f.read(4))
            if p_type == PT_INTERP:
                return True
    return False


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _info(name: str, kind: bytes, mode: int, **kw: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def _tar(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def busybox_layer(
    applets: Sequence[str] = DEFAULT_APPLETS, extra_files: Mapping[str, bytes] | None = None
) -> bytes:
    """The tar of a busybox root file system (uncompressed)."""
    dirs = {
        "bin": 0o755,
        "dev": 0o755,
        "etc": 0o755,
        "proc": 0o555,
        "root": 0o700,
        "sys": 0o555,
        "tmp": 0o1777,
        "usr": 0o755,
        "usr/bin": 0o755,
        "var": 0o755,
    }
    files: dict[str, bytes] = {
        "bin/busybox": busybox_path().read_bytes(),
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
    }
    for name, data in (extra_files or {}).items():
        path = name.strip("/")
        files[path] = data
        parent = os.path.dirname(path)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)
    links = {f"bin/{a}": "busybox" for a in applets if f"bin/{a}" not in files}
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name in sorted(dirs):
        entries.append((_info(name + "/", tarfile.DIRTYPE, dirs[name]), None))
    for name in sorted({*files, *links}):
        if name in files:
            data = files[name]
            mode = 0o755 if name == "bin/busybox" or data.startswith(b"#!") else 0o644
            entries.append((_info(name, tarfile.REGTYPE, mode), data))
        else:
            entries.append((_info(name, tarfile.SYMTYPE, 0o777, linkname=links[name]), None))
    return _tar(entries)


def _compress(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _architecture() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def _image_config(diff_ids: Sequence[str], container: Mapping[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "created": CREATED,
        "architecture": _architecture(),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": "kcore testimages"} for _ in diff_ids],
    }
    if container is not None:
        config["config"] = dict(container)
    return config


def _container_config(
    cmd: Sequence[str] | None, entrypoint: Sequence[str] | None, env: Sequence[str]
) -> dict[str, Any]:
    container: dict[str, Any] = {"Env": list(env), "WorkingDir": "/"}
    if cmd is not None:
        container["Cmd"] = list(cmd)
    if entrypoint is not None:
        container["Entrypoint"] = list(entrypoint)
    return container


class _Image:
    """The blobs of one image and its OCI index, in memory."""

    def __init__(
        self,
        layers: Sequence[bytes],
        container: Mapping[str, Any] | None,
        ref_name: str | None,
        *,
        diff_ids: Sequence[str] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.diff_ids = list(diff_ids) if diff_ids is not None else []
        if diff_ids is None:
            for blob in self.layers:
                raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
                self.diff_ids.append("sha256:" + _sha256(raw))
        self.config = _json(_image_config(self.diff_ids, container))
        self.blobs: dict[str, bytes] = {_sha256(self.config): self.config}
        layer_descs = []
        for blob in self.layers:
            self.blobs[_sha256(blob)] = blob
            gz = blob[:2] == b"\x1f\x8b"
            layer_descs.append(
                {
                    "mediaType": MEDIA_LAYER_GZIP if gz else MEDIA_LAYER,
                    "digest": "sha256:" + _sha256(blob),
                    "size": len(blob),
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": "sha256:" + _sha256(self.config),
                "size": len(self.config),
            },
            "layers": layer_descs,
        }
        self.manifest = _json(manifest)
        self.blobs[_sha256(self.manifest)] = self.manifest
        descriptor: dict[str, Any] = {
            "mediaType": MEDIA_MANIFEST,
            "digest": "sha256:" + _sha256(self.manifest),
            "size": len(self.manifest),
        }
        if ref_name:
            descriptor["annotations"] = {REF_NAME_ANNOTATION: ref_name}
        self.index = _json(
            {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [descriptor]}
        )
        self.ref_name = ref_name

    def write_layout(self, dest: Path) -> Path:
        blobs = dest / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)
        (dest / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
        (dest / "index.json").write_bytes(self.index)
        for digest, data in self.blobs.items():
            (blobs / digest).write_bytes(data)
        return dest

    def layout_entries(self) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
            (_info("blobs/", tarfile.DIRTYPE, 0o755), None),
            (_info("blobs/sha256/", tarfile.DIRTYPE, 0o755), None),
        ]
        for digest in sorted(self.blobs):
            entries.append(
                (_info(f"blobs/sha256/{digest}", tarfile.REGTYPE, 0o644), self.blobs[digest])
            )
        entries.append((_info("index.json", tarfile.REGTYPE, 0o644), self.index))
        entries.append(
            (_info("oci-layout", tarfile.REGTYPE, 0o644), _json({"imageLayoutVersion": "1.0.0"}))
        )
        return entries

    def docker_entries(self) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        config_name = f"{_sha256(self.config)}.json"
        layer_names = []
        entries: list[tuple[tarfile.TarInfo, bytes | None]] = [
            (_info(config_name, tarfile.REGTYPE, 0o644), self.config)
        ]
        for blob, diff_id in zip(self.layers, self.diff_ids, strict=True):
            folder = diff_id.partition(":")[2]
            name = f"{folder}/layer.tar"
            if name in layer_names:
                continue
            layer_names.append(name)
            entries.append((_info(folder + "/", tarfile.DIRTYPE, 0o755), None))
            entries.append((_info(folder + "/VERSION", tarfile.REGTYPE, 0o644), b"1.0"))
            entries.append((_info(name, tarfile.REGTYPE, 0o644), blob))
        manifest = [
            {
                "Config": config_name,
                "RepoTags": [self.ref_name] if self.ref_name else None,
                "Layers": [f"{d.partition(':')[2]}/layer.tar" for d in self.diff_ids],
            }
        ]
        entries.append((_info("manifest.json", tarfile.REGTYPE, 0o644), _json(manifest)))
        return entries


def _busybox_image(
    *,
    ref_name: str,
    applets: Sequence[str],
    cmd: Sequence[str] | None,
    entrypoint: Sequence[str] | None,
    extra_files: Mapping[str, bytes] | None,
    env: Sequence[str],
    gzip_layer: bool,
) -> _Image:
    layer = busybox_layer(applets, extra_files)
    if gzip_layer:
        layer = _compress(layer)
    return _Image([layer], _container_config(cmd, entrypoint, env), ref_name)


def build_busybox_layout(
    dest: Path,
    *,
    ref_name: str = "kcore.test/busybox:latest",
    applets: Sequence[str] = DEFAULT_APPLETS,
    cmd: Sequence[str] | None = ("sh",),
    entrypoint: Sequence[str] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    env: Sequence[str] = DEFAULT_ENV,
    gzip_layer: bool = False,
) -> Path:
    """An OCI image layout directory at ``dest`` holding one busybox image."""
    image = _busybox_image(
        ref_name=ref_name,
        applets=applets,
        cmd=cmd,
        entrypoint=entrypoint,
        extra_files=extra_files,
        env=env,
        gzip_layer=gzip_layer,
    )
    return image.write_layout(Path(dest))


def build_docker_archive(dest_tar: Path, **kwargs: Any) -> Path:
    """A ``docker save`` tarball of the busybox image (same arguments as the layout)."""
    image = _busybox_image(**_busybox_defaults(kwargs))
    Path(dest_tar).write_bytes(_tar(image.docker_entries()))
    return Path(dest_tar)


def build_oci_archive(dest_tar: Path, **kwargs: Any) -> Path:
    """A tar of an OCI image layout (``oci-archive``) of the busybox image."""
    image = _busybox_image(**_busybox_defaults(kwargs))
    Path(dest_tar).write_bytes(_tar(image.layout_entries()))
    return Path(dest_tar)


def _busybox_defaults(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "ref_name": "kcore.test/busybox:latest",
        "applets": DEFAULT_APPLETS,
        "cmd": ("sh",),
        "entrypoint": None,
        "extra_files": None,
        "env": DEFAULT_ENV,
        "gzip_layer": False,
    }
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    return {**defaults, **kwargs}


def build_layout_from_layers(
    dest: Path,
    layers: Sequence[bytes],
    *,
    ref_name: str | None = "kcore.test/layers:latest",
    config: Mapping[str, Any] | None = None,
    corrupt_digest: bool = False,
    diff_ids: Sequence[str] | None = None,
) -> Path:
    """An OCI layout whose layers are the given raw blobs (tar, or tar+gzip).

    ``config`` is the image config's ``config`` object (Entrypoint, Cmd, Env, User ...);
    ``diff_ids`` overrides the computed ones; ``corrupt_digest`` flips one byte of the last
    layer blob after its digest was taken, so that the blob no longer matches it.
    """
    image = _Image(layers, config if config is not None else {}, ref_name, diff_ids=diff_ids)
    image.write_layout(Path(dest))
    if corrupt_digest and layers:
        path = Path(dest) / "blobs" / "sha256" / _sha256(layers[-1])
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    return Path(dest)


def tar_layer(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A layer tar from ``(TarInfo, data)`` pairs, for tests that craft layers by hand."""
    return _tar(entries)


__all__ = [
    "DEFAULT_APPLETS",
    "build_busybox_layout",
    "build_docker_archive",
    "build_layout_from_layers",
    "build_oci_archive",
    "busybox_layer",
    "busybox_path",
    "tar_layer",
]
