"""cgroups: real cgroups on this host under a name unique to the run, and the v1, v2 and
hybrid layouts on fake cgroupfs trees under tmp_path."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kcore.errors import Invalid, NotFound, NotSupported, PermanentError, TemporaryError
from kcore.plugins.runtime_linux import cgroups
from kcore.plugins.runtime_linux.cgroups import UNIFIED, Cgroup, CgroupDriver, shares_to_weight

MiB = 1 << 20


# --- real cgroups on this host ---------------------------------------------------------


def _purge(directory: Path, deadline: float) -> None:
    """Kill what is left in ``directory`` and below, then remove it; independent of cgroups.py."""
    if not directory.is_dir():
        return
    for child in [p for p in directory.iterdir() if p.is_dir()]:
        _purge(child, deadline)
    while True:
        try:
            for pid in (directory / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.fixture
def driver():
    """A driver whose root is unique to this test; everything below it is removed after."""
    if os.geteuid() != 0:
        pytest.skip("real cgroups need root")
    root_name = f"kcore-test-{uuid.uuid4().hex[:12]}"
    drv = CgroupDriver.detect(root_name=root_name)
    parents = drv.parent_paths()
    unified_own = parents[UNIFIED].parent if UNIFIED in parents else None
    saved_subtree = (
        (unified_own / "cgroup.subtree_control").read_text().split() if unified_own else []
    )
    try:
        yield drv
    finally:
        deadline = time.monotonic() + 10
        for parent in dict.fromkeys(parents.values()):
            _purge(parent, deadline)
        if unified_own is not None:
            # A v2 host where create() had to leave our own cgroup: undo that.
            daemon = unified_own / f"{root_name}-daemon"
            if daemon.is_dir():
                enabled = (unified_own / "cgroup.subtree_control").read_text().split()
                extra = [c for c in enabled if c not in saved_subtree]
                if extra:
                    (unified_own / "cgroup.subtree_control").write_text(
                        " ".join(f"-{c}" for c in extra)
                    )
                (unified_own / "cgroup.procs").write_text(str(os.getpid()))
                os.rmdir(daemon)


def _spawn_in(cgroup: Cgroup, code: str, **popen) -> subprocess.Popen:
    """Start ``python -c code`` inside ``cgroup`` before it runs any of ``code``."""
    script = 'for f in "$@"; do echo $$ > "$f" || exit 99; done; exec "$PY" -I -S -c "$CODE"'
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PY": sys.executable, "CODE": code}
    files = [str(f) for f in cgroup.procs_files()]
    return subprocess.Popen(["sh", "-c", script, "sh", *files], env=env, **popen)


def _cleanup_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout:
        proc.stdout.close()


def _v2(cgroup: Cgroup, controller: str) -> bool:
    return UNIFIED in cgroup.paths and controller not in cgroup.paths


def _read(cgroup: Cgroup, key: str, file: str) -> str:
    return (cgroup.paths[key] / file).read_text().strip()


def test_detect_this_host(driver):
    assert driver.mode in ("v1", "v2", "hybrid")
    parents = driver.parent_paths()
    if driver.mode == "v2":
        assert set(parents) == {UNIFIED}
    else:
        assert {"memory", "cpu", "cpuacct", "pids"} <= set(parents) | {UNIFIED}
    membership = dict(
        (line.split(":", 2)[1], line.split(":", 2)[2])
        for line in Path("/proc/self/cgroup").read_text().splitlines()
    )
    for key, parent in parents.items():
        assert parent.name == driver.root_name
        assert parent.parent.is_dir()
        assert (parent.parent / "cgroup.procs").is_file()
        if key != UNIFIED:
            own = next(v for k, v in membership.items() if key in k.split(","))
            assert str(parent.parent).endswith(own.rstrip("/")) or own == "/"


def test_create_set_resources_and_read_back(driver):
    cg = driver.create("pod-a/c1")
    assert driver.create("pod-a/c1").paths == cg.paths  # idempotent
    for path in cg.paths.values():
        assert path.is_dir()
        assert path.parent.name == "pod-a"
    assert len(cg.procs_files()) == len(set(cg.paths.values()))

    has_memsw = (
        cg.paths.get("memory", Path("/nonexistent")) / "memory.memsw.limit_in_bytes"
    ).exists()
    cg.set_resources(
        memory_limit=64 * MiB,
        memory_swap_limit=64 * MiB,
        cpu_shares=512,
        cpu_quota=50_000,
        cpu_period=100_000,
        pids_limit=100,
    )
    if _v2(cg, "memory"):
        assert _read(cg, UNIFIED, "memory.max") == str(64 * MiB)
    else:
        assert _read(cg, "memory", "memory.limit_in_bytes") == str(64 * MiB)
        if has_memsw:
            assert _read(cg, "memory", "memory.memsw.limit_in_bytes") == str(64 * MiB)
    if _v2(cg, "cpu"):
        assert _read(cg, UNIFIED, "cpu.weight") == str(shares_to_weight(512))
        assert _read(cg, UNIFIED, "cpu.max") == "50000 100000"
    else:
        assert _read(cg, "cpu", "cpu.shares") == "512"
        assert _read(cg, "cpu", "cpu.cfs_quota_us") == "50000"
        assert _read(cg, "cpu", "cpu.cfs_period_us") == "100000"
    assert _read(cg, "pids" if "pids" in cg.paths else UNIFIED, "pids.max") == "100"

    # Growing and shrinking memory with swap accounting needs the right order of writes.
    cg.set_resources(memory_limit=128 * MiB, memory_swap_limit=128 * MiB)
    cg.set_resources(memory_limit=32 * MiB, memory_swap_limit=32 * MiB)
    if not _v2(cg, "memory"):
        assert _read(cg, "memory", "memory.limit_in_bytes") == str(32 * MiB)
        if has_memsw:
            assert _read(cg, "memory", "memory.memsw.limit_in_bytes") == str(32 * MiB)
    # A shorter period with a new quota, then no limits at all.
    cg.set_resources(cpu_quota=5_000, cpu_period=10_000)
    cg.set_resources(memory_limit=0, memory_swap_limit=-1, cpu_quota=-1, pids_limit=0)
    if _v2(cg, "memory"):
        assert _read(cg, UNIFIED, "memory.max") == "max"
    else:
        assert int(_read(cg, "memory", "memory.limit_in_bytes")) > 1 << 60
    if _v2(cg, "cpu"):
        assert _read(cg, UNIFIED, "cpu.max") == "max 10000"
    else:
        assert _read(cg, "cpu", "cpu.cfs_quota_us") == "-1"
        assert _read(cg, "cpu", "cpu.cfs_period_us") == "10000"
    assert _read(cg, "pids" if "pids" in cg.paths else UNIFIED, "pids.max") == "max"

    if UNIFIED not in cg.paths:
        with pytest.raises(NotSupported):
            cg.set_resources(unified={"memory.high": "max"})
    with pytest.raises(PermanentError, match=r"cpu\.cfs_quota_us|cpu\.max"):
        cg.set_resources(cpu_quota=10)  # below the kernel's minimum of 1ms

    cg.remove()
    assert not any(path.exists() for path in cg.paths.values())
    cg.remove()  # already gone: fine


def test_process_lifecycle(driver):
    cg = driver.create("pod-b/c1")
    code = (
        "import time; b = b'x' * (8 << 20); sum(range(2_000_000)); "
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = _spawn_in(cg, code, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        assert cg.pids() == [proc.pid]
        stats = cg.stats()
        assert stats["cpu_usage_ns"] > 0
        assert stats["memory_usage_bytes"] >= 8 * MiB
        assert 0 < stats["memory_working_set_bytes"] <= stats["memory_usage_bytes"]
        assert stats["memory_rss_bytes"] >= 8 * MiB
        assert stats["pids_current"] == 1
        assert abs(stats["timestamp_ns"] - time.time_ns()) < 10**10
        assert not cg.oom_killed()

        with pytest.raises(TemporaryError, match="busy"):
            cg.remove(timeout=0.1)

        cg.kill_all()
        assert cg.pids() == []
        assert proc.wait(timeout=10) == -signal.SIGKILL
        cg.kill_all()  # empty: nothing to do
        cg.remove()
        assert not any(path.exists() for path in cg.paths.values())
    finally:
        _cleanup_process(proc)


def test_kill_all_with_a_catchable_signal_sends_once(driver):
    cg = driver.create("pod-c/c1")
    proc = _spawn_in(
        cg, "import time; print('ready', flush=True); time.sleep(60)", stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline() == b"ready\n"
        cg.kill_all(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        _cleanup_process(proc)


def test_add_process_zero_moves_the_caller(driver):
    cg = driver.create("pod-d/c1")
    code = (
        "import sys, time\n"
        "from kcore.plugins.runtime_linux.cgroups import CgroupDriver\n"
        f"CgroupDriver.detect(root_name={driver.root_name!r}).open('pod-d/c1').add_process(0)\n"
        "print('moved', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"moved\n"
        for procs in cg.procs_files():
            assert procs.read_text().split() == [str(proc.pid)]
        cg.kill_all()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        _cleanup_process(proc)


def test_add_process_of_a_missing_process(driver):
    cg = driver.create("pod-e/c1")
    with pytest.raises(NotFound):
        cg.add_process(2**22 + 12345)


def test_oom_kill_is_seen(driver):
    oom = driver.create("pod-oom/hungry")
    fine = driver.create("pod-oom/modest")
    for cg in (oom, fine):
        cg.set_resources(memory_limit=16 * MiB, memory_swap_limit=16 * MiB)
    hungry = _spawn_in(oom, "b = b'x' * (64 << 20)")
    modest = _spawn_in(fine, "b = b'x' * (1 << 20)")
    try:
        assert hungry.wait(timeout=60) == -signal.SIGKILL
        assert modest.wait(timeout=60) == 0
        assert oom.oom_killed()
        assert not fine.oom_killed()
    finally:
        _cleanup_process(hungry)
        _cleanup_process(modest)


def test_open_remove_tree_and_names(driver):
    with pytest.raises(NotFound):
        driver.open("pod-f/c1")
    driver.create("pod-f/c1")
    driver.create("pod-f/c2")
    opened = driver.open("pod-f/c1")
    assert opened.name == "pod-f/c1"
    assert all(path.is_dir() for path in opened.paths.values())
    driver.remove_tree("pod-f")
    for parent in driver.parent_paths().values():
        assert not (parent / "pod-f").exists()
    driver.remove_tree("pod-f")  # absent: fine
    for bad in ("", "/abs", "../escape", "pod/../x", "pod//c"):
        with pytest.raises(Invalid):
            driver.create(bad)


# --- fake cgroupfs trees ---------------------------------------------------------------

V2_FILES = {
    "cgroup.procs": "",
    "cgroup.subtree_control": "",
    "memory.max": "max\n",
    "memory.high": "max\n",
    "memory.swap.max": "max\n",
    "memory.current": "0\n",
    "memory.stat": "anon 0\ninactive_file 0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    "cpu.weight": "100\n",
    "cpu.max": "max 100000\n",
    "cpu.stat": "usage_usec 0\n",
    "pids.max": "max\n",
    "pids.current": "0\n",
}


def _fake_v2_mkdir(path: Path) -> None:
    """Like the kernel: a new cgroup directory comes with its interface files."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    for name, content in V2_FILES.items():
        (path / name).write_text(content)
    parent_control = path.parent / "cgroup.subtree_control"
    if parent_control.exists():
        (path / "cgroup.controllers").write_text(parent_control.read_text().replace("+", ""))


def _write_proc_files(tmp_path: Path, mounts: list[str], cgroup_lines: list[str]):
    mountinfo = tmp_path / "mountinfo"
    proc_cgroup = tmp_path / "cgroup"
    mountinfo.write_text(
        "22 1 0:20 / /proc rw,nosuid - proc proc rw\n"
        + "".join(f"{30 + i} 23 0:{40 + i} {m}\n" for i, m in enumerate(mounts))
    )
    proc_cgroup.write_text("".join(f"{line}\n" for line in cgroup_lines))
    return {"mountinfo": mountinfo, "proc_cgroup": proc_cgroup}


@pytest.fixture
def fake_v2(tmp_path, monkeypatch):
    root = tmp_path / "fs"
    own = root / "user.slice" / "kcore.service"
    own.mkdir(parents=True)
    for name, content in V2_FILES.items():
        (own / name).write_text(content)
    (own / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    monkeypatch.setattr(cgroups, "_mkdir", _fake_v2_mkdir)
    files = _write_proc_files(
        tmp_path,
        [f"/ {root} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"],
        ["0::/user.slice/kcore.service"],
    )
    drv = CgroupDriver.detect(**files)
    return drv, own


def test_detect_v2(fake_v2):
    drv, own = fake_v2
    assert drv.mode == "v2"
    assert drv.parent_paths() == {UNIFIED: own / "kcore"}


def test_v2_create_enables_controllers_down_to_the_pod(fake_v2):
    drv, own = fake_v2
    cg = drv.create("pod-a/c1")
    assert cg.paths == {UNIFIED: own / "kcore" / "pod-a" / "c1"}
    for directory in (own, own / "kcore", own / "kcore" / "pod-a"):
        assert (directory / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (own / "kcore/pod-a/c1/cgroup.subtree_control").read_text() == ""
    assert cg.procs_files() == [own / "kcore/pod-a/c1/cgroup.procs"]
    # Idempotent, and already enabled controllers are not written again.
    (own / "cgroup.subtree_control").write_text("cpu memory pids")
    drv.create("pod-a/c1")
    assert (own / "cgroup.subtree_control").read_text() == "cpu memory pids"
    assert drv.open("pod-a/c1").paths == cg.paths


def test_v2_set_resources(fake_v2):
    drv, _ = fake_v2
    cg = drv.create("pod-a/c1")
    d = cg.paths[UNIFIED]

    def read(name):
        return (d / name).read_text().strip()

    cg.set_resources(
        memory_limit=64 * MiB,
        memory_swap_limit=96 * MiB,
        cpu_shares=1024,
        cpu_quota=50_000,
        cpu_period=100_000,
        pids_limit=100,
    )
    assert read("memory.max") == str(64 * MiB)
    assert read("memory.swap.max") == str(32 * MiB)  # memory+swap minus memory
    assert read("cpu.weight") == "39"
    assert read("cpu.max") == "50000 100000"
    assert read("pids.max") == "100"

    cg.set_resources(cpu_quota=20_000)  # the period stays
    assert read("cpu.max") == "20000 100000"
    cg.set_resources(cpu_period=50_000)  # the quota stays
    assert read("cpu.max") == "20000 50000"
    cg.set_resources(cpu_quota=0)
    assert read("cpu.max") == "max 50000"
    cg.set_resources(memory_swap_limit=64 * MiB)  # against the current memory.max
    assert read("memory.swap.max") == "0"
    cg.set_resources(memory_limit=-1, memory_swap_limit=0, pids_limit=-1)
    assert (read("memory.max"), read("memory.swap.max"), read("pids.max")) == ("max",) * 3
    with pytest.raises(Invalid, match="swap"):
        cg.set_resources(memory_swap_limit=64 * MiB)  # no memory limit to subtract
    with pytest.raises(Invalid, match="below"):
        cg.set_resources(memory_limit=64 * MiB, memory_swap_limit=32 * MiB)
    cg.set_resources(cpu_shares=2)
    assert read("cpu.weight") == "1"
    cg.set_resources(cpu_shares=10**9)
    assert read("cpu.weight") == "10000"
    cg.set_resources(unified={"memory.high": "1000000", "cpu.weight": "7"})
    assert (read("memory.high"), read("cpu.weight")) == ("1000000", "7")
    with pytest.raises(Invalid):
        cg.set_resources(unified={"../escape": "1"})

    (d / "pids.max").unlink()
    with pytest.raises(PermanentError, match=r"pids\.max"):
        cg.set_resources(pids_limit=5)
    (d / "memory.swap.max").unlink()  # no swap accounting: the swap limit is skipped
    cg.set_resources(memory_limit=MiB, memory_swap_limit=2 * MiB)
    assert read("memory.max") == str(MiB)


@pytest.mark.parametrize(
    ("shares", "weight"),
    [(2, 1), (1024, 39), (512, 20), (262144, 10000), (1, 1), (10**7, 10000), (0, 0)],
)
def test_shares_to_weight(shares, weight):
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(
    ("events", "killed"),
    [
        ("oom 0\noom_kill 0\n", False),
        ("oom 1\noom_kill 1\n", True),
        ("oom 3\noom_kill 0\n", False),  # the limit was hit, nothing was killed
        ("low 0\noom 2\n", True),  # an old kernel without oom_kill
        ("low 0\noom 0\n", False),
    ],
)
def test_v2_oom_killed(fake_v2, events, killed):
    drv, _ = fake_v2
    cg = drv.create("pod-a/c1")
    (cg.paths[UNIFIED] / "memory.events").write_text(events)
    assert cg.oom_killed() is killed


def test_v2_stats(fake_v2):
    drv, _ = fake_v2
    cg = drv.create("pod-a/c1")
    d = cg.paths[UNIFIED]
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (d / "memory.current").write_text("10000\n")
    (d / "memory.stat").write_text("anon 6000\nfile 4000\ninactive_file 3000\n")
    (d / "pids.current").write_text("3\n")
    stats = cg.stats()
    assert stats["cpu_usage_ns"] == 1_500_000
    assert stats["memory_usage_bytes"] == 10000
    assert stats["memory_working_set_bytes"] == 7000
    assert stats["memory_rss_bytes"] == 6000
    assert stats["pids_current"] == 3
    (d / "memory.stat").write_text("anon 0\ninactive_file 20000\n")
    assert cg.stats()["memory_working_set_bytes"] == 0


def test_v2_leaves_a_busy_own_cgroup_for_a_daemon_leaf(fake_v2, monkeypatch):
    drv, own = fake_v2
    real_write = cgroups._write_raw
    daemon_procs = own / "kcore-daemon" / "cgroup.procs"

    def kernel_like(path, value):
        """Refuse controllers in our own cgroup while a process (us) is in it."""
        if path == own / "cgroup.subtree_control" and not daemon_procs.exists():
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write_raw", kernel_like)
    drv.create("pod-a/c1")
    assert daemon_procs.read_text() == "0"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_busy_own_cgroup_with_other_processes(fake_v2, monkeypatch):
    drv, own = fake_v2
    (own / "cgroup.procs").write_text("4242\n")

    def always_busy(path, value):
        if path.name == "cgroup.subtree_control":
            raise OSError(errno.EBUSY, "Device or resource busy")
        cgroups.Path(path).write_text(value)

    monkeypatch.setattr(cgroups, "_write_raw", always_busy)
    with pytest.raises(PermanentError, match="4242"):
        drv.create("pod-a/c1")


def test_v2_controller_not_delegated(fake_v2, monkeypatch):
    drv, own = fake_v2
    (own / "cgroup.controllers").write_text("cpu memory\n")

    def refuse(path, value):
        if path.name == "cgroup.subtree_control":
            raise OSError(errno.ENOENT, "No such file or directory")
        cgroups.Path(path).write_text(value)

    monkeypatch.setattr(cgroups, "_write_raw", refuse)
    with pytest.raises(PermanentError, match=r"\['pids'\] are not delegated"):
        drv.create("pod-a/c1")


def test_detect_hybrid_like_this_host(tmp_path):
    fs = tmp_path / "sys"
    mounts = [f"/ {fs} rw - tmpfs tmpfs rw,mode=755"]
    mounts += [
        f"/ {fs}/{c} rw,relatime - cgroup cgroup rw,{c}"
        for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "pids")
    ]
    mounts += [
        f"/ {fs}/systemd rw - cgroup cgroup rw,name=systemd",
        f"/ {fs}/unified rw - cgroup2 cgroup2 rw",
    ]
    (fs / "unified").mkdir(parents=True)
    (fs / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    files = _write_proc_files(
        tmp_path,
        mounts,
        [
            "9:name=systemd:/",
            "8:pids:/",
            "4:memory:/process_api/0bce",
            "3:cpuset:/",
            "2:cpuacct:/",
            "1:cpu:/",
            "0::/",
        ],
    )
    drv = CgroupDriver.detect(**files, root_name="k")
    assert drv.mode == "hybrid"
    assert drv.parent_paths() == {
        "memory": fs / "memory/process_api/0bce/k",
        "cpu": fs / "cpu/k",
        "cpuacct": fs / "cpuacct/k",
        "pids": fs / "pids/k",
    }
    cg = drv._cgroup("pod/c")
    assert len(cg.procs_files()) == 4


def test_detect_v1_comounted_in_a_container(tmp_path):
    """Docker without a cgroup namespace: the mount root is the container's own cgroup."""
    fs = tmp_path / "sys fs"  # mountinfo escapes the space as \040
    escaped = str(fs).replace(" ", "\\040")
    mounts = [
        f"/docker/abc {escaped}/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct",
        f"/docker/abc {escaped}/memory ro,nosuid - cgroup cgroup rw,memory",
        f"/docker/abc {escaped}/pids ro,nosuid - cgroup cgroup rw,pids",
    ]
    files = _write_proc_files(
        tmp_path,
        mounts,
        ["5:pids:/docker/abc/sub", "4:memory:/docker/abc", "3:cpu,cpuacct:/docker/abc"],
    )
    drv = CgroupDriver.detect(**files)
    assert drv.mode == "v1"
    assert drv.parent_paths() == {
        "memory": fs / "memory/kcore",
        "cpu": fs / "cpu,cpuacct/kcore",
        "cpuacct": fs / "cpu,cpuacct/kcore",
        "pids": fs / "pids/sub/kcore",
    }
    cg = drv._cgroup("pod/c")
    assert cg.procs_files() == [
        fs / "memory/kcore/pod/c/cgroup.procs",
        fs / "cpu,cpuacct/kcore/pod/c/cgroup.procs",
        fs / "pids/sub/kcore/pod/c/cgroup.procs",
    ]
    with pytest.raises(NotSupported):
        cg.set_resources(unified={"memory.high": "1"})


def test_detect_hybrid_takes_a_missing_v1_controller_from_v2(tmp_path, monkeypatch):
    fs = tmp_path / "sys"
    (fs / "unified").mkdir(parents=True)
    (fs / "unified" / "cgroup.controllers").write_text("pids\n")
    files = _write_proc_files(
        tmp_path,
        [
            f"/ {fs}/memory rw - cgroup cgroup rw,memory",
            f"/ {fs}/cpu rw - cgroup cgroup rw,cpu,cpuacct",
            f"/ {fs}/unified rw - cgroup2 cgroup2 rw",
        ],
        ["2:memory:/", "1:cpu,cpuacct:/", "0::/"],
    )
    drv = CgroupDriver.detect(**files)
    assert drv.mode == "hybrid"
    assert drv.parent_paths() == {
        "memory": fs / "memory/kcore",
        "cpu": fs / "cpu/kcore",
        "cpuacct": fs / "cpu/kcore",
        UNIFIED: fs / "unified/kcore",
    }
    (fs / "unified" / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroups, "_mkdir", _fake_v2_mkdir)
    for name in ("memory", "cpu"):
        (fs / name).mkdir()
    cg = drv.create("pod/c")
    assert (fs / "unified" / "cgroup.subtree_control").read_text() == "+pids"
    cg.set_resources(pids_limit=7)
    assert (fs / "unified/kcore/pod/c/pids.max").read_text() == "7"


def test_detect_without_cgroups(tmp_path):
    files = _write_proc_files(tmp_path, [], ["0::/"])
    with pytest.raises(PermanentError, match="no cgroup"):
        CgroupDriver.detect(**files)
