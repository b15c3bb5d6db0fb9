"""``kcore image import|ls|rm``: output, progress, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kcore.conformance.testimages import build_busybox_layout, build_docker_archive
from kcore.plugins.runtime_linux.imagecli import human_size, image_group
from kcore.settings import Settings


@pytest.fixture
def run(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")

    def invoke(*args: str):
        return CliRunner().invoke(image_group, list(args), obj=settings, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return build_busybox_layout(tmp_path_factory.mktemp("img") / "layout")


def one_error_line(result) -> str:
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kcore: error: ")
    return lines[0]


def test_import_ls_rm(run, layout, tmp_path):
    result = run("import", str(layout), "--tag", "mine:1")
    assert result.exit_code == 0, result.output
    image_id, *tags = result.stdout.split()
    assert image_id.startswith("sha256:")
    assert tags == ["kcore.test/busybox:latest", "docker.io/library/mine:1"]
    assert "Imported kcore.test/busybox:latest" in result.stderr
    assert "done" in result.stderr

    result = run("ls")
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    assert [r.split()[:3] for r in rows] == [
        ["kcore.test/busybox", "latest", image_id[7:20]],
        ["docker.io/library/mine", "1", image_id[7:20]],
    ]
    assert rows[0].split()[3].endswith("MB")

    listed = json.loads(run("ls", "-o", "json").stdout)["images"]
    assert [r["id"] for r in listed] == [image_id]

    result = run("rm", "mine:1")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Deleted: kcore.test/busybox:latest",
        "Deleted: docker.io/library/mine:1",
    ]
    assert run("ls").stdout.splitlines()[1:] == []


def test_untagged_images_list_as_none(run, tmp_path):
    archive = build_docker_archive(tmp_path / "d.tar", ref_name=None)
    result = run("import", str(archive))
    assert result.exit_code == 0
    image_id = result.stdout.strip()
    assert f"Imported {image_id}" in result.stderr
    [row] = run("ls").stdout.splitlines()[1:]
    assert row.split()[:3] == ["<none>", "<none>", image_id[7:20]]


def test_rm_of_an_absent_image_fails_with_one_line(run, layout):
    assert "no such image nope" in one_error_line(run("rm", "nope"))
    run("import", str(layout))
    result = run("rm", "nope", "kcore.test/busybox")
    assert result.exit_code == 1
    assert "Deleted: kcore.test/busybox:latest" in result.stdout
    assert run("ls").stdout.splitlines()[1:] == []


def test_import_errors_are_one_line(run, tmp_path):
    assert "no such file" in one_error_line(run("import", str(tmp_path / "absent")))
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"junk")
    assert "not a tar file" in one_error_line(run("import", str(junk)))
    assert "lowercase" in one_error_line(run("import", str(junk), "--tag", "Bad"))


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (4_260_000, "4.26MB"), (999_999, "1MB")],
)
def test_human_size(size, text):
    assert human_size(size) == text


def test_the_kcore_command_has_the_image_group(tmp_path, layout):
    script = shutil.which("kcore")
    cmd = [script] if script else [sys.executable, "-m", "kcore.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    base = [*cmd, "--plugins", "store_sqlite,runtime_linux", "--data-dir", str(tmp_path)]
    proc = subprocess.run(
        [*base, "image", "import", str(layout)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([*base, "image", "ls"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "kcore.test/busybox" in proc.stdout
    proc = subprocess.run([*base, "image", "rm", "gone"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "kcore: error: no such image gone"
