"""The volume source conformance suite: the ``VolumeSource`` contract in
``kcore.interfaces``, checked on every source a plugin contributes.

Subclass :class:`VolumeSourceConformance` in a ``test_*.py`` file and provide the sources
under test through the ``volume_sources_factory`` fixture. kcore's pytest plugin builds
them from ``--kcore-plugin NAME``; override it to test sources directly::

    import pytest
    from kcore.conformance.suites.volumes import VolumeCase, VolumeSourceConformance

    class TestMySources(VolumeSourceConformance):
        volume_cases = [*VolumeSourceConformance.volume_cases, VolumeCase("nfs", {...})]

        @pytest.fixture
        def volume_sources_factory(self):
            return lambda settings=None: [MyNfsSource()]

The suite drives each source through the cases in ``volume_cases`` (one or more per
Kubernetes volume type; a source of another type needs a case of its own, and a
contributed type without a case fails). A source of a type of its own declares its cases
with a method ``conformance()`` returning a list of :class:`VolumeCase`; the suite adds
them when it runs on the plugins named with ``--kcore-plugin`` (``kcore conformance``),
and counts them as cases of that type. A plugin's own volume type is a CSI driver, used
from a Pod as an inline ``csi`` volume (see ``kcore.interfaces.VolumeSource``): a source of
type ``csi:<driver>`` gets the cases whose volume is ``{"name": ..., "csi": {"driver":
"<driver>", "volumeAttributes": {...}}}``, and ``<driver>`` must be a valid CSI driver name.
A case whose type the plugins do not contribute is skipped with the reason ``volume
sources lack capability <type>``. The promises:

- ``setup(pod, volume, target, api)`` fills ``target``, an existing empty directory, with
  the volume's files and modes; ``secret`` and ``projected`` (and ``emptyDir`` with
  ``medium: Memory``) live on a tmpfs mounted at the target. A source with a
  ``host_path(pod, volume)`` method (``hostPath``) instead prepares that node path, which
  the node agent hands to the runtime, and leaves the target alone.
- ``setup`` again with nothing changed changes nothing: same files, no second mount, and
  with the AtomicWriter layout the same ``..data`` version.
- ``teardown(pod, volume, target)`` unmounts everything at or below the target and leaves
  it gone or empty; again, or without a setup, it succeeds. It never touches a host path.
- Item paths that are absolute, contain ``..``, start with ``..``, have a name over 255
  or a whole over 4096 characters raise ``kcore.errors.Invalid``, and nothing is written
  outside the target.
- A missing ConfigMap or Secret marked ``optional`` gives an empty volume; a required one
  raises ``NotFound`` with the kubelet's message (``configmap "absent" not found``).
- Updates are atomic: each version is published under ``..data`` (Kubernetes'
  AtomicWriter layout) and swapped in one step, so that a reader that resolves ``..data``
  once never sees files of two versions, and a reader of one file never a torn one.

The API is a :class:`FakeApi` serving the case's ConfigMaps and Secrets. Every test works
under its own temporary directory and unmounts whatever is mounted there when it ends,
also when it fails. The tmpfs checks need root, as a node agent does.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from kcore.conformance.asyncsupport import async_test
from kcore.errors import Invalid, NotFound
from kcore.interfaces import VolumeSource
from kcore.pods.atomic import DATA_DIR, read_version
from kcore.settings import Settings

NAMESPACE = "kcore-conformance"
UPDATES = 25
"""How many versions the atomic-update check writes while a reader reads."""

volume_test = async_test(resources={})

HOSTILE_PATHS = {
    "parent": "../escape",
    "absolute": "{scratch}/escape",
    "inner-parent": "a/../../escape",
    "dotdot": "..",
    "trailing-dotdot": "a/..",
    "dotdot-prefix": "..escape",
    "reserved-data": "..data/escape",
    "long-name": "n" * 256,
    "long-path": "/".join(["d"] * 2048) + "/escape",
}
"""Item paths every source must refuse (``{scratch}`` is the test's directory)."""

CSI_DRIVER_NAME = re.compile(
    r"(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.IGNORECASE
)
"""A CSI driver name as Kubernetes validates an inline volume's ``csi.driver``: at most 63
characters, a DNS subdomain whatever the case."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class VolumeVersion:
    """One version of a volume's inputs and the files it must show."""

    files: Mapping[str, bytes]
    objects: Sequence[Mapping[str, Any]] = ()
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class VolumeCase:
    """One volume to check. In ``volume`` (and in the volumes the callables return),
    ``{scratch}`` in a string stands for the test's own directory."""

    id: str
    volume: Mapping[str, Any]
    """An entry of ``spec.volumes``: ``{"name": ..., "<type>": {...}}``; for a source of
    type ``csi:<driver>``, ``{"name": ..., "csi": {"driver": "<driver>",
    "volumeAttributes": {...}}}``."""
    objects: Sequence[Mapping[str, Any]] = ()
    """ConfigMaps and Secrets the API serves."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Every file the volume shows under the target (path -> bytes)."""
    modes: Mapping[str, int] = field(default_factory=dict)
    """Permission bits of some of those files."""
    labels: Mapping[str, str] | None = None
    """The pod's labels, when not the default ``{"app": "web"}``."""
    target_mode: int | None = None
    tmpfs: bool = False
    """The volume must live on a tmpfs mounted at the target."""
    host_path: bool = False
    """The source prepares a node path (``host_path(pod, volume)``), not the target."""
    item_path: Callable[[str], Mapping[str, Any]] | None = None
    """The volume with one item at the given path: for the hostile-path checks."""
    missing_optional: Sequence[Mapping[str, Any]] = ()
    """Volumes referring to missing objects or keys, marked optional."""
    missing_required: Sequence[tuple[Mapping[str, Any], str]] = ()
    """Volumes referring to missing objects or keys, and the NotFound message."""
    update: Callable[[int], VolumeVersion] | None = None
    """Version ``n`` of the volume's inputs (version 0 is the first setup)."""

    @property
    def type_name(self) -> str:
        """The volume's key, or ``csi:<driver>`` for a ``csi`` volume: the ``type_name``
        of the source that materializes it."""
        (kind,) = [k for k in self.volume if k != "name"]
        if kind == "csi":
            return f"csi:{(self.volume['csi'] or {}).get('driver') or ''}"
        return kind


class FakeApi:
    """The API client as volume sources see it: ``get`` serves ConfigMaps and Secrets by
    kind and name and raises ``NotFound`` as the API server does."""

    def __init__(self, objects: Sequence[Mapping[str, Any]] = ()) -> None:
        self.objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        self.replace(objects)

    def replace(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = {}
        for obj in objects:
            meta = obj["metadata"]
            self.objects[obj["kind"], meta.get("namespace", NAMESPACE), meta["name"]] = obj

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any
    ) -> dict[str, Any]:
        try:
            return dict(self.objects[kind, namespace or NAMESPACE, name])
        except KeyError:
            raise NotFound(f'{kind.lower()}s "{name}" not found') from None


def make_pod(labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "volumes",
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
            "labels": dict(labels if labels is not None else {"app": "web"}),
            "annotations": {"owner": 'team "blue"'},
        },
        "spec": {
            "nodeName": "node-1",
            "serviceAccountName": "default",
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "64Mi"},
                        "requests": {"cpu": "250m", "memory": "32Mi"},
                    },
                }
            ],
        },
    }


# -- the cases of the Kubernetes volume types -------------------------------------------------


def _config_map(name: str, data: Mapping[str, str], binary: Mapping[str, bytes] | None = None):
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": dict(data),
    }
    if binary:
        obj["binaryData"] = {k: b64(v) for k, v in binary.items()}
    return obj


def _secret(name: str, data: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {k: b64(v) for k, v in data.items()},
    }


CONFIG = _config_map(
    "app-config", {"app.conf": "color=blue\n", "mode": "fast"}, {"blob": b"\x00\xffbin"}
)
SECRET = _secret("app-secret", {"password": b"s3cr3t", "token": b"t0k3n"})


def _versioned_data(n: int) -> dict[str, str]:
    """Three 16 KiB values of version ``n``, plus a key that only odd versions have."""
    data = {key: f"{key}:{n}:".ljust(16384, "abcdefgh"[n % 8]) for key in ("a", "b", "c")}
    if n % 2:
        data["odd"] = f"odd:{n}"
    return data


def _config_map_version(n: int) -> VolumeVersion:
    data = _versioned_data(n)
    return VolumeVersion(
        files={k: v.encode() for k, v in data.items()},
        objects=[_config_map("versioned", data)],
    )


def _secret_version(n: int) -> VolumeVersion:
    data = {k: v.encode() for k, v in _versioned_data(n).items()}
    return VolumeVersion(files=data, objects=[_secret("versioned", data)])


def _downward_version(n: int) -> VolumeVersion:
    labels = {"app": "web", "version": str(n)}
    return VolumeVersion(
        files={
            "labels": f'app="web"\nversion="{n}"'.encode(),
            "version": str(n).encode(),
        },
        labels=labels,
    )


def _projected_version(n: int) -> VolumeVersion:
    data = _versioned_data(n)
    files = {k: v.encode() for k, v in data.items()}
    files["secret/token"] = f"token-{n}".encode()
    files["version"] = str(n).encode()
    return VolumeVersion(
        files=files,
        objects=[
            _config_map("versioned", data),
            _secret("versioned", {"token": f"token-{n}".encode()}),
        ],
        labels={"app": "web", "version": str(n)},
    )


def _projected(*sources: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "projected", "projected": {"sources": list(sources), **extra}}


DOWNWARD_ITEMS = [
    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
    {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}, "mode": 0o600},
    {"path": "info/app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
    {
        "path": "info/cpu-millis",
        "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu", "divisor": "1m"},
    },
    {
        "path": "info/memory-mi",
        "resourceFieldRef": {
            "containerName": "app",
            "resource": "requests.memory",
            "divisor": "1Mi",
        },
    },
]
DOWNWARD_FILES = {
    "name": b"volumes",
    "namespace": NAMESPACE.encode(),
    "labels": b'app="web"',
    "annotations": b'owner="team \\"blue\\""',
    "info/app": b"web",
    "info/cpu-millis": b"500",
    "info/memory-mi": b"32",
}

VERSIONED: list[tuple[str, dict[str, Any], Callable[[int], VolumeVersion]]] = [
    ("configMap", {"name": "config", "configMap": {"name": "versioned"}}, _config_map_version),
    ("secret", {"name": "creds", "secret": {"secretName": "versioned"}}, _secret_version),
    (
        "downwardAPI",
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "version", "fieldRef": {"fieldPath": "metadata.labels['version']"}},
                ]
            },
        },
        _downward_version,
    ),
    (
        "projected",
        _projected(
            {"configMap": {"name": "versioned"}},
            {"secret": {"name": "versioned", "items": [{"key": "token", "path": "secret/token"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {"path": "version", "fieldRef": {"fieldPath": "metadata.labels['version']"}}
                    ]
                }
            },
        ),
        _projected_version,
    ),
]
"""Volumes whose inputs change: (type, volume, version n -> inputs and files)."""

KUBERNETES_CASES: list[VolumeCase] = [
    VolumeCase("emptyDir", {"name": "scratch", "emptyDir": {}}, target_mode=0o777),
    VolumeCase(
        "emptyDir-memory",
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        target_mode=0o777,
        tmpfs=True,
    ),
    VolumeCase(
        "hostPath",
        {"name": "host", "hostPath": {"path": "{scratch}/host/data", "type": "DirectoryOrCreate"}},
        host_path=True,
    ),
    VolumeCase(
        "configMap-items",
        {
            "name": "config",
            "configMap": {
                "name": "app-config",
                "defaultMode": 0o640,
                "items": [
                    {"key": "app.conf", "path": "conf/app.conf"},
                    {"key": "mode", "path": "mode", "mode": 0o600},
                    {"key": "blob", "path": "blob"},
                ],
            },
        },
        objects=[CONFIG],
        files={"conf/app.conf": b"color=blue\n", "mode": b"fast", "blob": b"\x00\xffbin"},
        modes={"conf/app.conf": 0o640, "mode": 0o600, "blob": 0o640},
        item_path=lambda path: {
            "name": "config",
            "configMap": {"name": "app-config", "items": [{"key": "mode", "path": path}]},
        },
        missing_optional=[
            {"name": "config", "configMap": {"name": "absent", "optional": True}},
            {
                "name": "config",
                "configMap": {
                    "name": "app-config",
                    "optional": True,
                    "items": [{"key": "absent", "path": "absent"}],
                },
            },
        ],
        missing_required=[
            ({"name": "config", "configMap": {"name": "absent"}}, 'configmap "absent" not found'),
            (
                {
                    "name": "config",
                    "configMap": {
                        "name": "app-config",
                        "items": [{"key": "absent", "path": "absent"}],
                    },
                },
                "configmap references non-existent config key: absent",
            ),
        ],
    ),
    VolumeCase(
        "configMap-all-keys",
        {"name": "config", "configMap": {"name": "app-config"}},
        objects=[CONFIG],
        files={"app.conf": b"color=blue\n", "mode": b"fast", "blob": b"\x00\xffbin"},
        modes={"app.conf": 0o644, "mode": 0o644, "blob": 0o644},
    ),
    VolumeCase(
        "secret",
        {"name": "creds", "secret": {"secretName": "app-secret", "defaultMode": 0o400}},
        objects=[SECRET],
        files={"password": b"s3cr3t", "token": b"t0k3n"},
        modes={"password": 0o400, "token": 0o400},
        tmpfs=True,
        item_path=lambda path: {
            "name": "creds",
            "secret": {"secretName": "app-secret", "items": [{"key": "token", "path": path}]},
        },
        missing_optional=[{"name": "creds", "secret": {"secretName": "absent", "optional": True}}],
        missing_required=[
            ({"name": "creds", "secret": {"secretName": "absent"}}, 'secret "absent" not found'),
            (
                {
                    "name": "creds",
                    "secret": {
                        "secretName": "app-secret",
                        "items": [{"key": "absent", "path": "absent"}],
                    },
                },
                "references non-existent secret key: absent",
            ),
        ],
    ),
    VolumeCase(
        "downwardAPI",
        {"name": "podinfo", "downwardAPI": {"items": DOWNWARD_ITEMS}},
        files=DOWNWARD_FILES,
        modes={"name": 0o644, "annotations": 0o600},
        item_path=lambda path: {
            "name": "podinfo",
            "downwardAPI": {"items": [{"path": path, "fieldRef": {"fieldPath": "metadata.name"}}]},
        },
    ),
    VolumeCase(
        "projected",
        _projected(
            {"configMap": {"name": "app-config", "items": [{"key": "mode", "path": "mode"}]}},
            {"secret": {"name": "app-secret", "items": [{"key": "token", "path": "secret/token"}]}},
            {"downwardAPI": {"items": DOWNWARD_ITEMS[:2]}},
            defaultMode=0o440,
        ),
        objects=[CONFIG, SECRET],
        files={
            "mode": b"fast",
            "secret/token": b"t0k3n",
            "name": b"volumes",
            "namespace": NAMESPACE.encode(),
        },
        modes={"mode": 0o440, "secret/token": 0o440, "name": 0o440},
        tmpfs=True,
        item_path=lambda path: _projected(
            {"configMap": {"name": "app-config", "items": [{"key": "mode", "path": path}]}}
        ),
        missing_optional=[_projected({"configMap": {"name": "absent", "optional": True}})],
        missing_required=[
            (_projected({"configMap": {"name": "absent"}}), 'configmap "absent" not found'),
            (_projected({"secret": {"name": "absent"}}), 'secret "absent" not found'),
        ],
    ),
    *(
        VolumeCase(
            f"{volume_type}-update",
            volume,
            objects=update(0).objects,
            files=update(0).files,
            labels=update(0).labels,
            tmpfs=volume_type in ("secret", "projected"),
            update=update,
        )
        for volume_type, volume, update in VERSIONED
    ),
]

# -- helpers ---------------------------------------------------------------------------------


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_ESCAPE = re.compile(r"\\([0-7]{3})")


def mounts_under(path: Path) -> list[tuple[str, str]]:
    """``(mount point, fs type)`` of every mount at or below ``path``, latest first."""
    top = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == top or point.startswith(top.rstrip("/") + "/"):
                found.append((point, fields[fields.index("-") + 1]))
    found.reverse()
    return found


def unmount_below(path: Path) -> None:
    """Unmount (lazily) everything at or below ``path``: the suite's own cleanup."""
    for _ in range(64):
        found = mounts_under(path)
        if not found:
            return
        for point, _fstype in sorted(found, key=lambda m: m[0].count("/"), reverse=True):
            _libc.umount2(os.fsencode(point), 2)  # MNT_DETACH
    raise AssertionError(f"could not unmount {mounts_under(path)}")


def fill(value: Any, scratch: Path) -> Any:
    """``value`` with ``{scratch}`` in its strings replaced by the test's directory."""
    if isinstance(value, str):
        return value.replace("{scratch}", str(scratch))
    if isinstance(value, Mapping):
        return {k: fill(v, scratch) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fill(v, scratch) for v in value]
    return value


def visible_files(target: Path) -> dict[str, bytes]:
    """The files a container sees in the volume (symlinks followed, ``..*`` left out)."""
    out: dict[str, bytes] = {}
    for root, dirs, files in os.walk(target, followlinks=True):
        rel = os.path.relpath(root, target)
        if rel == ".":
            dirs[:] = [d for d in dirs if not d.startswith("..")]
            files = [f for f in files if not f.startswith("..")]
        for name in files:
            path = name if rel == "." else f"{rel}/{name}"
            out[path] = Path(root, name).read_bytes()
    return out


def tree(path: Path, skip: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Everything under ``path`` but ``skip`` (mode and content or link), symlinks not
    followed: to see that nothing changed outside a target."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for root, dirs, files in os.walk(path):
        if Path(root) == skip:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if Path(root, d) != skip]
        for name in dirs + files:
            p = Path(root, name)
            info = os.lstat(p)
            if p.is_symlink():
                content: bytes | str | None = os.readlink(p)
            elif p.is_file():
                content = p.read_bytes()
            else:
                content = None
            out[str(p.relative_to(path))] = (info.st_mode, content)
    return out


class Reader(threading.Thread):
    """Reads a volume over and over while it is updated, and keeps what did not match one
    of ``versions``: whole snapshots through ``..data``, and single files by their names."""

    def __init__(self, target: Path, versions: Sequence[Mapping[str, bytes]]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.versions = [dict(v) for v in versions]
        self.values: dict[str, set[bytes]] = {}
        for version in self.versions:
            for path, data in version.items():
                self.values.setdefault(path, set()).add(data)
        self.stop = threading.Event()
        self.snapshots = 0
        self.retries = 0
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() and len(self.problems) < 5:
            try:
                snapshot = read_version(self.target)
            except OSError as exc:
                self.problems.append(f"reading through {DATA_DIR} failed: {exc!r}")
                continue
            if snapshot is None:
                self.retries += 1
            else:
                self.snapshots += 1
                if snapshot not in self.versions:
                    self.problems.append(f"a snapshot mixes versions: {self._describe(snapshot)}")
            for path in sorted(self.values)[:2]:
                try:
                    data = (self.target / path).read_bytes()
                except FileNotFoundError:
                    continue
                if data not in self.values[path]:
                    self.problems.append(f"{path} read torn: {data[:40]!r}...")

    @staticmethod
    def _describe(snapshot: Mapping[str, bytes]) -> str:
        return ", ".join(f"{k}={v[:12]!r}" for k, v in sorted(snapshot.items()))


def for_cases(attribute: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the test once per case (that has ``attribute`` set, if given)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn._kcore_volume_cases = attribute or ""  # type: ignore[attr-defined]
        return fn

    return mark


def declared_cases(sources: Sequence[Any]) -> list[VolumeCase]:
    """The cases that ``sources`` declare with a ``conformance()`` method."""
    cases: list[VolumeCase] = []
    for source in sources:
        declare = getattr(source, "conformance", None)
        declared = declare() if callable(declare) else ()
        cases.extend([declared] if isinstance(declared, VolumeCase) else declared or ())
    return cases


def contributed_sources(plugins: Sequence[str]) -> list[Any]:
    """The volume sources of ``plugins`` (none without plugins), for collection."""
    if not plugins:
        return []
    from kcore.conformance.pytest_plugin import _volume_plugin_host

    return _volume_plugin_host(tuple(plugins)).volume_sources(Settings())


# -- the suite -------------------------------------------------------------------------------


class VolumeSourceConformance:
    """Checks every contributed volume source against the ``VolumeSource`` contract."""

    volume_cases: ClassVar[Sequence[VolumeCase]] = KUBERNETES_CASES

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        attribute = getattr(metafunc.function, "_kcore_volume_cases", None)
        if attribute is None or "case" not in metafunc.fixturenames:
            return
        plugins = tuple(metafunc.config.getoption("--kcore-plugin", default=None) or ())
        ids = {c.id for c in self.volume_cases}
        declared = [c for c in declared_cases(contributed_sources(plugins)) if c.id not in ids]
        cases = [
            c for c in [*self.volume_cases, *declared] if not attribute or getattr(c, attribute)
        ]
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])

    @pytest.fixture
    def volume_sources(
        self, volume_sources_factory: Callable[..., Sequence[Any]]
    ) -> dict[str, VolumeSource]:
        return {s.type_name: s for s in volume_sources_factory()}

    @pytest.fixture
    def scratch(self, tmp_path: Path) -> Iterator[Path]:
        """The test's directory; whatever is mounted below it is unmounted at the end."""
        try:
            yield tmp_path
        finally:
            unmount_below(tmp_path)

    @staticmethod
    def source_for(sources: Mapping[str, VolumeSource], case: VolumeCase) -> VolumeSource:
        source = sources.get(case.type_name)
        if source is None:
            pytest.skip(f"volume sources lack capability {case.type_name}")
        return source

    @staticmethod
    def new_target(scratch: Path, name: str = "volume") -> Path:
        target = scratch / "pods" / name
        target.mkdir(parents=True)
        return target

    # -- the sources themselves ----------------------------------------------------------------

    def test_every_contributed_source_has_a_case(
        self, volume_sources_factory: Callable[..., Sequence[Any]]
    ) -> None:
        sources = list(volume_sources_factory())
        names = [s.type_name for s in sources]
        assert sources, "the plugins contribute no volume source"
        assert len(set(names)) == len(names), f"type names are not unique: {names}"
        for source in sources:
            assert isinstance(source, VolumeSource), f"{source!r} is no VolumeSource"
            if source.type_name.startswith("csi:"):
                driver = source.type_name.removeprefix("csi:")
                assert CSI_DRIVER_NAME.fullmatch(driver), (
                    f"{source.type_name}: {driver!r} is no valid CSI driver name (a DNS "
                    "subdomain of at most 63 characters, e.g. template.example.com)"
                )
        covered = {c.type_name for c in [*self.volume_cases, *declared_cases(sources)]}
        missing = sorted(set(names) - covered)
        assert not missing, f"no VolumeCase for {missing}: add cases to volume_cases"

    # -- setup ---------------------------------------------------------------------------------

    @volume_test
    @for_cases()
    async def test_setup_fills_an_empty_directory(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        volume, target, pod = (
            fill(case.volume, scratch),
            self.new_target(scratch),
            make_pod(case.labels),
        )
        await source.setup(pod, volume, target, FakeApi(case.objects))
        if case.host_path:
            host_path = getattr(source, "host_path", None)
            assert host_path is not None, f"{case.type_name} has no host_path(pod, volume)"
            assert Path(host_path(pod, volume)).exists(), "setup did not prepare the host path"
            assert visible_files(target) == {}, "a host path source wrote into the target"
            return
        assert visible_files(target) == dict(case.files)
        for path, mode in case.modes.items():
            actual = os.stat(target / path).st_mode & 0o7777
            assert actual == mode, f"{path} has mode {actual:o}, not {mode:o}"
        if case.target_mode is not None:
            assert os.stat(target).st_mode & 0o7777 == case.target_mode
        mounts = mounts_under(target)
        if case.tmpfs:
            assert mounts and mounts[0] == (str(target.resolve()), "tmpfs"), (
                f"{case.id} must live on a tmpfs at the target, mounts: {mounts}"
            )

    @volume_test
    @for_cases()
    async def test_setup_again_changes_nothing(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        volume, target, pod = (
            fill(case.volume, scratch),
            self.new_target(scratch),
            make_pod(case.labels),
        )
        api = FakeApi(case.objects)
        await source.setup(pod, volume, target, api)
        files, mounts = visible_files(target), mounts_under(target)
        version = os.readlink(target / DATA_DIR) if os.path.islink(target / DATA_DIR) else None
        await source.setup(pod, volume, target, api)
        assert visible_files(target) == files
        assert mounts_under(target) == mounts, "a second setup mounted again"
        if version is not None:
            assert os.readlink(target / DATA_DIR) == version, (
                "a setup with nothing changed wrote a new version"
            )

    # -- teardown ------------------------------------------------------------------------------

    @volume_test
    @for_cases()
    async def test_teardown_removes_everything(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        volume, target, pod = (
            fill(case.volume, scratch),
            self.new_target(scratch),
            make_pod(case.labels),
        )
        await source.setup(pod, volume, target, FakeApi(case.objects))
        host_path = Path(source.host_path(pod, volume)) if case.host_path else None
        if host_path is not None:
            (host_path / "keep").write_text("host data")
        if case.type_name == "emptyDir":
            (target / "work").mkdir()
            (target / "work" / "out.txt").write_text("a container wrote this")
        await source.teardown(pod, volume, target)
        assert mounts_under(target) == [], "teardown left mounts behind"
        assert not target.exists() or not os.listdir(target), (
            f"teardown left {os.listdir(target)} in the target"
        )
        if host_path is not None:
            assert (host_path / "keep").read_text() == "host data", "teardown touched the host"
        await source.teardown(pod, volume, target)

    @volume_test
    @for_cases()
    async def test_teardown_without_setup_succeeds(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        volume, target, pod = (
            fill(case.volume, scratch),
            self.new_target(scratch),
            make_pod(case.labels),
        )
        await source.teardown(pod, volume, target)
        await source.teardown(pod, volume, scratch / "pods" / "never-made")
        assert mounts_under(scratch) == []

    # -- item paths ----------------------------------------------------------------------------

    @pytest.mark.parametrize("hostile", list(HOSTILE_PATHS.values()), ids=list(HOSTILE_PATHS))
    @volume_test
    @for_cases("item_path")
    async def test_hostile_item_paths_are_refused(self, volume_sources, scratch, case, hostile):
        source = self.source_for(volume_sources, case)
        assert case.item_path is not None
        target, pod = self.new_target(scratch), make_pod()
        (scratch / "outside").mkdir()
        (scratch / "outside" / "keep").write_text("untouched")
        before = tree(scratch, skip=target)
        volume = fill(case.item_path(hostile), scratch)
        with pytest.raises(Invalid):
            await source.setup(pod, volume, target, FakeApi(case.objects))
        assert tree(scratch, skip=target) == before, "setup wrote outside the target"
        assert not [p for p in scratch.rglob("escape") if p.is_file()]
        await source.teardown(pod, volume, target)

    @volume_test
    @for_cases("item_path")
    async def test_a_nested_item_path_works(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        assert case.item_path is not None
        target, pod = self.new_target(scratch), make_pod()
        await source.setup(pod, case.item_path("a/./b//c"), target, FakeApi(case.objects))
        assert list(visible_files(target)) == ["a/b/c"]

    # -- missing objects -----------------------------------------------------------------------

    @volume_test
    @for_cases("missing_optional")
    async def test_optional_missing_source_is_tolerated(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        for i, volume in enumerate(case.missing_optional):
            target, pod = self.new_target(scratch, f"v{i}"), make_pod()
            await source.setup(pod, volume, target, FakeApi(case.objects))
            assert visible_files(target) == {}, f"{volume}: files out of nothing"
            await source.teardown(pod, volume, target)

    @volume_test
    @for_cases("missing_required")
    async def test_required_missing_source_raises_not_found(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        for i, (volume, message) in enumerate(case.missing_required):
            target, pod = self.new_target(scratch, f"v{i}"), make_pod()
            with pytest.raises(NotFound) as caught:
                await source.setup(pod, volume, target, FakeApi(case.objects))
            assert str(caught.value) == message
            await source.teardown(pod, volume, target)
            assert mounts_under(target) == []

    # -- updates -------------------------------------------------------------------------------

    @volume_test(timeout=60)
    @for_cases("update")
    async def test_update_is_atomic_for_a_concurrent_reader(self, volume_sources, scratch, case):
        source = self.source_for(volume_sources, case)
        assert case.update is not None
        versions = [case.update(n) for n in range(UPDATES + 1)]
        volume, target = fill(case.volume, scratch), self.new_target(scratch)
        uid = str(uuid.uuid4())

        def pod_of(version: VolumeVersion) -> dict[str, Any]:
            pod = make_pod(version.labels)
            pod["metadata"]["uid"] = uid
            return pod

        api = FakeApi(versions[0].objects)
        await source.setup(pod_of(versions[0]), volume, target, api)
        assert (target / DATA_DIR).is_symlink(), (
            f"an updatable volume publishes each version under {DATA_DIR} (Kubernetes' "
            "AtomicWriter layout), so that a reader can read one version"
        )
        reader = Reader(target, [v.files for v in versions])
        reader.start()
        try:
            deadline = time.monotonic() + 5
            while reader.snapshots == 0 and time.monotonic() < deadline:
                time.sleep(0.001)
            for version in versions[1:]:
                api.replace(version.objects)
                await source.setup(pod_of(version), volume, target, api)
                assert visible_files(target) == dict(version.files), "setup did not update"
        finally:
            reader.stop.set()
            reader.join(10)
        assert not reader.problems, "\n".join(reader.problems)
        assert reader.snapshots > 0, "the reader never read a whole version"
        leftovers = [n for n in os.listdir(target) if n.startswith("..") and n != DATA_DIR]
        assert len(leftovers) == 1, f"old versions were not removed: {leftovers}"
        await source.teardown(pod_of(versions[-1]), volume, target)


__all__ = [
    "HOSTILE_PATHS",
    "KUBERNETES_CASES",
    "FakeApi",
    "VolumeCase",
    "VolumeSourceConformance",
    "VolumeVersion",
    "make_pod",
]
