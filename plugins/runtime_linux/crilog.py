"""The CRI container log format, as kubelet reads it from a container's log file.

Each line is ``<timestamp> <stream> <tag> <content>\\n``: an RFC 3339 timestamp with
nanoseconds, ``stdout`` or ``stderr``, ``F`` for a full line or ``P`` for a piece of a line
longer than the maximum, then the bytes of the line without its newline. A long line is
written as P pieces followed by one F; a reader joins them.

Standard library only and no kcore imports: the log shim that copies a container's output
into this format runs as a standalone script under ``python -I -S``.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing itself is a megabyte the pod monitor need not carry
if TYPE_CHECKING:  # the writer runs in every pod monitor: keep its imports to the minimum
    from collections.abc import Callable
    from pathlib import Path

MAX_LINE = 16 * 1024
STREAMS = ("stdout", "stderr")
FULL = "F"
PARTIAL = "P"

_NS = 1_000_000_000
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_TIMESTAMP = rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"


def format_timestamp(ns: int) -> str:
    """RFC 3339 in UTC with exactly nine fraction digits: ``2016-10-06T00:17:09.669794202Z``."""
    seconds, fraction = divmod(ns, _NS)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_timestamp(text: bytes) -> int:
    """Nanoseconds since the epoch from an RFC 3339 timestamp (any fraction, Z or offset)."""
    import calendar
    import re
    from datetime import datetime

    match = re.fullmatch(_TIMESTAMP, text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or b"", match.group(8)
    try:
        valid = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from exc
    seconds = calendar.timegm(valid.timetuple())
    if zone != b"Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[:1] == b"+" else -offset
    return seconds * _NS + int(fraction.ljust(9, b"0"))


def parse_line(line: bytes) -> tuple[int, str, str, bytes]:
    """Split one log line into (timestamp ns, stream, tag, content); ValueError if malformed.

    The trailing newline is optional. The tag may carry further ``:``-separated tags after
    F or P, as the CRI format allows.
    """
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) != 4:
        raise ValueError(f"CRI log line needs 'timestamp stream tag content': {line[:80]!r}")
    timestamp, stream, tag, content = parts
    if stream not in (b"stdout", b"stderr"):
        raise ValueError(f"unknown stream {stream[:20]!r} in CRI log line")
    if tag.split(b":", 1)[0] not in (b"F", b"P"):
        raise ValueError(f"CRI log tag must start with F or P, got {tag[:20]!r}")
    if b"\n" in content:
        raise ValueError("CRI log line content contains a newline")
    return parse_timestamp(timestamp), stream.decode(), tag.decode(), content


def read_log(path: str | Path, *, join_partials: bool = True) -> list[tuple[int, str, bytes]]:
    """Messages of a CRI log file as (timestamp ns, stream, content).

    With ``join_partials`` each stream's P pieces are joined with the F line that ends them
    and the message carries the first piece's timestamp. A last line without its newline is
    still being written and is left out; P pieces never ended by an F come last.
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")[:-1]
    messages: list[tuple[int, str, bytes]] = []
    pending: dict[str, tuple[int, list[bytes]]] = {}
    for line in lines:
        timestamp, stream, tag, content = parse_line(line)
        if not join_partials:
            messages.append((timestamp, stream, content))
            continue
        first, pieces = pending.pop(stream, (timestamp, []))
        pieces.append(content)
        if tag.split(":", 1)[0] == PARTIAL:
            pending[stream] = (first, pieces)
        else:
            messages.append((first, stream, b"".join(pieces)))
    for stream, (first, pieces) in pending.items():
        messages.append((first, stream, b"".join(pieces)))
    return messages


class CriLogWriter:
    """Turns a container's raw stdout/stderr into CRI log lines appended to ``path``.

    Lines produced by one :meth:`write` go out in one ``os.write`` on an O_APPEND file, so a
    line is never split between calls and a reader (or a second writer) never sees half of
    one. The parent directory must exist: the writer creates the file, never a directory.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], int] = time.time_ns,
        max_line: int = MAX_LINE,
    ) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.path = os.fspath(path)
        self._clock = clock
        self._max_line = max_line
        self._pending = {stream: bytearray() for stream in STREAMS}
        # Whether a stream's current line has gone out as P pieces and still needs its F.
        self._in_partial = dict.fromkeys(STREAMS, False)
        self._fd: int | None = os.open(self.path, _OPEN_FLAGS, 0o640)

    def write(self, stream: str, data: bytes) -> None:
        """Append ``data`` read from ``stream``; complete lines are written at once."""
        pending = self._buffer(stream)
        pending += data
        if not pending:
            return
        out: list[bytes] = []
        prefix = f"{format_timestamp(self._clock())} {stream} ".encode()
        start = 0
        while True:
            newline = pending.find(b"\n", start)
            end = len(pending) if newline < 0 else newline
            # Pieces of max_line bytes: of a complete line only while more remains after
            # them, of an unfinished one as soon as it has max_line bytes.
            while end - start > self._max_line or (newline < 0 and end - start >= self._max_line):
                out.append(prefix + b"P " + pending[start : start + self._max_line] + b"\n")
                start += self._max_line
                self._in_partial[stream] = True
            if newline < 0:
                break
            out.append(prefix + b"F " + pending[start:newline] + b"\n")
            self._in_partial[stream] = False
            start = newline + 1
        del pending[:start]
        if out:
            self._write_all(b"".join(out))

    def flush_partial(self, stream: str) -> None:
        """End of ``stream``: write its unfinished line, if any, as an F line."""
        pending = self._buffer(stream)
        if not pending and not self._in_partial[stream]:
            return
        line = f"{format_timestamp(self._clock())} {stream} F ".encode() + pending + b"\n"
        pending.clear()
        self._in_partial[stream] = False
        self._write_all(line)

    def reopen(self) -> None:
        """Open ``path`` anew, after the caller renamed the old file away for rotation.

        The new file is opened before the old one is closed: if the directory is gone this
        raises FileNotFoundError, creates nothing, and keeps writing to the old file.
        """
        fd = os.open(self.path, _OPEN_FLAGS, 0o640)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    def close(self) -> None:
        """Close the file; unfinished lines still buffered are not written."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> CriLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _buffer(self, stream: str) -> bytearray:
        try:
            return self._pending[stream]
        except KeyError:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}") from None

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"CRI log writer for {self.path} is closed")
        view = memoryview(data)
        while view:
            # One call in practice; a short write (disk full) continues where it stopped.
            written = os.write(self._fd, view)
            view = view[written:]


__all__ = [
    "FULL",
    "MAX_LINE",
    "PARTIAL",
    "STREAMS",
    "CriLogWriter",
    "format_timestamp",
    "parse_line",
    "parse_timestamp",
    "read_log",
]
