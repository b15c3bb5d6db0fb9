"""runtime_linux's ``pull_image`` and ``kcore image pull`` against loopback registries."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kcore.errors import NotFound
from kcore.images import ImageStore
from kcore.plugins.runtime_linux import kcore_add_options, registry_config
from kcore.plugins.runtime_linux.imagecli import PullDisplay, image_group
from kcore.plugins.runtime_linux.runtime import LinuxImageService
from kcore.registry import PullProgress, RegistryConfig
from kcore.settings import Settings

from .conftest import PASSWORD, USER


@pytest.fixture
def service(store: ImageStore, fake_config: RegistryConfig) -> LinuxImageService:
    return LinuxImageService(store, None, registry=fake_config)


async def test_pull_image_asks_the_registry_every_time(service, fake, pushed):
    fake.add("team/app", "1", pushed.busybox)
    ref = f"{fake.host}/team/app:1"
    assert await service.pull_image(ref) == pushed.busybox.id
    assert await service.pull_image(ref) == pushed.busybox.id
    assert len(fake.requests(r"/manifests/1$")) == 2
    assert len(fake.requests(r"/blobs/")) == 2  # config and layer, once
    assert (await service.image_status(ref))["id"] == pushed.busybox.id


async def test_pull_image_of_an_imported_name_needs_no_registry(
    service, busybox_layout, monkeypatch
):
    """A name from `kcore image import` has no registry behind it (kcore.test does not
    resolve): pull_image returns the image without a network request."""
    (record,) = await service.import_image(busybox_layout)

    async def no_network(*args, **kwargs):
        raise AssertionError("pull_image went to a registry")

    monkeypatch.setattr("kcore.plugins.runtime_linux.runtime.registry_pull", no_network)
    assert await service.pull_image("kcore.test/busybox:latest") == record["id"]
    assert await service.pull_image(record["id"]) == record["id"]


async def test_pull_image_errors_are_kcore_errors(service, fake):
    with pytest.raises(NotFound, match="manifest unknown"):
        await service.pull_image(f"{fake.host}/team/none:1")
    assert await service.list_images() == []


async def test_concurrent_pulls_of_one_reference_share_one_download(service, fake, pushed):
    fake.add("team/app", "1", pushed.busybox)
    fake.blob_delay = 0.2
    ref = f"{fake.host}/team/app:1"
    ids = await asyncio.gather(*(service.pull_image(ref) for _ in range(4)))
    assert ids == [pushed.busybox.id] * 4
    assert len(fake.requests(r"/manifests/1$")) == 1


async def test_pull_image_with_cri_auth(store, basic_registry, pushed):
    config = RegistryConfig.from_options(insecure=[basic_registry.host], attempts=1)
    service = LinuxImageService(store, None, registry=config)
    image_id = await service.pull_image(
        f"{basic_registry.host}/test/busybox:1", {"username": USER, "password": PASSWORD}
    )
    assert image_id == pushed.busybox.id


# --------------------------------------------------------------------------- options


def test_registry_options_reach_the_config(tmp_path):
    names = {opt.name for opt in kcore_add_options()}
    assert {
        "registry_insecure",
        "registry_ca",
        "registry_auth_file",
        "registry_read_timeout",
    } <= names
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = Settings(
        data_dir=tmp_path,
        options={
            "registry_insecure": ("a:5000,b:1",),
            "registry_ca": (f"c:443={ca}",),
            "registry_read_timeout": 7.0,
        },
    )
    config = registry_config(settings)
    assert config.insecure == {"a:5000", "b:1"}
    assert config.ca_file("c:443") == ca
    assert config.read_timeout == 7.0
    assert registry_config(Settings(data_dir=tmp_path)) == RegistryConfig()


# --------------------------------------------------------------------------- the command


def run_cli(tmp_path, *args, options=None, input=None):
    settings = Settings(data_dir=tmp_path / "data", options=options or {})
    return CliRunner().invoke(
        image_group, list(args), obj=settings, catch_exceptions=False, input=input
    )


def test_kcore_image_pull(tmp_path, plain_registry, pushed):
    ref = f"{plain_registry.host}/test/busybox:1"
    result = run_cli(tmp_path, "pull", ref, options={"registry_insecure": (plain_registry.host,)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    label = pushed.busybox.layers[0]["digest"][7:19]
    assert f"{label}: Waiting" in lines
    assert f"{label}: Download complete" in lines
    assert f"{label}: Pull complete" in lines
    assert any(line.startswith("total: ") for line in lines)
    assert f"Digest: {pushed.busybox.manifest_digest}" in lines
    assert lines[-1] == pushed.busybox.id
    assert not any("\x1b" in line for line in lines), "no terminal codes off a terminal"

    again = run_cli(tmp_path, "pull", ref, options={"registry_insecure": (plain_registry.host,)})
    assert f"{label}: Already exists" in again.stdout.splitlines()


def test_kcore_image_pull_with_credentials(tmp_path, basic_registry, pushed):
    ref = f"{basic_registry.host}/test/busybox:1"
    options = {"registry_insecure": (basic_registry.host,)}
    denied = run_cli(tmp_path, "pull", ref, "--username", USER, "--password", "x", options=options)
    assert denied.exit_code == 1
    (line,) = [x for x in denied.stderr.splitlines() if x.strip()]
    assert line.startswith("kcore: error: pull access denied") and "Traceback" not in denied.output
    ok = run_cli(
        tmp_path,
        "pull",
        ref,
        "-u",
        USER,
        "--password-stdin",
        options=options,
        input=PASSWORD + "\n",
    )
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.splitlines()[-1] == pushed.busybox.id


def test_kcore_image_pull_errors_in_one_line(tmp_path, plain_registry):
    result = run_cli(tmp_path, "pull", f"{plain_registry.host}/test/busybox:1")
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert "--registry-insecure" in line
    result = run_cli(tmp_path, "pull", "UPPER/case")
    assert result.exit_code == 1
    assert "lowercase" in result.stderr


def test_the_kcore_command_pulls_with_plugin_options(tmp_path, plain_registry, pushed):
    script = shutil.which("kcore")
    cmd = [script] if script else [sys.executable, "-m", "kcore.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCORE_")}
    ref = f"{plain_registry.host}/test/busybox:1"
    proc = subprocess.run(
        [
            *cmd,
            "--plugins",
            "store_sqlite,runtime_linux",
            "--data-dir",
            str(tmp_path),
            "--registry-insecure",
            plain_registry.host,
            "image",
            "pull",
            ref,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == pushed.busybox.id


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_redraws_one_line_per_layer():
    out = FakeTty()
    display = PullDisplay(out)
    display.REDRAW_EVERY = 0
    display(PullProgress("aaa", "waiting", 0, 2000))
    display(PullProgress("bbb", "exists", 1000, 1000))
    display(PullProgress("aaa", "downloading", 1000, 2000))
    display(PullProgress("aaa", "done", 2000, 2000))
    display.finish()
    text = out.getvalue()
    assert "\x1b[3F" in text  # back over two layer lines and the total line
    last = text.rsplit("\x1b[3F", 1)[1]
    assert [line.removeprefix("\x1b[2K") for line in last.splitlines()][:3] == [
        "aaa: Pull complete",
        "bbb: Already exists",
        "total: 2kB/2kB",
    ]
