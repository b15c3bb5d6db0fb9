"""A simulated container runtime: CRI's states, timestamps, filters and events, without
processes.

Hundreds of simulated nodes share one process in scale tests (as kwok and kubemark do),
so a container is a small record and an asyncio timer, never a process or a thread. What a
container "does" is scripted by its annotations:

* ``sim.kcore.io/run-seconds``: it exits after this many seconds (a float); absent, it
  runs until stopped;
* ``sim.kcore.io/exit-code``: the code it then exits with (default 0);
* ``sim.kcore.io/start-error``: starting it fails with this message (reason
  ``StartError``), as a missing executable does on a real runtime.

Stopping a running container ends it with 143 (it "handled" SIGTERM) when the stop has a
grace period, with 137 (SIGKILL) when it has none. The script comes from the container
config's annotations or, as a node agent passes a pod's annotations to its sandbox, from
the sandbox's: ``sim.kcore.io/<key>`` for every container of the pod,
``<container>.sim.kcore.io/<key>`` for one. Images imported from a layout or
archive are real records (``ImageStore`` without unpacking the layers); a pulled image
becomes present at once as a synthetic record, unless its name contains
``doesnotexist`` or ``nonexistent`` (for simulating a failed pull).

Nothing outlives the runtime object: the simulation keeps no state on disk but images.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import kcore
from kcore.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
    PermanentError,
)
from kcore.images import ImageStore, normalize_reference
from kcore.interfaces import (
    CONTAINER_CREATED,
    CONTAINER_CREATED_EVENT,
    CONTAINER_DELETED_EVENT,
    CONTAINER_EXITED,
    CONTAINER_RUNNING,
    CONTAINER_STARTED_EVENT,
    CONTAINER_STOPPED_EVENT,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
    ContainerEventStream,
    RuntimeBackend,
)

SIM_PREFIX = "sim.kcore.io/"
RUN_SECONDS = "sim.kcore.io/run-seconds"
EXIT_CODE = "sim.kcore.io/exit-code"
START_ERROR = "sim.kcore.io/start-error"

#: Substrings of an image name whose pull fails with NotFound.
UNPULLABLE = ("doesnotexist", "nonexistent")

EXIT_SIGTERM = 143
EXIT_SIGKILL = 137
EXIT_START_ERROR = 128

#: What a synthetic (pulled) image runs when the container config names no command.
SYNTHETIC_CONFIG: Mapping[str, Any] = {"Cmd": ["/sim/run"]}


def _new_id() -> str:
    return secrets.token_hex(32)


def _reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


class _Sandbox:
    __slots__ = (
        "annotations",
        "containers",
        "created_at",
        "id",
        "labels",
        "log_directory",
        "metadata",
        "name_key",
        "runtime_handler",
        "state",
    )

    def __init__(self, config: Mapping[str, Any], runtime_handler: str) -> None:
        meta = dict(config.get("metadata") or {})
        self.id = _new_id()
        self.metadata = meta
        self.name_key = (meta["name"], meta["namespace"], meta["uid"], meta.get("attempt", 0))
        self.labels = dict(config.get("labels") or {})
        self.annotations = dict(config.get("annotations") or {})
        self.log_directory = config.get("log_directory") or ""
        self.runtime_handler = runtime_handler
        self.state = SANDBOX_READY
        self.created_at = time.time_ns()
        self.containers: dict[str, None] = {}

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "metadata": dict(self.metadata),
            "state": self.state,
            "created_at": self.created_at,
            "network": {"ip": ""},
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "runtime_handler": self.runtime_handler,
            "netns_path": None,
        }


class _Container:
    __slots__ = (
        "annotations",
        "created_at",
        "exit_code",
        "finished_at",
        "id",
        "image",
        "image_id",
        "image_ref",
        "labels",
        "log_path",
        "message",
        "metadata",
        "mounts",
        "name_key",
        "pod_sandbox_id",
        "reason",
        "resources",
        "run_seconds",
        "scripted_exit",
        "start_error",
        "started_at",
        "state",
        "timer",
    )

    def __init__(self, sandbox: _Sandbox, config: Mapping[str, Any], image: Mapping[str, Any]):
        meta = dict(config.get("metadata") or {})
        self.id = _new_id()
        self.pod_sandbox_id = sandbox.id
        self.metadata = meta
        self.name_key = (meta["name"], meta.get("attempt", 0))
        self.image = (config.get("image") or {}).get("image", "")
        self.image_id = image["id"]
        digests = image.get("repo_digests") or ()
        self.image_ref = digests[0] if digests else image["id"]
        self.labels = dict(config.get("labels") or {})
        self.annotations = dict(config.get("annotations") or {})
        log_path = config.get("log_path") or ""
        if log_path and sandbox.log_directory:
            log_path = str(Path(sandbox.log_directory) / log_path)
        self.log_path = log_path
        self.mounts = [dict(m) for m in config.get("mounts") or ()]
        self.resources = dict((config.get("linux") or {}).get("resources") or {})
        name = (config.get("metadata") or {}).get("name") or ""
        self.run_seconds, self.scripted_exit, self.start_error = _script(
            _scripting(sandbox.annotations, name, self.annotations)
        )
        self.state = CONTAINER_CREATED
        self.created_at = time.time_ns()
        self.started_at = 0
        self.finished_at = 0
        self.exit_code = 0
        self.reason = ""
        self.message = ""
        self.timer: asyncio.TimerHandle | None = None

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pod_sandbox_id": self.pod_sandbox_id,
            "metadata": dict(self.metadata),
            "state": self.state,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "image": {"image": self.image},
            "image_ref": self.image_ref,
            "image_id": self.image_id,
            "reason": self.reason,
            "message": self.message,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "mounts": [dict(m) for m in self.mounts],
            "log_path": self.log_path,
            "resources": {"linux": dict(self.resources)},
            "pid": None,
        }


def _scripting(pod: Mapping[str, str], container: str, own: Mapping[str, str]) -> dict[str, str]:
    """The script of one container: the pod's ``sim.kcore.io/<key>`` annotations (every
    container), its ``<container>.sim.kcore.io/<key>`` ones (that container), then the
    container config's own ``sim.kcore.io/<key>`` (a CRI client's way)."""
    out = {k: v for k, v in pod.items() if k.startswith(SIM_PREFIX)}
    mine = f"{container}.{SIM_PREFIX}"
    out.update({k[len(container) + 1 :]: v for k, v in pod.items() if k.startswith(mine)})
    out.update({k: v for k, v in own.items() if k.startswith(SIM_PREFIX)})
    return out


def _script(annotations: Mapping[str, str]) -> tuple[float | None, int, str | None]:
    """The scripted run time, exit code and start error; Invalid when unreadable."""
    run_seconds: float | None = None
    if RUN_SECONDS in annotations:
        try:
            run_seconds = float(annotations[RUN_SECONDS])
        except ValueError:
            run_seconds = -1.0
        if not run_seconds >= 0:  # also NaN
            raise Invalid(
                f"annotations[{RUN_SECONDS}]: {annotations[RUN_SECONDS]!r} is not a "
                "non-negative number of seconds"
            )
    exit_code = 0
    if EXIT_CODE in annotations:
        try:
            exit_code = int(annotations[EXIT_CODE])
        except ValueError:
            exit_code = -1
        if not 0 <= exit_code <= 255:
            raise Invalid(
                f"annotations[{EXIT_CODE}]: {annotations[EXIT_CODE]!r} is not an exit code "
                "(0 to 255)"
            )
    return run_seconds, exit_code, annotations.get(START_ERROR)


def _matches(status: Mapping[str, Any], filter: Mapping[str, Any] | None, keys: Iterable[str]):
    if not filter:
        return True
    for key in keys:
        wanted = filter.get(key)
        if wanted and status[key] != wanted:
            return False
    selector = filter.get("label_selector") or {}
    labels = status["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


class SimRuntime:
    """The runtime service of the simulation (see the module docstring)."""

    capabilities: frozenset[str] = frozenset()

    def __init__(self, images: SimImages) -> None:
        self._images = images
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._subscribers: set[asyncio.Queue[Any]] = set()

    # -- runtime info ----------------------------------------------------------------------

    async def version(self) -> Mapping[str, str]:
        return {
            "version": "0.1.0",
            "runtime_name": "kcore-sim",
            "runtime_version": kcore.__version__,
            "runtime_api_version": "v1",
        }

    async def status(self) -> Mapping[str, Any]:
        return {
            "conditions": [
                {"type": "RuntimeReady", "status": True, "reason": "", "message": ""},
                {
                    "type": "NetworkReady",
                    "status": True,
                    "reason": "",
                    "message": "simulated: pods have no network",
                },
            ]
        }

    # -- sandboxes ----------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: Mapping[str, Any], runtime_handler: str = "") -> str:
        meta = config.get("metadata") or {}
        missing = [f"metadata.{k}" for k in ("name", "namespace", "uid") if not meta.get(k)]
        if missing:
            raise Invalid(f"sandbox config lacks {', '.join(missing)}")
        sandbox = _Sandbox(config, runtime_handler)
        for other in self._sandboxes.values():
            if other.name_key == sandbox.name_key:
                raise AlreadyExists(
                    f"sandbox {meta['namespace']}/{meta['name']} (uid {meta['uid']}, attempt "
                    f"{sandbox.name_key[3]}) exists already: {other.id}"
                )
        self._sandboxes[sandbox.id] = sandbox
        return sandbox.id

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        sandbox = self._sandboxes.get(pod_sandbox_id)
        if sandbox is None:
            return
        for cid in sandbox.containers:
            self._kill(self._containers[cid], EXIT_SIGKILL)
        sandbox.state = SANDBOX_NOTREADY

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        sandbox = self._sandboxes.get(pod_sandbox_id)
        if sandbox is None:
            return
        for cid in list(sandbox.containers):
            self._remove(self._containers[cid])
        sandbox.state = SANDBOX_NOTREADY
        del self._sandboxes[pod_sandbox_id]

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        return self._sandbox(pod_sandbox_id).status()

    async def list_pod_sandbox(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        statuses = (s.status() for s in self._sandboxes.values())
        return [s for s in statuses if _matches(s, filter, ("id", "state"))]

    # -- containers ---------------------------------------------------------------------------

    async def create_container(
        self,
        pod_sandbox_id: str,
        config: Mapping[str, Any],
        sandbox_config: Mapping[str, Any],
    ) -> str:
        sandbox = self._sandbox(pod_sandbox_id)
        if sandbox.state != SANDBOX_READY:
            raise Conflict(f"sandbox {pod_sandbox_id} is not ready")
        meta = config.get("metadata") or {}
        if not meta.get("name"):
            raise Invalid("container config lacks metadata.name")
        ref = (config.get("image") or {}).get("image")
        if not ref:
            raise Invalid("container config lacks image.image")
        image = await self._images.image_status(ref)
        if image is None:
            raise NotFound(f"image {ref!r} is not present on this node")
        if not _command(config, image.get("config") or {}):
            raise Invalid(f"no command: neither the container config nor image {ref!r} has one")
        container = _Container(sandbox, config, image)
        for cid in sandbox.containers:
            if self._containers[cid].name_key == container.name_key:
                raise AlreadyExists(
                    f"container {meta['name']} (attempt {container.name_key[1]}) exists "
                    f"already in sandbox {pod_sandbox_id}: {cid}"
                )
        self._containers[container.id] = container
        sandbox.containers[container.id] = None
        self._publish(CONTAINER_CREATED_EVENT, container)
        return container.id

    async def start_container(self, container_id: str) -> None:
        c = self._container(container_id)
        if c.state != CONTAINER_CREATED:
            raise Conflict(f"container {container_id} is {c.state}, not {CONTAINER_CREATED}")
        if self._sandboxes[c.pod_sandbox_id].state != SANDBOX_READY:
            raise Conflict(f"sandbox {c.pod_sandbox_id} of container {container_id} is not ready")
        if c.start_error is not None:
            c.state = CONTAINER_EXITED
            c.finished_at = time.time_ns()
            c.exit_code = EXIT_START_ERROR
            c.reason = "StartError"
            c.message = c.start_error
            self._publish(CONTAINER_STOPPED_EVENT, c)
            raise PermanentError(f"container {container_id} failed to start: {c.start_error}")
        c.state = CONTAINER_RUNNING
        c.started_at = time.time_ns()
        self._publish(CONTAINER_STARTED_EVENT, c)
        if c.run_seconds is not None:
            loop = asyncio.get_running_loop()
            c.timer = loop.call_later(c.run_seconds, self._kill, c, c.scripted_exit)

    async def stop_container(self, container_id: str, timeout: int) -> None:
        c = self._containers.get(container_id)
        if c is not None:
            self._kill(c, EXIT_SIGTERM if timeout > 0 else EXIT_SIGKILL)

    async def remove_container(self, container_id: str) -> None:
        c = self._containers.get(container_id)
        if c is not None:
            self._remove(c)

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        return self._container(container_id).status()

    async def list_containers(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        statuses = (c.status() for c in self._containers.values())
        return [s for s in statuses if _matches(s, filter, ("id", "pod_sandbox_id", "state"))]

    async def update_container_resources(self, container_id: str, linux: Mapping[str, Any]) -> None:
        c = self._container(container_id)
        if c.state not in (CONTAINER_CREATED, CONTAINER_RUNNING):
            raise Conflict(f"container {container_id} is {c.state}: its resources are final")
        c.resources.update(linux)

    async def reopen_container_log(self, container_id: str) -> None:
        self._container(container_id)

    # -- what the simulation does not do ----------------------------------------------------

    async def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: float = 0
    ) -> tuple[bytes, bytes, int]:
        raise NotSupported("runtime_sim runs no processes: no exec")

    async def exec(
        self, container_id: str, cmd: Sequence[str], *, tty: bool = False, stdin: bool = False
    ) -> Any:
        raise NotSupported("runtime_sim runs no processes: no exec")

    async def attach(self, container_id: str, *, stdin: bool = False, tty: bool = False) -> Any:
        raise NotSupported("runtime_sim runs no processes: no attach")

    async def container_stats(self, container_id: str) -> Mapping[str, Any]:
        raise NotSupported("runtime_sim keeps no stats")

    async def list_container_stats(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        raise NotSupported("runtime_sim keeps no stats")

    async def pod_sandbox_stats(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        raise NotSupported("runtime_sim keeps no stats")

    # -- events -------------------------------------------------------------------------------

    def container_events(self) -> ContainerEventStream:
        return ContainerEventStream(self._subscribers)

    def _publish(self, event_type: str, c: _Container) -> None:
        if not self._subscribers:
            return
        event = {
            "container_id": c.id,
            "container_event_type": event_type,
            "created_at": time.time_ns(),
            "pod_sandbox_id": c.pod_sandbox_id,
        }
        for queue in self._subscribers:
            queue.put_nowait(event)

    # -- internals ----------------------------------------------------------------------------

    def _sandbox(self, pod_sandbox_id: str) -> _Sandbox:
        try:
            return self._sandboxes[pod_sandbox_id]
        except KeyError:
            raise NotFound(f"no sandbox {pod_sandbox_id!r}") from None

    def _container(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFound(f"no container {container_id!r}") from None

    def _kill(self, c: _Container, exit_code: int) -> None:
        """End a running container with ``exit_code`` (a created or exited one stays)."""
        if c.state != CONTAINER_RUNNING:
            return
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None
        c.state = CONTAINER_EXITED
        c.finished_at = max(time.time_ns(), c.started_at)
        c.exit_code = exit_code
        c.reason = _reason(exit_code)
        self._publish(CONTAINER_STOPPED_EVENT, c)

    def _remove(self, c: _Container) -> None:
        self._kill(c, EXIT_SIGKILL)
        del self._containers[c.id]
        sandbox = self._sandboxes.get(c.pod_sandbox_id)
        if sandbox is not None:
            sandbox.containers.pop(c.id, None)
        self._publish(CONTAINER_DELETED_EVENT, c)

    async def close(self) -> None:
        """Cancel the timers and end the event streams; the containers are gone with us."""
        for c in self._containers.values():
            if c.timer is not None:
                c.timer.cancel()
                c.timer = None
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        self._subscribers.clear()


def _command(config: Mapping[str, Any], image_config: Mapping[str, Any]) -> list[str]:
    """What would run, as Kubernetes combines the config's command and args with the
    image's Entrypoint and Cmd."""
    command = list(config.get("command") or ())
    args = list(config.get("args") or ())
    if command:
        return command + args
    entrypoint = list(image_config.get("Entrypoint") or ())
    return entrypoint + (args or list(image_config.get("Cmd") or ()))


class SimImages:
    """The image service of the simulation: imported images are real records in an
    ``ImageStore`` (layers kept packed); pulled ones are synthetic and in memory."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        self._store: ImageStore | None = None
        self._synthetic: dict[str, dict[str, Any]] = {}
        self._refs: dict[str, str] = {}  # tag or digest reference -> synthetic image id

    def _image_store(self) -> ImageStore:
        if self._store is None:
            self._store = ImageStore(self._root, unpack=False)
        return self._store

    @staticmethod
    def _normalize(ref: str) -> str:
        try:
            return normalize_reference(ref)
        except KcoreError:
            raise
        except (ValueError, TypeError) as exc:
            raise Invalid(f"image reference {ref!r}: {exc}") from exc

    def _synthetic_lookup(self, ref: str) -> dict[str, Any] | None:
        if ref in self._synthetic:
            return self._synthetic[ref]
        if f"sha256:{ref}" in self._synthetic:
            return self._synthetic[f"sha256:{ref}"]
        try:
            normalized = self._normalize(ref)
        except KcoreError:
            return None
        image_id = self._refs.get(normalized)
        return None if image_id is None else self._synthetic[image_id]

    async def pull_image(self, image: str, auth: Mapping[str, str] | None = None) -> str:
        normalized = self._normalize(image)
        present = await self.image_status(image)
        if present is not None:
            return present["id"]
        if any(word in normalized for word in UNPULLABLE):
            raise NotFound(f"pull {image!r}: repository does not exist (simulated)")
        image_id = "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()
        record = self._synthetic.get(image_id)
        if record is None:
            repo = normalized.split("@", 1)[0].rsplit(":", 1)[0]
            if "@" in normalized:
                tags, digests = [], [normalized]
            else:
                tags, digests = [normalized], [f"{repo}@{image_id}"]
            record = {
                "id": image_id,
                "repo_tags": tags,
                "repo_digests": digests,
                "size": 0,
                "uid": None,
                "username": "",
                "pinned": False,
                "layers": [],
                "config": dict(SYNTHETIC_CONFIG),
                "created": time.time_ns(),
            }
            self._synthetic[image_id] = record
        for ref in (*record["repo_tags"], *record["repo_digests"]):
            self._refs[ref] = image_id
        return image_id

    async def import_image(
        self, path: Path, tags: Sequence[str] = ()
    ) -> Sequence[Mapping[str, Any]]:
        store = self._image_store()
        records = await asyncio.to_thread(store.import_path, Path(path), tags=tuple(tags))
        for record in records:
            for ref in (*record.get("repo_tags", ()), *record.get("repo_digests", ())):
                self._forget_synthetic_ref(ref)
        return records

    def _forget_synthetic_ref(self, ref: str) -> None:
        image_id = self._refs.pop(ref, None)
        if image_id is None:
            return
        record = self._synthetic[image_id]
        record["repo_tags"] = [t for t in record["repo_tags"] if t != ref]
        record["repo_digests"] = [d for d in record["repo_digests"] if d != ref]
        if not record["repo_tags"] and not record["repo_digests"]:
            del self._synthetic[image_id]

    async def list_images(self) -> Sequence[Mapping[str, Any]]:
        stored = await asyncio.to_thread(self._image_store().list) if self._has_store() else []
        return [*stored, *(dict(r) for r in self._synthetic.values())]

    async def image_status(self, image: str) -> Mapping[str, Any] | None:
        if self._has_store():
            record = await asyncio.to_thread(self._image_store().status, image)
            if record is not None:
                return record
        record = self._synthetic_lookup(image)
        return None if record is None else dict(record)

    async def remove_image(self, image: str) -> None:
        if self._has_store():
            await asyncio.to_thread(self._image_store().remove, image)
        record = self._synthetic_lookup(image)
        if record is not None:
            for ref in (*record["repo_tags"], *record["repo_digests"]):
                self._refs.pop(ref, None)
            del self._synthetic[record["id"]]

    async def image_fs_info(self) -> Sequence[Mapping[str, Any]]:
        usage = await asyncio.to_thread(self._image_store().fs_usage)
        return [
            {
                "timestamp": time.time_ns(),
                "fs_id": {"mountpoint": usage["mountpoint"]},
                "used_bytes": usage["used_bytes"],
                "inodes_used": usage["inodes_used"],
            }
        ]

    def _has_store(self) -> bool:
        """Whether images were ever imported here (a node that only pulls never touches
        the disk)."""
        return self._store is not None or self._root.exists()


def make_backend(
    data_dir: Path,
    *,
    runtime_class: type[SimRuntime] = SimRuntime,
    images_class: type[SimImages] = SimImages,
) -> RuntimeBackend:
    """A simulated runtime whose imported images live under ``data_dir/images-sim``."""
    images = images_class(Path(data_dir) / "images-sim")
    runtime = runtime_class(images)
    return RuntimeBackend(runtime=runtime, images=images, close=runtime.close)


__all__ = [
    "EXIT_CODE",
    "RUN_SECONDS",
    "START_ERROR",
    "SimImages",
    "SimRuntime",
    "make_backend",
]
