"""Container logs on the node: where they live, reading them as ``kubectl logs`` shows them,
and rotating them, as the kubelet's ``kuberuntime/logs`` and container log manager.

The runtime writes each container's output to ``<log root>/<ns>_<pod>_<uid>/<container>/
<restartCount>.log`` in the CRI log format: one entry a line, ``<RFC 3339 timestamp>
<stdout|stderr> <P|F> <content>``, where P entries are pieces of a long line that the next
F entry of the same stream ends. Rotation renames the live file to ``<name>.<YYYYMMDD-HHMMSS>``
and has the runtime reopen a fresh one at the old name.

The format is parsed here again rather than imported from ``runtime_linux``: the core never
imports a plugin, and any runtime may write these files.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from kcore.errors import NotFound
from kcore.interfaces import RuntimeService

log = structlog.get_logger("kcore.nodeagent.logs")

#: The kubelet's ``podLogsRootDirectory``.
POD_LOGS_ROOT = Path("/var/log/pods")
#: The kubelet's defaults for ``containerLogMaxSize`` and ``containerLogMaxFiles``.
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 5
#: How a rotated file's name ends: ``.`` and the UTC time of the rotation.
ROTATED_SUFFIX_FORMAT = "%Y%m%d-%H%M%S"

_CHUNK = 64 * 1024
_TAIL_LOOKBACK = 1024 * 1024
_NS = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_STREAMS = (b"stdout", b"stderr")


def pod_log_dir(log_root: Path, namespace: str, pod_name: str, pod_uid: str) -> Path:
    """``<log_root>/<namespace>_<pod>_<uid>``: the pod sandbox's ``log_directory``."""
    return Path(log_root) / f"{namespace}_{pod_name}_{pod_uid}"


def container_log_path(
    log_root: Path,
    namespace: str,
    pod_name: str,
    pod_uid: str,
    container: str,
    restart_count: int,
) -> Path:
    """``<log_root>/<ns>_<pod>_<uid>/<container>/<restartCount>.log``.

    Relative to :func:`pod_log_dir` this is the container config's ``log_path``.
    """
    return pod_log_dir(log_root, namespace, pod_name, pod_uid) / container / f"{restart_count}.log"


def rotated_logs(path: Path) -> list[Path]:
    """The rotated files of the live log ``path``, oldest first."""
    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.\d{8}-\d{6}")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return [path.parent / name for name in sorted(names) if pattern.fullmatch(name)]


# -- reading --------------------------------------------------------------------------------------


async def read_container_log(
    path: Path,
    *,
    follow: bool = False,
    tail_lines: int | None = None,
    timestamps: bool = False,
    since_time: datetime | None = None,
    limit_bytes: int | None = None,
    is_running: Callable[[], Awaitable[bool]] | None = None,
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """The container's output in the file at ``path`` as ``kubectl logs`` shows it.

    Both streams come in the order their lines were completed; a long line's P pieces are
    joined into one line. ``timestamps`` prefixes each line with its first piece's time as
    Go's RFC3339Nano writes it (trailing zeros of the fraction dropped) and a space.
    ``tail_lines`` keeps the last N lines (found reading the file backwards; negative means
    all, as kubectl's -1), ``since_time`` drops lines older than it (naive means UTC) and
    ``limit_bytes`` stops after that many bytes, possibly within a line. Lines that are not
    in the CRI format are passed through unchanged.

    With ``follow`` the reader polls every ``poll_interval`` seconds for new data and for
    rotation, finishing the renamed file (and any rotated after it) before going on in the new
    one. It ends once ``is_running()`` has returned False and everything written has been
    read; without ``is_running`` it ends only when the consumer closes it. Raises
    :class:`kcore.NotFound` when the file does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"log file {path} not found") from None
    successor: int | None = None
    try:
        since_ns = None if since_time is None else _datetime_ns(since_time)
        offset, skip = 0, 0
        if tail_lines is not None and tail_lines >= 0:
            offset, skip = await asyncio.to_thread(_tail_start, fd, tail_lines)
        decoder = _Decoder(timestamps=timestamps, since_ns=since_ns, skip=skip)
        remaining = None if limit_bytes is None or limit_bytes < 0 else limit_bytes
        done, finishing = remaining == 0, False
        while not done:
            data = await asyncio.to_thread(os.pread, fd, _CHUNK, offset)
            if data:
                offset += len(data)
                out = decoder.feed(data)
            elif successor is not None:
                # The old file is drained: the runtime wrote to it only until the new one
                # existed, and a line may go on from one file into the next.
                out = decoder.end_of_file()
                os.close(fd)
                fd, offset, successor = successor, 0, None
            elif not follow:
                out, done = decoder.finish(), True
            else:
                successor = await asyncio.to_thread(_successor, fd, Path(path))
                if successor is not None:
                    continue
                if finishing:
                    out, done = decoder.finish(), True
                elif is_running is not None and not await is_running():
                    finishing = True  # read once more: the last output may have come since
                    continue
                else:
                    await asyncio.sleep(poll_interval)
                    continue
            if not out:
                continue
            if remaining is not None:
                if len(out) >= remaining:
                    yield out[:remaining]
                    return
                remaining -= len(out)
            yield out
    finally:
        os.close(fd)
        if successor is not None:
            os.close(successor)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _successor(fd: int, path: Path) -> int | None:
    """The file to read after ``fd`` once ``path`` has been rotated away from it, opened.

    That is the next rotated file when more than one rotation went by unread, else the live
    file; None while ``fd`` is still the live file or the runtime has yet to reopen it.
    """
    mine = os.fstat(fd)
    with contextlib.suppress(FileNotFoundError):
        if _same_file(os.stat(path), mine):
            return None
    while True:
        for candidate in _rotated_after(mine, path):
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                return os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
        try:
            live = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # renamed, not reopened yet
        if _same_file(os.fstat(live), mine):  # renamed back: the runtime could not reopen
            os.close(live)
            return None
        if not _rotated_after(mine, path):
            return live
        os.close(live)  # rotated again since the listing: the next file has another name now


def _rotated_after(mine: os.stat_result, path: Path) -> list[Path]:
    """The rotated files of ``path`` newer than the file ``mine``, if that is one of them."""
    rotated = rotated_logs(path)
    for i, candidate in enumerate(rotated):
        with contextlib.suppress(FileNotFoundError):
            if _same_file(os.stat(candidate), mine):
                return rotated[i + 1 :]
    return []


def _records_backward(fd: int) -> Iterable[tuple[int, bytes]]:
    """(offset, entry without its newline) of the file's complete entries, last first.

    Reads ``_CHUNK`` bytes at a time from the end, more only for entries longer than that;
    what follows the last newline is still being written and is left out.
    """
    pos = os.fstat(fd).st_size
    buf = b""
    terminated = False
    while pos > 0:
        size = min(max(_CHUNK, len(buf)), pos)
        pos -= size
        buf = os.pread(fd, size, pos) + buf
        if not terminated:
            last = buf.rfind(b"\n")
            if last < 0:
                continue
            buf, terminated = buf[: last + 1], True
        end = len(buf) - 1  # the newline of the last entry not yet given out
        while (newline := buf.rfind(b"\n", 0, end)) >= 0:
            yield pos + newline + 1, buf[newline + 1 : end]
            end = newline
        buf = buf[: end + 1]
    if terminated and buf:
        yield 0, buf[:-1]


def _tail_start(fd: int, lines: int) -> tuple[int, int]:
    """Where reading must start for the file's last ``lines`` lines, and how many lines that
    come first from there are to be skipped.

    A line is an F entry with the P entries of its stream before it, or a malformed entry.
    The start is where every stream begins a line: going back, a stream is ``open`` from
    the entries of it taken until its previous F entry (or the file's start) is found.
    Other streams' lines may lie between that start and the last ``lines`` lines; they are
    the skipped ones. A stream still open ``_TAIL_LOOKBACK`` bytes before its last lines (a
    stream silent for long, or a line written in pieces for long) is taken to begin there:
    at worst a line loses its first pieces, and a tail never reads far into a big file.
    """
    count = 0
    open_streams: set[bytes] = set()
    enough: int | None = None  # where the last ``lines`` lines begin, should a stream stay open
    for offset, entry in _records_backward(fd):
        parsed = _parse_entry(entry)
        if parsed is not None and not parsed[2]:
            open_streams.discard(parsed[1])
        if count >= lines:
            end = offset + len(entry) + 1
            if not open_streams:
                return end, count - lines
            if enough is None:
                enough = end
            elif enough - offset > _TAIL_LOOKBACK:
                return enough, 0
        if parsed is None or not parsed[2]:
            count += 1
        if parsed is not None:
            open_streams.add(parsed[1])
    return 0, max(0, count - lines)


def _parse_entry(entry: bytes) -> tuple[bytes, bytes, bool, bytes] | None:
    """(timestamp, stream, partial, content) of one CRI log entry without its newline, or
    None when it is not one."""
    parts = entry.split(b" ", 3)
    if len(parts) != 4:
        return None
    timestamp, stream, tag, content = parts
    if stream not in _STREAMS or _TIMESTAMP.fullmatch(timestamp) is None:
        return None
    kind = tag.split(b":", 1)[0]
    if kind not in (b"F", b"P"):
        return None
    return timestamp, stream, kind == b"P", content


def _kubelet_timestamp(timestamp: bytes) -> bytes:
    """The timestamp as the kubelet writes it: Go's RFC3339Nano, which drops the trailing
    zeros of the fraction and writes a zero offset as Z."""
    match = _TIMESTAMP.fullmatch(timestamp)
    assert match is not None
    fraction = (match.group(7) or b"").rstrip(b"0")
    zone = match.group(8)
    if zone in (b"+00:00", b"-00:00"):
        zone = b"Z"
    return timestamp[:19] + (b"." + fraction if fraction else b"") + zone


def _timestamp_ns(timestamp: bytes) -> int:
    match = _TIMESTAMP.fullmatch(timestamp)
    assert match is not None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(8)
    if zone != b"Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[:1] == b"+" else -offset
    return seconds * _NS + int((match.group(7) or b"").ljust(9, b"0"))


def _datetime_ns(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000


class _Decoder:
    """Turns CRI log bytes, fed as they are read, into ``kubectl logs`` output."""

    def __init__(self, *, timestamps: bool, since_ns: int | None, skip: int) -> None:
        self._timestamps = timestamps
        self._since_ns = since_ns
        self._skip = skip
        self._buffer = bytearray()  # an entry whose newline has not been read yet
        self._pieces: dict[bytes, tuple[bytes, list[bytes]]] = {}  # stream: first time, P pieces

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return b""
        entries = bytes(self._buffer[:end]).split(b"\n")
        del self._buffer[: end + 1]
        out: list[bytes] = []
        for entry in entries:
            self._entry(entry, b"\n", out)
        return b"".join(out)

    def end_of_file(self) -> bytes:
        """The file is complete: an entry at its end lacks only its newline."""
        if not self._buffer:
            return b""
        out: list[bytes] = []
        self._entry(bytes(self._buffer), b"", out)
        self._buffer.clear()
        return b"".join(out)

    def finish(self) -> bytes:
        """Nothing more comes: lines never ended by an F entry go out as far as they got,
        without a newline, as the kubelet writes P pieces."""
        out = [self.end_of_file()]
        for first, pieces in self._pieces.values():
            self._line(first, b"".join(pieces), out)
        self._pieces.clear()
        return b"".join(out)

    def _entry(self, entry: bytes, newline: bytes, out: list[bytes]) -> None:
        parsed = _parse_entry(entry)
        if parsed is None:
            if self._skip:
                self._skip -= 1
            else:
                out.append(entry + newline)
            return
        timestamp, stream, partial, content = parsed
        first, pieces = self._pieces.pop(stream, (timestamp, []))
        pieces.append(content)
        if partial:
            self._pieces[stream] = (first, pieces)
        elif self._skip:
            self._skip -= 1
        else:
            pieces.append(b"\n")
            self._line(first, b"".join(pieces), out)

    def _line(self, timestamp: bytes, line: bytes, out: list[bytes]) -> None:
        if self._since_ns is not None and _timestamp_ns(timestamp) < self._since_ns:
            return
        if self._timestamps:
            out.append(_kubelet_timestamp(timestamp) + b" ")
        out.append(line)


# -- rotation -------------------------------------------------------------------------------------


class LogRotator:
    """The kubelet's container log manager: rotates the logs of running containers that
    have grown too big and keeps a bounded number of rotated files.

    Rotation renames the live file and has the runtime reopen it; readers that follow the
    log go on from the renamed file into the new one (see :func:`read_container_log`).
    Rotated files stay uncompressed.
    """

    async def rotate(
        self,
        runtime: RuntimeService,
        containers: Iterable[tuple[str, Path]],
        max_size: int = DEFAULT_MAX_SIZE,
        max_files: int = DEFAULT_MAX_FILES,
        now: datetime | None = None,
    ) -> list[Path]:
        """Rotate each of ``containers`` (running ones: ``(container id, log path)``) whose
        log is bigger than ``max_size`` bytes; return the rotated files' new paths.

        The file is renamed to ``<path>.<YYYYMMDD-HHMMSS>`` (``now`` in UTC, naive means UTC;
        default the current time) and ``runtime.reopen_container_log(id)`` opens a new one;
        if that fails, the file gets its name back. Then the oldest rotated files are
        deleted so that at most ``max_files`` files remain, the live one included. A file
        already rotated within the same second waits for the next call.
        """
        if max_files < 2:
            raise ValueError(
                f"max_files must be at least 2 (the live file and one rotated), got {max_files}"
            )
        when = now or datetime.now(UTC)
        if when.tzinfo is not None:
            when = when.astimezone(UTC)
        suffix = when.strftime(ROTATED_SUFFIX_FORMAT)
        rotated: list[Path] = []
        for container_id, log_path in containers:
            path = Path(log_path)
            clog = log.bind(container=container_id, path=str(path))
            try:
                if path.stat().st_size <= max_size:
                    continue
            except FileNotFoundError:
                continue
            target = path.with_name(f"{path.name}.{suffix}")
            if target.exists():
                clog.info("log rotated within the same second, rotating later", target=str(target))
                continue
            try:
                os.rename(path, target)
            except FileNotFoundError:
                continue  # the container and its logs went meanwhile
            try:
                await runtime.reopen_container_log(container_id)
            except Exception as exc:
                clog.warning("log not rotated: the runtime could not reopen it", error=str(exc))
                try:
                    os.rename(target, path)
                except OSError as back:
                    clog.error("rotated log not renamed back", target=str(target), error=str(back))
                continue
            rotated.append(target)
            for old in rotated_logs(path)[: -(max_files - 1)]:
                old.unlink(missing_ok=True)
        return rotated


__all__ = [
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_SIZE",
    "POD_LOGS_ROOT",
    "ROTATED_SUFFIX_FORMAT",
    "LogRotator",
    "container_log_path",
    "pod_log_dir",
    "read_container_log",
    "rotated_logs",
]
