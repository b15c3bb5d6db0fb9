"""The runtime conformance suite on runtime_linux, with a cgroup root unique to the run
that is removed afterwards (as is everything the suite started), and the suite's crash
injection: the sandbox's pod monitor killed behind the runtime's back."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import struct
import time
import uuid

import pytest
from hostnames import cleanup_runtime_dir, remove_cgroup_root

from kcore.conformance.suites.runtime import RuntimeConformance
from kcore.interfaces import CONTAINER_RUNNING
from kcore.settings import Settings

SYS_CLONE3 = 435  # the same number on every architecture


def _start_time(pid: int) -> int | None:
    """The start time of ``pid`` (``/proc/<pid>/stat`` field 22), None once it is dead
    (gone, or a zombie). The fixture reads it itself: runtime_linux's ``_process_start``
    is the code under test (and under mutation), so the fault must not depend on it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return None if fields[0] in (b"Z", b"X") else int(fields[19])


def _take_pid(pid: int) -> int | None:
    """Start ``sleep`` as process ``pid`` (clone3 with ``set_tid``; root): an unrelated
    process reusing a freed pid. None when the kernel refuses (the pid is taken again,
    or no clone3)."""
    sleep = shutil.which("sleep")
    if sleep is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    tid = (ctypes.c_int * 1)(pid)
    # struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    # stack_size, tls, set_tid, set_tid_size, cgroup.
    args = struct.pack("11Q", 0, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, ctypes.addressof(tid), 1, 0)
    buf = ctypes.create_string_buffer(args, len(args))
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        got = libc.syscall(SYS_CLONE3, buf, len(args))
        if got == 0:  # the child: let go of the test's stdio, become sleep at once
            try:
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.execv(sleep, ["sleep", "300"])
            finally:
                os._exit(127)
    finally:
        os.close(devnull)
    return got if got > 0 else None


async def _until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.02)


class TestRuntimeLinuxConformance(RuntimeConformance):
    @pytest.fixture
    def runtime_factory(self, tmp_path):
        from kcore.plugins.runtime_linux import create_backend
        from kcore.plugins.runtime_linux.cgroups import CgroupDriver

        name = f"kcore-conf-{uuid.uuid4().hex[:12]}"
        made: list[Settings] = []

        async def make(settings: Settings | None = None):
            if settings is None:
                data_dir = tmp_path / f"data{len(made)}"
                data_dir.mkdir()
                settings = Settings(data_dir=data_dir)
            settings = Settings(
                data_dir=settings.data_dir,
                options={**settings.options, "runtime_cgroup_name": name},
            )
            made.append(settings)
            return await create_backend(settings)

        yield make
        for settings in made:
            cleanup_runtime_dir(settings.data_dir)
        remove_cgroup_root(CgroupDriver.detect(root_name=name).parent_paths())

    @pytest.fixture
    def crash_sandbox(self):
        """SIGKILL the sandbox's pod monitor, its infra process (``pid`` in its status),
        as a crash or the OOM killer would; its containers die with it (their init has
        PR_SET_PDEATHSIG). Once the monitor's parent has reaped it, a ``sleep`` of ours
        takes its pid, as an unrelated process on a busy node would; it is killed after
        the test."""
        squatters: list[int] = []

        async def crash(backend, sandbox_id: str) -> None:
            rt = backend.runtime
            monitor = (await rt.pod_sandbox_status(sandbox_id)).get("pid")
            assert monitor, f"sandbox {sandbox_id} reports no pid for its pod monitor"
            running = await rt.list_containers(
                {"pod_sandbox_id": sandbox_id, "state": CONTAINER_RUNNING}
            )
            victims = {monitor: _start_time(monitor)}
            victims.update((c["pid"], _start_time(c["pid"])) for c in running if c.get("pid"))
            os.kill(monitor, signal.SIGKILL)

            def all_dead() -> bool:
                return all(_start_time(pid) != start for pid, start in victims.items())

            await _until(all_dead, "the pod monitor and its containers to die")

            def reaped() -> bool:
                if not os.path.exists(f"/proc/{monitor}"):
                    return True
                return _start_time(monitor) not in (None, victims[monitor])

            # The monitor's parent (the runtime's zygote) reaps it within a second or so;
            # then the pid is free, unless another process took it already.
            await _until(reaped, "the pod monitor to be reaped")
            squatter = _take_pid(monitor)
            if squatter is not None:
                squatters.append(squatter)

        yield crash
        for pid in squatters:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
