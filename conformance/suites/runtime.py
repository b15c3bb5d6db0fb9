"""The runtime conformance suite: the CRI-like contract in ``kcore.interfaces``, checked as
critest checks a CRI runtime.

Subclass :class:`RuntimeConformance` in a ``test_*.py`` file and provide the runtime under
test through the ``runtime_factory`` fixture. kcore's pytest plugin builds it from
``--kcore-plugin NAME``; override it to test a runtime directly::

    import pytest
    from kcore.conformance.suites.runtime import RuntimeConformance

    class TestMyRuntime(RuntimeConformance):
        @pytest.fixture
        def runtime_factory(self, kcore_settings_factory):
            async def make(settings=None):
                settings = settings or kcore_settings_factory()
                return my_runtime_backend(settings.data_dir)
            return make

``runtime_factory(settings=None)`` returns a new :class:`kcore.RuntimeBackend`: on a fresh,
empty data directory when called without settings, and on the given settings otherwise
(the restart check builds a second runtime on the first one's settings, after closing the
first).

The groups follow critest's: runtime info, sandboxes, containers, exec, logs, images,
several containers in one sandbox, isolation, mounts, OOM, stats, events and restart, and
crashes. Every check that needs a capability the runtime does not declare in
``capabilities`` is skipped with the reason ``runtime lacks capability <name>``. Each test
removes the sandboxes it ran (and so their containers) and undoes its host mounts, also
when it fails; every wait is bounded and says, when it runs out, what it saw last.

A runtime's test module may also provide fault injection by overriding the
``crash_sandbox`` fixture (see :meth:`RuntimeConformance.crash_sandbox`); without it the
crash checks skip with ``runtime lacks capability crash injection``.

The containers run a busybox image that the suite builds once per session from the host's
static ``/bin/busybox`` (:mod:`kcore.conformance.testimages`) and imports into each runtime
with ``import_image``. The mount checks bind-mount and propagate host directories, so
they need root, as the runtimes that offer them do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kcore.conformance.asyncsupport import add_finalizer, async_test
from kcore.errors import BadRequest, Invalid, KcoreError, NotFound, TemporaryError
from kcore.interfaces import (
    CONTAINER_CREATED,
    CONTAINER_CREATED_EVENT,
    CONTAINER_DELETED_EVENT,
    CONTAINER_EXITED,
    CONTAINER_RUNNING,
    CONTAINER_STARTED_EVENT,
    CONTAINER_STOPPED_EVENT,
    CONTAINER_UNKNOWN,
    RUNTIME_CAPABILITIES,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
)

BUSYBOX = "kcore.test/busybox:latest"
"""The suite's image: busybox with its applets on ``PATH`` and ``sh`` as its command."""

BUSYBOX_NO_COMMAND = "kcore.test/busybox-nocommand:latest"
"""The same image without Entrypoint or Cmd."""

WAIT_TIMEOUT = 10.0
"""Seconds a container may take to reach a state the test knows is due."""

POLL_INTERVAL = 0.05

SLEEP_FOREVER = ["sleep", "3600"]

NAMESPACE = "kcore-conformance"

RUNTIME_RESOURCES: Mapping[str, str] = {"backend": "runtime_factory"}
"""What the tests get from :func:`async_test`: ``backend``, made by ``runtime_factory``."""

runtime_test = async_test(resources=RUNTIME_RESOURCES)

LOG_LINE = re.compile(
    r"^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<tags>[A-Z](?::[A-Z])*) (?P<content>.*)$"
)
RFC3339_NANO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


# -- helpers -----------------------------------------------------------------------------------


def require(backend: Any, *capabilities: str) -> None:
    """Skip the running test unless the runtime declares every one of ``capabilities``."""
    for cap in capabilities:
        assert cap in RUNTIME_CAPABILITIES, f"the suite asks for an unknown capability {cap!r}"
        if cap not in backend.runtime.capabilities:
            pytest.skip(f"runtime lacks capability {cap}")


def assert_ns_timestamp(value: Any, what: str, before: int, after: int) -> None:
    """``value`` is a time in nanoseconds between ``before`` and ``after`` (give or take
    a few seconds for clocks that tick coarsely)."""
    slack = 5 * 10**9
    assert isinstance(value, int), f"{what} is {value!r}, not an int of nanoseconds"
    assert before - slack <= value <= after + slack, (
        f"{what} is {value}, not a time in ns near {before} (seconds or ms instead of ns?)"
    )


def brief(status: Mapping[str, Any]) -> str:
    keys = ("state", "exit_code", "reason", "message", "started_at", "finished_at")
    return ", ".join(f"{k}={status.get(k)!r}" for k in keys if k in status)


def ids(items: Iterable[Mapping[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


async def run_host(*argv: str) -> None:
    """Run a command on the host (``mount`` ...); fail with its output if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}): {out.decode()}"


async def close_iterator(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await asyncio.wait_for(aclose(), WAIT_TIMEOUT)


async def read_session(session: Any, timeout: float | None = None) -> dict[str, bytes]:
    """Everything a stream session writes until its output ends, by stream."""
    timeout = WAIT_TIMEOUT if timeout is None else timeout
    out = {"stdout": b"", "stderr": b""}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            piece = await asyncio.wait_for(session.read(), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            raise AssertionError(
                f"the session's output did not end within {timeout:g} s; read so far: {out}"
            ) from None
        if piece is None:
            return out
        stream, data = piece
        assert stream in out, f"session.read() gave an unknown stream {stream!r}"
        out[stream] += data


def parse_log(path: Path) -> list[tuple[str, str]]:
    """``(stream, line)`` of each full line of a CRI log file (partial pieces joined, a
    last line still being written left out); fails on a line not in the CRI format."""
    text = path.read_text()
    raw_lines = text.split("\n")[:-1]  # what follows the last newline is not written yet
    lines: list[tuple[str, str]] = []
    partial: dict[str, str] = {}
    for raw in raw_lines:
        m = LOG_LINE.match(raw)
        assert m, f"{path}: {raw!r} is not '<RFC3339Nano> <stdout|stderr> <P|F> <content>'"
        assert RFC3339_NANO.match(m["time"]), f"{path}: {m['time']!r} is not RFC 3339 time"
        stream, tags = m["stream"], m["tags"].split(":")
        content = partial.pop(stream, "") + m["content"]
        if "P" in tags:
            partial[stream] = content
        else:
            assert "F" in tags, f"{path}: {raw!r} is neither partial (P) nor full (F)"
            lines.append((stream, content))
    return lines


async def log_lines(path: Path, at_least: int = 1) -> list[tuple[str, str]] | None:
    """The lines of a CRI log file once it has ``at_least`` of them, else ``None``."""

    def read() -> list[tuple[str, str]] | None:
        if not path.exists():
            return None
        lines = parse_log(path)
        return lines if len(lines) >= at_least else None

    return await asyncio.to_thread(read)


@dataclass(frozen=True)
class SuiteEnv:
    """What a test needs besides the runtime: the suite's image layouts by tag, and a
    directory of its own (log directories, host paths to mount)."""

    images: Mapping[str, Path]
    tmp: Path


class Harness:
    """One test's view of the runtime: builds configs, runs sandboxes and containers,
    removes them after the test, and waits with bounds."""

    def __init__(self, backend: Any, env: SuiteEnv) -> None:
        self.backend = backend
        self.rt = backend.runtime
        self.images = backend.images
        self.layouts = env.images
        self.tmp = env.tmp

    # -- images ---------------------------------------------------------------------------

    async def image(self, ref: str = BUSYBOX) -> Mapping[str, Any]:
        """The record of one of the suite's images, imported into the runtime if absent."""
        record = await self.images.image_status(ref)
        if record is None:
            await self.images.import_image(self.layouts[ref])
            record = await self.images.image_status(ref)
            assert record is not None, f"image_status({ref!r}) is None right after its import"
        return record

    # -- sandboxes ------------------------------------------------------------------------

    def sandbox_config(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        hostname: str | None = None,
        dns_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A sandbox config as kubelet sends it, with a unique name, uid and log
        directory (created, as kubelet creates it)."""
        uid = str(uuid.uuid4())
        name = f"conformance-{uid[:8]}"
        log_directory = self.tmp / "pods" / f"{NAMESPACE}_{name}_{uid}"
        log_directory.mkdir(parents=True)
        return {
            "metadata": {"name": name, "uid": uid, "namespace": NAMESPACE, "attempt": 0},
            "hostname": hostname or name,
            "log_directory": str(log_directory),
            "dns_config": dict(dns_config or {}),
            "port_mappings": [],
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "linux": {
                "security_context": {
                    "namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}
                }
            },
        }

    async def sandbox(
        self, config: Mapping[str, Any] | None = None, *, remove_after: bool = True
    ) -> tuple[str, dict]:
        """Run a sandbox (from ``config`` or a new one); unless ``remove_after`` is false
        it is removed after the test."""
        config = dict(config or self.sandbox_config())
        sandbox_id = await self.rt.run_pod_sandbox(config)
        assert isinstance(sandbox_id, str) and sandbox_id, (
            f"run_pod_sandbox returned {sandbox_id!r}"
        )
        if remove_after:
            add_finalizer(lambda: self.remove_sandbox(sandbox_id))
        return sandbox_id, config

    async def remove_sandbox(self, sandbox_id: str) -> None:
        # Removing twice must succeed; the idempotence checks say so when it does not.
        with contextlib.suppress(NotFound):
            await self.rt.remove_pod_sandbox(sandbox_id)

    # -- containers -----------------------------------------------------------------------

    def container_config(
        self,
        name: str,
        command: Sequence[str] | None = None,
        *,
        args: Sequence[str] = (),
        image: str = BUSYBOX,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        mounts: Sequence[Mapping[str, Any]] = (),
        resources: Mapping[str, Any] | None = None,
        sandbox_config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A container config as kubelet sends it. With ``sandbox_config`` the
        container's log directory is created (as kubelet does before creating it)."""
        if sandbox_config is not None:
            Path(sandbox_config["log_directory"], name).mkdir(exist_ok=True)
        return {
            "metadata": {"name": name, "attempt": 0},
            "image": {"image": image},
            "command": list(command or ()),
            "args": list(args),
            "working_dir": "",
            "envs": [{"key": "KCORE_CONFORMANCE", "value": "1"}],
            "mounts": [dict(m) for m in mounts],
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
            "log_path": f"{name}/0.log",
            "stdin": False,
            "stdin_once": False,
            "tty": False,
            "linux": {
                "resources": dict(resources or {}),
                "security_context": {"namespace_options": {"network": "POD", "pid": "CONTAINER"}},
            },
        }

    async def container(
        self,
        sandbox: tuple[str, Mapping[str, Any]],
        name: str,
        command: Sequence[str] | None = None,
        *,
        start: bool = True,
        **kwargs: Any,
    ) -> str:
        """Create (and by default start) a container in ``sandbox``, from the suite's
        image unless ``image`` says otherwise."""
        sandbox_id, sandbox_config = sandbox
        await self.image(kwargs.get("image", BUSYBOX))
        config = self.container_config(name, command, sandbox_config=sandbox_config, **kwargs)
        container_id = await self.rt.create_container(sandbox_id, config, sandbox_config)
        assert isinstance(container_id, str) and container_id, (
            f"create_container returned {container_id!r}"
        )
        if start:
            await self.rt.start_container(container_id)
        return container_id

    async def wait_state(
        self, container_id: str, state: str, timeout: float | None = None
    ) -> Mapping[str, Any]:
        """Poll until the container is in ``state`` (for up to :data:`WAIT_TIMEOUT`
        seconds unless ``timeout`` says otherwise); its status then."""
        timeout = WAIT_TIMEOUT if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.rt.container_status(container_id)
            if status["state"] == state:
                return status
            if loop.time() > deadline:
                raise AssertionError(
                    f"container {container_id} did not reach {state} within {timeout:g} s; "
                    f"last seen: {brief(status)}"
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def exec_ok(self, container_id: str, cmd: Sequence[str], timeout: float = 10) -> str:
        """exec_sync that must exit 0; its stdout as text."""
        stdout, stderr, code = await self.rt.exec_sync(container_id, list(cmd), timeout)
        assert code == 0, f"exec {cmd} exited {code}: stdout {stdout!r}, stderr {stderr!r}"
        return stdout.decode()

    async def until(
        self,
        probe: Callable[[], Awaitable[Any]],
        what: str,
        timeout: float | None = None,
    ) -> Any:
        """Poll ``probe`` until it returns something true; fail naming ``what`` and the
        last value (or error) seen."""
        timeout = WAIT_TIMEOUT if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while True:
            try:
                last = await probe()
            except (AssertionError, KcoreError, OSError) as exc:
                last = exc
            else:
                if last:
                    return last
            if loop.time() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; last seen: {last!r}")
            await asyncio.sleep(POLL_INTERVAL)

    def log_file(self, sandbox_config: Mapping[str, Any], container_name: str) -> Path:
        return Path(sandbox_config["log_directory"], container_name, "0.log")


def unknown_id() -> str:
    return uuid.uuid4().hex * 2


# -- the suite ---------------------------------------------------------------------------------


class RuntimeConformance:
    """The runtime contract, one test per promise, in critest's groups."""

    @pytest.fixture(scope="session")
    @classmethod
    def runtime_test_images(cls, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        """The suite's images as OCI layouts, by tag; built once per session."""
        from kcore.conformance.testimages import build_busybox_layout

        root = tmp_path_factory.mktemp("kcore-runtime-images")
        return {
            BUSYBOX: build_busybox_layout(root / "busybox", ref_name=BUSYBOX),
            BUSYBOX_NO_COMMAND: build_busybox_layout(
                root / "busybox-nocommand", ref_name=BUSYBOX_NO_COMMAND, cmd=(), entrypoint=None
            ),
        }

    @pytest.fixture
    def runtime_env(self, runtime_test_images: dict[str, Path], tmp_path: Path) -> SuiteEnv:
        return SuiteEnv(runtime_test_images, tmp_path)

    # -- runtime info ------------------------------------------------------------------------

    @runtime_test
    async def test_version_names_runtime_and_api_v1(self, backend: Any) -> None:
        """critest "runtime should return version info": every field set, API ``v1``."""
        version = await backend.runtime.version()
        for key in ("version", "runtime_name", "runtime_version", "runtime_api_version"):
            assert isinstance(version.get(key), str) and version[key], (
                f"version()[{key!r}] is {version.get(key)!r}"
            )
        assert version["runtime_api_version"] == "v1"

    @runtime_test
    async def test_status_has_runtime_ready_and_network_ready(self, backend: Any) -> None:
        """critest "runtime should return runtime conditions": ``RuntimeReady`` is true and
        ``NetworkReady`` is reported."""
        conditions = {c["type"]: c for c in (await backend.runtime.status())["conditions"]}
        assert "RuntimeReady" in conditions, f"no RuntimeReady condition in {conditions}"
        assert conditions["RuntimeReady"]["status"] is True, conditions["RuntimeReady"]
        assert "NetworkReady" in conditions, f"no NetworkReady condition in {conditions}"
        assert isinstance(conditions["NetworkReady"]["status"], bool), conditions["NetworkReady"]

    @runtime_test
    async def test_capabilities_are_known(self, backend: Any) -> None:
        """A runtime declares only capabilities from ``RUNTIME_CAPABILITIES``."""
        unknown = set(backend.runtime.capabilities) - RUNTIME_CAPABILITIES
        assert not unknown, f"unknown capabilities {sorted(unknown)}"

    # -- sandboxes ---------------------------------------------------------------------------

    @runtime_test
    async def test_run_sandbox_is_ready_and_keeps_its_config(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "PodSandbox should support run/status": READY on return; metadata,
        labels and annotations come back unchanged; ``created_at`` is in ns."""
        h = Harness(backend, runtime_env)
        labels = {"kcore.test/label": "value-1", "empty": ""}
        annotations = {"kcore.test/annotation": "spaces, = and: colons", "json": '{"a": [1]}'}
        config = h.sandbox_config(labels=labels, annotations=annotations)
        before = time.time_ns()
        sandbox_id, _ = await h.sandbox(config)
        after = time.time_ns()
        status = await backend.runtime.pod_sandbox_status(sandbox_id)
        assert status["id"] == sandbox_id
        assert status["state"] == SANDBOX_READY, f"state {status['state']} after run_pod_sandbox"
        assert status["metadata"] == config["metadata"], "metadata came back changed"
        assert status["labels"] == labels, "labels came back changed"
        assert status["annotations"] == annotations, "annotations came back changed"
        assert_ns_timestamp(status["created_at"], "created_at", before, after)
        # CRI's LinuxPodSandboxStatus, optional in kcore's contract: right when reported.
        options = ((status.get("linux") or {}).get("namespaces") or {}).get("options")
        if options is not None:
            asked = config["linux"]["security_context"]["namespace_options"]
            reported = {key: options.get(key) for key in asked}
            assert reported == asked, f"linux.namespaces.options {reported}, asked for {asked}"

    @runtime_test
    async def test_list_sandboxes_filters_by_id_state_and_labels(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "PodSandbox should support list": each filter key narrows the list,
        and every sandbox listed satisfies the filter."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        run = uuid.uuid4().hex[:12]
        a, _ = await h.sandbox(h.sandbox_config(labels={"run": run, "group": "a"}))
        b, _ = await h.sandbox(h.sandbox_config(labels={"run": run, "group": "b"}))
        assert {a, b} <= ids(await rt.list_pod_sandbox()), "a sandbox is missing from the list"
        assert ids(await rt.list_pod_sandbox(None)) >= {a, b}
        assert ids(await rt.list_pod_sandbox({"id": a})) == {a}

        listed = await rt.list_pod_sandbox({"label_selector": {"run": run, "group": "b"}})
        assert ids(listed) == {b}, f"label_selector group=b listed {ids(listed)}"
        listed = await rt.list_pod_sandbox({"label_selector": {"run": run}})
        assert ids(listed) == {a, b}

        await rt.stop_pod_sandbox(b)
        ready = await rt.list_pod_sandbox({"state": SANDBOX_READY})
        assert a in ids(ready) and b not in ids(ready), f"state READY listed {ids(ready)}"
        assert all(s["state"] == SANDBOX_READY for s in ready)
        not_ready = await rt.list_pod_sandbox({"state": SANDBOX_NOTREADY})
        assert b in ids(not_ready) and a not in ids(not_ready)
        both = await rt.list_pod_sandbox(
            {"state": SANDBOX_NOTREADY, "label_selector": {"run": run}}
        )
        assert ids(both) == {b}

    @runtime_test
    async def test_stop_sandbox_makes_it_not_ready(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "PodSandbox should support stop": NOTREADY afterwards, still listed."""
        h = Harness(backend, runtime_env)
        sandbox_id, config = await h.sandbox()
        await backend.runtime.stop_pod_sandbox(sandbox_id)
        status = await backend.runtime.pod_sandbox_status(sandbox_id)
        assert status["state"] == SANDBOX_NOTREADY
        assert status["metadata"] == config["metadata"]
        assert sandbox_id in ids(await backend.runtime.list_pod_sandbox())

    @runtime_test
    async def test_removed_sandbox_is_gone(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "PodSandbox should support remove": not listed, status raises NotFound."""
        h = Harness(backend, runtime_env)
        sandbox_id, _ = await h.sandbox()
        await backend.runtime.stop_pod_sandbox(sandbox_id)
        await backend.runtime.remove_pod_sandbox(sandbox_id)
        assert sandbox_id not in ids(await backend.runtime.list_pod_sandbox())
        with pytest.raises(NotFound):
            await backend.runtime.pod_sandbox_status(sandbox_id)

    @runtime_test
    async def test_remove_ready_sandbox_removes_it_and_its_containers(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """``remove_pod_sandbox``: "Stop if needed, then remove the sandbox and all its
        containers"."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        running = await h.container(sandbox, "running", SLEEP_FOREVER)
        created = await h.container(sandbox, "created", SLEEP_FOREVER, start=False)
        await backend.runtime.remove_pod_sandbox(sandbox[0])
        assert sandbox[0] not in ids(await backend.runtime.list_pod_sandbox())
        left = ids(await backend.runtime.list_containers()) & {running, created}
        assert not left, f"containers {left} are still listed after their sandbox was removed"
        for container_id in (running, created):
            with pytest.raises(NotFound):
                await backend.runtime.container_status(container_id)

    @runtime_test
    async def test_stop_sandbox_stops_its_containers(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """``stop_pod_sandbox``: "Kill every container of the sandbox"."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "running", SLEEP_FOREVER)
        await backend.runtime.stop_pod_sandbox(sandbox[0])
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["finished_at"] >= status["started_at"] > 0, brief(status)

    @runtime_test
    async def test_stop_and_remove_sandbox_are_idempotent(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest idempotence: stopping or removing a sandbox twice, or one that never
        existed, succeeds."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        sandbox_id, _ = await h.sandbox()
        await rt.stop_pod_sandbox(sandbox_id)
        await rt.stop_pod_sandbox(sandbox_id)
        await rt.remove_pod_sandbox(sandbox_id)
        await rt.remove_pod_sandbox(sandbox_id)
        await rt.stop_pod_sandbox(sandbox_id)
        await rt.stop_pod_sandbox(unknown_id())
        await rt.remove_pod_sandbox(unknown_id())

    @runtime_test
    async def test_sandboxes_come_and_go_without_leaking_descriptors(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """Running and removing sandboxes (with a container each) leaves no file
        descriptor behind in the process hosting the runtime: a node runs pods for months.
        The first round may open what the runtime keeps for good."""
        h = Harness(backend, runtime_env)
        rounds = 6

        async def open_descriptors() -> int:
            await asyncio.sleep(0.2)  # let closed connections finish closing
            return len(os.listdir("/proc/self/fd"))

        async def round_trip() -> None:
            sandbox = await h.sandbox()
            await h.container(sandbox, "c", SLEEP_FOREVER, start=False)
            await backend.runtime.stop_pod_sandbox(sandbox[0])
            await backend.runtime.remove_pod_sandbox(sandbox[0])

        await round_trip()
        before = await open_descriptors()
        for _ in range(rounds):
            await round_trip()
        grown = await open_descriptors() - before
        assert grown < rounds // 2, (
            f"{grown} more open file descriptors after {rounds} sandboxes came and went"
        )

    @runtime_test
    async def test_sandbox_names_its_network_namespace(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """kcore's ``netns_path``, where the network slot wires the pod: a READY sandbox with
        a network of its own names a network namespace that is not the host's; one on the
        host network (``NODE``) names none."""
        require(backend, "isolation")
        h = Harness(backend, runtime_env)
        sandbox_id, _ = await h.sandbox()
        path = (await backend.runtime.pod_sandbox_status(sandbox_id)).get("netns_path")
        assert path, "a READY sandbox with a network of its own names no network namespace"
        own, host = os.stat(path), os.stat("/proc/self/ns/net")
        assert (own.st_dev, own.st_ino) != (host.st_dev, host.st_ino), (
            f"netns_path {path} is the host's network namespace"
        )
        config = h.sandbox_config()
        config["linux"]["security_context"]["namespace_options"]["network"] = "NODE"
        on_host, _ = await h.sandbox(config)
        status = await backend.runtime.pod_sandbox_status(on_host)
        assert status["state"] == SANDBOX_READY, f"state {status['state']} on the host network"
        assert status.get("netns_path") is None, (
            f"a sandbox on the host network names {status['netns_path']!r}"
        )

    @runtime_test
    async def test_sandbox_status_of_unknown_id_raises_not_found(self, backend: Any) -> None:
        """ "Unknown ids in status ... raise NotFound"."""
        with pytest.raises(NotFound):
            await backend.runtime.pod_sandbox_status(unknown_id())

    # -- containers --------------------------------------------------------------------------

    @runtime_test
    async def test_create_container_is_created_and_keeps_its_config(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "Container should support create": CREATED, metadata, labels and
        annotations unchanged, ``created_at`` in ns, not started, the image's id."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        image = await h.image()
        labels = {"kcore.test/label": "c-1", "empty": ""}
        annotations = {"kcore.test/annotation": "a value: with = signs", "n": "3"}
        before = time.time_ns()
        container_id = await h.container(
            sandbox,
            "created",
            SLEEP_FOREVER,
            start=False,
            labels=labels,
            annotations=annotations,
        )
        after = time.time_ns()
        status = await backend.runtime.container_status(container_id)
        assert status["id"] == container_id
        assert status["pod_sandbox_id"] == sandbox[0]
        assert status["state"] == CONTAINER_CREATED, brief(status)
        assert status["metadata"] == {"name": "created", "attempt": 0}
        assert status["labels"] == labels, "labels came back changed"
        assert status["annotations"] == annotations, "annotations came back changed"
        assert_ns_timestamp(status["created_at"], "created_at", before, after)
        assert status["started_at"] == 0, f"started_at is {status['started_at']} before start"
        assert status["finished_at"] == 0, f"finished_at is {status['finished_at']} before start"
        assert status["exit_code"] == 0, f"exit_code is {status['exit_code']} before start"
        assert status["image_id"] == image["id"], "image_id is not the image's id"
        assert status["image_ref"], "image_ref is empty"
        assert status["image"].get("image") == BUSYBOX, f"image is {status['image']!r}"
        assert not status.get("pid"), f"a container that never ran reports pid {status['pid']}"

    @runtime_test
    async def test_start_container_runs_it(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "Container should support start": RUNNING, ``started_at`` set (ns)."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "runner", SLEEP_FOREVER, start=False)
        created = await backend.runtime.container_status(container_id)
        before = time.time_ns()
        await backend.runtime.start_container(container_id)
        after = time.time_ns()
        status = await backend.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_RUNNING, brief(status)
        assert_ns_timestamp(status["started_at"], "started_at", before, after)
        assert status["started_at"] >= created["created_at"]
        assert status["finished_at"] == 0, brief(status)

    @runtime_test
    async def test_container_exit_code_and_reason_error(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """A command that exits 3: EXITED, exit code 3, reason ``Error``, finished after
        it started."""
        require(backend, "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "fails", ["sh", "-c", "exit 3"])
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] == 3, brief(status)
        assert status["reason"] == "Error", brief(status)
        assert status["started_at"] > 0 and status["finished_at"] >= status["started_at"], brief(
            status
        )
        now = time.time_ns()
        finished_since = now - int(WAIT_TIMEOUT * 10**9)
        assert_ns_timestamp(status["finished_at"], "finished_at", finished_since, now)
        assert not status.get("pid"), (
            f"an exited container reports pid {status['pid']} (by now maybe another's)"
        )

    @runtime_test
    async def test_container_exit_zero_is_completed(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """A command that exits 0: EXITED, exit code 0, reason ``Completed``."""
        require(backend, "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "succeeds", ["sh", "-c", "exit 0"])
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert (status["exit_code"], status["reason"]) == (0, "Completed"), brief(status)

    @runtime_test
    async def test_stop_container_without_grace_kills_it(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "Container should support stop", timeout 0: "SIGKILL ... at once";
        ``stop_container`` "returns once it has exited": EXITED with 137."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "killed", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        started = time.monotonic()
        await backend.runtime.stop_container(container_id, 0)
        assert time.monotonic() - started < 5, "stop with timeout 0 took more than 5 s"
        status = await backend.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_EXITED, f"after stop_container: {brief(status)}"
        assert status["exit_code"] == 137, brief(status)
        assert status["finished_at"] >= status["started_at"] > 0, brief(status)

    @runtime_test
    async def test_stop_container_with_grace_ends_it(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """Stop with a timeout: the stop signal, then SIGKILL once the timeout is over:
        EXITED within it (give or take), by SIGTERM (143) or SIGKILL (137)."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "stopped", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        started = time.monotonic()
        await backend.runtime.stop_container(container_id, 2)
        took = time.monotonic() - started
        assert took < 2 + 5, f"stop with timeout 2 took {took:.1f} s"
        status = await backend.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_EXITED, f"after stop_container: {brief(status)}"
        assert status["exit_code"] in (137, 143), brief(status)

    @pytest.mark.parametrize("state", ["created", "running", "exited"])
    @runtime_test
    async def test_remove_container_in_each_state(
        self, backend: Any, runtime_env: SuiteEnv, state: str
    ) -> None:
        """critest "Container should support remove", from each state (a running one is
        killed first): not listed, status raises NotFound."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, state, SLEEP_FOREVER, start=state != "created")
        if state == "exited":
            await backend.runtime.stop_container(container_id, 0)
            await h.wait_state(container_id, CONTAINER_EXITED)
        await backend.runtime.remove_container(container_id)
        assert container_id not in ids(await backend.runtime.list_containers())
        listed = await backend.runtime.list_containers({"pod_sandbox_id": sandbox[0]})
        assert container_id not in ids(listed)
        with pytest.raises(NotFound):
            await backend.runtime.container_status(container_id)

    @runtime_test
    async def test_list_containers_filters(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "Container should support list": by id, sandbox, state and labels; every
        container listed satisfies the filter."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        run = uuid.uuid4().hex[:12]
        s1 = await h.sandbox()
        s2 = await h.sandbox()
        a = await h.container(s1, "a", SLEEP_FOREVER, labels={"run": run, "name": "a"})
        b = await h.container(s1, "b", SLEEP_FOREVER, start=False, labels={"run": run, "name": "b"})
        c = await h.container(s2, "c", SLEEP_FOREVER, labels={"run": run, "name": "c"})
        assert {a, b, c} <= ids(await rt.list_containers())
        assert {a, b, c} <= ids(await rt.list_containers(None))
        assert ids(await rt.list_containers({"id": b})) == {b}
        by_sandbox = await rt.list_containers({"pod_sandbox_id": s1[0]})
        assert ids(by_sandbox) == {a, b}, f"pod_sandbox_id filter listed {ids(by_sandbox)}"
        assert all(x["pod_sandbox_id"] == s1[0] for x in by_sandbox)
        running = await rt.list_containers({"state": CONTAINER_RUNNING})
        assert {a, c} <= ids(running) and b not in ids(running), f"listed {ids(running)}"
        assert all(x["state"] == CONTAINER_RUNNING for x in running)
        created = await rt.list_containers({"state": CONTAINER_CREATED})
        assert b in ids(created) and not {a, c} & ids(created)
        labelled = await rt.list_containers({"label_selector": {"run": run, "name": "c"}})
        assert ids(labelled) == {c}, f"label_selector name=c listed {ids(labelled)}"
        combined = await rt.list_containers(
            {"pod_sandbox_id": s1[0], "state": CONTAINER_RUNNING, "label_selector": {"run": run}}
        )
        assert ids(combined) == {a}
        for item in await rt.list_containers({"pod_sandbox_id": s2[0]}):
            assert item["labels"] == {"run": run, "name": "c"}, "a listed container's labels"

    @runtime_test
    async def test_list_containers_while_containers_are_created(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """kubelet relists (PLEG) while its pod workers create containers: listing during
        ``create_container`` calls works and shows each container in a CRI state; once the
        calls have returned, each of them is listed, CREATED."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        sandbox = await h.sandbox()
        await h.image()
        states = {CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN}
        creating = True

        async def relist() -> None:
            while creating:
                for status in await rt.list_containers({"pod_sandbox_id": sandbox[0]}):
                    assert status["state"] in states, f"listed while creating: {brief(status)}"
                await asyncio.sleep(0)

        lister = asyncio.create_task(relist())
        try:
            created = await asyncio.gather(
                *(h.container(sandbox, f"c{n}", SLEEP_FOREVER, start=False) for n in range(4))
            )
        finally:
            creating = False
            await lister
        listed = await rt.list_containers({"pod_sandbox_id": sandbox[0]})
        assert ids(listed) == set(created), f"listed {ids(listed)}, created {set(created)}"
        assert all(s["state"] == CONTAINER_CREATED for s in listed), [brief(s) for s in listed]

    @runtime_test
    async def test_stop_and_remove_container_are_idempotent(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest idempotence: stop and remove twice, and of unknown ids, succeed."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "twice", SLEEP_FOREVER)
        await rt.stop_container(container_id, 0)
        await rt.stop_container(container_id, 0)
        status = await rt.container_status(container_id)
        assert status["state"] == CONTAINER_EXITED, brief(status)
        assert status["exit_code"] == 137, f"a second stop changed the exit: {brief(status)}"
        await rt.remove_container(container_id)
        await rt.remove_container(container_id)
        await rt.stop_container(container_id, 0)
        await rt.stop_container(unknown_id(), 0)
        await rt.remove_container(unknown_id())

    @runtime_test
    async def test_status_and_start_of_unknown_container_raise_not_found(
        self, backend: Any
    ) -> None:
        """ "Unknown ids in status and start raise NotFound"."""
        rt = backend.runtime
        with pytest.raises(NotFound):
            await rt.container_status(unknown_id())
        with pytest.raises(NotFound):
            await rt.start_container(unknown_id())

    @runtime_test
    async def test_reopen_log_and_update_of_unknown_container_raise_not_found(
        self, backend: Any
    ) -> None:
        """Reopening the log of an unknown container, or updating its resources, raises
        NotFound too."""
        rt = backend.runtime
        with pytest.raises(NotFound):
            await rt.reopen_container_log(unknown_id())
        with pytest.raises(NotFound):
            await rt.update_container_resources(unknown_id(), {"cpu_shares": 512})

    @runtime_test
    async def test_unknown_container_ids_that_look_like_paths_raise_not_found(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """Container ids are names, not paths: an id that reaches a real container only
        when read as a path (``<id>/../<id>``, ``./<id>``) is unknown: status raises
        NotFound and remove removes nothing."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "target", SLEEP_FOREVER, start=False)
        for path_like in (f"{container_id}/../{container_id}", f"./{container_id}"):
            with pytest.raises(NotFound):
                await rt.container_status(path_like)
            await rt.remove_container(path_like)
        status = await rt.container_status(container_id)
        assert status["state"] == CONTAINER_CREATED, (
            f"after removing path-like ids: {brief(status)}"
        )

    @runtime_test
    async def test_create_container_lists_its_mounts_in_status(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """CRI ``ContainerStatus.mounts``: the container's mounts, as configured."""
        require(backend, "mounts")
        h = Harness(backend, runtime_env)
        host_dir = h.tmp / "listed"
        host_dir.mkdir()
        sandbox = await h.sandbox()
        mount = self._bind(host_dir, "/data", readonly=True)
        container_id = await h.container(
            sandbox, "mounted", SLEEP_FOREVER, start=False, mounts=[mount]
        )
        status = await backend.runtime.container_status(container_id)
        listed = [
            (m.get("container_path"), m.get("host_path"), m.get("readonly"))
            for m in status["mounts"]
        ]
        assert listed == [("/data", str(host_dir), True)], f"status lists mounts {listed}"

    @runtime_test
    async def test_create_in_unknown_sandbox_raises_not_found(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """A container of a sandbox that does not exist is refused; nothing is left."""
        h = Harness(backend, runtime_env)
        await h.image()
        sandbox_config = h.sandbox_config()
        config = h.container_config("orphan", SLEEP_FOREVER, sandbox_config=sandbox_config)
        before = ids(await backend.runtime.list_containers())
        with pytest.raises(NotFound):
            await backend.runtime.create_container(unknown_id(), config, sandbox_config)
        assert ids(await backend.runtime.list_containers()) == before

    @runtime_test
    async def test_create_from_absent_image_raises_not_found(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """An image that is not present is not pulled by ``create_container``: NotFound,
        and no container is left."""
        h = Harness(backend, runtime_env)
        sandbox_id, sandbox_config = await h.sandbox()
        absent = f"kcore.test/absent-{uuid.uuid4().hex[:8]}:latest"
        config = h.container_config(
            "absent", SLEEP_FOREVER, image=absent, sandbox_config=sandbox_config
        )
        with pytest.raises(NotFound):
            await backend.runtime.create_container(sandbox_id, config, sandbox_config)
        listed = await backend.runtime.list_containers({"pod_sandbox_id": sandbox_id})
        assert not list(listed), f"a failed create left {ids(listed)}"

    @runtime_test
    async def test_create_without_any_command_raises_invalid(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """No command in the config and none in the image: a bad config, refused
        (Invalid or BadRequest), leaving nothing behind."""
        h = Harness(backend, runtime_env)
        sandbox_id, sandbox_config = await h.sandbox()
        await h.image(BUSYBOX_NO_COMMAND)
        config = h.container_config(
            "nocommand", image=BUSYBOX_NO_COMMAND, sandbox_config=sandbox_config
        )
        with pytest.raises((Invalid, BadRequest)):
            await backend.runtime.create_container(sandbox_id, config, sandbox_config)
        listed = await backend.runtime.list_containers({"pod_sandbox_id": sandbox_id})
        assert not list(listed), f"a failed create left {ids(listed)}"

    @runtime_test
    async def test_start_of_missing_executable_is_start_error(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """ "A command that cannot be executed raises and leaves the container exited with
        reason ``StartError``"."""
        require(backend, "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "missing", ["/no/such/binary"], start=False)
        with pytest.raises(KcoreError):
            await backend.runtime.start_container(container_id)
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["reason"] == "StartError", brief(status)
        assert status["exit_code"] != 0, brief(status)

    @runtime_test
    async def test_large_environment_arrives_whole_and_sandbox_stays_ready(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """A container with 1 MB of environment (ten variables of 100 000 bytes, each below
        the kernel's 128 KiB limit per string; kubelet's service links alone can make
        environments this large) gets every variable whole; its sandbox stays READY
        throughout and takes the next container."""
        require(backend, "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        await h.image()
        size, count = 100_000, 10
        script = " && ".join(f"test ${{#KCORE_BIG_{n}}} -eq {size}" for n in range(count))
        config = h.container_config(
            "bigenv", ["sh", "-c", script + " || exit 3"], sandbox_config=sandbox[1]
        )
        config["envs"] += [
            {"key": f"KCORE_BIG_{n}", "value": chr(ord("a") + n) * size} for n in range(count)
        ]
        container_id = await backend.runtime.create_container(sandbox[0], config, sandbox[1])
        await backend.runtime.start_container(container_id)
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] == 0, f"the environment did not arrive whole: {brief(status)}"
        sandbox_status = await backend.runtime.pod_sandbox_status(sandbox[0])
        assert sandbox_status["state"] == SANDBOX_READY, "the sandbox is no longer READY"
        ready = await backend.runtime.list_pod_sandbox({"id": sandbox[0], "state": SANDBOX_READY})
        assert ids(ready) == {sandbox[0]}
        after = await h.container(sandbox, "after", SLEEP_FOREVER)
        await h.wait_state(after, CONTAINER_RUNNING)

    @runtime_test
    async def test_update_resources_of_running_container(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """``update_container_resources`` applies to a running container, which keeps
        running."""
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "updated", SLEEP_FOREVER)
        await backend.runtime.update_container_resources(
            container_id, {"cpu_shares": 512, "memory_limit_in_bytes": 256 * 2**20}
        )
        status = await backend.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_RUNNING, brief(status)

    # -- exec --------------------------------------------------------------------------------

    @runtime_test
    async def test_exec_sync_returns_output_and_exit_code(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "Container should support execSync"; a non-zero exit is data."""
        require(backend, "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "exec", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        got = await backend.runtime.exec_sync(container_id, ["echo", "hello"], 10)
        assert tuple(got) == (b"hello\n", b"", 0)
        got = await backend.runtime.exec_sync(
            container_id, ["sh", "-c", "echo out; echo err >&2; exit 7"], 10
        )
        assert tuple(got) == (b"out\n", b"err\n", 7)

    @runtime_test
    async def test_exec_sync_timeout_kills_the_process(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "execSync with timeout": the call raises TemporaryError when the
        timeout is over, and the process is gone afterwards."""
        require(backend, "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "timeout", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        started = time.monotonic()
        with pytest.raises(TemporaryError):
            await backend.runtime.exec_sync(container_id, ["sleep", "10"], 1)
        took = time.monotonic() - started
        assert took < 3.5, f"exec_sync with timeout 1 returned after {took:.1f} s"

        async def gone() -> bool:
            listing = await h.exec_ok(container_id, ["ps"])
            return not any(line.rstrip().endswith("sleep 10") for line in listing.splitlines())

        await h.until(gone, "the timed-out 'sleep 10' to be gone", timeout=3)

    @runtime_test
    async def test_exec_streams_stdin_and_output(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "should support exec": without a tty, stdin reaches the process and its
        output comes back; the session ends with the exit code."""
        require(backend, "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "stream", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        session = await backend.runtime.exec(container_id, ["cat"], stdin=True)
        try:
            assert not session.tty
            await session.write_stdin(b"hello from stdin\n")
            await session.close_stdin()
            out = await read_session(session)
            assert out == {"stdout": b"hello from stdin\n", "stderr": b""}
            assert await asyncio.wait_for(session.wait(), WAIT_TIMEOUT) == 0
        finally:
            await session.close()

    @runtime_test
    async def test_exec_with_tty_runs_on_a_terminal(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "should support exec with tty=true and stdin=true": the process has a
        terminal and its output comes back as stdout."""
        require(backend, "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "tty", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        session = await backend.runtime.exec(
            container_id, ["sh", "-c", "tty; exit 4"], tty=True, stdin=True
        )
        try:
            assert session.tty
            out = await read_session(session)
            assert b"/dev/pts/" in out["stdout"], f"tty printed {out}"
            assert out["stderr"] == b"", "with a tty all output is stdout"
            assert await asyncio.wait_for(session.wait(), WAIT_TIMEOUT) == 4
        finally:
            await session.close()

    # -- logs --------------------------------------------------------------------------------

    @runtime_test
    async def test_output_is_logged_in_cri_format(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "should support log": stdout and stderr lines land in
        ``<log_directory>/<log_path>`` as ``<RFC3339Nano> <stream> F <line>``."""
        require(backend, "logs", "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(
            sandbox, "logger", ["sh", "-c", "echo out; echo err >&2; echo two words"]
        )
        await h.wait_state(container_id, CONTAINER_EXITED)
        path = h.log_file(sandbox[1], "logger")
        lines = await h.until(lambda: log_lines(path, 3), f"three lines in {path}")
        assert sorted(lines) == [("stderr", "err"), ("stdout", "out"), ("stdout", "two words")]
        assert [line for line in lines if line[0] == "stdout"] == [
            ("stdout", "out"),
            ("stdout", "two words"),
        ], "stdout lines out of order"

    @runtime_test
    async def test_reopen_log_after_rotation(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "should support reopening container log": after the caller renames the
        file, further output lands in a new file at the same path; the renamed file keeps
        the older lines."""
        require(backend, "logs", "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        script = "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.05; done"
        container_id = await h.container(sandbox, "rotated", ["sh", "-c", script])
        path = h.log_file(sandbox[1], "rotated")
        await h.until(lambda: log_lines(path), f"a line in {path}")
        rotated = path.with_name("0.log.1")
        path.rename(rotated)
        await backend.runtime.reopen_container_log(container_id)
        new = await h.until(lambda: log_lines(path), f"a line in the reopened {path}")
        old = parse_log(rotated)
        numbers_old = [int(text[4:]) for _, text in old]
        numbers_new = [int(text[4:]) for _, text in new]
        assert numbers_old == list(range(len(numbers_old))), "the rotated file lost lines"
        assert min(numbers_new) > max(numbers_old), (
            f"lines {numbers_new} in the new file, {numbers_old} in the rotated one"
        )

    @runtime_test
    async def test_reopen_log_without_its_directory_raises_and_creates_nothing(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """``reopen_container_log``: "Raises, creating nothing, when that is impossible":
        here the log's directory has been removed."""
        require(backend, "logs", "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(
            sandbox, "orphaned", ["sh", "-c", "echo x; exec sleep 3600"]
        )
        path = h.log_file(sandbox[1], "orphaned")
        await h.until(lambda: asyncio.to_thread(path.exists), f"{path} to exist")
        path.rename(h.tmp / f"moved-{uuid.uuid4().hex[:8]}.log")
        shutil.rmtree(path.parent)
        with pytest.raises(KcoreError):
            await backend.runtime.reopen_container_log(container_id)
        assert not path.parent.exists(), "a failed reopen created the log directory"
        assert not path.exists(), "a failed reopen created the log file"

    # -- images ------------------------------------------------------------------------------

    @runtime_test
    async def test_import_lists_the_image_and_status_finds_it(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "listImage should get exactly N more images" and "image status by any
        reference": import adds one record; status by tag and by id is that record."""
        images = backend.images
        before = list(await images.list_images())
        records = list(await images.import_image(runtime_env.images[BUSYBOX]))
        assert [BUSYBOX in r["repo_tags"] for r in records] == [True], (
            f"import returned {[r.get('repo_tags') for r in records]}"
        )
        record = records[0]
        after = list(await images.list_images())
        assert len(after) == len(before) + 1, f"{len(before)} images before, {len(after)} after"
        assert record["id"] in ids(after)
        by_tag = await images.image_status(BUSYBOX)
        by_id = await images.image_status(record["id"])
        assert by_tag is not None and by_id is not None
        assert by_tag == by_id, "status by tag and by id differ"
        assert by_tag["id"] == record["id"]
        assert BUSYBOX in by_tag["repo_tags"]
        assert isinstance(by_tag["size"], int) and by_tag["size"] > 0, f"size {by_tag['size']!r}"

    @runtime_test
    async def test_status_of_absent_image_is_none(self, backend: Any) -> None:
        """ImageStatus: "absent image → nil, not error"."""
        absent = f"kcore.test/absent-{uuid.uuid4().hex[:8]}:latest"
        assert await backend.images.image_status(absent) is None
        assert await backend.images.image_status("sha256:" + "0" * 64) is None

    @runtime_test
    async def test_remove_image_then_absent_and_idempotent(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "public image ... remove": gone from status and list; removing it
        again, or an image never present, succeeds."""
        h = Harness(backend, runtime_env)
        record = await h.image()
        before = list(await backend.images.list_images())
        await backend.images.remove_image(BUSYBOX)
        assert await backend.images.image_status(BUSYBOX) is None
        assert await backend.images.image_status(record["id"]) is None
        after = list(await backend.images.list_images())
        assert len(after) == len(before) - 1 and record["id"] not in ids(after)
        await backend.images.remove_image(BUSYBOX)
        await backend.images.remove_image(f"kcore.test/absent-{uuid.uuid4().hex[:8]}:latest")

    @runtime_test
    async def test_pull_of_present_image_returns_its_id(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """PullImage returns ``image_ref`` = ``Image.id``: for an image already present,
        without fetching it again."""
        h = Harness(backend, runtime_env)
        record = await h.image()
        assert await backend.images.pull_image(BUSYBOX) == record["id"]

    @runtime_test
    async def test_image_fs_info_reports_usage(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """ImageFsInfo: where the images are and how much they use."""
        h = Harness(backend, runtime_env)
        await h.image()
        infos = list(await backend.images.image_fs_info())
        assert infos, "image_fs_info() is empty"
        for info in infos:
            assert info["fs_id"]["mountpoint"], info
            assert info["used_bytes"] > 0, info
            assert info["inodes_used"] > 0, info
            assert isinstance(info["timestamp"], int), info

    # -- several containers in one sandbox ----------------------------------------------------

    @runtime_test
    async def test_containers_of_a_sandbox_share_the_network(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "multiple containers in a pod ... share the network": one container
        serves HTTP on the pod's loopback, another fetches from it."""
        require(backend, "processes", "isolation", "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        port = random.randint(20000, 40000)
        serve = (
            "mkdir -p /www && echo hello-from-a > /www/index.html && "
            f"exec httpd -f -p 127.0.0.1:{port} -h /www"
        )
        server = await h.container(sandbox, "server", ["sh", "-c", serve])
        client = await h.container(sandbox, "client", SLEEP_FOREVER)
        await h.wait_state(server, CONTAINER_RUNNING)
        await h.wait_state(client, CONTAINER_RUNNING)

        async def fetch() -> bytes:
            stdout, _, code = await backend.runtime.exec_sync(
                client, ["wget", "-q", "-O-", f"http://127.0.0.1:{port}/index.html"], 5
            )
            return stdout if code == 0 else b""

        assert await h.until(fetch, "the client to fetch from the server") == b"hello-from-a\n"

    # -- isolation ---------------------------------------------------------------------------

    @runtime_test
    async def test_container_sees_only_its_own_processes(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """Own PID namespace: PID 1 is the container's command and no other process of
        the host is visible."""
        require(backend, "isolation", "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "pid", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        cmdline = await h.exec_ok(container_id, ["cat", "/proc/1/cmdline"])
        assert cmdline == "sleep\x003600\x00", f"/proc/1/cmdline is {cmdline!r}"
        listing = await h.exec_ok(container_id, ["ps", "-o", "pid,args"])
        processes = [line.split(None, 1) for line in listing.splitlines()[1:] if line.strip()]
        commands = {int(pid): args for pid, args in processes}
        assert commands.get(1) == "sleep 3600", f"ps shows {commands}"
        strangers = {pid: a for pid, a in commands.items() if pid != 1 and not a.startswith("ps")}
        assert not strangers, f"the container sees processes that are not its own: {strangers}"

    @runtime_test
    async def test_hostname_follows_the_sandbox(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "runtime should support set hostname": ``hostname`` and
        ``/etc/hostname`` say the sandbox config's hostname."""
        require(backend, "isolation", "exec")
        h = Harness(backend, runtime_env)
        hostname = f"kc-{uuid.uuid4().hex[:10]}"
        sandbox = await h.sandbox(h.sandbox_config(hostname=hostname))
        container_id = await h.container(sandbox, "host", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        assert (await h.exec_ok(container_id, ["hostname"])).strip() == hostname
        assert (await h.exec_ok(container_id, ["cat", "/etc/hostname"])).strip() == hostname

    @runtime_test
    async def test_resolv_conf_follows_dns_config(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "runtime should support DNS config": servers, searches and options
        reach ``/etc/resolv.conf``."""
        require(backend, "isolation", "exec")
        h = Harness(backend, runtime_env)
        dns = {"servers": ["10.10.10.10"], "searches": ["google.com"], "options": ["ndots:8"]}
        sandbox = await h.sandbox(h.sandbox_config(dns_config=dns))
        container_id = await h.container(sandbox, "dns", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        resolv = await h.exec_ok(container_id, ["cat", "/etc/resolv.conf"])
        for expected in ("nameserver 10.10.10.10", "search google.com", "options ndots:8"):
            assert expected in resolv.splitlines(), f"no {expected!r} in {resolv!r}"

    @runtime_test
    async def test_container_does_not_see_host_mounts(
        self,
        runtime_factory: Any,
        kcore_settings_factory: Any,
        runtime_env: SuiteEnv,
    ) -> None:
        """Own mount namespace and root: ``/proc/mounts`` inside lists no mount point of
        the host, such as the container's own root under the runtime's data directory."""
        settings = kcore_settings_factory()
        backend = await runtime_factory(settings)
        add_finalizer(lambda: _close_backend(backend))
        require(backend, "isolation", "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "mounts", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        mounts = await h.exec_ok(container_id, ["cat", "/proc/mounts"])
        points = [line.split()[1] for line in mounts.splitlines() if line.strip()]
        data_dir = str(Path(settings.data_dir).resolve())
        leaked = [p for p in points if p.startswith(data_dir) or p.startswith(str(h.tmp))]
        assert not leaked, f"host mount points visible in the container: {leaked}"
        assert "/" in points and "/proc" in points, f"mount points inside: {points}"

    @runtime_test
    async def test_masked_and_read_only_proc_paths(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """The OCI defaults: ``/proc/kcore`` is masked (reads nothing) and ``/proc/sys`` is
        read-only."""
        require(backend, "isolation", "exec")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "masked", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        count = await h.exec_ok(
            container_id, ["sh", "-c", "head -c 16 /proc/kcore 2>/dev/null | wc -c"]
        )
        assert count.strip() == "0", f"/proc/kcore is readable ({count.strip()} bytes)"
        stdout, stderr, code = await backend.runtime.exec_sync(
            container_id, ["sh", "-c", "echo kcore > /proc/sys/kernel/domainname"], 10
        )
        assert code != 0, f"writing under /proc/sys succeeded: {stdout!r} {stderr!r}"

    # -- mounts ------------------------------------------------------------------------------

    def _bind(self, host_path: Path, container_path: str, **options: Any) -> dict[str, Any]:
        return {
            "container_path": container_path,
            "host_path": str(host_path),
            "readonly": False,
            "propagation": "PROPAGATION_PRIVATE",
            **options,
        }

    @runtime_test
    async def test_read_write_bind_mount(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "should support hostPath volume": what the container writes to a
        read-write bind mount appears on the host."""
        require(backend, "mounts", "processes")
        h = Harness(backend, runtime_env)
        host_dir = h.tmp / "rw"
        host_dir.mkdir()
        (host_dir / "in").write_text("from-host\n")
        sandbox = await h.sandbox()
        script = "cat /data/in > /data/out && echo from-container >> /data/out"
        container_id = await h.container(
            sandbox, "rw", ["sh", "-c", script], mounts=[self._bind(host_dir, "/data")]
        )
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] == 0, brief(status)
        assert (host_dir / "out").read_text() == "from-host\nfrom-container\n"

    @runtime_test
    async def test_read_only_bind_mount(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """critest "should support read-only mounts": writing fails inside; reading works."""
        require(backend, "mounts", "processes")
        h = Harness(backend, runtime_env)
        host_dir = h.tmp / "ro"
        host_dir.mkdir()
        (host_dir / "in").write_text("x\n")
        sandbox = await h.sandbox()
        script = "cat /data/in || exit 9; echo y > /data/out && exit 0; exit 5"
        container_id = await h.container(
            sandbox,
            "ro",
            ["sh", "-c", script],
            mounts=[self._bind(host_dir, "/data", readonly=True)],
        )
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] == 5, f"expected the write to fail (5): {brief(status)}"
        assert not (host_dir / "out").exists()

    @runtime_test
    async def test_bind_mount_of_a_file(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """A host file bind-mounted onto a file path in the container."""
        require(backend, "mounts", "processes")
        h = Harness(backend, runtime_env)
        host_file = h.tmp / "config.txt"
        host_file.write_text("file-content\n")
        sandbox = await h.sandbox()
        script = 'test "$(cat /etc/kcore-config.txt)" = file-content'
        container_id = await h.container(
            sandbox,
            "file",
            ["sh", "-c", script],
            mounts=[self._bind(host_file, "/etc/kcore-config.txt", readonly=True)],
        )
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] == 0, brief(status)

    @runtime_test
    async def test_missing_host_path_is_refused(self, backend: Any, runtime_env: SuiteEnv) -> None:
        """CRI: a mount's ``host_path`` that does not exist is an error; no container is
        left."""
        require(backend, "mounts")
        h = Harness(backend, runtime_env)
        sandbox_id, sandbox_config = await h.sandbox()
        await h.image()
        config = h.container_config(
            "missing",
            SLEEP_FOREVER,
            mounts=[self._bind(h.tmp / "does-not-exist", "/data")],
            sandbox_config=sandbox_config,
        )
        with pytest.raises((Invalid, BadRequest, NotFound)):
            await backend.runtime.create_container(sandbox_id, config, sandbox_config)
        listed = await backend.runtime.list_containers({"pod_sandbox_id": sandbox_id})
        assert not list(listed), f"a failed create left {ids(listed)}"

    @pytest.mark.parametrize(
        ("propagation", "visible"),
        [("PROPAGATION_HOST_TO_CONTAINER", True), ("PROPAGATION_PRIVATE", False)],
    )
    @runtime_test
    async def test_mount_propagation(
        self, backend: Any, runtime_env: SuiteEnv, propagation: str, visible: bool
    ) -> None:
        """critest "mount propagation": a mount made on the host under a shared
        bind-mounted directory after the container started reaches the container with
        ``HOST_TO_CONTAINER`` (rslave), and not with ``PRIVATE``."""
        require(backend, "mounts", "processes")
        h = Harness(backend, runtime_env)
        shared = h.tmp / "shared"
        shared.mkdir()
        await run_host("mount", "--bind", str(shared), str(shared))
        add_finalizer(lambda: run_host("umount", "-l", str(shared)))
        await run_host("mount", "--make-shared", str(shared))
        sandbox = await h.sandbox()
        script = (
            "n=0; while [ ! -f /mnt/shared/go ]; do n=$((n+1)); "
            "[ $n -gt 400 ] && exit 7; sleep 0.05; done; "
            "test -f /mnt/shared/sub/marker"
        )
        container_id = await h.container(
            sandbox,
            "propagation",
            ["sh", "-c", script],
            mounts=[self._bind(shared, "/mnt/shared", propagation=propagation)],
        )
        await h.wait_state(container_id, CONTAINER_RUNNING)
        (shared / "sub").mkdir()
        await run_host(
            "mount", "-t", "tmpfs", "-o", "size=1m", "kcore-conformance", str(shared / "sub")
        )
        (shared / "sub" / "marker").write_text("mounted\n")
        (shared / "go").write_text("go\n")
        status = await h.wait_state(container_id, CONTAINER_EXITED)
        assert status["exit_code"] != 7, (
            f"the container never saw the host's go file: {brief(status)}"
        )
        seen = status["exit_code"] == 0
        assert seen == visible, (
            f"with {propagation} the host's new mount is "
            f"{'visible' if seen else 'invisible'} in the container"
        )

    # -- OOM ---------------------------------------------------------------------------------

    @runtime_test
    async def test_memory_limit_kill_is_oom_killed(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "should terminate with exitCode 137 and reason OOMKilled": a 15 MiB
        limit and a process that keeps growing."""
        require(backend, "oom", "processes")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(
            sandbox,
            "oom",
            ["tail", "/dev/zero"],
            resources={"memory_limit_in_bytes": 15 * 2**20},
        )
        status = await h.wait_state(container_id, CONTAINER_EXITED, timeout=30)
        assert status["reason"] == "OOMKilled", brief(status)
        assert status["exit_code"] == 137, brief(status)

    # -- stats -------------------------------------------------------------------------------

    @runtime_test
    async def test_container_stats_of_running_container(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "should support stats": CPU and memory of a running container."""
        require(backend, "stats")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "stats", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)

        async def stats() -> Mapping[str, Any] | None:
            s = await backend.runtime.container_stats(container_id)
            return s if s["memory"]["working_set_bytes"] > 0 else None

        s = await h.until(stats, "memory.working_set_bytes > 0")
        assert s["attributes"]["id"] == container_id
        assert s["attributes"]["metadata"] == {"name": "stats", "attempt": 0}
        assert s["cpu"]["usage_core_nano_seconds"] >= 0
        assert isinstance(s["cpu"]["timestamp"], int) and s["cpu"]["timestamp"] > 0
        listed = await backend.runtime.list_container_stats({"id": container_id})
        assert [x["attributes"]["id"] for x in listed] == [container_id]

    @runtime_test
    async def test_pod_sandbox_stats_list_its_containers(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """critest "should support sandbox stats": the sandbox's stats carry its
        containers'."""
        require(backend, "stats")
        h = Harness(backend, runtime_env)
        sandbox = await h.sandbox()
        container_id = await h.container(sandbox, "stats", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)
        s = await backend.runtime.pod_sandbox_stats(sandbox[0])
        assert s["attributes"]["id"] == sandbox[0]
        contained = [c["attributes"]["id"] for c in s["linux"]["containers"]]
        assert contained == [container_id], f"sandbox stats list {contained}"

    # -- events ------------------------------------------------------------------------------

    @runtime_test
    async def test_container_events_follow_the_lifecycle(
        self, backend: Any, runtime_env: SuiteEnv
    ) -> None:
        """GetContainerEvents: CREATED, STARTED, STOPPED, DELETED for a container, in that
        order, with the container's sandbox and a time in ns; every iterator gets them."""
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        sandbox = await h.sandbox()
        await h.image()
        streams = [rt.container_events(), rt.container_events()]
        for stream in streams:
            add_finalizer(lambda s=stream: close_iterator(s))
        before = time.time_ns()
        container_id = await h.container(sandbox, "events", SLEEP_FOREVER)
        await rt.stop_container(container_id, 0)
        await rt.remove_container(container_id)
        after = time.time_ns()
        expected = [
            CONTAINER_CREATED_EVENT,
            CONTAINER_STARTED_EVENT,
            CONTAINER_STOPPED_EVENT,
            CONTAINER_DELETED_EVENT,
        ]
        for n, stream in enumerate(streams):
            events = await _events_until_deleted(stream, container_id)
            got = [e["container_event_type"] for e in events]
            assert got == expected, f"iterator {n} saw {got}"
            for e in events:
                assert e["pod_sandbox_id"] == sandbox[0], e
                assert_ns_timestamp(e["created_at"], "an event's created_at", before, after)

    # -- crashes -----------------------------------------------------------------------------

    @pytest.fixture
    def crash_sandbox(self) -> Callable[[Any, str], Awaitable[None]] | None:
        """Fault injection a runtime's test module may provide by overriding this fixture:
        ``await crash_sandbox(backend, sandbox_id)`` kills the sandbox's processes behind
        the runtime's back, its infra process and with it its containers, as a crash or the
        kernel's OOM killer would, and returns once they are dead. It may let an unrelated
        process take a pid that was freed, as happens on a busy node. ``None`` (this
        default): the crash checks skip."""
        return None

    @runtime_test
    async def test_crashed_sandbox_is_not_ready_and_its_containers_ended(
        self,
        backend: Any,
        runtime_env: SuiteEnv,
        crash_sandbox: Callable[[Any, str], Awaitable[None]] | None,
    ) -> None:
        """A sandbox whose processes died behind the runtime's back is NOTREADY, in its
        status and in the lists, and names neither a network namespace nor a pid (a dead
        process's may be another's by now); its container no longer runs (EXITED with a
        non-zero code, or UNKNOWN, as kubelet's ``ContainerStatusUnknown``); a created one
        cannot be started any more, and that is a permanent refusal (retrying cannot
        help), not a TemporaryError. Stop and remove still succeed and take its
        containers; a sandbox next to it is untouched (critest's idempotence, and
        kubelet's recovery: it stops and removes the dead sandbox and runs a new one)."""
        require(backend, "processes")
        if crash_sandbox is None:
            pytest.skip("runtime lacks capability crash injection (no crash_sandbox fixture)")
        h = Harness(backend, runtime_env)
        rt = backend.runtime
        run = uuid.uuid4().hex[:12]
        crashed = await h.sandbox(h.sandbox_config(labels={"run": run, "pod": "crashed"}))
        healthy = await h.sandbox(h.sandbox_config(labels={"run": run, "pod": "healthy"}))
        running = await h.container(crashed, "running", SLEEP_FOREVER)
        created = await h.container(crashed, "created", SLEEP_FOREVER, start=False)
        bystander = await h.container(healthy, "bystander", SLEEP_FOREVER)
        await h.wait_state(running, CONTAINER_RUNNING)
        await h.wait_state(bystander, CONTAINER_RUNNING)

        await crash_sandbox(backend, crashed[0])

        async def not_ready() -> Mapping[str, Any] | None:
            status = await rt.pod_sandbox_status(crashed[0])
            return status if status["state"] == SANDBOX_NOTREADY else None

        status = await h.until(not_ready, "the crashed sandbox to be NOTREADY")
        assert status["metadata"] == crashed[1]["metadata"]
        assert not status.get("netns_path"), (
            f"a sandbox whose processes are gone names the network namespace "
            f"{status['netns_path']!r} (a dead process's, or one reusing its pid)"
        )
        assert not status.get("pid"), (
            f"a sandbox whose processes are gone names pid {status['pid']}"
        )
        selector = {"run": run}
        listed = {
            s["id"]: s["state"] for s in await rt.list_pod_sandbox({"label_selector": selector})
        }
        assert listed == {crashed[0]: SANDBOX_NOTREADY, healthy[0]: SANDBOX_READY}, listed
        ready = await rt.list_pod_sandbox({"state": SANDBOX_READY, "label_selector": selector})
        assert ids(ready) == {healthy[0]}, f"state READY listed {ids(ready)}"
        not_ready_listed = await rt.list_pod_sandbox(
            {"state": SANDBOX_NOTREADY, "label_selector": selector}
        )
        assert ids(not_ready_listed) == {crashed[0]}, (
            f"state NOTREADY listed {ids(not_ready_listed)}"
        )

        async def ended() -> Mapping[str, Any] | None:
            status = await rt.container_status(running)
            return status if status["state"] in (CONTAINER_EXITED, CONTAINER_UNKNOWN) else None

        status = await h.until(ended, "the crashed sandbox's container to be EXITED or UNKNOWN")
        if status["state"] == CONTAINER_EXITED:
            assert status["exit_code"] != 0, f"killed in a crash, yet {brief(status)}"
        still_running = ids(await rt.list_containers({"state": CONTAINER_RUNNING}))
        assert running not in still_running, "the crashed sandbox's container is listed RUNNING"
        assert bystander in still_running, "the other sandbox's container stopped running"
        status = await rt.container_status(created)
        assert status["state"] != CONTAINER_RUNNING, brief(status)
        with pytest.raises(KcoreError) as refused:
            await rt.start_container(created)
        assert not isinstance(refused.value, TemporaryError), (
            f"starting a container of a dead sandbox raised {refused.value!r}: a temporary "
            "error, yet retrying cannot help"
        )
        status = await rt.container_status(created)
        assert status["state"] != CONTAINER_RUNNING, f"after the refused start: {brief(status)}"

        await rt.stop_pod_sandbox(crashed[0])
        assert (await rt.pod_sandbox_status(crashed[0]))["state"] == SANDBOX_NOTREADY
        await rt.remove_pod_sandbox(crashed[0])
        assert crashed[0] not in ids(await rt.list_pod_sandbox())
        left = ids(await rt.list_containers()) & {running, created}
        assert not left, f"containers {left} are still listed after their sandbox was removed"
        for container_id in (running, created):
            with pytest.raises(NotFound):
                await rt.container_status(container_id)
        assert (await rt.pod_sandbox_status(healthy[0]))["state"] == SANDBOX_READY
        status = await rt.container_status(bystander)
        assert status["state"] == CONTAINER_RUNNING, f"the other sandbox's: {brief(status)}"

    # -- restart -----------------------------------------------------------------------------

    @runtime_test
    async def test_running_container_survives_runtime_restart(
        self,
        runtime_factory: Any,
        kcore_settings_factory: Any,
        runtime_env: SuiteEnv,
    ) -> None:
        """``survives_restart``: a container outlives the runtime object that started
        it; a new runtime on the same data directory reports it and stops it."""
        settings = kcore_settings_factory()
        current = {"backend": await runtime_factory(settings)}

        async def cleanup() -> None:
            backend = current["backend"]
            if backend is not None:
                with contextlib.suppress(NotFound):
                    for sandbox in await backend.runtime.list_pod_sandbox():
                        await backend.runtime.remove_pod_sandbox(sandbox["id"])
                await _close_backend(backend)

        add_finalizer(cleanup)
        require(current["backend"], "survives_restart")
        h = Harness(current["backend"], runtime_env)
        sandbox_id, sandbox_config = await h.sandbox(remove_after=False)
        container_id = await h.container((sandbox_id, sandbox_config), "survivor", SLEEP_FOREVER)
        await h.wait_state(container_id, CONTAINER_RUNNING)

        first, current["backend"] = current["backend"], None
        await _close_backend(first)
        current["backend"] = second = await runtime_factory(settings)
        status = await second.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_RUNNING, f"after the restart: {brief(status)}"
        assert (await second.runtime.pod_sandbox_status(sandbox_id))["state"] == SANDBOX_READY
        await second.runtime.stop_container(container_id, 0)
        status = await second.runtime.container_status(container_id)
        assert status["state"] == CONTAINER_EXITED, brief(status)
        assert status["exit_code"] == 137, brief(status)


async def _events_until_deleted(stream: Any, container_id: str) -> list[Mapping[str, Any]]:
    """The events of ``container_id`` up to its DELETED event."""
    events: list[Mapping[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_TIMEOUT
    while True:
        try:
            event = await asyncio.wait_for(anext(stream), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            got = [e["container_event_type"] for e in events]
            hint = (
                " (an iterator gets the events from the call of container_events() on, "
                "not only from its first read)"
                if not got
                else ""
            )
            raise AssertionError(
                f"no DELETED event within {WAIT_TIMEOUT:g} s; events so far: {got}{hint}"
            ) from None
        except StopAsyncIteration:
            raise AssertionError("the event stream ended before the DELETED event") from None
        if event["container_id"] != container_id:
            continue
        events.append(event)
        if event["container_event_type"] == CONTAINER_DELETED_EVENT:
            return events


async def _close_backend(backend: Any) -> None:
    if backend.close is not None:
        await backend.close()


__all__ = ["BUSYBOX", "BUSYBOX_NO_COMMAND", "Harness", "RuntimeConformance", "require"]
