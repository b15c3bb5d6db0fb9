"""The pod monitor: one small process per pod sandbox, and the sandbox's infra process.

The runtime starts one *zygote* per runtime object with ``posix_spawn`` (``python -I -S
monitor.py --zygote <fd>``), so the daemon itself never forks; the zygote has everything a
monitor needs imported and forks one monitor per sandbox (8 ms, about 2 MiB of private
memory each, instead of a fresh interpreter's 70 ms and 8 MiB). ``python -I -S monitor.py
<sandbox dir>`` starts a monitor without a zygote. The monitor

* unshares the pod's network, IPC and UTS namespaces and holds them for the pod's life
  (it *is* the infra process: ``/proc/<pid>/ns/net`` is the pod's network namespace);
* is a child subreaper: it reaps every zombie of the pod and is the parent of every
  container, so it alone learns their exit codes, and writes them to ``state.json`` in
  the container's directory. Because the monitor, not the daemon, is the parent, the
  daemon can stop and start again while containers run: it reads the state files and
  reconnects to the monitor's socket;
* creates containers by forking itself (it is small and single-threaded, so a fork is
  cheap and safe). The child joins the container's cgroups, unshares its own mount, PID
  and cgroup namespaces, mounts the overlay root, ``/proc``, ``/dev``, ``/sys`` and the
  volumes, masks the default paths, ``pivot_root``s into it, and waits for the start
  signal before it drops capabilities and ``execve``s the container's command;
* writes the containers' stdout and stderr in the CRI log format, and relays attach;
* runs ``exec`` by forking a child that joins the container's cgroups and namespaces
  with ``setns`` and forks the command, which the monitor then reaps;
* exits on SIGTERM (or the ``shutdown`` request) after killing every container.

Requests arrive on ``monitor.sock`` in the sandbox directory, one JSON object per line,
with file descriptors attached (``SCM_RIGHTS``) where a request carries stdio.

Standard library only, and nothing from kcore: it runs with ``python -I -S``.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import termios
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

try:  # imported as part of kcore.plugins.runtime_linux
    from . import _sys, crilog
except ImportError:  # run as a script by the runtime (-I leaves the script's dir off the path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _sys  # type: ignore[no-redef]
    import crilog  # type: ignore[no-redef]

SOCKET_NAME = "monitor.sock"
STATE_FILE = "state.json"

# Frames of an attach stream after its JSON reply: type (1 byte), length (4 bytes), payload.
FRAME_STDIN = 0
FRAME_STDOUT = 1
FRAME_STDERR = 2
FRAME_CLOSE_STDIN = 3
FRAME_RESIZE = 4
FRAME_EXIT = 9
FRAME_HEADER = struct.Struct("!BI")

DEFAULT_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8))
_DEVICES += (("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
_PROPAGATION = {
    "PROPAGATION_PRIVATE": _sys.MS_PRIVATE,
    "PROPAGATION_HOST_TO_CONTAINER": _sys.MS_SLAVE,
    "PROPAGATION_BIDIRECTIONAL": _sys.MS_SHARED,
}


def now_ns() -> int:
    return time.time_ns()


def write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def exit_code_of(status: int) -> tuple[int, int]:
    """(exit code as CRI reports it, signal number or 0) from a wait status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.WEXITSTATUS(status), 0


def oom_kills(path: str | None) -> int:
    if not path:
        return 0
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


# --------------------------------------------------------------------------------------
# In the forked children: container init and exec
# --------------------------------------------------------------------------------------


def _join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


def open_pty(pts_dir: str) -> tuple[int, int]:
    """A pty pair from the devpts instance mounted at ``pts_dir`` (the container's own, so
    that ``tty`` inside finds its terminal under /dev/pts)."""
    master = os.open(os.path.join(pts_dir, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, b"\0" * 4))[0]
        slave = os.open(os.path.join(pts_dir, str(number)), os.O_RDWR | os.O_NOCTTY)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def send_message(sock: socket.socket, text: str, fds: list[int] | None = None) -> None:
    """One message on a SOCK_SEQPACKET channel, with file descriptors attached."""
    if fds:
        socket.send_fds(sock, [text.encode()], fds)
    else:
        sock.send(text.encode())


def recv_message(sock: socket.socket, timeout: float) -> tuple[str | None, list[int]]:
    """The next message and its file descriptors; ``None`` at EOF or on timeout."""
    sock.settimeout(timeout)
    try:
        data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
    except (TimeoutError, OSError):
        return None, []
    return (data.decode(errors="replace") if data else None), list(fds)


def _set_stdio(stdio: tuple[int, int, int], tty: bool) -> None:
    os.setsid()
    if tty:
        fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)


def _apply_identity(spec: dict) -> None:
    """Capabilities, groups, user and no_new_privs, as the last steps before execve."""
    if not spec.get("privileged"):
        keep = {_sys.CAPABILITIES[name] for name in spec.get("capabilities", ())}
        _sys.drop_bounding_caps(keep)
    uid, gid = spec.get("uid", 0), spec.get("gid", 0)
    os.setgroups(sorted({gid, *spec.get("groups", ())}))
    os.setgid(gid)
    os.setuid(uid)
    if spec.get("no_new_privs"):
        _sys.prctl(_sys.PR_SET_NO_NEW_PRIVS, 1)


def _exec(spec: dict) -> None:
    """execve with a $PATH search done here: after pivot_root the standard library is out
    of reach, so nothing on this path may import a module (``os.execvpe`` would)."""
    args, env = spec["args"], spec["env"]
    envmap = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        search = (
            envmap.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        candidates = [os.path.join(d or ".", name) for d in search.split(":")]
    denied = False
    for path in candidates:
        try:
            os.execve(path, args, envmap)
        except PermissionError:
            denied = True
        except (FileNotFoundError, NotADirectoryError):
            pass
    if denied:
        raise OSError(errno.EACCES, f'exec: "{name}": permission denied')
    if "/" in name:
        raise OSError(errno.ENOENT, f'exec: "{name}": no such file or directory')
    raise OSError(errno.ENOENT, f'exec: "{name}": executable file not found in $PATH')


def _mkdir_in(root: str, path: str, mode: int = 0o755) -> str:
    target = _sys.secure_join(root, path)
    os.makedirs(target, mode=mode, exist_ok=True)
    return target


def _mount_rootfs(spec: dict) -> None:
    rootfs = spec["rootfs"]
    root = rootfs["target"]
    lower = ":".join(rootfs["lower"])
    data = f"lowerdir={lower},upperdir={rootfs['upper']},workdir={rootfs['work']}"
    _sys.mount("overlay", root, "overlay", 0, data)
    nosuid, nodev, noexec = _sys.MS_NOSUID, _sys.MS_NODEV, _sys.MS_NOEXEC
    _sys.mount("proc", _mkdir_in(root, "/proc"), "proc", nosuid | nodev | noexec)
    dev = _mkdir_in(root, "/dev")
    _sys.mount("tmpfs", dev, "tmpfs", nosuid | _sys.MS_STRICTATIME, "mode=755,size=65536k")
    for name, major, minor in _DEVICES:
        path = os.path.join(dev, name)
        os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(path, 0o666)
    for name, target in _DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    pts = os.path.join(dev, "pts")
    os.mkdir(pts)
    _sys.mount("devpts", pts, "devpts", nosuid | noexec, "newinstance,ptmxmode=0666,mode=0620")
    shm = os.path.join(dev, "shm")
    os.mkdir(shm)
    _sys.mount("shm", shm, "tmpfs", nosuid | nodev | noexec, "mode=1777,size=65536k")
    mqueue = os.path.join(dev, "mqueue")
    os.mkdir(mqueue)
    _sys.mount("mqueue", mqueue, "mqueue", nosuid | nodev | noexec)
    sys_flags = nosuid | nodev | noexec | (0 if spec.get("privileged") else _sys.MS_RDONLY)
    _sys.mount("sysfs", _mkdir_in(root, "/sys"), "sysfs", sys_flags)

    for m in spec.get("mounts", ()):
        source = m["host_path"]
        target = _sys.secure_join(root, m["container_path"])
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o644))
        _sys.mount(source, target, None, _sys.MS_BIND | _sys.MS_REC)
        if m.get("readonly"):
            _sys.mount(None, target, None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY)
        propagation = _PROPAGATION.get(m.get("propagation") or "PROPAGATION_PRIVATE")
        _sys.mount(None, target, None, _sys.MS_REC | propagation)

    if not spec.get("privileged"):
        null = os.path.join(dev, "null")
        for path in spec.get("masked_paths", DEFAULT_MASKED_PATHS):
            target = _sys.secure_join(root, path)
            if os.path.isdir(target):
                _sys.mount("tmpfs", target, "tmpfs", _sys.MS_RDONLY, "size=0,nr_inodes=1")
            elif os.path.exists(target):
                _sys.mount(null, target, None, _sys.MS_BIND)
        for path in spec.get("readonly_paths", DEFAULT_READONLY_PATHS):
            target = _sys.secure_join(root, path)
            if os.path.exists(target):
                _sys.mount(target, target, None, _sys.MS_BIND | _sys.MS_REC)
                flags = _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY
                _sys.mount(None, target, None, flags | nosuid | nodev | noexec)
    _mkdir_in(root, spec.get("cwd") or "/")


def mount_point_of(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The mount point of the mount that holds ``path``."""
    path = os.path.realpath(path)
    best = "/"
    with open(mountinfo) as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best = point
    return best


def mount_is_shared(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether the mount holding ``path`` propagates to peers (``shared:N``)."""
    point = mount_point_of(path, mountinfo)
    shared = False
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            if fields[4].replace("\\040", " ") == point:
                optional = fields[6 : fields.index("-")]
                shared = any(o.startswith("shared:") for o in optional)
    return shared


_OLD_ROOT = ".kcore-old-root"


def _pivot(root: str, readonly: bool) -> None:
    os.chdir(root)
    try:
        os.mkdir(_OLD_ROOT, 0o700)
        _sys.pivot_root(".", _OLD_ROOT)
        os.chdir("/")
        # Detach the old root without telling the host: slave first, then unmount.
        _sys.mount(None, "/" + _OLD_ROOT, None, _sys.MS_REC | _sys.MS_SLAVE)
        _sys.umount2("/" + _OLD_ROOT, _sys.MNT_DETACH)
        os.rmdir("/" + _OLD_ROOT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # A root where pivot_root is impossible (ramfs, initramfs): move and chroot.
        os.rmdir(_OLD_ROOT)
        _sys.mount(root, "/", None, _sys.MS_MOVE)
        os.chroot(".")
    os.chdir("/")
    if readonly:
        _sys.mount(None, "/", None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY)


def container_init(
    spec: dict, stdio: tuple[int, int, int] | None, sync: socket.socket, start_r: int
) -> None:
    """The container's first process (PID 1 of its PID namespace), in the fork. With a
    tty (``stdio`` is ``None``) it opens the terminal in the container's own devpts and
    sends the master side to the monitor."""
    try:
        _sys.prctl(_sys.PR_SET_PDEATHSIG, signal.SIGKILL)
        _join_cgroups(spec.get("cgroup_procs", ()))
        _sys.unshare(_sys.CLONE_NEWNS | _sys.CLONE_NEWCGROUP)
        if any(m.get("propagation") == "PROPAGATION_BIDIRECTIONAL" for m in spec.get("mounts", ())):
            # Host mounts stay peers of the host's, so a bidirectional volume is one too;
            # only the mount holding the root is made private, so the root's own mounts
            # never reach the host.
            _sys.mount(None, mount_point_of(spec["rootfs"]["target"]), None, _sys.MS_PRIVATE)
        else:
            _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_SLAVE)
        _mount_rootfs(spec)
        if stdio is None:
            master, slave = open_pty(os.path.join(spec["rootfs"]["target"], "dev", "pts"))
            send_message(sync, "pty", [master])
            os.close(master)
            stdio = (slave, slave, slave)
        _set_stdio(stdio, spec.get("tty", False))
        _pivot(spec["rootfs"]["target"], spec.get("readonly_rootfs", False))
        send_message(sync, "ready")
        if os.read(start_r, 1) != b"s":
            os._exit(0)
        os.chdir(spec.get("cwd") or "/")
        _apply_identity(spec)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        _exec(spec)
    except BaseException as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            send_message(sync, "error " + json.dumps({"message": message}))
        finally:
            os._exit(1)


def exec_child(
    container_pid: int,
    spec: dict,
    req: dict,
    stdio: tuple[int, int, int] | None,
    report: socket.socket,
) -> None:
    """An exec'd process, forked by the monitor into the container's PID namespace: join
    the container's cgroups, cgroup and mount namespaces, report ready (with a tty, send
    the terminal's master side, opened in the container's devpts), then exec."""
    ready = False
    try:
        _join_cgroups(spec.get("cgroup_procs", ()))
        cgroup_ns = os.open(f"/proc/{container_pid}/ns/cgroup", os.O_RDONLY)
        mnt_ns = os.open(f"/proc/{container_pid}/ns/mnt", os.O_RDONLY)
        _sys.setns(cgroup_ns, _sys.CLONE_NEWCGROUP)
        _sys.setns(mnt_ns, _sys.CLONE_NEWNS)
        os.close(cgroup_ns)
        os.close(mnt_ns)
        if stdio is None:
            master, slave = open_pty("/dev/pts")
            send_message(report, "ready", [master])
            os.close(master)
            stdio = (slave, slave, slave)
        else:
            send_message(report, "ready")
        ready = True
        _set_stdio(stdio, req.get("tty", False))
        os.chdir(req.get("cwd") or spec.get("cwd") or "/")
        _apply_identity(spec)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        _exec({"args": req["args"], "env": spec["env"]})
    except BaseException as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            if ready:
                os.write(2, (message + "\n").encode())
            else:
                send_message(report, "error " + json.dumps({"message": message}))
        finally:
            os._exit(126 if isinstance(exc, PermissionError) else 127)


def pod_init() -> None:
    """PID 1 of a pod's shared PID namespace: reap orphans until told to stop."""
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT})
    os.closerange(3, 1 << 16)
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        info = signal.sigtimedwait({signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}, 60)
        if info is not None and info.si_signo != signal.SIGCHLD:
            return


# --------------------------------------------------------------------------------------
# The monitor
# --------------------------------------------------------------------------------------


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []
        self.mode = "request"  # or "attach", "exec", "wait", "subscribe"
        self.target: object = None

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def reply(self, obj: dict) -> bool:
        return self.send((json.dumps(obj) + "\n").encode())


class Container:
    def __init__(self, cid: str, cdir: str, spec: dict):
        self.id = cid
        self.dir = cdir
        self.spec = spec
        self.pid = 0
        self.state = "CONTAINER_CREATED"
        self.created_at = now_ns()
        self.started_at = 0
        self.finished_at = 0
        self.exit_code = 0
        self.reason = ""
        self.message = ""
        self.start_w = -1
        self.sync: socket.socket | None = None
        self.outputs: dict[int, str] = {}
        self.stdin_w = -1
        self.pty_master = -1
        self.log: crilog.CriLogWriter | None = None
        self.attached: list[Conn] = []
        self.waiters: list[Conn] = []

    def record(self) -> dict:
        return {
            "id": self.id,
            "state": self.state,
            "pid": self.pid,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
        }

    def save(self) -> None:
        write_json_atomic(os.path.join(self.dir, STATE_FILE), self.record())


class Monitor:
    def __init__(self, sandbox_dir: str, config: dict):
        self.dir = sandbox_dir
        self.config = config
        self.sel = selectors.DefaultSelector()
        self.containers: dict[str, Container] = {}
        self.by_pid: dict[int, Container] = {}
        self.execs: dict[int, Conn] = {}
        self.subscribers: list[Conn] = []
        self.stopping = False
        self.own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY)
        self.pod_init = 0

    # -- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        _sys.prctl(_sys.PR_SET_CHILD_SUBREAPER, 1)
        flags = 0
        if self.config.get("network") != "NODE":
            flags |= _sys.CLONE_NEWNET | _sys.CLONE_NEWUTS
        if self.config.get("ipc") != "NODE":
            flags |= _sys.CLONE_NEWIPC
        if flags:
            _sys.unshare(flags)
        if flags & _sys.CLONE_NEWUTS and self.config.get("hostname"):
            _sys.sethostname(self.config["hostname"])
        if flags & _sys.CLONE_NEWNET:
            _sys.loopback_up()
        if self.config.get("pid") == "POD":
            # A shared PID namespace for the pod: its init is a forked reaper, and every
            # later child of the monitor (the containers) is born into it.
            _sys.unshare(_sys.CLONE_NEWPID)
            self.pod_init = os.fork()
            if self.pod_init == 0:
                try:
                    pod_init()
                finally:
                    os._exit(0)
        for key, value in (self.config.get("sysctls") or {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        os.chdir(self.dir)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.unlink(SOCKET_NAME)
        except FileNotFoundError:
            pass
        self.listener.bind(SOCKET_NAME)
        os.chmod(SOCKET_NAME, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_r, False)
        os.set_blocking(sig_w, False)
        signal.set_wakeup_fd(sig_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.sel.register(sig_r, selectors.EVENT_READ, ("signal", None))

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select():
                kind, obj = key.data
                try:
                    getattr(self, "on_" + kind)(key.fileobj, obj)
                except Exception as exc:
                    print(f"monitor: {kind}: {exc!r}", file=sys.stderr, flush=True)
            if self.stopping and not any(
                c.state == "CONTAINER_RUNNING" for c in self.by_pid.values()
            ):
                self.finish()
                return

    def on_listen(self, sock: socket.socket, _: object) -> None:
        try:
            conn_sock, _addr = sock.accept()
        except BlockingIOError:
            return
        conn_sock.settimeout(5.0)
        conn = Conn(conn_sock)
        self.sel.register(conn_sock, selectors.EVENT_READ, ("conn", conn))

    def on_signal(self, fd: int, _: object) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            data = b""
        if signal.SIGTERM in data or signal.SIGINT in data:
            self.shutdown()
        self.reap()

    def on_output(self, fd: int, c: Container) -> None:
        stream = c.outputs.get(fd)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO on a pty whose other side is gone
            data = b""
        if not data:
            self.close_output(c, fd)
            return
        self.emit(c, stream, data)

    def emit(self, c: Container, stream: str | None, data: bytes) -> None:
        if c.log is not None:
            try:
                c.log.write(stream or "stdout", data)
            except OSError as exc:
                print(f"monitor: log of {c.id}: {exc}", file=sys.stderr, flush=True)
        frame_type = FRAME_STDERR if stream == "stderr" else FRAME_STDOUT
        frame = FRAME_HEADER.pack(frame_type, len(data)) + data
        for conn in list(c.attached):
            if not conn.send(frame):
                self.drop(conn)

    def close_output(self, c: Container, fd: int) -> None:
        stream = c.outputs.pop(fd, None)
        self.sel.unregister(fd)
        os.close(fd)
        if c.log is not None and stream is not None:
            try:
                c.log.flush_partial(stream)
            except OSError:
                pass
        if fd == c.pty_master:
            c.pty_master = -1
        if fd == c.stdin_w:
            c.stdin_w = -1

    def drain(self, c: Container) -> None:
        for fd in list(c.outputs):
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:
                    self.close_output(c, fd)
                    break
                self.emit(c, c.outputs[fd], data)

    def on_conn(self, sock: socket.socket, conn: Conn) -> None:
        try:
            data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            data, ancdata = b"", []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                conn.fds.extend(fds)
        if not data:
            self.drop(conn)
            return
        conn.buf += data
        if conn.mode == "attach":
            self.attach_input(conn)
            return
        while b"\n" in conn.buf and conn.mode in ("request", "exec"):
            line, _, conn.buf = conn.buf.partition(b"\n")
            try:
                req = json.loads(line)
            except ValueError:
                conn.reply({"ok": False, "error": "malformed request"})
                continue
            if conn.mode == "exec":
                if req.get("op") == "kill" and isinstance(conn.target, int):
                    self.kill_group(conn.target)
                continue
            self.handle(conn, req)

    def handle(self, conn: Conn, req: dict) -> None:
        op = req.get("op")
        handler = getattr(self, "op_" + str(op), None)
        if handler is None:
            conn.reply({"ok": False, "error": f"unknown op {op!r}"})
            return
        try:
            result = handler(conn, req)
        except Exception as exc:
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            conn.reply({"ok": False, "error": message, "errno": getattr(exc, "errno", None)})
            return
        finally:
            for fd in conn.fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            conn.fds = []
        if result is not None:
            conn.reply({"ok": True, **result})

    def drop(self, conn: Conn) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if conn.mode == "exec" and isinstance(conn.target, int) and conn.target in self.execs:
            self.kill_group(conn.target)
        if conn.mode == "attach" and isinstance(conn.target, Container):
            if conn in conn.target.attached:
                conn.target.attached.remove(conn)
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        for c in self.containers.values():
            if conn in c.waiters:
                c.waiters.remove(conn)

    @staticmethod
    def kill_group(pid: int) -> None:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass

    # -- requests ------------------------------------------------------------------------------

    def container(self, req: dict) -> Container:
        c = self.containers.get(req.get("id", ""))
        if c is None:
            raise LookupError(f"container {req.get('id')!r} is not in this sandbox")
        return c

    def op_ping(self, conn: Conn, req: dict) -> dict:
        return {"pid": os.getpid()}

    def op_create(self, conn: Conn, req: dict) -> dict:
        if self.stopping:
            raise RuntimeError("the sandbox is stopping")
        spec = req["spec"]
        c = Container(req["id"], req["dir"], spec)
        tty = bool(spec.get("tty"))
        parent_fds: list[int] = []
        child_fds: list[int] = []
        stdio: tuple[int, int, int] | None = None
        if not tty:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            c.outputs[out_r] = "stdout"
            c.outputs[err_r] = "stderr"
            if spec.get("stdin"):
                in_r, in_w = os.pipe()
                c.stdin_w = in_w
                parent_fds.append(in_w)
            else:
                in_r = os.open("/dev/null", os.O_RDONLY)
            stdio = (in_r, out_w, err_w)
            child_fds += [in_r, out_w, err_w]
        parent_fds += list(c.outputs)
        sync, sync_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        start_r, start_w = os.pipe()
        own_pidns = self.config.get("pid", "CONTAINER") == "CONTAINER"
        if own_pidns:
            _sys.unshare(_sys.CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        except BaseException:
            for fd in (*parent_fds, *child_fds, start_r, start_w):
                os.close(fd)
            sync.close()
            sync_child.close()
            raise
        finally:
            if own_pidns and pid != 0:
                _sys.setns(self.own_pidns, _sys.CLONE_NEWPID)
        if pid == 0:
            try:
                container_init(spec, stdio, sync_child, start_r)
            finally:
                os._exit(127)
        for fd in (*child_fds, start_r):
            os.close(fd)
        sync_child.close()
        c.pid, c.sync, c.start_w = pid, sync, start_w
        line, fds = recv_message(sync, timeout=60.0)
        if line == "pty" and fds:
            c.pty_master = fds[0]
            c.outputs[c.pty_master] = "stdout"
            parent_fds.append(c.pty_master)
            if spec.get("stdin"):
                c.stdin_w = c.pty_master
            line, _ = recv_message(sync, timeout=60.0)
        if line != "ready":
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            for fd in (*parent_fds, start_w):
                os.close(fd)
            sync.close()
            raise RuntimeError(self.error_text(line, "container set-up failed"))
        for fd in c.outputs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("output", c))
        if spec.get("log_path"):
            try:
                c.log = crilog.CriLogWriter(spec["log_path"])
            except OSError as exc:
                print(f"monitor: log {spec['log_path']}: {exc}", file=sys.stderr, flush=True)
        self.containers[c.id] = c
        self.by_pid[pid] = c
        c.save()
        return {"pid": pid, "created_at": c.created_at}

    @staticmethod
    def error_text(line: str | None, default: str) -> str:
        if line and line.startswith("error "):
            try:
                return json.loads(line[6:])["message"]
            except (ValueError, KeyError):
                return line[6:]
        return default

    def op_start(self, conn: Conn, req: dict) -> dict:
        c = self.container(req)
        if c.state != "CONTAINER_CREATED" or c.start_w < 0:
            raise RuntimeError(f"container {c.id} is {c.state}, not created")
        os.write(c.start_w, b"s")
        os.close(c.start_w)
        c.start_w = -1
        c.started_at = now_ns()
        assert c.sync is not None
        line, _ = recv_message(c.sync, timeout=30.0)
        c.sync.close()
        c.sync = None
        if line is not None:
            c.message = self.error_text(line, "start failed")
            c.reason = "StartError"
            try:
                os.waitpid(c.pid, 0)
            except ChildProcessError:
                pass
            self.exited(c, 128 << 8, start_error=True)
            raise RuntimeError(c.message)
        c.state = "CONTAINER_RUNNING"
        c.save()
        self.publish({"event": "started", "id": c.id, "at": c.started_at})
        return {"started_at": c.started_at}

    def op_kill(self, conn: Conn, req: dict) -> dict:
        c = self.container(req)
        if c.state in ("CONTAINER_RUNNING", "CONTAINER_CREATED") and c.pid:
            try:
                os.kill(c.pid, int(req.get("signal", signal.SIGKILL)))
            except ProcessLookupError:
                pass
        return {"state": c.state}

    def op_wait(self, conn: Conn, req: dict) -> dict | None:
        c = self.container(req)
        if c.state == "CONTAINER_EXITED":
            return c.record()
        conn.mode = "wait"
        c.waiters.append(conn)
        return None

    def op_state(self, conn: Conn, req: dict) -> dict:
        return {"containers": [c.record() for c in self.containers.values()]}

    def op_forget(self, conn: Conn, req: dict) -> dict:
        c = self.containers.get(req.get("id", ""))
        if c is not None and c.state != "CONTAINER_EXITED":
            raise RuntimeError(f"container {c.id} is still {c.state}")
        if c is not None:
            self.containers.pop(c.id, None)
            for fd in list(c.outputs):
                self.close_output(c, fd)
            if c.log is not None:
                c.log.close()
        return {}

    def op_reopen_log(self, conn: Conn, req: dict) -> dict:
        c = self.container(req)
        if c.log is None:
            path = c.spec.get("log_path")
            if not path:
                raise RuntimeError(f"container {c.id} has no log path")
            c.log = crilog.CriLogWriter(path)
        else:
            c.log.reopen()
        return {}

    def op_subscribe(self, conn: Conn, req: dict) -> dict:
        conn.mode = "subscribe"
        self.subscribers.append(conn)
        return {}

    def publish(self, event: dict) -> None:
        line = (json.dumps(event) + "\n").encode()
        for conn in list(self.subscribers):
            if not conn.send(line):
                self.drop(conn)

    def op_exec(self, conn: Conn, req: dict) -> dict | None:
        c = self.container(req)
        if c.state != "CONTAINER_RUNNING":
            raise RuntimeError(f"container {c.id} is not running")
        stdio: tuple[int, int, int] | None = None
        if not req.get("tty"):
            if len(conn.fds) < 3:
                raise RuntimeError("exec needs three file descriptors (stdin, stdout, stderr)")
            stdio = (conn.fds[0], conn.fds[1], conn.fds[2])
        report, report_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The exec'd process is the monitor's own child, born into the container's PID
        # namespace (as a container's init is), so the monitor reaps it and learns its exit.
        pidns = -1
        if self.config.get("pid", "CONTAINER") == "CONTAINER":
            pidns = os.open(f"/proc/{c.pid}/ns/pid", os.O_RDONLY)
            _sys.setns(pidns, _sys.CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pidns >= 0 and pid != 0:
                _sys.setns(self.own_pidns, _sys.CLONE_NEWPID)
                os.close(pidns)
        if pid == 0:
            try:
                exec_child(c.pid, c.spec, req, stdio, report_child)
            finally:
                os._exit(127)
        report_child.close()
        line, fds = recv_message(report, timeout=30.0)
        report.close()
        if line != "ready":
            for fd in fds:
                os.close(fd)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
            raise RuntimeError(self.error_text(line, "exec failed"))
        exec_pid = pid
        conn.mode = "exec"
        conn.target = exec_pid
        self.execs[exec_pid] = conn
        reply = (json.dumps({"ok": True, "pid": exec_pid}) + "\n").encode()
        try:
            if fds:
                socket.send_fds(conn.sock, [reply], fds)
            else:
                conn.send(reply)
        finally:
            for fd in fds:
                os.close(fd)
        return None

    def op_attach(self, conn: Conn, req: dict) -> dict:
        c = self.container(req)
        conn.mode = "attach"
        conn.target = c
        if c.state == "CONTAINER_EXITED":
            conn.reply({"ok": True})
            conn.send(FRAME_HEADER.pack(FRAME_EXIT, 4) + struct.pack("!i", c.exit_code))
            return None  # type: ignore[return-value]
        c.attached.append(conn)
        return {"tty": c.pty_master >= 0}

    def attach_input(self, conn: Conn) -> None:
        c = conn.target
        assert isinstance(c, Container)
        while len(conn.buf) >= FRAME_HEADER.size:
            kind, size = FRAME_HEADER.unpack_from(conn.buf)
            if len(conn.buf) < FRAME_HEADER.size + size:
                return
            payload = conn.buf[FRAME_HEADER.size : FRAME_HEADER.size + size]
            conn.buf = conn.buf[FRAME_HEADER.size + size :]
            if kind == FRAME_STDIN and c.stdin_w >= 0:
                try:
                    os.write(c.stdin_w, payload)
                except OSError:
                    pass
            elif kind == FRAME_CLOSE_STDIN and c.stdin_w >= 0 and c.stdin_w != c.pty_master:
                os.close(c.stdin_w)
                c.stdin_w = -1
            elif kind == FRAME_RESIZE and c.pty_master >= 0 and size == 4:
                cols, rows = struct.unpack("!HH", payload)
                winsize = struct.pack("HHHH", rows, cols, 0, 0)
                fcntl.ioctl(c.pty_master, termios.TIOCSWINSZ, winsize)

    def op_shutdown(self, conn: Conn, req: dict) -> dict:
        self.shutdown()
        return {}

    # -- exits -----------------------------------------------------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            c = self.by_pid.get(pid)
            if c is not None and c.state != "CONTAINER_EXITED":
                self.exited(c, status)
                continue
            conn = self.execs.pop(pid, None)
            if conn is not None:
                code, _ = exit_code_of(status)
                conn.reply({"exit_code": code})
                self.drop(conn)

    def exited(self, c: Container, status: int, start_error: bool = False) -> None:
        code, sig = exit_code_of(status)
        self.drain(c)
        c.exit_code = code
        c.finished_at = now_ns()
        c.state = "CONTAINER_EXITED"
        if not start_error:
            if sig == signal.SIGKILL and oom_kills(c.spec.get("oom_file")) > 0:
                c.reason = "OOMKilled"
            else:
                c.reason = "Completed" if code == 0 else "Error"
        if c.start_w >= 0:
            os.close(c.start_w)
        if c.sync is not None:
            c.sync.close()
        c.start_w, c.sync = -1, None
        if c.stdin_w >= 0 and c.stdin_w != c.pty_master:
            os.close(c.stdin_w)
        c.stdin_w = -1
        c.save()
        record = c.record()
        for conn in c.waiters:
            conn.reply({"ok": True, **record})
            self.drop(conn)
        c.waiters = []
        exit_frame = FRAME_HEADER.pack(FRAME_EXIT, 4) + struct.pack("!i", code)
        for conn in list(c.attached):
            conn.send(exit_frame)
            self.drop(conn)
        self.publish({"event": "exited", "id": c.id, "at": c.finished_at, **record})

    def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for c in self.containers.values():
            if c.state in ("CONTAINER_RUNNING", "CONTAINER_CREATED") and c.pid:
                try:
                    os.kill(c.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for pid in list(self.execs):
            self.kill_group(pid)
        if self.pod_init:
            os.kill(self.pod_init, signal.SIGKILL)

    def finish(self) -> None:
        deadline = time.monotonic() + 10
        while any(c.state != "CONTAINER_EXITED" for c in self.containers.values()):
            if time.monotonic() > deadline:
                break
            self.reap()
            time.sleep(0.005)
        for c in self.containers.values():
            self.drain(c)
            if c.log is not None:
                c.log.close()
        try:
            os.unlink(SOCKET_NAME)
        except OSError:
            pass
        for conn in list(self.subscribers):
            self.drop(conn)


def run_monitor(sandbox_dir: str, report: Callable[[str], None]) -> int:
    """Become the monitor of ``sandbox_dir``: set up, ``report`` ready (or the error), serve."""
    try:
        with open(os.path.join(sandbox_dir, "sandbox.json")) as f:
            config = json.load(f)
        log = os.open(
            os.path.join(sandbox_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        devnull = os.open("/dev/null", os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        monitor = Monitor(sandbox_dir, config.get("monitor", {}))
        monitor.setup()
    except BaseException as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        report("error " + json.dumps({"message": message}))
        return 1
    report(f"ready {os.getpid()}")
    monitor.serve()
    return 0


def zygote(channel_fd: int) -> int:
    """The runtime's zygote: with everything a monitor needs already imported (and frozen
    out of the garbage collector's reach, so forks share those pages), fork one monitor per
    request. Requests are ``{"sandbox_dir": ...}`` messages on a SOCK_SEQPACKET channel
    whose other end the runtime holds, each with a socket passed along (SCM_RIGHTS) on
    which the forked monitor answers with one message, ``ready <pid>`` or ``error {...}``
    (without one, on the channel itself). EOF on the channel (the runtime closed it or died)
    ends the zygote; the monitors it forked live on."""
    import gc

    channel = socket.socket(fileno=channel_fd)
    channel.settimeout(1.0)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    json.loads(json.dumps({"warm": [1]}))
    gc.collect()
    gc.freeze()
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        try:
            data, fds, _flags, _addr = socket.recv_fds(channel, 65536, 4)
        except TimeoutError:
            continue
        if not data:
            return 0
        answer = socket.socket(fileno=fds[0]) if fds else channel
        for extra in fds[1:]:
            os.close(extra)
        try:
            sandbox_dir = json.loads(data)["sandbox_dir"]
        except (ValueError, KeyError, TypeError):
            answer.send(b'error {"message": "malformed zygote request"}')
            if answer is not channel:
                answer.close()
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()
                if answer is not channel:
                    channel.close()
                answer.settimeout(None)

                def report(text: str, answer: socket.socket = answer) -> None:
                    answer.send(text.encode())
                    answer.close()

                code = run_monitor(sandbox_dir, report)
            finally:
                os._exit(code)
        if answer is not channel:
            answer.close()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--zygote":
        return zygote(int(argv[2]))
    sandbox_dir = argv[1]
    ready_fd = int(argv[2]) if len(argv) > 2 else -1

    def report(text: str) -> None:
        if ready_fd >= 0:
            os.write(ready_fd, (text + "\n").encode())
            os.close(ready_fd)

    return run_monitor(sandbox_dir, report)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
