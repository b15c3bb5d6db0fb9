"""A :class:`kcore.apiserver.streaming.PodStreams` for the API server's tests: exec and attach
run real local processes (with pipes, or on a pseudo-terminal with ``tty``), logs come from
memory and, for ``follow``, from a queue the test feeds."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kcore.apiserver.streaming import LogOptions
from kcore.errors import KcoreError


class ProcessSession:
    """A :class:`kcore.StreamSession` over a local process."""

    def __init__(self, proc: asyncio.subprocess.Process, tty: bool, master: int | None) -> None:
        self.proc = proc
        self.tty = tty
        self.master = master
        self.resizes: list[tuple[int, int]] = []
        self.stdin_closed = False
        self.closed = False
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._open_streams = 1 if tty else 2
        self._readers: list[asyncio.Task[None]] = []
        if master is not None:
            os.set_blocking(master, False)
            asyncio.get_running_loop().add_reader(master, self._on_master_readable)
        else:
            assert proc.stdout is not None and proc.stderr is not None
            self._readers = [
                asyncio.ensure_future(self._pump("stdout", proc.stdout)),
                asyncio.ensure_future(self._pump("stderr", proc.stderr)),
            ]

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, stdin: bool, tty: bool, cwd: str | None = None
    ) -> ProcessSession:
        if tty:
            master, slave = os.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    cwd=cwd,
                    start_new_session=True,
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return cls(proc, True, master)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
        return cls(proc, False, None)

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        try:
            while data := await stream.read(65536):
                self._queue.put_nowait((name, data))
        finally:
            self._stream_ended()

    def _stream_ended(self) -> None:
        self._open_streams -= 1
        if self._open_streams == 0:
            self._queue.put_nowait(None)

    def _on_master_readable(self) -> None:
        assert self.master is not None
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every slave end is closed
            data = b""
        if data:
            self._queue.put_nowait(("stdout", data))
            return
        asyncio.get_running_loop().remove_reader(self.master)
        self._stream_ended()

    async def read(self) -> tuple[str, bytes] | None:
        if self._open_streams == 0 and self._queue.empty():
            return None
        return await self._queue.get()

    async def write_stdin(self, data: bytes) -> None:
        if self.master is not None:
            os.write(self.master, data)
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        self.stdin_closed = True
        if self.master is not None:
            os.write(self.master, b"\x04")
        elif self.proc.stdin is not None:
            self.proc.stdin.close()

    async def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))
        if self.master is not None:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def wait(self) -> int:
        code = await self.proc.wait()
        return 128 - code if code < 0 else code

    async def close(self) -> None:
        self.closed = True
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        for reader in self._readers:
            reader.cancel()
        if self.master is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.master)
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None


@dataclass
class FakePodStreams:
    """Logs from ``logs_of[(pod, container)]`` (and, with ``follow``, then from the queue
    ``follow_of[(pod, container)]`` until ``None``); exec runs the command locally; attach runs
    the container's ``command`` locally. ``errors[container]`` is raised by any call for that
    container; ``late_errors[container]`` by the log iterator's first step."""

    logs_of: dict[tuple[str, str], bytes] = field(default_factory=dict)
    follow_of: dict[tuple[str, str], asyncio.Queue[bytes | None]] = field(default_factory=dict)
    errors: dict[str, KcoreError] = field(default_factory=dict)
    late_errors: dict[str, KcoreError] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: list[ProcessSession] = field(default_factory=list)
    closed_logs: list[tuple[str, str]] = field(default_factory=list)

    def _check(self, container: str) -> None:
        if container in self.errors:
            raise self.errors[container]

    async def logs(
        self, pod: Mapping[str, Any], container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        name = pod["metadata"]["name"]
        self.calls.append(("logs", name, container, options))
        self._check(container)
        return self._log_chunks(name, container, options)

    async def _log_chunks(
        self, name: str, container: str, options: LogOptions
    ) -> AsyncIterator[bytes]:
        try:
            if container in self.late_errors:
                raise self.late_errors[container]
            data = self.logs_of.get((name, container), b"")
            if options.tail_lines is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-options.tail_lines :] if options.tail_lines else [])
            if options.timestamps:
                data = b"".join(
                    b"2024-01-02T03:04:05.000000000Z " + line
                    for line in data.splitlines(keepends=True)
                )
            if data:
                yield data
            if options.follow:
                queue = self.follow_of.setdefault((name, container), asyncio.Queue())
                while (chunk := await queue.get()) is not None:
                    yield chunk
        finally:
            self.closed_logs.append((name, container))

    async def exec(
        self,
        pod: Mapping[str, Any],
        container: str,
        command: Sequence[str],
        *,
        stdin: bool,
        tty: bool,
    ) -> ProcessSession:
        self.calls.append(("exec", pod["metadata"]["name"], container, tuple(command), stdin, tty))
        self._check(container)
        session = await ProcessSession.start(command, stdin=stdin, tty=tty)
        self.sessions.append(session)
        return session

    async def attach(
        self, pod: Mapping[str, Any], container: str, *, stdin: bool, tty: bool
    ) -> ProcessSession:
        self.calls.append(("attach", pod["metadata"]["name"], container, stdin, tty))
        self._check(container)
        spec = next(
            c
            for key in ("containers", "initContainers")
            for c in pod["spec"].get(key) or ()
            if c["name"] == container
        )
        argv = [*(spec.get("command") or ()), *(spec.get("args") or ())]
        session = await ProcessSession.start(argv, stdin=stdin, tty=tty)
        self.sessions.append(session)
        return session
