"""The kcore daemon as a child process, for end-to-end tests: started on a free port with
its own data directory, stopped by its recorded pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hostnames import unmount_below

START_TIMEOUT = 30.0


def clean_env() -> dict[str, str]:
    """The environment without the developer's KCORE_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}


@dataclass
class Daemon:
    proc: subprocess.Popen
    url: str
    kubeconfig: Path
    data_dir: Path

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60):
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env={**os.environ, "HOME": str(self.data_dir)},
        )

    def ctl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``kcore --data-dir D ctl ARGS`` (the default kubeconfig is the daemon's)."""
        return subprocess.run(
            [sys.executable, "-m", "kcore", "--data-dir", str(self.data_dir), "ctl", *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
            env=clean_env(),
        )


def start_daemon(
    data_dir: Path, *extra: str, daemon_args: tuple[str, ...] = (), node_agent: bool = False
) -> Daemon:
    """``kcore --data-dir D EXTRA daemon --port 0 DAEMON_ARGS``; returns once it serves.
    Without ``node_agent`` it runs ``--no-node-agent`` and, unless ``DAEMON_ARGS`` say
    ``--controllers``, ``--no-controllers`` (the API alone). Its log goes to
    ``D/daemon.log``."""
    if not node_agent:
        daemon_args = ("--no-node-agent", *daemon_args)
        if "--controllers" not in daemon_args:
            # the API alone: no scheduler writing FailedScheduling for node-less pods
            daemon_args = ("--no-controllers", *daemon_args)
    with open(data_dir / "daemon.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcore",
                "--log-format=json",
                "--data-dir",
                str(data_dir),
                *extra,
                "daemon",
                "--port",
                "0",
                *daemon_args,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=clean_env(),
        )
    deadline = time.monotonic() + START_TIMEOUT
    url = kubeconfig = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("kcore API server listening on "):
            url = line.split()[-1]
        if line.startswith("export KUBECONFIG="):
            kubeconfig = Path(line.strip().split("=", 1)[1])
            break
    if url is None or kubeconfig is None:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"daemon did not start: {(data_dir / 'daemon.log').read_text()}")
    return Daemon(proc, url, kubeconfig, data_dir)


def stop_daemon(daemon: Daemon) -> int:
    """SIGTERM by pid, SIGKILL after 20 s; returns the exit code."""
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        return daemon.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        daemon.proc.wait()
        raise
    finally:
        if daemon.proc.stdout is not None:
            daemon.proc.stdout.close()
        # pods outlive the daemon (by design); what their volumes mounted goes with the test
        unmount_below(daemon.data_dir)
