"""runtime_linux beyond the shared conformance suite: what only real Linux containers show
(start errors, tty, attach, OOM, the cgroup tree, the daemon going away, bad input leaving
nothing behind)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kcore.errors import BadRequest, Invalid, NotFound, PermanentError
from kcore.interfaces import CONTAINER_EXITED, CONTAINER_RUNNING, SANDBOX_READY

from .conftest import IMAGE


def sandbox_config(tmp_path: Path, name: str = "pod", **extra) -> dict:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "namespace": "default", "attempt": 0},
        "hostname": name,
        "log_directory": str(tmp_path / "logs" / name),
        **extra,
    }


def container_config(name: str, command: list[str], **extra) -> dict:
    return {
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": IMAGE},
        "command": command,
        "log_path": f"{name}/0.log",
        **extra,
    }


async def wait_state(runtime, cid: str, state: str, timeout: float = 10.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await runtime.container_status(cid)
        if status["state"] == state:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"container stayed {status['state']}, wanted {state}")
        await asyncio.sleep(0.05)


async def run(runtime, sid: str, name: str, command: list[str], **extra) -> str:
    cid = await runtime.create_container(sid, container_config(name, command, **extra), {})
    await runtime.start_container(cid)
    return cid


async def test_missing_command_is_a_start_error(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await rt.create_container(sid, container_config("bad", ["nosuchcmd"]), {})
    with pytest.raises(PermanentError, match=r'exec: "nosuchcmd": executable file not found'):
        await rt.start_container(cid)
    status = await rt.container_status(cid)
    assert status["state"] == CONTAINER_EXITED
    assert status["reason"] == "StartError"
    assert status["exit_code"] == 128
    assert "nosuchcmd" in status["message"]


async def test_tty_exec_and_stdin(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(rt, sid, "main", ["sleep", "3600"])
    session = await rt.exec(cid, ["sh", "-c", "stty size; tty"], tty=True)
    await session.resize(100, 40)
    code = await session.wait()
    out = b""
    while (item := await session.read()) is not None:
        out += item[1]
    assert code == 0
    assert b"/dev/pts/" in out

    session = await rt.exec(cid, ["sh", "-c", "cat; echo bye >&2"], stdin=True)
    await session.write_stdin(b"ping\n")
    await session.close_stdin()
    got: dict[str, bytes] = {"stdout": b"", "stderr": b""}
    while (item := await session.read()) is not None:
        got[item[0]] += item[1]
    assert await session.wait() == 0
    assert got == {"stdout": b"ping\n", "stderr": b"bye\n"}


async def test_attach_streams_output_and_feeds_stdin(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(
        rt, sid, "att", ["sh", "-c", "read x; echo got $x; echo e >&2; exit 4"], stdin=True
    )
    session = await rt.attach(cid, stdin=True)
    await session.write_stdin(b"hello\n")
    pieces = []
    while (item := await session.read()) is not None:
        pieces.append(item)
    assert await session.wait() == 4
    assert ("stdout", b"got hello\n") in pieces
    assert ("stderr", b"e\n") in pieces
    status = await wait_state(rt, cid, CONTAINER_EXITED)
    assert status["exit_code"] == 4 and status["reason"] == "Error"


async def test_oom_kill_is_reported(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    limits = {"resources": {"memory_limit_in_bytes": 15 * 1024 * 1024}}
    cid = await run(
        rt, sid, "oom", ["sh", "-c", "x=$(yes | head -c 67108864); echo ${#x}"], linux=limits
    )
    status = await wait_state(rt, cid, CONTAINER_EXITED, timeout=30)
    assert (status["reason"], status["exit_code"]) == ("OOMKilled", 137)


async def test_containers_live_in_cgroups_under_the_runtime_root(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    limits = {"resources": {"memory_limit_in_bytes": 64 << 20, "cpu_shares": 512, "pids_limit": 50}}
    cid = await run(rt, sid, "c", ["sleep", "3600"], linux=limits)
    pid = (await rt.container_status(cid))["pid"]
    cgroup_lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    paths = {line.split(":")[1]: line.split(":")[2] for line in cgroup_lines}
    root = rt.cgroups.parent_paths()
    assert paths["memory"].endswith(f"/pod-{sid}/{cid}")
    assert str(root["memory"]).endswith(paths["memory"].rsplit(f"/pod-{sid}", 1)[0])
    memory_dir = root["memory"] / f"pod-{sid}" / cid
    assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 64 << 20
    await rt.update_container_resources(cid, {"resources": {"memory_limit_in_bytes": 80 << 20}})
    assert int((memory_dir / "memory.limit_in_bytes").read_text()) == 80 << 20
    stats = await rt.container_stats(cid)
    assert stats["memory"]["usage_bytes"] > 0
    await rt.remove_pod_sandbox(sid)
    assert not (root["memory"] / f"pod-{sid}").exists()
    assert not list((Path(linux_backend.runtime.root) / "containers").iterdir())


async def test_exec_timeout_kills_the_process(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(rt, sid, "c", ["sleep", "3600"])
    from kcore.errors import TemporaryError

    with pytest.raises(TemporaryError, match="timed out"):
        await rt.exec_sync(cid, ["sleep", "77"], timeout=1)
    out, _, _ = await rt.exec_sync(cid, ["ps", "-o", "args"], timeout=5)
    assert b"sleep 77" not in out


async def test_bad_input_leaves_nothing_behind(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    containers = Path(rt.root) / "containers"
    pod_cgroup = rt.cgroups.parent_paths()["memory"] / f"pod-{sid}"
    host_dir = tmp_path / "vol"
    host_dir.mkdir()
    cases = [
        (BadRequest, [{"container_path": "/x", "host_path": str(tmp_path / "missing")}]),
        (Invalid, [{"container_path": "/x/../../etc", "host_path": str(host_dir)}]),
        (Invalid, [{"container_path": "relative", "host_path": str(host_dir)}]),
        (
            Invalid,
            [{"container_path": "/x", "host_path": str(host_dir), "propagation": "SIDEWAYS"}],
        ),
    ]
    for error, mounts in cases:
        with pytest.raises(error):
            await rt.create_container(sid, container_config("m", ["true"], mounts=mounts), {})
    with pytest.raises(NotFound, match="not present"):
        await rt.create_container(
            sid, {**container_config("i", ["true"]), "image": {"image": "nope:1"}}, {}
        )
    with pytest.raises(Invalid, match="run_as_group"):
        security = {"security_context": {"run_as_group": {"value": 5}}}
        await rt.create_container(sid, container_config("g", ["true"], linux=security), {})
    with pytest.raises(NotFound):
        await rt.start_container("0" * 64)
    with pytest.raises(NotFound):
        await rt.container_status("../../etc")
    assert not list(containers.iterdir())
    assert not [p for p in pod_cgroup.iterdir() if p.is_dir()]


async def test_image_without_a_command_is_refused(linux_backend, tmp_path):
    from kcore.conformance.testimages import build_busybox_layout

    layout = build_busybox_layout(tmp_path / "nocmd", ref_name="kcore.test/nocmd:1", cmd=None)
    await linux_backend.images.import_image(layout)
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    config = {**container_config("n", []), "image": {"image": "kcore.test/nocmd:1"}}
    with pytest.raises(Invalid, match="no command"):
        await rt.create_container(sid, config, {})
    assert not list((Path(rt.root) / "containers").iterdir())


async def test_user_from_image_passwd(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    security = {"security_context": {"run_as_username": "nobody"}}
    cid = await run(rt, sid, "u", ["sleep", "3600"], linux=security)
    out, _, code = await rt.exec_sync(cid, ["id", "-u"], timeout=5)
    assert (out, code) == (b"65534\n", 0)
    with pytest.raises(Invalid, match="not found"):
        security = {"security_context": {"run_as_username": "ghost"}}
        await rt.create_container(sid, container_config("g", ["true"], linux=security), {})


async def test_capabilities_are_bounded(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(rt, sid, "c", ["sleep", "3600"])
    out, _, _ = await rt.exec_sync(cid, ["grep", "CapBnd", "/proc/1/status"], timeout=5)
    bounding = int(out.split()[1], 16)
    assert bounding & (1 << 21) == 0  # no CAP_SYS_ADMIN
    assert bounding & (1 << 0)  # CAP_CHOWN kept
    _, _err, code = await rt.exec_sync(cid, ["mount", "-t", "tmpfs", "t", "/mnt"], timeout=5)
    assert code != 0


async def test_containers_outlive_the_process_that_started_them(
    linux_settings, busybox_layout, tmp_path
):
    """A separate Python process plays the daemon: it starts a pod and exits without
    stopping it. A new runtime on the same data dir sees the container running, execs in
    it, and reports its exit code once it is stopped."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from pathlib import Path
        from kcore.settings import Settings
        from kcore.plugins.runtime_linux import create_backend

        async def main():
            settings = Settings(data_dir=Path({str(linux_settings.data_dir)!r}),
                                options={dict(linux_settings.options)!r})
            backend = await create_backend(settings)
            await backend.images.import_image(Path({str(busybox_layout)!r}))
            rt = backend.runtime
            sid = await rt.run_pod_sandbox({json.dumps(sandbox_config(tmp_path))})
            cid = await rt.create_container(sid, {json.dumps(container_config("long", ["sh", "-c", "trap 'exit 42' TERM; echo up; while true; do sleep 0.1; done"]))}, {{}})
            await rt.start_container(cid)
            await backend.close()
            print(json.dumps([sid, cid]))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    sid, cid = json.loads(done.stdout.strip().splitlines()[-1])

    from kcore.plugins.runtime_linux import create_backend

    backend = await create_backend(linux_settings)
    try:
        rt = backend.runtime
        assert (await rt.pod_sandbox_status(sid))["state"] == SANDBOX_READY
        assert (await rt.container_status(cid))["state"] == CONTAINER_RUNNING
        assert await rt.exec_sync(cid, ["echo", "still here"], timeout=5) == (
            b"still here\n",
            b"",
            0,
        )
        await rt.stop_container(cid, timeout=10)
        status = await rt.container_status(cid)
        assert (status["state"], status["exit_code"]) == (CONTAINER_EXITED, 42)
        log = Path(status["log_path"]).read_text()
        assert " stdout F up\n" in log
        await rt.remove_pod_sandbox(sid)
    finally:
        await backend.close()


async def test_monitor_exits_on_sigterm_and_kills_its_containers(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(rt, sid, "c", ["sleep", "3600"])
    container_pid = (await rt.container_status(cid))["pid"]
    monitor_pid = (await rt.pod_sandbox_status(sid))["pid"]
    os.kill(monitor_pid, 15)
    deadline = asyncio.get_running_loop().time() + 10
    while (await rt.pod_sandbox_status(sid))["state"] == SANDBOX_READY:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    status = await rt.container_status(cid)
    assert status["state"] == CONTAINER_EXITED and status["exit_code"] == 137
    assert (
        not Path(f"/proc/{container_pid}").exists()
        or "Z" in Path(f"/proc/{container_pid}/stat").read_text().split(")")[1][:3]
    )


@pytest.fixture
def shared_dir(tmp_path: Path):
    """A host directory that is a shared mount of its own (as a kubelet's pod volumes dir
    is on a systemd host), unmounted afterwards with everything below it."""
    directory = tmp_path / "shared"
    directory.mkdir()
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(directory)], check=True)
        yield directory
    finally:
        subprocess.run(["umount", "-R", "-l", str(directory)], check=False)


async def test_mount_propagation(linux_backend, tmp_path, shared_dir):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    kinds = {
        "/private": "PROPAGATION_PRIVATE",
        "/slave": "PROPAGATION_HOST_TO_CONTAINER",
        "/both": "PROPAGATION_BIDIRECTIONAL",
    }
    mounts = [
        {"container_path": path, "host_path": str(shared_dir), "propagation": propagation}
        for path, propagation in kinds.items()
    ]
    security = {"security_context": {"privileged": True}}
    cid = await run(rt, sid, "c", ["sleep", "3600"], mounts=mounts, linux=security)
    from_host = shared_dir / "from-host"
    from_host.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "fromhost", str(from_host)], check=True)
    (from_host / "marker").write_text("host")
    for path, seen in (("/private", False), ("/slave", True), ("/both", True)):
        out, _, _ = await rt.exec_sync(cid, ["cat", f"{path}/from-host/marker"], timeout=5)
        assert (out == b"host") == seen, (path, out)
    (shared_dir / "from-container").mkdir()
    _, err, code = await rt.exec_sync(
        cid, ["mount", "-t", "tmpfs", "fromcontainer", "/both/from-container"], timeout=5
    )
    assert code == 0, err
    await rt.exec_sync(cid, ["sh", "-c", "echo ctr > /both/from-container/marker"], timeout=5)
    assert (shared_dir / "from-container" / "marker").read_text() == "ctr\n"
    host_mounts = Path("/proc/self/mountinfo").read_text()
    assert str(Path(rt.root) / "containers") not in host_mounts  # the root never leaks out


async def test_bidirectional_needs_a_shared_mount(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()
    mounts = [
        {
            "container_path": "/b",
            "host_path": str(plain),
            "propagation": "PROPAGATION_BIDIRECTIONAL",
        }
    ]
    with pytest.raises(BadRequest, match="not a shared mount"):
        await rt.create_container(sid, container_config("c", ["true"], mounts=mounts), {})


async def test_pod_pid_namespace_is_shared_on_request(linux_backend, tmp_path):
    rt = linux_backend.runtime
    options = {"security_context": {"namespace_options": {"pid": "POD"}}}
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path, linux=options))
    first = await run(rt, sid, "first", ["sleep", "3601"])
    second = await run(rt, sid, "second", ["sleep", "3602"])
    out, _, _ = await rt.exec_sync(second, ["ps", "-o", "pid,args"], timeout=5)
    assert b"sleep 3601" in out and b"sleep 3602" in out
    # PID 1 is the pod's reaper, not a container's command.
    assert b"sleep" not in out.splitlines()[1]
    # Separate namespaces when not asked: each container sees only itself.
    sid2 = await rt.run_pod_sandbox(sandbox_config(tmp_path, name="other"))
    alone = await run(rt, sid2, "alone", ["sleep", "3603"])
    out, _, _ = await rt.exec_sync(alone, ["ps", "-o", "pid,args"], timeout=5)
    assert b"sleep 3603" in out.splitlines()[1] and b"3601" not in out
    await rt.remove_pod_sandbox(sid)
    assert (await rt.container_status(alone))["state"] == CONTAINER_RUNNING
    assert await rt.list_containers({"pod_sandbox_id": sid}) == []
    _ = first


async def test_tty_container_attach_and_log(linux_backend, tmp_path):
    rt = linux_backend.runtime
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path))
    cid = await run(rt, sid, "shell", ["sh"], tty=True, stdin=True)
    session = await rt.attach(cid, stdin=True)
    assert session.tty
    await session.resize(120, 30)
    await session.write_stdin(b"tty; stty size; exit 5\n")
    out = b""
    while (item := await session.read()) is not None:
        assert item[0] == "stdout"
        out += item[1]
    assert await session.wait() == 5
    assert b"/dev/pts/0" in out and b"30 120" in out
    status = await wait_state(rt, cid, CONTAINER_EXITED)
    assert status["exit_code"] == 5
    log = Path(status["log_path"]).read_text()
    assert " stdout " in log and "/dev/pts/0" in log and " stderr " not in log


async def test_sandboxes_start_concurrently_and_survive_a_dead_zygote(linux_backend, tmp_path):
    rt = linux_backend.runtime
    ids = await asyncio.gather(
        *(rt.run_pod_sandbox(sandbox_config(tmp_path, name=f"pod{i}")) for i in range(8))
    )
    statuses = [await rt.pod_sandbox_status(sid) for sid in ids]
    assert {s["state"] for s in statuses} == {"SANDBOX_READY"}
    assert len({s["pid"] for s in statuses}) == 8
    rt._zygote.kill()  # the zygote dies: the next sandbox gets a new one
    rt._zygote.wait()
    sid = await rt.run_pod_sandbox(sandbox_config(tmp_path, name="after"))
    assert (await rt.pod_sandbox_status(sid))["state"] == "SANDBOX_READY"
