"""Container logs: reading CRI log files as ``kubectl logs`` shows them, following them
across rotation, and rotating them. The files are written by runtime_linux's CRI log writer."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kcore.errors import NotFound
from kcore.nodeagent import logs
from kcore.nodeagent.logs import (
    LogRotator,
    container_log_path,
    pod_log_dir,
    read_container_log,
    rotated_logs,
)
from kcore.plugins.runtime_linux.crilog import CriLogWriter

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


class Clock:
    """Nanoseconds advancing by one millisecond a call, so every entry has its own time."""

    def __init__(self, start: int = T0, step: int = 1_000_000):
        self.now = start - step
        self.step = step

    def __call__(self) -> int:
        self.now += self.step
        return self.now


async def collect(agen) -> bytes:
    return b"".join([chunk async for chunk in agen])


def running_until(flag: dict):
    async def is_running() -> bool:
        return flag["running"]

    return is_running


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = container_log_path(tmp_path, "default", "web", "uid-1", "app", 0)
    path.parent.mkdir(parents=True)
    return path


def test_paths_are_laid_out_as_the_kubelet_does(tmp_path):
    assert pod_log_dir(tmp_path, "ns", "pod", "u-1") == tmp_path / "ns_pod_u-1"
    assert (
        container_log_path(tmp_path, "ns", "pod", "u-1", "c", 3)
        == tmp_path / "ns_pod_u-1" / "c" / "3.log"
    )


# -- reading --------------------------------------------------------------------------------------


async def test_both_streams_in_order(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"one\ntwo\n")
        w.write("stderr", b"oops\n")
        w.write("stdout", b"three\n\n")
    assert await collect(read_container_log(log_path)) == b"one\ntwo\noops\nthree\n\n"


async def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        await collect(read_container_log(tmp_path / "nope.log"))


async def test_a_long_line_is_joined_from_its_pieces(log_path):
    long_line = bytes(random.Random(1).choice(b"abcdefgh") for _ in range(40_000))
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", long_line[:20_000])
        w.write("stderr", b"in between\n")
        w.write("stdout", long_line[20_000:] + b"\nafter\n")
    raw = log_path.read_bytes().splitlines()
    assert [line.split(b" ")[2] for line in raw] == [b"P", b"F", b"P", b"F", b"F"]
    out = await collect(read_container_log(log_path))
    assert out == b"in between\n" + long_line + b"\nafter\n"


async def test_pieces_are_joined_per_stream(log_path):
    with CriLogWriter(log_path, clock=Clock(), max_line=4) as w:
        w.write("stdout", b"abcdef")  # P abcd, "ef" buffered
        w.write("stderr", b"12345678\n")  # P 1234, F 5678
        w.write("stdout", b"gh\n")  # F efgh
    assert await collect(read_container_log(log_path)) == b"12345678\nabcdefgh\n"


async def test_timestamps_are_the_first_pieces_in_go_rfc3339nano(log_path):
    clock = Clock(start=T0 + 123_456_000, step=100_000_001)
    with CriLogWriter(log_path, clock=clock, max_line=4) as w:
        w.write("stdout", b"hell")  # P at .123456000
        w.write("stdout", b"o\n")  # F at .223456001
        w.write("stdout", b"x\n")
    out = await collect(read_container_log(log_path, timestamps=True))
    assert out == (
        b"2023-11-14T22:13:20.123456Z hello\n"  # trailing zeros dropped, as Go does
        b"2023-11-14T22:13:20.323456002Z x\n"
    )


async def test_timestamps_without_fraction_and_with_an_offset(log_path):
    log_path.write_bytes(
        b"2024-01-02T03:04:05.000000000Z stdout F a\n2024-01-02T03:04:05.5+02:00 stdout F b\n"
    )
    out = await collect(read_container_log(log_path, timestamps=True))
    assert out == b"2024-01-02T03:04:05Z a\n2024-01-02T03:04:05.5+02:00 b\n"


async def test_malformed_lines_are_passed_through(log_path):
    log_path.write_bytes(
        b"2024-01-02T03:04:05.1Z stdout F good\n"
        b"not a cri line\n"
        b"\n"
        b"2024-01-02T03:04:05.2Z stdout X bad tag\n"
        b"2024-13-xxT03:04:05Z stdout F bad time\n"
        b"2024-01-02T03:04:05.3Z stdin F bad stream\n"
        b"2024-01-02T03:04:05.4Z stderr F good again\n"
        b"no newline at the end"
    )
    out = await collect(read_container_log(log_path, timestamps=True))
    assert out == (
        b"2024-01-02T03:04:05.1Z good\n"
        b"not a cri line\n"
        b"\n"
        b"2024-01-02T03:04:05.2Z stdout X bad tag\n"
        b"2024-13-xxT03:04:05Z stdout F bad time\n"
        b"2024-01-02T03:04:05.3Z stdin F bad stream\n"
        b"2024-01-02T03:04:05.4Z good again\n"
        b"no newline at the end"
    )
    tail = await collect(read_container_log(log_path, tail_lines=2))
    assert tail == b"2024-01-02T03:04:05.3Z stdin F bad stream\ngood again\nno newline at the end"


async def test_an_unfinished_line_at_the_end_comes_as_far_as_it_got(log_path):
    with CriLogWriter(log_path, clock=Clock(), max_line=4) as w:
        w.write("stdout", b"done\nstill writ")
    assert (
        await collect(read_container_log(log_path)) == b"done\nstill wr"
    )  # "it" is still in the writer


async def test_tail_of_a_big_file_reads_only_its_end(log_path, monkeypatch):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"".join(b"line %d\n" % i for i in range(100_000)))
    size = log_path.stat().st_size
    assert size > 4_000_000
    read = []
    real_pread = os.pread

    def counting_pread(fd, n, offset):
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    out = await collect(read_container_log(log_path, tail_lines=3))
    assert out == b"line 99997\nline 99998\nline 99999\n"
    assert sum(read) <= 2 * logs._CHUNK
    read.clear()
    assert await collect(read_container_log(log_path, tail_lines=0)) == b""
    assert sum(read) <= 2 * logs._CHUNK
    # A stream with no line before its last one cannot prove it had no pieces far back:
    # the reader looks back a bounded way only.
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stderr", b"last\n")
    read.clear()
    out = await collect(read_container_log(log_path, tail_lines=2))
    assert out == b"line 99999\nlast\n"
    assert sum(read) <= logs._TAIL_LOOKBACK + 3 * logs._CHUNK < size / 3


def _random_log(path: Path, seed: int) -> None:
    """Both streams, lines of any length (pieces of 5 bytes), malformed lines between, some
    longer than the chunks the tests read in."""
    rng = random.Random(seed)
    with CriLogWriter(path, clock=Clock(), max_line=5) as w:
        for i in range(60):
            stream = rng.choice(["stdout", "stderr"])
            choice = rng.random()
            if choice < 0.1:
                os.write(w._fd, b"garbage %d%s\n" % (i, b"g" * rng.randrange(0, 300)))
            elif choice < 0.4:
                w.write(stream, b"%d" % i * rng.randrange(1, 8))  # part of a line
            else:
                w.write(stream, b"line %d %s\n" % (i, b"x" * rng.randrange(0, 12)))
        w.flush_partial("stdout")
        w.flush_partial("stderr")


@pytest.mark.parametrize("chunk", [64, 64 * 1024])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_tail_is_the_last_lines_of_the_whole(tmp_path, monkeypatch, seed, chunk):
    monkeypatch.setattr(logs, "_CHUNK", chunk)
    path = tmp_path / "0.log"
    _random_log(path, seed)
    whole = (await collect(read_container_log(path, timestamps=True))).splitlines(keepends=True)
    assert any(b" P " in line for line in path.read_bytes().splitlines())
    assert any(b"garbage" in line for line in whole)
    for n in range(len(whole) + 2):
        tail = await collect(read_container_log(path, tail_lines=n, timestamps=True))
        assert tail == b"".join(whole[max(0, len(whole) - n) :] if n else []), n
    assert await collect(read_container_log(path, tail_lines=-1, timestamps=True)) == b"".join(
        whole
    )


async def test_since_time_drops_older_lines(log_path):
    clock = Clock(step=1_000_000_000)  # a second an entry
    with CriLogWriter(log_path, clock=clock, max_line=4) as w:
        for i in range(5):
            w.write("stdout", b"line")  # P at 2i s
            w.write("stdout", b"%d\n" % i)  # F at 2i+1 s
    since = datetime.fromtimestamp(T0 // 1_000_000_000 + 4, UTC)
    out = await collect(read_container_log(log_path, since_time=since))
    assert out == b"line2\nline3\nline4\n"
    # A line is as old as its first piece: the one begun at 3 s ends at 4 s but is older.
    later = datetime.fromtimestamp(T0 // 1_000_000_000 + 5, UTC).replace(tzinfo=None)
    assert await collect(read_container_log(log_path, since_time=later)) == b"line3\nline4\n"


async def test_limit_bytes_may_cut_a_line(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"".join(b"line %d\n" % i for i in range(20_000)))
    whole = await collect(read_container_log(log_path))
    assert len(whole) > 2 * 64 * 1024
    for limit in (0, 1, 9, 100_000, len(whole), len(whole) + 10):
        assert await collect(read_container_log(log_path, limit_bytes=limit)) == whole[:limit]
    out = await collect(read_container_log(log_path, limit_bytes=25, timestamps=True))
    assert out == b"2023-11-14T22:13:20Z line"


async def test_limit_bytes_ends_a_follow(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"abcdef\n")
        reader = read_container_log(log_path, follow=True, limit_bytes=3, poll_interval=0.01)
        assert await asyncio.wait_for(collect(reader), 2) == b"abc"


# -- following -------------------------------------------------------------------------------------


async def test_follow_sees_data_appended_over_time(log_path):
    state = {"running": True}
    expected = b"".join(b"line %d\n" % i for i in range(30))

    async def write():
        with CriLogWriter(log_path, clock=Clock()) as w:
            for i in range(30):
                w.write("stdout" if i % 3 else "stderr", b"line %d\n" % i)
                await asyncio.sleep(0.005)
        state["running"] = False

    CriLogWriter(log_path).close()  # the runtime creates the file before the container starts
    reader = read_container_log(
        log_path, follow=True, is_running=running_until(state), poll_interval=0.01
    )
    chunks: list[bytes] = []

    async def read():
        async for chunk in reader:
            chunks.append(chunk)

    await asyncio.wait_for(asyncio.gather(write(), read()), 5)
    assert b"".join(chunks) == expected
    assert len(chunks) > 1  # it streamed, not read once at the end


async def test_follow_waits_while_running_and_ends_with_the_last_output(log_path):
    state = {"running": True}
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"first\n")
        reader = read_container_log(
            log_path, follow=True, tail_lines=5, is_running=running_until(state), poll_interval=0.01
        )
        task = asyncio.create_task(collect(reader))
        await asyncio.sleep(0.2)
        assert not task.done()
        w.write("stdout", b"last\n")
        state["running"] = False
        assert await asyncio.wait_for(task, 2) == b"first\nlast\n"


async def test_follow_of_a_stopped_container_reads_everything_and_ends(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"a\nb\n")
    calls = []

    async def is_running():
        calls.append(1)
        return False

    reader = read_container_log(log_path, follow=True, is_running=is_running, tail_lines=1)
    assert await asyncio.wait_for(collect(reader), 2) == b"b\n"
    assert calls


async def test_output_written_as_the_container_stops_is_not_lost(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        w.write("stdout", b"first\n")

        async def is_running():
            w.write("stdout", b"final words\n")  # after the reader's last read, before the answer
            return False

        reader = read_container_log(log_path, follow=True, is_running=is_running)
        assert await asyncio.wait_for(collect(reader), 2) == b"first\nfinal words\n"


def _rotate(path: Path, writer: CriLogWriter, suffix: str) -> Path:
    rotated = path.with_name(f"{path.name}.{suffix}")
    os.rename(path, rotated)
    writer.reopen()
    return rotated


async def test_follow_across_rotations_loses_and_repeats_nothing(log_path):
    state = {"running": True}
    w = CriLogWriter(log_path, clock=Clock(), max_line=8)
    reader = read_container_log(
        log_path, follow=True, is_running=running_until(state), poll_interval=0.01
    )
    try:
        w.write("stdout", b"before 1\nbefore 2\n")
        got = await asyncio.wait_for(reader.__anext__(), 2)
        assert got == b"before 1\nbefore 2\n"
        # While the reader waits, a line begun in one file ends in the next.
        w.write("stdout", b"abcdefghij")  # P abcdefgh
        w.write("stderr", b"old file\n")
        _rotate(log_path, w, "20240101-000001")
        w.write("stdout", b"kl\n")  # F ijkl, in the new file
        w.write("stdout", b"new file\n")
        got = b""
        while not got.endswith(b"new file\n"):
            got += await asyncio.wait_for(reader.__anext__(), 2)
        assert got == b"old file\nabcdefghijkl\nnew file\n"
        # Two rotations while the consumer reads nothing, then it stops.
        w.write("stdout", b"gen 1\n")
        _rotate(log_path, w, "20240101-000002")
        w.write("stdout", b"gen 2\n")
        _rotate(log_path, w, "20240101-000003")
        w.write("stdout", b"gen 3\n")
        # The rename of a rotation with the new file not yet there.
        os.rename(log_path, log_path.with_name(log_path.name + ".20240101-000004"))
        w.write("stdout", b"gen 4\n")
        await asyncio.sleep(0.05)
        w.reopen()
        w.write("stdout", b"gen 5\n")
        w.close()
        state["running"] = False
        rest = await asyncio.wait_for(collect(reader), 2)
        assert rest == b"gen 1\ngen 2\ngen 3\ngen 4\ngen 5\n"
    finally:
        await reader.aclose()
        w.close()


async def test_follow_through_the_rotator(log_path):
    """The log manager rotating under a writer that never pauses, while a reader follows."""
    state = {"running": True}
    writer = CriLogWriter(log_path, clock=Clock())
    runtime = FakeRuntime({"c1": writer})
    rotator = LogRotator()
    total = 3000
    expected = b"".join(b"message number %d\n" % i for i in range(total))

    async def write_and_rotate():
        second = 0
        for i in range(1, total):
            writer.write("stdout", b"message number %d\n" % i)
            if i % 100 == 99:
                second += 1
                await rotator.rotate(
                    runtime,
                    [("c1", log_path)],
                    max_size=2000,
                    max_files=20,
                    now=datetime(2024, 1, 1, tzinfo=UTC).replace(second=second % 60),
                )
                await asyncio.sleep(0.002)
        writer.close()
        state["running"] = False

    writer.write("stdout", b"message number 0\n")
    reader = read_container_log(
        log_path, follow=True, is_running=running_until(state), poll_interval=0.001
    )
    first = await reader.__anext__()  # the reader has the file open before any rotation
    _, rest = await asyncio.wait_for(asyncio.gather(write_and_rotate(), collect(reader)), 8)
    out = first + rest
    assert len(rotated_logs(log_path)) == 19
    assert out == expected


# -- rotation --------------------------------------------------------------------------------------


class FakeRuntime:
    """Reopens like runtime_linux: the writer opens a new file at the log path; raises,
    creating nothing, for unknown containers or when told to fail."""

    def __init__(self, writers: dict[str, CriLogWriter]):
        self.writers = writers
        self.reopened: list[str] = []
        self.fail = False

    async def reopen_container_log(self, container_id: str) -> None:
        if self.fail or container_id not in self.writers:
            raise NotFound(f"container {container_id} not running")
        self.writers[container_id].reopen()
        self.reopened.append(container_id)


def _at(second: int) -> datetime:
    return datetime(2024, 5, 6, 7, 8, second, tzinfo=UTC)


async def test_rotation_renames_reopens_and_keeps_max_files(tmp_path):
    big = container_log_path(tmp_path, "ns", "p", "u", "big", 0)
    small = container_log_path(tmp_path, "ns", "p", "u", "small", 0)
    big.parent.mkdir(parents=True)
    small.parent.mkdir(parents=True)
    writers = {"big": CriLogWriter(big, clock=Clock()), "small": CriLogWriter(small)}
    runtime = FakeRuntime(writers)
    rotator = LogRotator()
    writers["small"].write("stdout", b"tiny\n")
    try:
        for generation in range(6):
            writers["big"].write("stdout", b"generation %d %s\n" % (generation, b"x" * 200))
            rotated = await rotator.rotate(
                runtime,
                [("big", big), ("small", small), ("gone", tmp_path / "gone.log")],
                max_size=100,
                max_files=3,
                now=_at(generation),
            )
            assert rotated == [big.with_name(f"0.log.20240506-07080{generation}")]
            assert big.exists() and big.stat().st_size == 0  # the runtime opened a new one
        writers["big"].write("stdout", b"live\n")
    finally:
        for w in writers.values():
            w.close()
    assert runtime.reopened == ["big"] * 6
    assert sorted(p.name for p in big.parent.iterdir()) == [
        "0.log",
        "0.log.20240506-070804",
        "0.log.20240506-070805",
    ]
    assert b"generation 5" in big.with_name("0.log.20240506-070805").read_bytes()
    assert await collect(read_container_log(big)) == b"live\n"
    assert sorted(p.name for p in small.parent.iterdir()) == ["0.log"]


async def test_rotation_exactly_at_max_size_waits(log_path):
    log_path.write_bytes(b"x" * 100)
    runtime = FakeRuntime({})
    assert await LogRotator().rotate(runtime, [("c", log_path)], max_size=100) == []
    assert log_path.read_bytes() == b"x" * 100


async def test_failed_reopen_puts_the_file_back(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        runtime = FakeRuntime({"c": w})
        runtime.fail = True
        w.write("stdout", b"a" * 500 + b"\n")
        assert await LogRotator().rotate(runtime, [("c", log_path)], max_size=10, now=_at(1)) == []
        assert rotated_logs(log_path) == []
        w.write("stdout", b"still here\n")  # the writer's file still has the live name
    assert await collect(read_container_log(log_path, tail_lines=1)) == b"still here\n"


async def test_a_second_rotation_within_the_same_second_waits(log_path):
    with CriLogWriter(log_path, clock=Clock()) as w:
        runtime = FakeRuntime({"c": w})
        rotator = LogRotator()
        w.write("stdout", b"first\n")
        assert await rotator.rotate(runtime, [("c", log_path)], max_size=1, now=_at(1))
        w.write("stdout", b"second\n")
        assert await rotator.rotate(runtime, [("c", log_path)], max_size=1, now=_at(1)) == []
    rotated = rotated_logs(log_path)
    assert [p.name for p in rotated] == ["0.log.20240506-070801"]
    assert await collect(read_container_log(rotated[0])) == b"first\n"
    assert await collect(read_container_log(log_path)) == b"second\n"


async def test_max_files_below_two_is_refused(log_path):
    with pytest.raises(ValueError, match="max_files"):
        await LogRotator().rotate(FakeRuntime({}), [], max_files=1)
