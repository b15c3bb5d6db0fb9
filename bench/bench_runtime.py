"""Benchmark of runtime_linux: start-to-exit of ``/bin/true`` next to crun and runc.

    python bench/bench_runtime.py [--runs 50] [--warmups 5] [--rounds 2] [--pods 20]

Everything runs in one invocation on the same busybox rootfs (kcore's test image, built
from the host's static busybox):

- kcore: one pod sandbox made once, then per run ``create_container`` + ``start_container``
  + the monitor's wait until the container has exited; ``remove_container`` is outside
  that timing and reported on its own row;
- ``crun run`` and ``runc run`` of an OCI bundle (``runc spec``, ``process.args`` =
  ``/bin/true``, no terminal, read-only root) whose rootfs is a copy of the image's
  unpacked layer, each run with a new container id and a state dir (``--root``) of this
  run. crun refuses this host's hybrid cgroups (hugetlb on the v2 ``unified`` mount), so
  both peers run in a re-exec of this script (``--peer-worker``) inside a private mount
  namespace where ``/sys/fs/cgroup/unified`` is unmounted: they see pure cgroup v1 and the
  host's mounts are not touched (shared/reference/perf-anchors.md, "crun fails on this
  host"). kcore runs in the host's view;
- kcore: ``run_pod_sandbox`` alone and a new sandbox plus one ``/bin/true`` container per
  run (stopping and removing the sandbox outside the timing);
- memory per running pod: ``--pods`` sandboxes, each with a ``sleep 3600`` container; the
  median RSS and PSS of a pod's monitor process, and the drop of the machine's
  MemAvailable divided by the number of pods (every kernel object a pod costs included,
  and anything else the machine did meanwhile).

The runs are split into ``--rounds`` blocks per tool, in alternating order (kcore, crun,
runc, then runc, crun, kcore, ...), each block after ``--warmups`` unrecorded runs and a
pause of ``--settle`` seconds, since the kernel's asynchronous teardown of one tool's
cgroups slows the next. Back-to-back repeats on this machine differ by 20-30 %: compare
the ratios of one run, not figures across runs.

Everything created carries a name unique to the run (``kcore-bench-<hex>``: the kcore
cgroup root, the peers' container ids and cgroups, the temporary directory) and is
removed at the end, also after a failure or Ctrl-C. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE = "kcore.test/busybox:latest"
PEERS = ("crun", "runc")
INSTALL_HINT = "apt-get install -y crun runc"
HIDE_UNIFIED = (
    "if mountpoint -q /sys/fs/cgroup/unified; then "
    "umount /sys/fs/cgroup/unified || exit 97; "
    "mount -t tmpfs -o size=1m,mode=755 kcore-bench /sys/fs/cgroup/unified || exit 98; "
    'fi; exec "$@"'
)
"""Run in a new private mount namespace (never the host's) before the peer worker. The
private tmpfs takes the writes crun makes there (it treats the empty directory as one
more v1 hierarchy): without it, they would land in the host's /sys/fs/cgroup tmpfs,
hidden under its cgroup2 mount."""


@dataclass
class Series:
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))]

    @property
    def median(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


@dataclass
class Peer:
    tool: str
    path: str
    version: str
    state: Path
    series: Series = field(default_factory=Series)
    error: str = ""


# -- peers: the worker, run inside a private mount namespace -----------------------------------


def peer_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else ""
    return first.replace(" version", "").strip() or Path(path).name


def peer_leftovers(state: Path) -> list[str]:
    """Container ids the peer still has in its state dir (a dir each, for runc and crun)."""
    if not state.is_dir():
        return []
    return sorted(p.name for p in state.iterdir() if p.is_dir())


def peer_delete(tool: str, state: Path) -> None:
    for cid in peer_leftovers(state):
        subprocess.run(
            [tool, "--root", str(state), "delete", "-f", cid],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )


def peer_worker(args: argparse.Namespace) -> int:
    """``--peer-worker TOOL``: time ``TOOL run`` and print the latencies as JSON."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tool, state, prefix = args.peer_worker, Path(args.state), args.prefix
    latencies: list[float] = []
    error = ""
    try:
        if args.cleanup_only:
            return 0
        for i in range(args.warmups + args.runs):
            cmd = [tool, "--root", str(state), "run", "--bundle", args.bundle, f"{prefix}-{i}"]
            t0 = time.perf_counter()
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            elapsed = time.perf_counter() - t0
            if done.returncode != 0:
                error = f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()}"
                break
            if i >= args.warmups:
                latencies.append(elapsed)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        peer_delete(tool, state)
        remove_named_cgroups(prefix)
        remove_hidden_unified(prefix)
    print(json.dumps({"latencies": latencies, "error": error}), flush=True)
    return 0


def peer_command(
    peer: Peer, bundle: Path, prefix: str, runs: int, warmups: int, cleanup_only: bool = False
) -> list[str]:
    cmd = [
        "unshare", "-m", "--propagation", "private", "--",
        "sh", "-c", HIDE_UNIFIED, "sh",
        sys.executable, os.path.abspath(__file__), "--peer-worker", peer.path,
        "--state", str(peer.state), "--bundle", str(bundle), "--prefix", prefix,
        "--runs", str(runs), "--warmups", str(warmups),
    ]  # fmt: skip
    return [*cmd, "--cleanup-only"] if cleanup_only else cmd


async def run_worker(cmd: list[str]) -> tuple[int, bytes]:
    """Run one peer worker; when cancelled, interrupt it (by its pid) and let it clean up:
    it ignores further signals while it does."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    try:
        out, _ = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), 60)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
        raise
    return proc.returncode or 0, out


async def peer_block(peer: Peer, bundle: Path, prefix: str, runs: int, warmups: int) -> None:
    if peer.error:
        return
    code, out = await run_worker(peer_command(peer, bundle, prefix, runs, warmups))
    try:
        result = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        peer.error = f"worker exited {code} without a result"
        return
    peer.series.latencies.extend(result["latencies"])
    if result["error"]:
        peer.error = result["error"]


def make_bundle(layer_dir: Path, bundle: Path, spec_tool: str) -> None:
    """An OCI bundle running ``/bin/true`` on a copy of the image's layer."""
    bundle.mkdir()
    shutil.copytree(layer_dir, bundle / "rootfs", symlinks=True)
    for name in ("proc", "sys", "dev", "tmp", "etc"):
        (bundle / "rootfs" / name).mkdir(exist_ok=True)
    subprocess.run([spec_tool, "spec"], cwd=bundle, check=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config["root"] = {"path": "rootfs", "readonly": True}
    config_path.write_text(json.dumps(config, indent=2))


# -- cgroups ----------------------------------------------------------------------------------


def cgroup_mounts() -> list[Path]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            out.append(Path(pre.split()[4]))
    return out


def rmdir_cgroup_tree(top: Path, deadline: float) -> None:
    """Remove ``top`` and the cgroups below it, children first, killing what is left in them
    (processes of this run: the cgroups carry its unique name)."""
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, top]:
        while d.exists():
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                d.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def remove_hidden_unified(prefix: str) -> None:
    """In the peers' namespace: what crun made under the hidden v2 mount point."""
    unified = Path("/sys/fs/cgroup/unified")
    if unified.is_dir() and unified not in cgroup_mounts():
        for entry in unified.glob(f"{prefix}*"):
            shutil.rmtree(entry, ignore_errors=True)


def remove_cgroup_root(run_name: str) -> None:
    """Remove kcore's cgroup root of this run (``runtime_cgroup_name``) in every hierarchy."""
    from kcore.plugins.runtime_linux.cgroups import CgroupDriver

    deadline = time.monotonic() + 10
    for top in CgroupDriver.detect(root_name=run_name).parent_paths().values():
        if top.is_dir():
            rmdir_cgroup_tree(top, deadline)


def remove_named_cgroups(prefix: str, max_depth: int = 4) -> list[Path]:
    """Remove every cgroup whose name starts with ``prefix`` in the mounted hierarchies."""
    deadline = time.monotonic() + 10
    removed = []
    for mount in cgroup_mounts():
        for root, dirs, _ in os.walk(mount):
            if len(Path(root).relative_to(mount).parts) >= max_depth:
                dirs[:] = []
                continue
            for name in [d for d in dirs if d.startswith(prefix)]:
                dirs.remove(name)
                with contextlib.suppress(FileNotFoundError):
                    rmdir_cgroup_tree(Path(root) / name, deadline)
                    removed.append(Path(root) / name)
    return removed


# -- kcore ------------------------------------------------------------------------------------


@dataclass
class KcoreResults:
    start_to_exit: Series = field(default_factory=Series)
    remove: Series = field(default_factory=Series)
    sandbox_start: Series = field(default_factory=Series)
    sandbox_and_container: Series = field(default_factory=Series)
    sandbox_remove: Series = field(default_factory=Series)
    failures: list[str] = field(default_factory=list)


CONTAINER = {"metadata": {"name": "t"}, "image": {"image": IMAGE}, "command": ["/bin/true"]}


def sandbox_config(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uuid.uuid4().hex, "namespace": "default"}}


async def run_true(rt: Any, sid: str) -> tuple[str, float]:
    """create + start + wait for exit of one ``/bin/true``: (container id, seconds)."""
    t0 = time.perf_counter()
    cid = await rt.create_container(sid, CONTAINER, {})
    await rt.start_container(cid)
    await rt._wait_exit(rt._sandboxes[sid], cid, 10)
    return cid, time.perf_counter() - t0


async def check_exited(rt: Any, cid: str, results: KcoreResults) -> None:
    status = await rt.container_status(cid)
    if status["state"] != "CONTAINER_EXITED" or status["exit_code"] != 0:
        results.failures.append(
            f"{cid[:12]}: {status['state']} exit {status['exit_code']} {status['message']}"
        )


async def kcore_block(rt: Any, sid: str, runs: int, warmups: int, results: KcoreResults) -> None:
    for i in range(warmups + runs):
        cid, elapsed = await run_true(rt, sid)
        await check_exited(rt, cid, results)
        t0 = time.perf_counter()
        await rt.remove_container(cid)
        removed = time.perf_counter() - t0
        if i >= warmups:
            results.start_to_exit.latencies.append(elapsed)
            results.remove.latencies.append(removed)


async def kcore_sandbox_block(rt: Any, runs: int, warmups: int, results: KcoreResults) -> None:
    for i in range(warmups + runs):
        t0 = time.perf_counter()
        sid = await rt.run_pod_sandbox(sandbox_config(f"bench-sb-{i}"))
        t1 = time.perf_counter()
        try:
            cid, _ = await run_true(rt, sid)
            t2 = time.perf_counter()
            await check_exited(rt, cid, results)
        finally:
            t3 = time.perf_counter()
            await rt.remove_pod_sandbox(sid)
            removed = time.perf_counter() - t3
        if i >= warmups:
            results.sandbox_start.latencies.append(t1 - t0)
            results.sandbox_and_container.latencies.append(t2 - t0)
            results.sandbox_remove.latencies.append(removed)


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def rss_pss_kib(pid: int) -> tuple[int, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in ("Rss:", "Pss:"):
            values[parts[0]] = int(parts[1])
    return values["Rss:"], values["Pss:"]


async def kcore_memory(rt: Any, pods: int, settle: float) -> dict[str, float]:
    """Start ``pods`` sandboxes with one ``sleep 3600`` each; measure; remove them."""
    sleeper = {**CONTAINER, "metadata": {"name": "sleep"}, "command": ["sleep", "3600"]}
    sids: list[str] = []
    await asyncio.sleep(settle)
    before = mem_available_kib()
    try:
        for i in range(pods):
            sid = await rt.run_pod_sandbox(sandbox_config(f"bench-mem-{i}"))
            sids.append(sid)
            cid = await rt.create_container(sid, sleeper, {})
            await rt.start_container(cid)
        await asyncio.sleep(settle)
        after = mem_available_kib()
        rss, pss, running = [], [], 0
        for sid in sids:
            pid = (await rt.pod_sandbox_status(sid))["pid"]
            r, p = rss_pss_kib(pid)
            rss.append(r)
            pss.append(p)
            for c in await rt.list_containers({"pod_sandbox_id": sid}):
                running += c["state"] == "CONTAINER_RUNNING"
    finally:
        for sid in sids:
            await rt.remove_pod_sandbox(sid)
    return {
        "rss_mib": statistics.median(rss) / 1024,
        "pss_mib": statistics.median(pss) / 1024,
        "available_drop_mib": (before - after) / pods / 1024,
        "running": running,
    }


def kill_recorded_monitors(data_dir: Path) -> None:
    """Kill the monitors recorded under ``data_dir`` (their containers die with them)."""
    for record in (data_dir / "runtime" / "sandboxes").glob("*/sandbox.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)


# -- the run ----------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, work: Path, run_name: str) -> None:
    from kcore.conformance.testimages import build_busybox_layout
    from kcore.plugins.runtime_linux import create_backend
    from kcore.settings import Settings

    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    peers: list[Peer] = []
    for tool in PEERS:
        path = shutil.which(tool)
        if path is None:
            print(f"{tool} not found: {INSTALL_HINT} (its row is skipped)", file=sys.stderr)
            continue
        peers.append(Peer(tool, path, peer_version(path), work / f"state-{tool}"))

    settings = Settings(data_dir=work / "data", options={"runtime_cgroup_name": run_name})
    settings.data_dir.mkdir()
    backend = None
    results = KcoreResults()
    memory: dict[str, float] = {}
    try:
        backend = await create_backend(settings)
        rt = backend.runtime
        recs = await backend.images.import_image(build_busybox_layout(work / "img"))
        layer_dir = Path(backend.images.store.layer_dirs(recs[0]["id"])[0])
        if peers:
            make_bundle(layer_dir, work / "bundle", peers[-1].path)
        print(
            f"runtime benchmark {run_name}: Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, {platform.platform()}, kcore cgroups {rt.cgroups.mode}",
            flush=True,
        )

        sid = await rt.run_pod_sandbox(sandbox_config("bench"))
        per_round = [
            args.runs // args.rounds + (r < args.runs % args.rounds) for r in range(args.rounds)
        ]
        order = ["kcore", *(p.tool for p in peers)]
        for r, runs in enumerate(per_round):
            for name in order if r % 2 == 0 else order[::-1]:
                await asyncio.sleep(args.settle)
                print(
                    f"  round {r + 1}/{args.rounds}: {name} x {runs}", file=sys.stderr, flush=True
                )
                if name == "kcore":
                    await kcore_block(rt, sid, runs, args.warmups, results)
                    continue
                peer = next(p for p in peers if p.tool == name)
                prefix = f"{run_name}-{name}-r{r}"
                await peer_block(peer, work / "bundle", prefix, runs, args.warmups)
        await rt.remove_pod_sandbox(sid)

        await asyncio.sleep(args.settle)
        print(f"  sandboxes x {args.runs}", file=sys.stderr, flush=True)
        await kcore_sandbox_block(rt, args.runs, args.warmups, results)
        if args.pods:
            print(f"  memory: {args.pods} pods", file=sys.stderr, flush=True)
            memory = await kcore_memory(rt, args.pods, args.settle)
    finally:
        if backend is not None:
            for sandbox in await backend.runtime.list_pod_sandbox():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(backend.runtime.remove_pod_sandbox(sandbox["id"]), 30)
            await backend.close()
        kill_recorded_monitors(settings.data_dir)
        remove_cgroup_root(run_name)
        remove_named_cgroups(run_name)
        for peer in peers:
            cleanup = peer_command(peer, work / "bundle", run_name, 0, 0, cleanup_only=True)
            await run_worker(cleanup)
            if peer_leftovers(peer.state):
                print(f"{peer.tool} left {peer_leftovers(peer.state)} behind", file=sys.stderr)

    print_table(args, results, peers, memory)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}" if b and a == a and b == b else f"{'-':>6}"


def print_table(
    args: argparse.Namespace, k: KcoreResults, peers: list[Peer], memory: dict[str, float]
) -> None:
    base = k.start_to_exit
    print(
        f"\nruntime start-to-exit of /bin/true (N={args.runs} in {args.rounds} alternating "
        f"blocks, after {args.warmups} warm-ups per block)"
    )
    print(f"{'tool':<46}{'median ms':>10}{'p99 ms':>10}   kcore/tool median   kcore/tool p99")
    rows: list[tuple[str, Series, bool]] = [("kcore runtime_linux (create+start+wait)", base, True)]
    for peer in peers:
        rows.append((peer.version, peer.series, True))
    rows += [
        ("kcore: pod sandbox start", k.sandbox_start, False),
        ("kcore: sandbox + container", k.sandbox_and_container, False),
        ("kcore: remove_container (not timed above)", k.remove, False),
        ("kcore: stop+remove sandbox (not timed above)", k.sandbox_remove, False),
    ]
    for name, series, compare in rows:
        med, p99 = series.median, series.percentile(99)
        cells = f"{ratio(base.median, med):>19}{ratio(base.percentile(99), p99):>17}"
        print(f"{name:<46}{fmt(med)} {fmt(p99)}{cells if compare else ''}")
    for peer in peers:
        if peer.error:
            print(f"  {peer.tool}: {peer.error}")
    for tool in PEERS:
        if tool not in {p.tool for p in peers}:
            print(f"  {tool}: not installed, skipped ({INSTALL_HINT})")
    full = k.sandbox_and_container
    for peer in peers:
        if peer.series.latencies:
            print(
                f"  kcore sandbox + container / {peer.tool} run: median "
                f"{ratio(full.median, peer.series.median).strip()}, p99 "
                f"{ratio(full.percentile(99), peer.series.percentile(99)).strip()} "
                f"(both make fresh namespaces)"
            )
    if memory:
        print(
            f"memory per running pod ({args.pods} pods, {int(memory['running'])} running "
            f"`sleep 3600`): monitor RSS {memory['rss_mib']:.1f} MiB, PSS "
            f"{memory['pss_mib']:.1f} MiB (medians); MemAvailable drop per pod "
            f"{memory['available_drop_mib']:.1f} MiB"
        )
    if k.failures:
        print(f"kcore containers that did not exit 0: {len(k.failures)}, e.g. {k.failures[0]}")
    print(
        "notes: p99 of fewer than 100 runs is the slowest run. Back-to-back repeats differ\n"
        "by 20-30 %: compare the ratios within one run. The peers ran in a private mount\n"
        "namespace with /sys/fs/cgroup/unified hidden (cgroup v1 view), kcore in the host's."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per tool (default 50)")
    parser.add_argument("--warmups", type=int, default=5, help="per block (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="blocks per tool, alternating order (default 2)"
    )
    parser.add_argument(
        "--pods", type=int, default=20, help="pods for the memory figures, 0 to skip (default 20)"
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds of pause between blocks (default 2)"
    )
    parser.add_argument("--peer-worker", metavar="TOOL", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--bundle", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--cleanup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        try:
            return peer_worker(args)
        except KeyboardInterrupt:
            return 130
    if args.runs < 1 or args.warmups < 0 or args.pods < 0:
        parser.error("--runs must be at least 1, --warmups and --pods at least 0")
    if not 1 <= args.rounds <= args.runs:
        parser.error("--rounds must be between 1 and --runs")
    if os.geteuid() != 0:
        parser.error("needs root (namespaces, mounts and cgroups)")

    run_name = f"kcore-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{run_name}-"))
    try:
        asyncio.run(bench(args, work, run_name))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted; removed what {run_name} had made", file=sys.stderr)
        return 130
    finally:
        mounted = [
            line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(work) in line
        ]  # fmt: skip
        if mounted:
            print(f"not removing {work}: still mounted there", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
