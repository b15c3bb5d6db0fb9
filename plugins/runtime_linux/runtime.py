"""The runtime service of ``runtime_linux``: pod sandboxes and containers on this host.

State lives on disk under ``<data-dir>/runtime``:

* ``sandboxes/<id>/sandbox.json``: the CRI config, the monitor's pid and the sandbox state;
  ``monitor.sock``, the monitor's request socket; ``resolv.conf``, ``hosts``, ``hostname``.
* ``containers/<id>/container.json``: the CRI config and what creation resolved;
  ``state.json``, written by the pod monitor at each transition (created, running,
  exited with its exit code); ``init/`` the init layer, ``upper/`` and ``work/`` the
  copy-on-write layer, ``rootfs/`` the overlay mount point (mounted only inside the
  container's own mount namespace).

Because every answer is built from those files, a new runtime object (after a daemon
restart) reports the same containers, and the monitors keep them running meanwhile.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kcore.errors import (
    BadRequest,
    Conflict,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
    PermanentError,
    TemporaryError,
)
from kcore.images import ImageStore, normalize_reference
from kcore.interfaces import (
    CONTAINER_CREATED,
    CONTAINER_CREATED_EVENT,
    CONTAINER_DELETED_EVENT,
    CONTAINER_RUNNING,
    CONTAINER_STARTED_EVENT,
    CONTAINER_STOPPED_EVENT,
    CONTAINER_UNKNOWN,
    RUNTIME_CAPABILITIES,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
    ContainerEventStream,
)
from kcore.plugins.runtime_linux import _sys, monitor
from kcore.plugins.runtime_linux.cgroups import Cgroup, CgroupDriver
from kcore.registry import RegistryConfig
from kcore.registry import pull as registry_pull

EXEC_OUTPUT_LIMIT = 16 * 1024 * 1024
MONITOR_SCRIPT = Path(monitor.__file__).resolve()
VERSION = "0.1.0"


def now_ns() -> int:
    return time.time_ns()


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    monitor.write_json_atomic(str(path), dict(data))


def _process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks (tells a live process from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        # Dead. If it was our child (a runtime object in this process started it), reap it.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return None
    return int(fields[19])


def _labels_match(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _signal_number(name: str | int | None, default: int = signal.SIGTERM) -> int:
    if not name:
        return default
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    text = str(name).upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise Invalid(f"unknown stop signal {name!r}") from None


class _Sandbox:
    """What the runtime keeps of a sandbox between calls."""

    def __init__(self, sid: str, directory: Path, record: dict):
        self.id = sid
        self.dir = directory
        self.record = record
        self.dirfd: int | None = None
        self.watch: asyncio.Task | None = None

    @property
    def socket_path(self) -> str:
        if self.dirfd is None:
            self.dirfd = os.open(self.dir, os.O_PATH | os.O_DIRECTORY)
        return f"/proc/self/fd/{self.dirfd}/{monitor.SOCKET_NAME}"

    def monitor_alive(self) -> bool:
        pid = self.record.get("pid")
        return bool(pid) and _process_start(pid) == self.record.get("pid_start")

    @property
    def ready(self) -> bool:
        return self.record.get("state") == SANDBOX_READY and self.monitor_alive()

    def close(self) -> None:
        if self.dirfd is not None:
            os.close(self.dirfd)
            self.dirfd = None


class MonitorError(KcoreError):
    """The pod monitor refused a request."""

    code = 500
    reason = "InternalError"


class LinuxRuntime:
    """CRI's runtime service on Linux namespaces, cgroups and overlayfs."""

    capabilities = RUNTIME_CAPABILITIES

    def __init__(self, root: Path, images: ImageStore, cgroups: CgroupDriver):
        self.root = Path(root)
        self.images = images
        self.cgroups = cgroups
        (self.root / "sandboxes").mkdir(parents=True, exist_ok=True)
        (self.root / "containers").mkdir(parents=True, exist_ok=True)
        self._sandboxes: dict[str, _Sandbox] = {}
        self._meta_cache: dict[str, tuple[int, dict]] = {}
        self._listeners: set[asyncio.Queue] = set()
        self._zygote: subprocess.Popen | None = None
        self._zygote_channel: socket.socket | None = None
        self._zygote_lock = asyncio.Lock()
        for entry in (self.root / "sandboxes").iterdir():
            record = _read_json(entry / "sandbox.json")
            if record and record.get("pid"):
                self._sandboxes[entry.name] = _Sandbox(entry.name, entry, record)

    async def start(self) -> None:
        """Start the monitors' zygote; reconnect to the monitors of running sandboxes."""
        self._start_zygote()
        for sb in self._sandboxes.values():
            if sb.ready:
                self._watch(sb)

    async def close(self) -> None:
        for sb in self._sandboxes.values():
            if sb.watch is not None:
                sb.watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sb.watch
            sb.close()
        for queue in self._listeners:
            queue.put_nowait(None)
        # The runtime's cgroup root goes once no pod is left in it (rmdir of a cgroup with
        # children fails, so a restart with running pods keeps it).
        for path in self.cgroups.parent_paths().values():
            with contextlib.suppress(OSError):
                os.rmdir(path)
        if self._zygote_channel is not None:
            self._zygote_channel.close()
            self._zygote_channel = None
        if self._zygote is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._zygote.wait), 10)
            except TimeoutError:
                self._zygote.kill()
                await asyncio.to_thread(self._zygote.wait)
            self._zygote = None

    # -- talking to monitors ---------------------------------------------------------------

    async def _send(
        self, sb: _Sandbox, req: Mapping[str, Any], fds: Sequence[int] = ()
    ) -> socket.socket:
        """A new connection to the sandbox's monitor, with ``req`` (and ``fds``) sent."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sb.socket_path)
            data = (json.dumps(req) + "\n").encode()
            if fds:
                sock.sendmsg(
                    [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
            else:
                await loop.sock_sendall(sock, data)
        except OSError as exc:
            sock.close()
            raise TemporaryError(f"pod monitor of sandbox {sb.id} is not answering: {exc}") from exc
        return sock

    async def _connect(self, sb: _Sandbox, req: Mapping[str, Any], fds: Sequence[int] = ()):
        sock = await self._send(sb, req, fds)
        return await asyncio.open_unix_connection(sock=sock, limit=1 << 20)

    @staticmethod
    async def _first_reply(sock: socket.socket) -> tuple[dict, list[int], bytes]:
        """The monitor's first reply line with any descriptors attached to it, and the
        bytes that came after it."""
        loop = asyncio.get_running_loop()
        buf, fds = b"", []
        while b"\n" not in buf:
            ready = loop.create_future()
            loop.add_reader(sock.fileno(), lambda f=ready: f.done() or f.set_result(None))
            try:
                await asyncio.wait_for(ready, 60)
            finally:
                loop.remove_reader(sock.fileno())
            try:
                data, got, _flags, _addr = socket.recv_fds(sock, 65536, 4)
            except BlockingIOError:
                continue
            fds += got
            if not data:
                for fd in fds:
                    os.close(fd)
                raise TemporaryError("the pod monitor closed the connection")
            buf += data
        line, _, rest = buf.partition(b"\n")
        reply = json.loads(line)
        if not reply.get("ok", True):
            for fd in fds:
                os.close(fd)
            raise MonitorError(reply.get("error") or "the pod monitor refused the request")
        return reply, fds, rest

    @staticmethod
    async def _reply(reader: asyncio.StreamReader) -> dict:
        line = await reader.readline()
        if not line:
            raise TemporaryError("the pod monitor closed the connection")
        reply = json.loads(line)
        if not reply.get("ok", True):
            raise MonitorError(reply.get("error") or "the pod monitor refused the request")
        return reply

    async def _call(self, sb: _Sandbox, req: Mapping[str, Any], fds: Sequence[int] = ()) -> dict:
        reader, writer = await self._connect(sb, req, fds)
        try:
            return await self._reply(reader)
        finally:
            writer.close()

    def _watch(self, sb: _Sandbox) -> None:
        if sb.watch is None or sb.watch.done():
            sb.watch = asyncio.get_running_loop().create_task(self._watch_loop(sb))

    async def _watch_loop(self, sb: _Sandbox) -> None:
        """Turn the monitor's exit notices into CONTAINER_STOPPED events."""
        with contextlib.suppress(OSError, KcoreError, ValueError):
            reader, writer = await self._connect(sb, {"op": "subscribe"})
            try:
                await self._reply(reader)
                while line := await reader.readline():
                    event = json.loads(line)
                    if event.get("event") == "exited":
                        self._emit(event["id"], CONTAINER_STOPPED_EVENT, sb.id)
            finally:
                writer.close()

    def _emit(self, cid: str, kind: str, sid: str) -> None:
        event = {
            "container_id": cid,
            "container_event_type": kind,
            "created_at": now_ns(),
            "pod_sandbox_id": sid,
        }
        for queue in self._listeners:
            queue.put_nowait(event)

    def container_events(self) -> ContainerEventStream:
        return ContainerEventStream(self._listeners)

    # -- version and status --------------------------------------------------------------------

    async def version(self) -> Mapping[str, str]:
        return {
            "version": "0.1.0",
            "runtime_name": "kcore-runtime-linux",
            "runtime_version": VERSION,
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
                    "message": "pods get their own network namespace with loopback",
                },
            ],
            "cgroup_mode": self.cgroups.mode,
        }

    # -- sandboxes ---------------------------------------------------------------------------

    def _sandbox(self, sid: str) -> _Sandbox:
        sb = self._sandboxes.get(sid)
        if sb is None:
            raise NotFound(f'pod sandbox "{sid}" not found')
        return sb

    @staticmethod
    def _namespace_options(config: Mapping[str, Any]) -> dict[str, str]:
        linux = config.get("linux") or {}
        options = (linux.get("security_context") or {}).get("namespace_options") or {}
        return {
            "network": str(options.get("network") or "POD"),
            "pid": str(options.get("pid") or "CONTAINER"),
            "ipc": str(options.get("ipc") or "POD"),
        }

    async def run_pod_sandbox(self, config: Mapping[str, Any], runtime_handler: str = "") -> str:
        metadata = config.get("metadata") or {}
        if not metadata.get("name"):
            raise Invalid("pod sandbox config needs metadata.name")
        hostname = str(config.get("hostname") or metadata["name"])[:63]
        sid = secrets.token_hex(32)
        directory = self.root / "sandboxes" / sid
        directory.mkdir(mode=0o700)
        ns = self._namespace_options(config)
        cgroup_name = f"pod-{sid}"
        try:
            self._write_etc_files(directory, config, hostname, ns)
            if config.get("log_directory"):
                Path(config["log_directory"]).mkdir(parents=True, exist_ok=True)
            self.cgroups.create(cgroup_name)
            record = {
                "id": sid,
                "config": dict(config),
                "runtime_handler": runtime_handler,
                "created_at": now_ns(),
                "state": SANDBOX_NOTREADY,
                "cgroup": cgroup_name,
                "monitor": {
                    **ns,
                    "hostname": hostname,
                    "sysctls": dict((config.get("linux") or {}).get("sysctls") or {}),
                },
            }
            _write_json(directory / "sandbox.json", record)
            pid = await self._spawn_monitor(directory)
            record.update(pid=pid, pid_start=_process_start(pid), state=SANDBOX_READY)
            _write_json(directory / "sandbox.json", record)
        except BaseException:
            with contextlib.suppress(Exception):
                self.cgroups.remove_tree(cgroup_name)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        sb = _Sandbox(sid, directory, record)
        self._sandboxes[sid] = sb
        self._watch(sb)
        return sid

    @staticmethod
    def _write_etc_files(
        directory: Path, config: Mapping[str, Any], hostname: str, ns: Mapping[str, str]
    ) -> None:
        dns = config.get("dns_config") or {}
        if dns.get("servers") or dns.get("searches") or dns.get("options"):
            lines = [f"nameserver {s}" for s in dns.get("servers") or ()]
            if dns.get("searches"):
                lines.append("search " + " ".join(dns["searches"]))
            if dns.get("options"):
                lines.append("options " + " ".join(dns["options"]))
            resolv = "\n".join(lines) + "\n"
        else:
            try:
                resolv = Path("/etc/resolv.conf").read_text()
            except OSError:
                resolv = ""
        (directory / "resolv.conf").write_text(resolv)
        if ns["network"] == "NODE":
            hostname = socket.gethostname()
            try:
                hosts = Path("/etc/hosts").read_text()
            except OSError:
                hosts = "127.0.0.1\tlocalhost\n"
        else:
            hosts = (
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
            )
        (directory / "hosts").write_text(hosts)
        (directory / "hostname").write_text(hostname + "\n")

    def _start_zygote(self) -> None:
        """Start the zygote that forks pod monitors (``monitor.zygote``), once per runtime
        object; it ends when the runtime closes its channel, or dies."""
        if self._zygote is not None and self._zygote.poll() is None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = open(self.root / "zygote.log", "ab")
        try:
            self._zygote = subprocess.Popen(
                [sys.executable, "-I", "-S", str(MONITOR_SCRIPT), "--zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd=self.root,
            )
        finally:
            theirs.close()
            log.close()
        ours.setblocking(False)
        if self._zygote_channel is not None:
            self._zygote_channel.close()
        self._zygote_channel = ours

    async def _spawn_monitor(self, directory: Path) -> int:
        """Have the zygote fork the monitor of ``directory``; its answer comes on a socket
        of this request's own (passed with the request), so that monitors start
        concurrently: only handing the request over is serialized."""
        loop = asyncio.get_running_loop()
        reply = b""
        for _attempt in range(2):
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            mine.setblocking(False)
            try:
                async with self._zygote_lock:
                    self._start_zygote()
                    sent = await self._send_to_zygote(
                        json.dumps({"sandbox_dir": str(directory)}).encode(), theirs
                    )
                theirs.close()
                if sent:
                    try:
                        reply = await asyncio.wait_for(loop.sock_recv(mine, 65536), 60)
                    except (OSError, TimeoutError):
                        reply = b""
            finally:
                theirs.close()
                mine.close()
            if reply:
                break
            # The zygote is gone (its end of our socket closed unanswered): start another.
            async with self._zygote_lock:
                if self._zygote is not None:
                    with contextlib.suppress(ProcessLookupError):
                        self._zygote.kill()
                    await asyncio.to_thread(self._zygote.wait)
                    self._zygote = None
        line = reply.decode(errors="replace")
        if not line.startswith("ready "):
            detail = monitor.Monitor.error_text(line, "the pod monitor did not start")
            raise PermanentError(f"pod sandbox set-up failed: {detail}")
        return int(line.split()[1])

    async def _send_to_zygote(self, data: bytes, reply_socket: socket.socket) -> bool:
        channel = self._zygote_channel
        assert channel is not None
        fds = array.array("i", [reply_socket.fileno()])
        for _ in range(200):
            try:
                channel.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                return True
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError:
                return False
        return False

    async def stop_pod_sandbox(self, pod_sandbox_id: str) -> None:
        sb = self._sandboxes.get(pod_sandbox_id)
        if sb is None:
            return
        if sb.monitor_alive():
            with contextlib.suppress(KcoreError, OSError):
                await self._call(sb, {"op": "shutdown"})
            await self._await_monitor_exit(sb)
        if sb.watch is not None:
            sb.watch.cancel()
        sb.record["state"] = SANDBOX_NOTREADY
        _write_json(sb.dir / "sandbox.json", sb.record)

    async def _await_monitor_exit(self, sb: _Sandbox, timeout: float = 15.0) -> None:
        pid = sb.record["pid"]
        deadline = time.monotonic() + timeout
        killed = False
        while sb.monitor_alive():
            if time.monotonic() > deadline and not killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.005)

    async def remove_pod_sandbox(self, pod_sandbox_id: str) -> None:
        sb = self._sandboxes.get(pod_sandbox_id)
        if sb is None:
            return
        await self.stop_pod_sandbox(pod_sandbox_id)
        for cid, meta in list(self._container_index().items()):
            if meta.get("pod_sandbox_id") == pod_sandbox_id:
                await self._remove_container_files(cid, meta)
        with contextlib.suppress(Exception):
            self.cgroups.remove_tree(sb.record.get("cgroup") or f"pod-{sb.id}")
        sb.close()
        self._sandboxes.pop(pod_sandbox_id, None)
        shutil.rmtree(sb.dir, ignore_errors=True)

    def _sandbox_status(self, sb: _Sandbox) -> dict:
        config = sb.record.get("config") or {}
        ns = sb.record.get("monitor") or {}
        pid = sb.record.get("pid")
        ready = sb.ready
        return {
            "id": sb.id,
            "metadata": dict(config.get("metadata") or {}),
            "state": SANDBOX_READY if ready else SANDBOX_NOTREADY,
            "created_at": sb.record.get("created_at", 0),
            "network": {"ip": "", "additional_ips": []},
            "linux": {
                "namespaces": {
                    "options": {k: ns.get(k) for k in ("network", "pid", "ipc")},
                }
            },
            "labels": dict(config.get("labels") or {}),
            "annotations": dict(config.get("annotations") or {}),
            "runtime_handler": sb.record.get("runtime_handler", ""),
            "netns_path": (
                f"/proc/{pid}/ns/net" if ready and ns.get("network") != "NODE" else None
            ),
            "pid": pid if ready else 0,
        }

    async def pod_sandbox_status(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        return self._sandbox_status(self._sandbox(pod_sandbox_id))

    async def list_pod_sandbox(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        filter = filter or {}
        out = []
        for sb in self._sandboxes.values():
            status = self._sandbox_status(sb)
            if filter.get("id") and not sb.id.startswith(filter["id"]):
                continue
            if filter.get("state") and status["state"] != filter["state"]:
                continue
            if not _labels_match(status["labels"], filter.get("label_selector")):
                continue
            out.append(status)
        return out

    # -- containers ----------------------------------------------------------------------------

    def _container_dir(self, cid: str) -> Path:
        if not cid or "/" in cid or cid in (".", ".."):
            raise NotFound(f'container "{cid}" not found')
        return self.root / "containers" / cid

    def _container_meta(self, cid: str) -> dict:
        meta = _read_json(self._container_dir(cid) / "container.json")
        if meta is None:
            raise NotFound(f'container "{cid}" not found')
        return meta

    def _container_index(self) -> dict[str, dict]:
        """Every container's ``container.json`` (written once, at creation), read from disk
        only when it is new or changed. Callers must not change what they get."""
        out = {}
        cache = self._meta_cache
        with os.scandir(self.root / "containers") as entries:
            for entry in entries:
                path = os.path.join(entry.path, "container.json")
                try:
                    stamp = os.stat(path).st_mtime_ns
                except OSError:
                    continue
                cached = cache.get(entry.name)
                if cached is None or cached[0] != stamp:
                    meta = _read_json(Path(path))
                    if meta is None:
                        continue
                    cached = cache[entry.name] = (stamp, meta)
                out[entry.name] = cached[1]
        for gone in set(cache) - set(out):
            del cache[gone]
        return out

    def _resolve_process(self, config: Mapping[str, Any], image: Mapping[str, Any]) -> list[str]:
        image_config = image.get("config") or {}
        command = list(config.get("command") or ())
        args = list(config.get("args") or ())
        if not command:
            command = list(image_config.get("Entrypoint") or ())
            if not args:
                args = list(image_config.get("Cmd") or ())
        argv = command + args
        if not argv:
            raise Invalid(
                f"no command specified: neither the container config nor image "
                f"{image.get('repo_tags', [image.get('id')])[:1]} gives one"
            )
        return [str(a) for a in argv]

    @staticmethod
    def _resolve_env(config: Mapping[str, Any], image: Mapping[str, Any]) -> list[str]:
        env: dict[str, str] = {}
        for item in (image.get("config") or {}).get("Env") or ():
            key, _, value = str(item).partition("=")
            env[key] = value
        for item in config.get("envs") or ():
            env[str(item.get("key", ""))] = str(item.get("value", ""))
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return [f"{k}={v}" for k, v in env.items() if k]

    @staticmethod
    def _etc_entries(layers: list[Path], filename: str) -> list[list[str]]:
        """The colon-separated entries of the image's ``/etc/<filename>`` (passwd or
        group), from the topmost layer that has it."""
        for layer in reversed(layers):
            path = layer / "etc" / filename
            if path.is_file() and not path.is_symlink():
                lines = path.read_text(errors="replace").splitlines()
                return [f for f in (line.split(":") for line in lines) if len(f) >= 4]
        return []

    def _user(self, layers: list[Path], user: str, what: str) -> tuple[int, int]:
        """(uid, primary gid) of ``user``, a name or a number; a number missing from
        /etc/passwd has gid 0, a name missing from it is an error."""
        field = 2 if user.isdigit() else 0
        for entry in self._etc_entries(layers, "passwd"):
            if entry[field] == user and entry[2].isdigit():
                return int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
        if user.isdigit():
            return int(user), 0
        raise Invalid(f'{what} "{user}" not found in the image\'s /etc/passwd')

    def _resolve_user(
        self, config: Mapping[str, Any], image: Mapping[str, Any], layers: list[Path]
    ) -> tuple[int, int, list[int]]:
        security = ((config.get("linux") or {}).get("security_context")) or {}
        run_as_user = security.get("run_as_user")
        run_as_group = security.get("run_as_group")
        username = security.get("run_as_username") or ""
        groups = [int(g) for g in security.get("supplemental_groups") or ()]
        if run_as_group is not None and run_as_user is None and not username:
            raise Invalid("run_as_group needs run_as_user or run_as_username")
        uid = gid = 0
        if run_as_user is not None:
            uid, gid = self._user(layers, str(int(run_as_user.get("value", 0))), "user")
        elif username:
            uid, gid = self._user(layers, username, "user")
        else:
            spec = str((image.get("config") or {}).get("User") or "")
            user, _, group = spec.partition(":")
            if user:
                uid, gid = self._user(layers, user, "image user")
            if group.isdigit():
                gid = int(group)
            elif group:
                found = [e for e in self._etc_entries(layers, "group") if e[0] == group]
                if not found or not found[0][2].isdigit():
                    raise Invalid(f'image group "{group}" not found in its /etc/group')
                gid = int(found[0][2])
        if run_as_group is not None:
            gid = int(run_as_group.get("value", 0))
        return uid, gid, groups

    @staticmethod
    def _check_mounts(config: Mapping[str, Any]) -> list[dict]:
        mounts = []
        for i, m in enumerate(config.get("mounts") or ()):
            container_path = str(m.get("container_path") or "")
            host_path = str(m.get("host_path") or "")
            where = f"mounts[{i}]"
            if not container_path.startswith("/"):
                raise Invalid(f"{where}.container_path must be absolute, got {container_path!r}")
            if ".." in container_path.split("/"):
                raise Invalid(f"{where}.container_path must not contain '..': {container_path!r}")
            if not host_path.startswith("/") or ".." in host_path.split("/"):
                raise Invalid(f"{where}.host_path must be absolute without '..': {host_path!r}")
            if not os.path.exists(host_path):
                raise BadRequest(f'{where}: host path "{host_path}" does not exist')
            propagation = m.get("propagation") or "PROPAGATION_PRIVATE"
            if propagation not in (
                "PROPAGATION_PRIVATE",
                "PROPAGATION_HOST_TO_CONTAINER",
                "PROPAGATION_BIDIRECTIONAL",
            ):
                raise Invalid(f"{where}.propagation: unknown value {propagation!r}")
            if propagation == "PROPAGATION_BIDIRECTIONAL" and not monitor.mount_is_shared(
                host_path
            ):
                raise BadRequest(
                    f'{where}: path "{host_path}" is mounted on '
                    f'"{monitor.mount_point_of(host_path)}" but it is not a shared mount'
                )
            if m.get("recursive_read_only") and not m.get("readonly"):
                raise Invalid(f"{where}: recursive_read_only needs readonly")
            mounts.append(
                {
                    "container_path": container_path,
                    "host_path": os.path.realpath(host_path),
                    "readonly": bool(m.get("readonly")),
                    "propagation": propagation,
                }
            )
        return mounts

    @staticmethod
    def _capabilities(security: Mapping[str, Any]) -> list[str]:
        caps = set(_sys.DEFAULT_CAPABILITIES)
        requested = security.get("capabilities") or {}
        for name in requested.get("add_capabilities") or ():
            key = str(name).upper().removeprefix("CAP_")
            if key == "ALL":
                caps = set(_sys.CAPABILITIES)
            elif key in _sys.CAPABILITIES:
                caps.add(key)
            else:
                raise Invalid(f"unknown capability {name!r}")
        for name in requested.get("drop_capabilities") or ():
            key = str(name).upper().removeprefix("CAP_")
            if key == "ALL":
                caps = set()
            else:
                caps.discard(key)
        return sorted(caps)

    @staticmethod
    def _resources(linux: Mapping[str, Any] | None) -> dict[str, Any]:
        res = (linux or {}).get("resources") or {}
        return {
            "memory_limit": res.get("memory_limit_in_bytes") or None,
            "cpu_shares": res.get("cpu_shares") or None,
            "cpu_quota": res.get("cpu_quota") or None,
            "cpu_period": res.get("cpu_period") or None,
            "pids_limit": res.get("pids_limit") or None,
            "unified": res.get("unified") or None,
        }

    async def create_container(
        self,
        pod_sandbox_id: str,
        config: Mapping[str, Any],
        sandbox_config: Mapping[str, Any],
    ) -> str:
        sb = self._sandbox(pod_sandbox_id)
        if not sb.ready:
            raise BadRequest(f'pod sandbox "{pod_sandbox_id}" is not ready')
        metadata = config.get("metadata") or {}
        if not metadata.get("name"):
            raise Invalid("container config needs metadata.name")
        image_name = str((config.get("image") or {}).get("image") or "")
        if not image_name:
            raise Invalid("container config needs image.image")
        image = self.images.status(image_name)
        if image is None:
            raise NotFound(f'image "{image_name}" is not present on this node')
        argv = self._resolve_process(config, image)
        layers = self.images.layer_dirs(image["id"])
        uid, gid, groups = self._resolve_user(config, image, layers)
        mounts = self._check_mounts(config)
        security = (config.get("linux") or {}).get("security_context") or {}
        caps = self._capabilities(security)
        stop_signal = _signal_number(
            config.get("stop_signal") or (image.get("config") or {}).get("StopSignal")
        )
        resources = self._resources(config.get("linux"))

        cid = secrets.token_hex(32)
        cdir = self._container_dir(cid)
        cgroup_name = f"{sb.record.get('cgroup') or 'pod-' + sb.id}/{cid}"
        cgroup: Cgroup | None = None
        log_path = ""
        log_dir = (sb.record.get("config") or {}).get("log_directory") or ""
        if config.get("log_path") and log_dir:
            log_path = os.path.join(log_dir, str(config["log_path"]))
        try:
            cdir.mkdir(mode=0o700)
            init = cdir / "init"
            (init / "etc").mkdir(parents=True)
            for name in ("resolv.conf", "hosts", "hostname"):
                shutil.copyfile(sb.dir / name, init / "etc" / name)
                os.chmod(init / "etc" / name, 0o644)
            for name in ("upper", "work", "rootfs"):
                (cdir / name).mkdir()
            cgroup = self.cgroups.create(cgroup_name)
            cgroup.set_resources(**resources)
            if log_path:
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            oom_file = ""
            if "memory" in cgroup.paths:
                oom_file = str(cgroup.paths["memory"] / "memory.oom_control")
            elif "unified" in cgroup.paths:
                oom_file = str(cgroup.paths["unified"] / "memory.events")
            spec = {
                "rootfs": {
                    "lower": [str(init)] + [str(p) for p in reversed(layers)],
                    "upper": str(cdir / "upper"),
                    "work": str(cdir / "work"),
                    "target": str(cdir / "rootfs"),
                },
                "readonly_rootfs": bool(security.get("readonly_rootfs")),
                "privileged": bool(security.get("privileged")),
                "mounts": mounts,
                "cgroup_procs": [str(p) for p in cgroup.procs_files()],
                "oom_file": oom_file,
                "args": argv,
                "env": self._resolve_env(config, image),
                "cwd": str(
                    config.get("working_dir")
                    or (image.get("config") or {}).get("WorkingDir")
                    or "/"
                ),
                "uid": uid,
                "gid": gid,
                "groups": groups,
                "capabilities": caps,
                "no_new_privs": bool(security.get("no_new_privs")),
                "tty": bool(config.get("tty")),
                "stdin": bool(config.get("stdin")),
                "log_path": log_path,
            }
            if security.get("masked_paths") is not None:
                spec["masked_paths"] = list(security["masked_paths"])
            if security.get("readonly_paths") is not None:
                spec["readonly_paths"] = list(security["readonly_paths"])
            meta = {
                "id": cid,
                "pod_sandbox_id": sb.id,
                "config": dict(config),
                "image_id": image["id"],
                "image_ref": image["id"],
                "log_path": log_path,
                "cgroup": cgroup_name,
                "stop_signal": stop_signal,
                "created_at": now_ns(),
            }
            _write_json(cdir / "container.json", meta)
            try:
                await self._call(sb, {"op": "create", "id": cid, "dir": str(cdir), "spec": spec})
            except MonitorError as exc:
                raise PermanentError(f"container set-up failed: {exc.message}") from None
        except BaseException:
            if cgroup is not None:
                with contextlib.suppress(Exception):
                    cgroup.remove()
            shutil.rmtree(cdir, ignore_errors=True)
            raise
        self._emit(cid, CONTAINER_CREATED_EVENT, sb.id)
        return cid

    def _state(self, cid: str, meta: Mapping[str, Any]) -> dict:
        state = _read_json(self._container_dir(cid) / monitor.STATE_FILE) or {}
        sb = self._sandboxes.get(meta.get("pod_sandbox_id", ""))
        live = sb is not None and sb.monitor_alive()
        if state.get("state") in (CONTAINER_CREATED, CONTAINER_RUNNING) and not live:
            state = {
                **state,
                "state": CONTAINER_UNKNOWN,
                "reason": "Unknown",
                "message": "the pod monitor is gone",
            }
        state.setdefault("state", CONTAINER_UNKNOWN)
        return state

    def _container_status(self, cid: str, meta: Mapping[str, Any]) -> dict:
        state = self._state(cid, meta)
        config = meta.get("config") or {}
        return {
            "id": cid,
            "pod_sandbox_id": meta.get("pod_sandbox_id", ""),
            "metadata": dict(config.get("metadata") or {}),
            "state": state["state"],
            "created_at": state.get("created_at") or meta.get("created_at", 0),
            "started_at": state.get("started_at", 0),
            "finished_at": state.get("finished_at", 0),
            "exit_code": state.get("exit_code", 0),
            "image": dict(config.get("image") or {}),
            "image_ref": meta.get("image_ref", ""),
            "image_id": meta.get("image_id", ""),
            "reason": state.get("reason", ""),
            "message": state.get("message", ""),
            "labels": dict(config.get("labels") or {}),
            "annotations": dict(config.get("annotations") or {}),
            "mounts": list(config.get("mounts") or ()),
            "log_path": meta.get("log_path", ""),
            "pid": state.get("pid", 0) if state["state"] == CONTAINER_RUNNING else 0,
        }

    async def container_status(self, container_id: str) -> Mapping[str, Any]:
        return self._container_status(container_id, self._container_meta(container_id))

    async def list_containers(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        filter = filter or {}
        out = []
        for cid, meta in self._container_index().items():
            if filter.get("id") and not cid.startswith(filter["id"]):
                continue
            if (
                filter.get("pod_sandbox_id")
                and meta.get("pod_sandbox_id") != filter["pod_sandbox_id"]
            ):
                continue
            if not _labels_match(
                (meta.get("config") or {}).get("labels") or {}, filter.get("label_selector")
            ):
                continue
            status = self._container_status(cid, meta)
            if filter.get("state") and status["state"] != filter["state"]:
                continue
            if not _labels_match(status["labels"], filter.get("label_selector")):
                continue
            out.append(status)
        return out

    def _live_sandbox_of(self, meta: Mapping[str, Any]) -> _Sandbox:
        sb = self._sandboxes.get(meta.get("pod_sandbox_id", ""))
        if sb is None or not sb.monitor_alive():
            raise BadRequest(f'the pod sandbox of container "{meta.get("id")}" is not running')
        return sb

    async def start_container(self, container_id: str) -> None:
        meta = self._container_meta(container_id)
        sb = self._live_sandbox_of(meta)
        try:
            await self._call(sb, {"op": "start", "id": container_id})
        except MonitorError as exc:
            raise PermanentError(
                f"failed to start container {container_id}: {exc.message}"
            ) from None
        self._emit(container_id, CONTAINER_STARTED_EVENT, sb.id)

    async def _wait_exit(self, sb: _Sandbox, cid: str, timeout: float | None) -> bool:
        try:
            reader, writer = await self._connect(sb, {"op": "wait", "id": cid})
        except TemporaryError:
            return True
        try:
            await asyncio.wait_for(self._reply(reader), timeout)
            return True
        except TimeoutError:
            return False
        except (TemporaryError, MonitorError):
            return True
        finally:
            writer.close()

    async def stop_container(self, container_id: str, timeout: int = 0) -> None:
        try:
            meta = self._container_meta(container_id)
        except NotFound:
            return
        state = self._state(container_id, meta)
        if state["state"] not in (CONTAINER_RUNNING, CONTAINER_CREATED):
            return
        sb = self._sandboxes.get(meta["pod_sandbox_id"])
        if sb is None:
            return
        sig = int(meta.get("stop_signal") or signal.SIGTERM)
        if timeout > 0 and state["state"] == CONTAINER_RUNNING:
            await self._call(sb, {"op": "kill", "id": container_id, "signal": sig})
            if await self._wait_exit(sb, container_id, timeout):
                return
        with contextlib.suppress(MonitorError):
            await self._call(sb, {"op": "kill", "id": container_id, "signal": signal.SIGKILL})
        await self._wait_exit(sb, container_id, 30)

    async def remove_container(self, container_id: str) -> None:
        try:
            meta = self._container_meta(container_id)
        except NotFound:
            return
        await self.stop_container(container_id, 0)
        await self._remove_container_files(container_id, meta)

    async def _remove_container_files(self, cid: str, meta: Mapping[str, Any]) -> None:
        sb = self._sandboxes.get(meta.get("pod_sandbox_id", ""))
        if sb is not None and sb.monitor_alive():
            with contextlib.suppress(KcoreError, OSError):
                await self._call(sb, {"op": "forget", "id": cid})
        if meta.get("cgroup"):
            with contextlib.suppress(Exception):
                self.cgroups.open(meta["cgroup"]).remove()
        shutil.rmtree(self._container_dir(cid), ignore_errors=True)
        self._emit(cid, CONTAINER_DELETED_EVENT, meta.get("pod_sandbox_id", ""))

    async def update_container_resources(self, container_id: str, linux: Mapping[str, Any]) -> None:
        meta = self._container_meta(container_id)
        resources = {k: v for k, v in self._resources(linux).items() if v is not None}
        self.cgroups.open(meta["cgroup"]).set_resources(**resources)

    async def reopen_container_log(self, container_id: str) -> None:
        meta = self._container_meta(container_id)
        if self._state(container_id, meta)["state"] != CONTAINER_RUNNING:
            raise BadRequest(f'container "{container_id}" is not running')
        if not meta.get("log_path"):
            raise BadRequest(f'container "{container_id}" has no log path')
        if not os.path.isdir(os.path.dirname(meta["log_path"])):
            raise BadRequest(f"the log directory of container {container_id} is gone")
        sb = self._live_sandbox_of(meta)
        try:
            await self._call(sb, {"op": "reopen_log", "id": container_id})
        except MonitorError as exc:
            raise BadRequest(f"reopening the log of {container_id}: {exc.message}") from None

    # -- exec and attach ----------------------------------------------------------------------------

    def _running(self, container_id: str) -> tuple[dict, _Sandbox]:
        meta = self._container_meta(container_id)
        if self._state(container_id, meta)["state"] != CONTAINER_RUNNING:
            raise BadRequest(f'container "{container_id}" is not running')
        return meta, self._live_sandbox_of(meta)

    async def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: float = 0
    ) -> tuple[bytes, bytes, int]:
        if not cmd:
            raise Invalid("exec needs a command")
        session = await self.exec(container_id, cmd)
        assert isinstance(session, ExecSession)
        out = bytearray()
        err = bytearray()

        async def collect() -> None:
            while (item := await session.read()) is not None:
                stream, data = item
                buf = err if stream == "stderr" else out
                room = EXEC_OUTPUT_LIMIT - len(buf)
                if room > 0:
                    buf += data[:room]

        collector = asyncio.ensure_future(collect())
        try:
            code = await asyncio.wait_for(session.wait(), timeout if timeout > 0 else None)
        except TimeoutError:
            await session.close()
            collector.cancel()
            raise TemporaryError(
                f"command {list(cmd)!r} in container {container_id} timed out after {timeout}s"
            ) from None
        try:
            # Output still in the pipes arrives at once; a background child holding them
            # open does not hold the answer back for long.
            await asyncio.wait_for(asyncio.shield(collector), 1.0)
        except TimeoutError:
            collector.cancel()
        await session.close()
        return bytes(out), bytes(err), code

    async def exec(
        self, container_id: str, cmd: Sequence[str], *, tty: bool = False, stdin: bool = False
    ) -> ExecSession:
        if not cmd:
            raise Invalid("exec needs a command")
        _meta, sb = self._running(container_id)
        ours: list[int] = []
        theirs: list[int] = []
        readers: dict[int, str] = {}
        stdin_fd: int | None = None
        try:
            if not tty:
                if stdin:
                    in_r, in_w = os.pipe()
                    ours.append(in_w)
                    stdin_fd = in_w
                else:
                    in_r = os.open("/dev/null", os.O_RDONLY)
                    stdin_fd = None
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                ours += [out_r, err_r]
                theirs = [in_r, out_w, err_w]
                readers = {out_r: "stdout", err_r: "stderr"}
            req = {"op": "exec", "id": container_id, "args": list(cmd), "tty": tty}
            sock = await self._send(sb, req, theirs)
        except BaseException:
            for fd in {*ours, *theirs}:
                os.close(fd)
            raise
        for fd in set(theirs):
            os.close(fd)
        try:
            reply, fds, rest = await self._first_reply(sock)
        except BaseException:
            sock.close()
            for fd in ours:
                os.close(fd)
            raise
        if tty:
            if not fds:
                sock.close()
                raise MonitorError("the pod monitor sent no terminal for the tty exec")
            readers = {fds[0]: "stdout"}
            stdin_fd = fds[0] if stdin else None
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        if rest:
            reader.feed_data(rest)
        return ExecSession(reader, writer, readers, stdin_fd, tty, reply.get("pid", 0))

    async def attach(
        self, container_id: str, *, stdin: bool = False, tty: bool = False
    ) -> AttachSession:
        _meta, sb = self._running(container_id)
        reader, writer = await self._connect(sb, {"op": "attach", "id": container_id})
        reply = await self._reply(reader)
        return AttachSession(reader, writer, bool(reply.get("tty")), stdin)

    # -- stats ------------------------------------------------------------------------------------

    @staticmethod
    def _usage(directory: Path) -> tuple[int, int]:
        used = inodes = 0
        for dirpath, dirnames, filenames in os.walk(directory):
            for name in dirnames + filenames:
                inodes += 1
                with contextlib.suppress(OSError):
                    used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
        return used, inodes

    def _stats(self, cid: str, meta: Mapping[str, Any]) -> dict:
        config = meta.get("config") or {}
        try:
            raw = self.cgroups.open(meta["cgroup"]).stats()
        except Exception:
            raw = {}
        ts = raw.get("timestamp_ns") or now_ns()
        used, inodes = self._usage(self._container_dir(cid) / "upper")
        return {
            "attributes": {
                "id": cid,
                "metadata": dict(config.get("metadata") or {}),
                "labels": dict(config.get("labels") or {}),
                "annotations": dict(config.get("annotations") or {}),
            },
            "cpu": {"timestamp": ts, "usage_core_nano_seconds": raw.get("cpu_usage_ns", 0)},
            "memory": {
                "timestamp": ts,
                "working_set_bytes": raw.get("memory_working_set_bytes", 0),
                "usage_bytes": raw.get("memory_usage_bytes", 0),
                "rss_bytes": raw.get("memory_rss_bytes", 0),
            },
            "writable_layer": {"timestamp": ts, "used_bytes": used, "inodes_used": inodes},
        }

    async def container_stats(self, container_id: str) -> Mapping[str, Any]:
        return self._stats(container_id, self._container_meta(container_id))

    async def list_container_stats(
        self, filter: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        return [
            self._stats(c["id"], self._container_meta(c["id"]))
            for c in await self.list_containers(filter)
        ]

    async def pod_sandbox_stats(self, pod_sandbox_id: str) -> Mapping[str, Any]:
        sb = self._sandbox(pod_sandbox_id)
        config = sb.record.get("config") or {}
        try:
            raw = self.cgroups.open(sb.record.get("cgroup") or f"pod-{sb.id}").stats()
        except Exception:
            raw = {}
        ts = raw.get("timestamp_ns") or now_ns()
        containers = await self.list_container_stats({"pod_sandbox_id": sb.id})
        return {
            "attributes": {
                "id": sb.id,
                "metadata": dict(config.get("metadata") or {}),
                "labels": dict(config.get("labels") or {}),
                "annotations": dict(config.get("annotations") or {}),
            },
            "linux": {
                "cpu": {"timestamp": ts, "usage_core_nano_seconds": raw.get("cpu_usage_ns", 0)},
                "memory": {
                    "timestamp": ts,
                    "working_set_bytes": raw.get("memory_working_set_bytes", 0),
                    "usage_bytes": raw.get("memory_usage_bytes", 0),
                },
                "process": {"timestamp": ts, "process_count": raw.get("pids_current", 0)},
                "containers": list(containers),
            },
        }


# --------------------------------------------------------------------------------------
# Streaming sessions
# --------------------------------------------------------------------------------------


class ExecSession:
    """A process started by ``exec``: its stdio are pipes (or a pty) this process holds."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        outputs: dict[int, str],
        stdin_fd: int | None,
        tty: bool,
        pid: int,
    ):
        self.tty = tty
        self.pid = pid
        self._reader = reader
        self._writer = writer
        self._outputs = dict(outputs)
        self._stdin_fd = stdin_fd
        self._queue: asyncio.Queue = asyncio.Queue()
        self._open = len(self._outputs)
        self._exit: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closed = False
        self._waiter = asyncio.ensure_future(self._wait_exit())
        loop = asyncio.get_running_loop()
        for fd in self._outputs:
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._on_output, fd)

    async def _wait_exit(self) -> None:
        try:
            line = await self._reader.readline()
            code = json.loads(line)["exit_code"] if line else 137
        except (OSError, ValueError, KeyError):
            code = 137
        if not self._exit.done():
            self._exit.set_result(code)

    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._queue.put_nowait((self._outputs[fd], data))
            return
        self._close_output(fd)

    def _close_output(self, fd: int) -> None:
        if fd not in self._outputs:
            return
        asyncio.get_running_loop().remove_reader(fd)
        del self._outputs[fd]
        if fd != self._stdin_fd:
            os.close(fd)
        self._open -= 1
        if self._open == 0:
            self._queue.put_nowait(None)

    async def read(self) -> tuple[str, bytes] | None:
        if self._open == 0 and self._queue.empty():
            return None
        return await self._queue.get()

    async def write_stdin(self, data: bytes) -> None:
        if self._stdin_fd is None:
            raise BadRequest("this session has no stdin")
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._stdin_fd, view)
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.005)

    async def close_stdin(self) -> None:
        if self._stdin_fd is None:
            return
        if self.tty:
            await self.write_stdin(b"\x04")
            return
        os.close(self._stdin_fd)
        self._stdin_fd = None

    async def resize(self, width: int, height: int) -> None:
        if self.tty and self._outputs:
            fd = next(iter(self._outputs))
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await asyncio.shield(self._exit)
        if self.tty:
            # The pty's output ends with the process; take what is left, then EOF.
            for fd in list(self._outputs):
                with contextlib.suppress(OSError):
                    while data := os.read(fd, 65536):
                        self._queue.put_nowait((self._outputs[fd], data))
                self._close_output(fd)
        return code

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._exit.done():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(b'{"op": "kill"}\n')
                await self._writer.drain()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._exit), 5)
        self._waiter.cancel()
        self._writer.close()
        for fd in list(self._outputs):
            self._close_output(fd)
        if self._stdin_fd is not None and not self.tty:
            with contextlib.suppress(OSError):
                os.close(self._stdin_fd)
        if self.tty and self._stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._stdin_fd)
        self._stdin_fd = None


class AttachSession:
    """A connection to a running container's stdio through its pod monitor."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tty: bool, stdin: bool
    ):
        self.tty = tty
        self._reader = reader
        self._writer = writer
        self._stdin = stdin
        self._exit: asyncio.Future = asyncio.get_running_loop().create_future()
        self._eof = False

    async def read(self) -> tuple[str, bytes] | None:
        if self._eof:
            return None
        while True:
            try:
                header = await self._reader.readexactly(monitor.FRAME_HEADER.size)
                kind, size = monitor.FRAME_HEADER.unpack(header)
                payload = await self._reader.readexactly(size)
            except (asyncio.IncompleteReadError, OSError):
                self._eof = True
                if not self._exit.done():
                    self._exit.set_result(-1)
                return None
            if kind == monitor.FRAME_EXIT:
                self._eof = True
                if not self._exit.done():
                    self._exit.set_result(struct.unpack("!i", payload)[0])
                return None
            return ("stderr" if kind == monitor.FRAME_STDERR else "stdout", payload)

    async def _send(self, kind: int, payload: bytes) -> None:
        self._writer.write(monitor.FRAME_HEADER.pack(kind, len(payload)) + payload)
        await self._writer.drain()

    async def write_stdin(self, data: bytes) -> None:
        if not self._stdin:
            raise BadRequest("attached without stdin")
        await self._send(monitor.FRAME_STDIN, data)

    async def close_stdin(self) -> None:
        if self._stdin:
            await self._send(monitor.FRAME_CLOSE_STDIN, b"")

    async def resize(self, width: int, height: int) -> None:
        await self._send(monitor.FRAME_RESIZE, struct.pack("!HH", width, height))

    async def wait(self) -> int:
        while not self._exit.done():
            if await self.read() is None:
                break
        return self._exit.result() if self._exit.done() else -1

    async def close(self) -> None:
        self._writer.close()


def check_host() -> None:
    """Raise :class:`kcore.NotSupported` when this host cannot run containers."""
    if os.geteuid() != 0:
        raise NotSupported("runtime_linux needs root (namespaces, mounts and cgroups)")
    try:
        with open("/proc/filesystems") as f:
            if "overlay" not in f.read():
                raise NotSupported("runtime_linux needs overlayfs (modprobe overlay)")
    except OSError as exc:
        raise NotSupported(f"runtime_linux cannot read /proc/filesystems: {exc}") from exc


class LinuxImageService:
    """CRI's image service over the node's :class:`ImageStore`, pulling from registries
    with :mod:`kcore.registry` as ``registry`` configures."""

    def __init__(
        self,
        store: ImageStore,
        runtime: LinuxRuntime | None = None,
        *,
        registry: RegistryConfig | None = None,
    ):
        self.store = store
        self.runtime = runtime
        self.registry = registry or RegistryConfig()
        self._pulls: dict[tuple[str, str], asyncio.Future[str]] = {}

    async def pull_image(self, image: str, auth: Mapping[str, str] | None = None) -> str:
        """As CRI's ``PullImage``: ask the image's registry every time (a tag may have
        moved; the node agent decides by ``imagePullPolicy`` whether to call this) and fetch
        what the store lacks. A name that this node gave (``kcore image import``, a tag, an
        image id) has no registry behind it and stands as it is.

        Concurrent pulls of one reference with the same credentials share one download.
        """
        local = self.store.local_image(image)
        if local is not None:
            return local["id"]
        normalized = normalize_reference(image)
        key = (normalized, json.dumps(sorted((auth or {}).items())))
        running = self._pulls.get(key)
        if running is None:
            running = asyncio.ensure_future(self._pull(image, auth))
            self._pulls[key] = running

            def forget(done: asyncio.Future[str]) -> None:
                self._pulls.pop(key, None)
                if not done.cancelled():
                    done.exception()  # retrieved here too: every waiter may have gone

            running.add_done_callback(forget)
        return await asyncio.shield(running)

    async def _pull(self, image: str, auth: Mapping[str, str] | None) -> str:
        result = await registry_pull(self.store, image, auth=auth, config=self.registry)
        return result.image["id"]

    async def import_image(
        self, path: Path, tags: Sequence[str] = ()
    ) -> Sequence[Mapping[str, Any]]:
        return await asyncio.to_thread(self.store.import_path, Path(path), tags=tags)

    async def list_images(self) -> Sequence[Mapping[str, Any]]:
        return self.store.list()

    async def image_status(self, image: str) -> Mapping[str, Any] | None:
        return self.store.status(image)

    async def remove_image(self, image: str) -> None:
        record = self.store.status(image)
        if record is None:
            return
        if self.runtime is not None:
            for cid, meta in self.runtime._container_index().items():
                if meta.get("image_id") == record["id"]:
                    raise Conflict(
                        f'image "{image}" is in use by container {cid}; remove the container first'
                    )
        await asyncio.to_thread(self.store.remove, record["id"])

    async def image_fs_info(self) -> Sequence[Mapping[str, Any]]:
        usage = self.store.fs_usage()
        return [
            {
                "timestamp": now_ns(),
                "fs_id": {"mountpoint": usage["mountpoint"]},
                "used_bytes": usage["used_bytes"],
                "inodes_used": usage["inodes_used"],
            }
        ]
