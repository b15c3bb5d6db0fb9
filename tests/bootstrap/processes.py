"""``kcore init`` and ``kcore join`` as child processes: started with a data directory of
their own, their output read line by line, stopped by their recorded pid."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon_process import clean_env
from hostnames import unmount_below


@dataclass
class Process:
    """A kcore command running in the background; ``lines`` is what it printed so far."""

    proc: subprocess.Popen
    data_dir: Path
    log: Path
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, prefix: str, timeout: float = 60) -> str:
        """The first printed line starting with ``prefix`` (fails with the log if none)."""
        for line in self.lines:
            if line.startswith(prefix):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(
            f"no line {prefix!r} from {self.proc.args[-8:]}; printed {self.lines}; "
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal by pid; SIGKILL when it does not end within ``timeout``. What the pods'
        volumes mounted under the data directory is unmounted (the pods outlive it)."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            unmount_below(self.data_dir)
        return self.proc.returncode


def start(
    data_dir: Path,
    args: Sequence[str],
    *,
    prefix: Sequence[str] = (),
    name: str = "kcore",
) -> Process:
    """``[prefix] python -m kcore --log-format=json --data-dir D ARGS`` in the background;
    stderr goes to ``D/<name>.log``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"{name}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "kcore",
                "--log-format=json",
                "--data-dir",
                str(data_dir),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**clean_env(), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return Process(proc, data_dir, log)


def run(
    data_dir: Path, args: Sequence[str], *, prefix: Sequence[str] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a kcore command to its end."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "kcore", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def join_args(line: str) -> list[str]:
    """The arguments after ``kcore`` of the printed ``kcore join ...`` line."""
    words = line.split()
    assert words[:2] == ["kcore", "join"], line
    return words[1:]


def kubectl(
    kubeconfig: Path,
    *args: str,
    prefix: Sequence[str] = (),
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env={**os.environ, "HOME": str(kubeconfig.parent)},
    )
