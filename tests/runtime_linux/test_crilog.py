"""The CRI log format: timestamps, F/P splitting, per-stream buffers, rotation, reading back."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcore.plugins.runtime_linux import crilog
from kcore.plugins.runtime_linux.crilog import (
    MAX_LINE,
    CriLogWriter,
    format_timestamp,
    parse_line,
    parse_timestamp,
    read_log,
)

TS = 1475713029_669794202  # 2016-10-06T00:17:09.669794202Z


def fixed_clock(ns: int = TS):
    return lambda: ns


def lines_of(path: Path) -> list[tuple[int, str, str, bytes]]:
    return [parse_line(line) for line in path.read_bytes().split(b"\n")[:-1]]


def test_crilog_imports_nothing_from_kcore():
    tree = ast.parse(Path(crilog.__file__).read_text())
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.split(".")[0] == "kcore"]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (TS, "2016-10-06T00:17:09.669794202Z"),
        (0, "1970-01-01T00:00:00.000000000Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (1_700_000_000_100_000_000, "2023-11-14T22:13:20.100000000Z"),
    ],
)
def test_format_timestamp(ns, text):
    assert format_timestamp(ns) == text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", text)
    assert parse_timestamp(text.encode()) == ns


@given(st.integers(min_value=0, max_value=253402300799_999999999))
def test_timestamp_round_trip(ns):
    assert parse_timestamp(format_timestamp(ns).encode()) == ns


def test_parse_timestamp_accepts_short_fractions_and_offsets():
    assert parse_timestamp(b"2016-10-06T00:17:09.5Z") == 1475713029_500000000
    assert parse_timestamp(b"2016-10-06T00:17:09Z") == 1475713029_000000000
    assert parse_timestamp(b"2016-10-06T02:17:09.669794202+02:00") == TS


def test_complete_lines_are_full(tmp_path):
    path = tmp_path / "0.log"
    writer = CriLogWriter(path, clock=fixed_clock())
    writer.write("stdout", b"hello\nworld\n")
    writer.write("stderr", b"\n")
    writer.close()
    assert path.read_bytes() == (
        b"2016-10-06T00:17:09.669794202Z stdout F hello\n"
        b"2016-10-06T00:17:09.669794202Z stdout F world\n"
        b"2016-10-06T00:17:09.669794202Z stderr F \n"
    )
    assert oct(path.stat().st_mode & 0o777) == oct(0o640 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_crlf_is_not_special(tmp_path):
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=fixed_clock()) as writer:
        writer.write("stdout", b"dos\r\nmac\rend\n")
    assert [c for *_, c in lines_of(path)] == [b"dos\r", b"mac\rend"]


def test_long_line_is_split_at_max_line(tmp_path):
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=fixed_clock()) as writer:
        writer.write("stdout", b"x" * 40_000 + b"\n")
    lines = lines_of(path)
    assert [tag for _, _, tag, _ in lines] == ["P", "P", "F"]
    assert [len(content) for *_, content in lines] == [16384, 16384, 7232]
    assert read_log(path) == [(TS, "stdout", b"x" * 40_000)]


def test_line_of_exactly_max_line_is_one_full_line(tmp_path):
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=fixed_clock()) as writer:
        writer.write("stdout", b"y" * MAX_LINE + b"\n")
    assert [(tag, len(content)) for _, _, tag, content in lines_of(path)] == [("F", MAX_LINE)]


def test_unfinished_line_goes_out_once_it_reaches_max_line(tmp_path):
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=fixed_clock(), max_line=4) as writer:
        writer.write("stdout", b"abc")
        assert path.read_bytes() == b""
        writer.write("stdout", b"defghi")
        assert [(t, c) for _, _, t, c in lines_of(path)] == [("P", b"abcd"), ("P", b"efgh")]
        writer.write("stdout", b"\n")
    assert [(t, c) for _, _, t, c in lines_of(path)][-1] == ("F", b"i")
    assert read_log(path) == [(TS, "stdout", b"abcdefghi")]


def test_streams_keep_their_own_partial_lines(tmp_path):
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=fixed_clock()) as writer:
        writer.write("stdout", b"out-")
        writer.write("stderr", b"err-")
        writer.write("stdout", b"1\nout-2")
        writer.write("stderr", b"1\n")
        writer.write("stdout", b"\n")
    assert [(s, t, c) for _, s, t, c in lines_of(path)] == [
        ("stdout", "F", b"out-1"),
        ("stderr", "F", b"err-1"),
        ("stdout", "F", b"out-2"),
    ]


def test_flush_partial_writes_the_rest_as_full_line(tmp_path):
    path = tmp_path / "0.log"
    writer = CriLogWriter(path, clock=fixed_clock(), max_line=4)
    writer.write("stdout", b"no newline")
    writer.write("stderr", b"ab")
    writer.flush_partial("stdout")
    writer.flush_partial("stdout")  # nothing left: nothing written
    assert [(s, t, c) for _, s, t, c in lines_of(path)] == [
        ("stdout", "P", b"no n"),
        ("stdout", "P", b"ewli"),
        ("stdout", "F", b"ne"),
    ]
    writer.write("stdout", b"abcd")  # a P piece that nothing follows: F ends it at EOF
    writer.flush_partial("stdout")
    writer.flush_partial("stderr")
    writer.close()
    assert [(s, t, c) for _, s, t, c in lines_of(path)][3:] == [
        ("stdout", "P", b"abcd"),
        ("stdout", "F", b""),
        ("stderr", "F", b"ab"),
    ]
    assert [(s, c) for _, s, c in read_log(path)] == [
        ("stdout", b"no newline"),
        ("stdout", b"abcd"),
        ("stderr", b"ab"),
    ]


def test_each_line_is_one_write(tmp_path, monkeypatch):
    calls: list[bytes] = []
    real_write = os.write

    def spy(fd, data):
        calls.append(bytes(data))
        return real_write(fd, data)

    path = tmp_path / "0.log"
    writer = CriLogWriter(path, clock=fixed_clock(), max_line=8)
    monkeypatch.setattr(crilog.os, "write", spy)
    writer.write("stdout", b"a\nbb\n" + b"c" * 20 + b"\n")
    writer.write("stdout", b"tail")
    writer.flush_partial("stdout")
    writer.close()
    assert all(call.endswith(b"\n") for call in calls)
    assert b"".join(calls) == path.read_bytes()


def test_clock_is_read_per_write(tmp_path):
    times = iter([TS, TS + 1])
    path = tmp_path / "0.log"
    with CriLogWriter(path, clock=lambda: next(times)) as writer:
        writer.write("stdout", b"one\n")
        writer.write("stdout", b"two\n")
    assert [ts for ts, *_ in lines_of(path)] == [TS, TS + 1]


def test_reopen_after_rename_writes_to_new_file(tmp_path):
    path = tmp_path / "0.log"
    writer = CriLogWriter(path, clock=fixed_clock())
    writer.write("stdout", b"before\n")
    rotated = tmp_path / "0.log.20240101-000000"
    path.rename(rotated)
    writer.write("stdout", b"still old\n")
    writer.reopen()
    writer.write("stdout", b"after\n")
    writer.close()
    assert [c for *_, c in read_log(rotated)] == [b"before", b"still old"]
    assert [c for *_, c in read_log(path)] == [b"after"]


def test_reopen_in_removed_directory_raises_and_creates_nothing(tmp_path):
    directory = tmp_path / "pod"
    directory.mkdir()
    path = directory / "0.log"
    writer = CriLogWriter(path, clock=fixed_clock())
    path.unlink()
    directory.rmdir()
    with pytest.raises(FileNotFoundError):
        writer.reopen()
    assert not directory.exists()
    writer.write("stdout", b"goes to the unlinked file\n")  # the writer still works
    writer.close()
    assert not directory.exists()


def test_missing_parent_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        CriLogWriter(tmp_path / "absent" / "0.log")
    assert not (tmp_path / "absent").exists()


def test_unknown_stream_and_closed_writer(tmp_path):
    writer = CriLogWriter(tmp_path / "0.log")
    with pytest.raises(ValueError, match="stream"):
        writer.write("stdin", b"x\n")
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write("stdout", b"x\n")


def test_parse_line():
    assert parse_line(b"2016-10-06T00:17:09.669794202Z stdout F hello world\n") == (
        TS,
        "stdout",
        "F",
        b"hello world",
    )
    assert parse_line(b"2016-10-06T00:17:09.669794202Z stderr P \n")[2:] == ("P", b"")
    assert parse_line(b"2016-10-06T00:17:09.669794202Z stderr F:x  two spaces")[3] == (
        b" two spaces"
    )


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"garbage",
        b"2016-10-06T00:17:09.669794202Z stdout F",  # no space before the (empty) content
        b"2016-10-06T00:17:09.669794202Z stdin F x",
        b"2016-10-06T00:17:09.669794202Z stdout X x",
        b"2016-10-06T00:17:09.669794202Z stdout  x",
        b"2016-10-06 00:17:09.669794202Z stdout F x",
        b"2016-10-06T00:17:09.669794202 stdout F x",
        b"2016-13-06T00:17:09.669794202Z stdout F x",
        b"2016-10-06T00:17:09.6697942021Z stdout F x",
        b"2016-10-06T00:17:09.669794202Z stdout F a\nb",
    ],
)
def test_parse_line_rejects_malformed(line):
    with pytest.raises(ValueError):
        parse_line(line)


def test_read_log_joins_partials_per_stream(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(
        b"2016-10-06T00:17:09.000000001Z stdout P ab\n"
        b"2016-10-06T00:17:09.000000002Z stderr F err\n"
        b"2016-10-06T00:17:09.000000003Z stdout P cd\n"
        b"2016-10-06T00:17:09.000000004Z stdout F ef\n"
        b"2016-10-06T00:17:09.000000005Z stdout F half a line being writ"
    )
    base = 1475713029_000000000
    assert read_log(path) == [(base + 2, "stderr", b"err"), (base + 1, "stdout", b"abcdef")]
    assert read_log(path, join_partials=False) == [
        (base + 1, "stdout", b"ab"),
        (base + 2, "stderr", b"err"),
        (base + 3, "stdout", b"cd"),
        (base + 4, "stdout", b"ef"),
    ]


def test_read_log_rejects_malformed_file(tmp_path):
    path = tmp_path / "0.log"
    path.write_bytes(b"not a log line\n")
    with pytest.raises(ValueError):
        read_log(path)


chunks = st.lists(
    st.tuples(
        st.sampled_from(["stdout", "stderr"]),
        st.binary(max_size=40) | st.sampled_from([b"\n", b"\n\n", b"ab\ncd", b"\r\n"]),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(chunks=chunks, max_line=st.sampled_from([1, 3, 8, MAX_LINE]))
def test_read_log_reproduces_each_stream(tmp_path_factory, chunks, max_line):
    path = tmp_path_factory.mktemp("log") / "0.log"
    writer = CriLogWriter(path, max_line=max_line)
    sent = {"stdout": b"", "stderr": b""}
    for stream, data in chunks:
        writer.write(stream, data)
        sent[stream] += data
    writer.flush_partial("stdout")
    writer.flush_partial("stderr")
    writer.close()
    got = {"stdout": [], "stderr": []}
    for _, stream, content in read_log(path):
        got[stream].append(content)
    for stream, data in sent.items():
        expected = data.removesuffix(b"\n").split(b"\n") if data else []
        assert got[stream] == expected
    for _, _, _, content in lines_of(path):
        assert len(content) <= max_line


def test_crilog_runs_under_isolated_python_without_site(tmp_path):
    """The log shim imports crilog as a plain file under ``python -I -S``."""
    path = tmp_path / "0.log"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import crilog;"
        "w = crilog.CriLogWriter(sys.argv[2]); w.write('stdout', b'hi\\n'); w.close()"
    )
    directory = str(Path(crilog.__file__).parent)
    subprocess.run([sys.executable, "-I", "-S", "-c", code, directory, str(path)], check=True)
    assert [c for *_, c in read_log(path)] == [b"hi"]
