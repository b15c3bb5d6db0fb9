"""Linux control groups for containers: find the host's layout, create, limit, watch, remove.

kcore never takes over a whole hierarchy. It puts its cgroups under the cgroup this process
already lives in, in a directory named ``root_name`` (``<own cgroup>/kcore/pod-<id>/<ctr>``),
so a kcore started by systemd, in a container or in a test keeps to its own subtree.

Three layouts are handled:

* ``v1``: one hierarchy per controller (``cpu`` and ``cpuacct`` may share one).
* ``v2``: the single unified hierarchy; kcore enables ``memory``, ``cpu`` and ``pids`` in
  ``cgroup.subtree_control`` of every directory from its own cgroup down to a container's.
* ``hybrid``: v1 controllers plus a mounted v2 hierarchy; each controller comes from the
  hierarchy that has it (usually v1; a controller missing from v1 is taken from v2).

Every file is read and written with plain ``os.open``/``os.read``/``os.write``: this is on
the container start path and the kernel wants each value in one ``write``.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kcore.errors import Invalid, NotFound, NotSupported, PermanentError, TemporaryError

#: Controllers kcore uses, by their v1 names.
CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
#: Hierarchy key of the cgroup v2 (unified) hierarchy in ``paths`` dictionaries.
UNIFIED = "unified"
#: v2 controllers to enable for a v1 name; cpuacct needs none (``cpu.stat`` is always there).
_V2_ENABLE = {"memory": "memory", "cpu": "cpu", "pids": "pids"}

_CPU_SHARES_MIN = 2
_CPU_SHARES_MAX = 262144


# --- file access -----------------------------------------------------------------------


def _write_raw(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _missing(path: Path) -> Exception:
    """A missing cgroup directory is NotFound; a missing file in one is a missing controller."""
    if not path.parent.is_dir():
        return NotFound(f"cgroup {path.parent} does not exist")
    return PermanentError(f"{path} does not exist: is its controller enabled for this cgroup?")


def _write(path: Path, value: str) -> None:
    try:
        _write_raw(path, value)
    except FileNotFoundError as exc:
        raise _missing(path) from exc
    except OSError as exc:
        raise _os_error(f"cannot write {value!r} to {path}", exc) from exc


def _read(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _missing(path) from exc
    except OSError as exc:
        raise _os_error(f"cannot read {path}", exc) from exc
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as exc:
        raise _os_error(f"cannot read {path}", exc) from exc
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def _os_error(what: str, exc: OSError) -> Exception:
    message = f"{what}: {exc.strerror or exc}"
    if exc.errno in (errno.EBUSY, errno.EAGAIN, errno.EINTR):
        return TemporaryError(message, retry_after=0.1)
    if exc.errno == errno.ESRCH:
        return NotFound(message)
    return PermanentError(message)


def _mkdir(path: Path) -> None:
    """Make one cgroup directory (the kernel fills in its files); existing is fine."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _os_error(f"cannot create cgroup {path}", exc) from exc


def _key_values(text: str) -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _read_int(path: Path) -> int:
    return int(_read(path).strip())


def _procs(procs_file: Path) -> list[int]:
    return [int(p) for p in _read(procs_file).split()]


# --- discovery -------------------------------------------------------------------------

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class _Mount:
    root: str
    mountpoint: Path
    fstype: str
    superoptions: frozenset[str]


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _parse_mountinfo(text: str) -> list[_Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            fstype, superoptions = fields[sep + 1], fields[sep + 3]
        except (ValueError, IndexError):
            continue
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            _Mount(
                root=_unescape(fields[3]),
                mountpoint=Path(_unescape(fields[4])),
                fstype=fstype,
                superoptions=frozenset(superoptions.split(",")),
            )
        )
    return mounts


def _parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each v1 controller, and ``""`` for v2, to this process's path in that hierarchy."""
    membership: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            membership[controller] = path
    return membership


def _own_dir(mounts: list[_Mount], cgroup_path: str) -> Path:
    """The directory of ``cgroup_path`` through the mount whose root contains it most closely.

    In a container without a cgroup namespace the mount root is the container's cgroup
    (``/docker/<id>``) and ``/proc/self/cgroup`` shows the same path, which is then the
    mount point itself.
    """
    best: tuple[int, Path] | None = None
    for mount in mounts:
        root = mount.root.rstrip("/")
        if cgroup_path == root or cgroup_path.startswith(root + "/"):
            rel = cgroup_path[len(root) :].lstrip("/")
            if best is None or len(root) > best[0]:
                best = (len(root), mount.mountpoint / rel if rel else mount.mountpoint)
    if best is not None:
        return best[1]
    # The path lies outside every mount's root (moved out of a cgroup namespace): the best
    # that can be done is the mount point itself.
    return mounts[0].mountpoint


def _check_name(name: str) -> list[str]:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Invalid(f"cgroup name {name!r} must be a relative path like 'pod-<id>/<container>'")
    return parts


class CgroupDriver:
    """Discovers the host's cgroup layout from /proc/self/mountinfo and /proc/self/cgroup.

    On v2, a cgroup that has processes cannot also hand controllers to children ("no
    internal processes"). If kcore's own cgroup is such a cgroup, the first :meth:`create`
    moves this process (only this one) into the leaf ``<own>/<root_name>-daemon`` and
    enables the controllers then. Other processes left in the own cgroup make that fail with
    a PermanentError naming them: start kcore in a cgroup of its own.
    """

    def __init__(
        self,
        *,
        mode: str,
        own: Mapping[str, Path],
        hierarchy: Mapping[str, str],
        root_name: str = "kcore",
    ) -> None:
        self.mode = mode
        self.root_name = root_name
        #: hierarchy key -> this process's own cgroup directory in that hierarchy
        self._own = dict(own)
        #: controller (v1 name) -> hierarchy key it is used from
        self._hierarchy = dict(hierarchy)
        self._v2_enable = sorted(
            _V2_ENABLE[c]
            for c, key in self._hierarchy.items()
            if key == UNIFIED and c in _V2_ENABLE
        )

    @classmethod
    def detect(
        cls,
        *,
        mountinfo: str | Path = "/proc/self/mountinfo",
        proc_cgroup: str | Path = "/proc/self/cgroup",
        root_name: str = "kcore",
    ) -> CgroupDriver:
        if not root_name or "/" in root_name or root_name in (".", ".."):
            raise Invalid(f"cgroup root name {root_name!r} must be one path component")
        mounts = _parse_mountinfo(Path(mountinfo).read_text())
        membership = _parse_proc_cgroup(Path(proc_cgroup).read_text())
        v1: dict[str, list[_Mount]] = {}
        v2: list[_Mount] = []
        for mount in mounts:
            if mount.fstype == "cgroup":
                for controller in mount.superoptions.intersection(CONTROLLERS):
                    v1.setdefault(controller, []).append(mount)
            else:
                v2.append(mount)
        unified = _own_dir(v2, membership[""]) if v2 and "" in membership else None
        if not v1 and unified is None:
            raise PermanentError(
                f"no cgroup hierarchy with {', '.join(CONTROLLERS)} in {mountinfo}"
            )

        own: dict[str, Path] = {}
        hierarchy: dict[str, str] = {}
        if not v1:
            assert unified is not None
            return cls(
                mode="v2",
                own={UNIFIED: unified},
                hierarchy=dict.fromkeys(CONTROLLERS, UNIFIED),
                root_name=root_name,
            )
        v2_available: set[str] = set()
        if unified is not None:
            try:
                v2_available = set(_read(unified / "cgroup.controllers").split())
            except (NotFound, PermanentError):
                pass
        for controller in CONTROLLERS:
            if controller in v1 and controller in membership:
                own[controller] = _own_dir(v1[controller], membership[controller])
                hierarchy[controller] = controller
            elif unified is not None and (
                controller == "cpuacct" or _V2_ENABLE[controller] in v2_available
            ):
                own[UNIFIED] = unified
                hierarchy[controller] = UNIFIED
        return cls(
            mode="hybrid" if unified is not None else "v1",
            own=own,
            hierarchy=hierarchy,
            root_name=root_name,
        )

    def parent_paths(self) -> dict[str, Path]:
        """Per hierarchy key, the directory kcore's cgroups go under: ``<own>/<root_name>``."""
        return {key: own / self.root_name for key, own in self._own.items()}

    def create(self, name: str) -> Cgroup:
        """Create ``name`` (and its parents) in every used hierarchy; existing is fine."""
        parts = [self.root_name, *_check_name(name)]
        for key, own in self._own.items():
            directory = own
            for part in parts:
                if key == UNIFIED:
                    self._enable_v2_controllers(directory)
                directory = directory / part
                _mkdir(directory)
        return self._cgroup(name)

    def open(self, name: str) -> Cgroup:
        """The existing cgroup ``name``; NotFound when any hierarchy lacks it."""
        cgroup = self._cgroup(name)
        for path in cgroup.paths.values():
            if not path.is_dir():
                raise NotFound(f"cgroup {path} does not exist")
        return cgroup

    def remove_tree(self, name: str) -> None:
        """Remove ``name`` and every cgroup below it (a pod with its containers)."""
        self._cgroup(name).remove()

    def _cgroup(self, name: str) -> Cgroup:
        _check_name(name)
        base = self.parent_paths()
        return Cgroup(name, {key: base[key] / name for key in self._own}, self._hierarchy)

    def _enable_v2_controllers(self, directory: Path) -> None:
        control = directory / "cgroup.subtree_control"
        enabled = {c.lstrip("+") for c in _read(control).split()}
        wanted = [c for c in self._v2_enable if c not in enabled]
        if not wanted:
            return
        payload = " ".join(f"+{c}" for c in wanted)
        try:
            _write_raw(control, payload)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or directory != self._own.get(UNIFIED):
                raise self._enable_error(directory, wanted, exc) from exc
        # "No internal processes": leave our own cgroup for a leaf, then try again.
        leaf = directory / f"{self.root_name}-daemon"
        _mkdir(leaf)
        _write(leaf / "cgroup.procs", "0")
        try:
            _write_raw(control, payload)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                others = _procs(directory / "cgroup.procs")
                raise PermanentError(
                    f"cannot enable {payload!r} in {control}: processes {others} remain in "
                    f"{directory}; run kcore in a cgroup of its own"
                ) from exc
            raise self._enable_error(directory, wanted, exc) from exc

    @staticmethod
    def _enable_error(directory: Path, wanted: list[str], exc: OSError) -> Exception:
        try:
            available = set(_read(directory / "cgroup.controllers").split())
        except (NotFound, PermanentError):
            available = set()
        missing = [c for c in wanted if c not in available]
        if missing:
            return PermanentError(
                f"cgroup v2 controllers {missing} are not delegated to {directory} "
                f"(see {directory / 'cgroup.controllers'})"
            )
        return _os_error(f"cannot enable {wanted} in {directory / 'cgroup.subtree_control'}", exc)


class Cgroup:
    """One container's (or pod's) cgroup, spread over the hierarchies the driver uses."""

    def __init__(self, name: str, paths: Mapping[str, Path], hierarchy: Mapping[str, str]):
        self.name = name
        #: hierarchy key ("memory", "cpu", "cpuacct", "pids" on v1; "unified" on v2) -> dir
        self.paths = dict(paths)
        self._hierarchy = dict(hierarchy)

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, {sorted(self.paths)})"

    def _dir(self, controller: str) -> tuple[Path, bool] | None:
        """(directory, is_v2) for a controller, or None when no hierarchy provides it."""
        key = self._hierarchy.get(controller)
        if key is None:
            return None
        return self.paths[key], key == UNIFIED

    def _need(self, controller: str, what: str) -> tuple[Path, bool]:
        found = self._dir(controller)
        if found is None:
            raise PermanentError(
                f"no {controller} controller on this host, needed for {what} of cgroup {self.name}"
            )
        return found

    def _dirs(self) -> list[Path]:
        return list(dict.fromkeys(self.paths.values()))

    def procs_files(self) -> list[Path]:
        """Every cgroup.procs a process must be written to, one per distinct directory."""
        return [d / "cgroup.procs" for d in self._dirs()]

    def add_process(self, pid: int) -> None:
        """Move ``pid`` (0: the caller) with all its threads into this cgroup."""
        for procs in self.procs_files():
            _write(procs, str(pid))

    def pids(self) -> list[int]:
        return _procs(self.procs_files()[0])

    # --- limits ------------------------------------------------------------------------

    def set_resources(
        self,
        *,
        memory_limit: int | None = None,
        cpu_shares: int | None = None,
        cpu_quota: int | None = None,
        cpu_period: int | None = None,
        pids_limit: int | None = None,
        memory_swap_limit: int | None = None,
        unified: Mapping[str, str] | None = None,
    ) -> None:
        """Apply limits; None leaves a limit as it is.

        Units follow CRI: bytes, v1 cpu shares, microseconds. ``memory_swap_limit`` is memory
        plus swap, as v1's memsw and CRI's ``memory_swap_limit_in_bytes``; on v2 it becomes
        ``memory.swap.max = memory_swap_limit - memory limit``. 0 or -1 means unlimited for
        memory, swap, quota and pids. The swap limit is skipped where the kernel has no swap
        accounting (no memsw / memory.swap.max file). ``unified`` writes raw v2 files.
        """
        if memory_limit is not None or memory_swap_limit is not None:
            self._set_memory(memory_limit, memory_swap_limit)
        if cpu_shares is not None:
            directory, v2 = self._need("cpu", "cpu.shares")
            shares = min(max(cpu_shares, _CPU_SHARES_MIN), _CPU_SHARES_MAX)
            if v2:
                _write(directory / "cpu.weight", str(shares_to_weight(shares)))
            else:
                _write(directory / "cpu.shares", str(shares))
        if cpu_quota is not None or cpu_period is not None:
            self._set_cpu_bandwidth(cpu_quota, cpu_period)
        if pids_limit is not None:
            directory, _ = self._need("pids", "pids.max")
            _write(directory / "pids.max", str(pids_limit) if pids_limit > 0 else "max")
        if unified:
            self._set_unified(unified)

    def _set_memory(self, memory: int | None, swap: int | None) -> None:
        directory, v2 = self._need("memory", "memory limits")
        if v2:
            if memory is not None:
                _write(directory / "memory.max", str(memory) if memory > 0 else "max")
            swap_file = directory / "memory.swap.max"
            if swap is not None and swap_file.exists():
                _write(swap_file, self._v2_swap(directory, memory, swap))
            return
        limit_file = directory / "memory.limit_in_bytes"
        memsw_file = directory / "memory.memsw.limit_in_bytes"
        new_memory = None if memory is None else (str(memory) if memory > 0 else "-1")
        new_memsw = None
        if swap is not None and memsw_file.exists():
            new_memsw = str(swap) if swap > 0 else "-1"
        if new_memory is None or new_memsw is None:
            if new_memory is not None:
                _write(limit_file, new_memory)
            if new_memsw is not None:
                _write(memsw_file, new_memsw)
            return
        # The kernel keeps memsw >= memory at every step: grow memsw first, shrink it last.
        current = _read_int(limit_file)
        growing = new_memory == "-1" or int(new_memory) > current
        order = [(memsw_file, new_memsw), (limit_file, new_memory)]
        for path, value in order if growing else reversed(order):
            _write(path, value)

    @staticmethod
    def _v2_swap(directory: Path, memory: int | None, swap: int) -> str:
        if swap <= 0:
            return "max"
        if memory is None:
            current = _read(directory / "memory.max").strip()
            memory = -1 if current == "max" else int(current)
        if memory <= 0:
            raise Invalid(f"a swap limit needs a memory limit ({directory / 'memory.max'} is max)")
        if swap < memory:
            raise Invalid(f"memory+swap limit {swap} is below the memory limit {memory}")
        return str(swap - memory)

    def _set_cpu_bandwidth(self, quota: int | None, period: int | None) -> None:
        directory, v2 = self._need("cpu", "the cpu quota")
        if v2:
            current_quota, _, current_period = _read(directory / "cpu.max").strip().partition(" ")
            quota_text = current_quota if quota is None else (str(quota) if quota > 0 else "max")
            period_text = current_period if period is None else str(period)
            _write(directory / "cpu.max", f"{quota_text} {period_text}".strip())
            return
        quota_file = directory / "cpu.cfs_quota_us"
        period_file = directory / "cpu.cfs_period_us"
        quota_text = None if quota is None else (str(quota) if quota > 0 else "-1")
        if period is not None:
            try:
                _write_raw(period_file, str(period))
            except OSError as exc:
                # A shorter period can break the current quota's ratio: set the quota first.
                if exc.errno != errno.EINVAL or quota_text is None:
                    raise _os_error(f"cannot write {period!r} to {period_file}", exc) from exc
                _write(quota_file, quota_text)
                _write(period_file, str(period))
                return
        if quota_text is not None:
            _write(quota_file, quota_text)

    def _set_unified(self, values: Mapping[str, str]) -> None:
        directory = self.paths.get(UNIFIED)
        if directory is None:
            raise NotSupported(
                f"raw cgroup v2 settings {sorted(values)} need the unified hierarchy, "
                "which this host does not use for kcore's controllers"
            )
        for file, value in values.items():
            if "/" in file or file.startswith(".") or not file:
                raise Invalid(f"{file!r} is not a cgroup interface file name")
            _write(directory / file, value)

    # --- state -------------------------------------------------------------------------

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has killed a process of this cgroup."""
        directory, v2 = self._need("memory", "OOM kills")
        if not v2:
            return _key_values(_read(directory / "memory.oom_control")).get("oom_kill", 0) > 0
        events = _key_values(_read(directory / "memory.events"))
        if "oom_kill" in events:
            return events["oom_kill"] > 0
        return events.get("oom", 0) > 0

    def stats(self) -> dict:
        """Usage now; a counter whose controller the host lacks reads 0."""
        timestamp = time.time_ns()
        cpu_ns = memory_usage = inactive_file = rss = pids_current = 0
        if found := self._dir("cpuacct"):
            directory, v2 = found
            if v2:
                cpu_ns = _key_values(_read(directory / "cpu.stat")).get("usage_usec", 0) * 1000
            else:
                cpu_ns = _read_int(directory / "cpuacct.usage")
        if found := self._dir("memory"):
            directory, v2 = found
            stat = _key_values(_read(directory / "memory.stat"))
            if v2:
                memory_usage = _read_int(directory / "memory.current")
                inactive_file, rss = stat.get("inactive_file", 0), stat.get("anon", 0)
            else:
                memory_usage = _read_int(directory / "memory.usage_in_bytes")
                inactive_file = stat.get("total_inactive_file", 0)
                rss = stat.get("total_rss", 0)
        if found := self._dir("pids"):
            pids_current = _read_int(found[0] / "pids.current")
        return {
            "cpu_usage_ns": cpu_ns,
            "memory_usage_bytes": memory_usage,
            "memory_working_set_bytes": max(memory_usage - inactive_file, 0),
            "memory_rss_bytes": rss,
            "pids_current": pids_current,
            "timestamp_ns": timestamp,
        }

    # --- teardown ----------------------------------------------------------------------

    def _all_pids(self) -> set[int]:
        """Processes in this cgroup and below, in any hierarchy; a vanished cgroup has none."""
        pids: set[int] = set()
        for directory in self._dirs():
            for procs in _walk_procs(directory):
                try:
                    pids.update(_procs(procs))
                except NotFound:
                    continue
        return pids

    def kill_all(self, sig: int = signal.SIGKILL, *, timeout: float = 5.0) -> None:
        """Signal every process in this cgroup and below.

        With SIGKILL, repeat until the cgroup is empty (processes may fork meanwhile), using
        v2's ``cgroup.kill`` where the kernel has it; TemporaryError if processes remain after
        ``timeout`` seconds. Other signals are sent once: a process may handle them.
        """
        deadline = time.monotonic() + timeout
        kill_file = self.paths[UNIFIED] / "cgroup.kill" if UNIFIED in self.paths else None
        delay = 0.001
        while True:
            pids = self._all_pids()
            if not pids:
                return
            if sig == signal.SIGKILL and kill_file is not None and kill_file.exists():
                try:
                    _write(kill_file, "1")
                except NotFound:
                    return
            else:
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            if sig != signal.SIGKILL:
                return
            if time.monotonic() >= deadline:
                raise TemporaryError(
                    f"processes {sorted(pids)} still in cgroup {self.name} after {timeout}s",
                    retry_after=1.0,
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, timeout: float = 5.0) -> None:
        """Remove this cgroup and any below it in every hierarchy; absent is fine.

        A cgroup whose processes are still exiting is busy for a moment: retried until
        ``timeout``, then TemporaryError.
        """
        deadline = time.monotonic() + timeout
        for directory in self._dirs():
            _rmdir_tree(directory, deadline)


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares to v2 cpu.weight, the formula Kubernetes and runc use."""
    if shares <= 0:
        return 0
    shares = min(max(shares, _CPU_SHARES_MIN), _CPU_SHARES_MAX)
    return 1 + ((shares - 2) * 9999) // 262142


def _subdirs(directory: Path) -> Iterable[Path]:
    try:
        with os.scandir(directory) as entries:
            return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _walk_procs(directory: Path) -> Iterable[Path]:
    yield directory / "cgroup.procs"
    for child in _subdirs(directory):
        yield from _walk_procs(child)


def _rmdir_tree(directory: Path, deadline: float) -> None:
    for child in _subdirs(directory):
        _rmdir_tree(child, deadline)
    delay = 0.001
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise _os_error(f"cannot remove cgroup {directory}", exc) from exc
            if time.monotonic() >= deadline:
                raise TemporaryError(
                    f"cgroup {directory} still busy (processes left in it?)", retry_after=1.0
                ) from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


__all__ = ["CONTROLLERS", "UNIFIED", "Cgroup", "CgroupDriver", "shares_to_weight"]
