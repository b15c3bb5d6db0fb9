"""runtime_sim: the runtime conformance suite, the scripted behaviours, and scale."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from kcore import RuntimeBackend, Settings
from kcore.conformance.suites.runtime import RuntimeConformance
from kcore.conformance.testimages import build_busybox_layout
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Invalid,
    NotFound,
    NotSupported,
    PermanentError,
)
from kcore.interfaces import (
    CONTAINER_CREATED,
    CONTAINER_DELETED_EVENT,
    CONTAINER_EXITED,
    CONTAINER_RUNNING,
    CONTAINER_STOPPED_EVENT,
    SANDBOX_NOTREADY,
)
from kcore.plugin_host import PluginHost
from kcore.plugins.runtime_sim.sim import EXIT_CODE, RUN_SECONDS, START_ERROR, make_backend

IMAGE = "registry.example/app:1.0"


class TestRuntimeSimConformance(RuntimeConformance):
    """The shared suite on the simulation, built directly."""

    @pytest.fixture
    def runtime_factory(self, kcore_settings_factory):
        async def make(settings: Settings | None = None) -> RuntimeBackend:
            settings = settings or kcore_settings_factory()
            return make_backend(settings.data_dir)

        return make


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
async def sim(tmp_path: Path):
    backend = make_backend(tmp_path / "data")
    yield backend
    await backend.close()


def sandbox_config(name: str | None = None) -> dict[str, Any]:
    uid = str(uuid.uuid4())
    return {
        "metadata": {"name": name or f"pod-{uid[:8]}", "uid": uid, "namespace": "default"},
        "labels": {"app": "sim"},
    }


def container_config(name: str = "app", image: str = IMAGE, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "attempt": 0},
        "image": {"image": image},
        "annotations": dict(annotations),
        "labels": {"container": name},
    }


async def pod(backend: RuntimeBackend, *containers: dict[str, Any]) -> tuple[str, list[str]]:
    """A sandbox with ``containers`` created (from a pulled image) and started."""
    config = sandbox_config()
    sandbox_id = await backend.runtime.run_pod_sandbox(config)
    ids = []
    for c in containers:
        await backend.images.pull_image(c["image"]["image"])
        cid = await backend.runtime.create_container(sandbox_id, c, config)
        await backend.runtime.start_container(cid)
        ids.append(cid)
    return sandbox_id, ids


async def wait_exited(backend: RuntimeBackend, cid: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await backend.runtime.container_status(cid)
        if status["state"] == CONTAINER_EXITED:
            return dict(status)
        assert time.monotonic() < deadline, f"{cid} still {status['state']}"
        await asyncio.sleep(0.01)


def annotations(run: float | None = None, code: int | None = None) -> dict[str, str]:
    out = {}
    if run is not None:
        out[RUN_SECONDS] = str(run)
    if code is not None:
        out[EXIT_CODE] = str(code)
    return out


# -- the plugin ----------------------------------------------------------------------------------


async def test_plugin_fills_the_runtime_slot(tmp_path: Path) -> None:
    host = PluginHost(["runtime_sim"])
    assert host.slot_owner("runtime") == "runtime_sim"
    backend = await host.runtime(Settings(data_dir=tmp_path))
    try:
        assert isinstance(backend, RuntimeBackend)
        assert backend.runtime.capabilities == frozenset()
        assert (await backend.runtime.version())["runtime_name"] == "kcore-sim"
    finally:
        await backend.close()


async def test_a_node_that_only_pulls_writes_nothing(tmp_path: Path) -> None:
    backend = make_backend(tmp_path / "data")
    await pod(backend, container_config(**annotations(run=0)))
    assert await backend.images.list_images()
    await backend.close()
    assert not (tmp_path / "data").exists()


# -- scripted containers -------------------------------------------------------------------------


async def test_scripted_run_time_and_exit_code(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config(**annotations(run=0.2, code=3)))
    assert (await sim.runtime.container_status(cid))["state"] == CONTAINER_RUNNING
    status = await wait_exited(sim, cid)
    assert (status["exit_code"], status["reason"]) == (3, "Error")
    ran = (status["finished_at"] - status["started_at"]) / 1e9
    assert 0.19 <= ran < 1.0, f"ran {ran:.3f} s, scripted 0.2 s"


async def test_scripted_success_is_completed(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config(**annotations(run=0)))
    status = await wait_exited(sim, cid)
    assert (status["exit_code"], status["reason"]) == (0, "Completed")


async def test_unscripted_container_runs_until_stopped(sim: RuntimeBackend) -> None:
    _, (graceful, killed) = await pod(sim, container_config("a"), container_config("b"))
    await asyncio.sleep(0.2)
    assert (await sim.runtime.container_status(graceful))["state"] == CONTAINER_RUNNING
    await sim.runtime.stop_container(graceful, 30)
    await sim.runtime.stop_container(killed, 0)
    assert (await sim.runtime.container_status(graceful))["exit_code"] == 143
    assert (await sim.runtime.container_status(killed))["exit_code"] == 137


async def test_stop_before_the_scripted_exit_wins(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config(**annotations(run=0.2, code=0)))
    await sim.runtime.stop_container(cid, 0)
    await asyncio.sleep(0.3)
    status = await sim.runtime.container_status(cid)
    assert (status["state"], status["exit_code"]) == (CONTAINER_EXITED, 137)


async def test_start_error_annotation(sim: RuntimeBackend) -> None:
    config = sandbox_config()
    sandbox_id = await sim.runtime.run_pod_sandbox(config)
    await sim.images.pull_image(IMAGE)
    c = container_config(**{START_ERROR: 'exec: "nope": executable file not found'})
    cid = await sim.runtime.create_container(sandbox_id, c, config)
    with pytest.raises(PermanentError, match="executable file not found"):
        await sim.runtime.start_container(cid)
    status = await sim.runtime.container_status(cid)
    assert status["state"] == CONTAINER_EXITED
    assert status["reason"] == "StartError"
    assert "executable file not found" in status["message"]
    assert status["exit_code"] == 128
    assert status["started_at"] == 0 and status["finished_at"] > 0


@pytest.mark.parametrize(
    "bad",
    [{RUN_SECONDS: "soon"}, {RUN_SECONDS: "-1"}, {RUN_SECONDS: "nan"}, {EXIT_CODE: "256"}],
)
async def test_unreadable_script_is_invalid_and_leaves_nothing(
    sim: RuntimeBackend, bad: dict[str, str]
) -> None:
    config = sandbox_config()
    sandbox_id = await sim.runtime.run_pod_sandbox(config)
    await sim.images.pull_image(IMAGE)
    with pytest.raises(Invalid):
        await sim.runtime.create_container(sandbox_id, container_config(**bad), config)
    assert await sim.runtime.list_containers() == []


async def test_start_is_refused_unless_created(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config())
    with pytest.raises(Conflict):
        await sim.runtime.start_container(cid)


async def test_stopped_sandbox_takes_no_containers(sim: RuntimeBackend) -> None:
    sandbox_id, (cid,) = await pod(sim, container_config())
    await sim.runtime.stop_pod_sandbox(sandbox_id)
    status = await sim.runtime.container_status(cid)
    assert (status["state"], status["exit_code"]) == (CONTAINER_EXITED, 137)
    assert (await sim.runtime.pod_sandbox_status(sandbox_id))["state"] == SANDBOX_NOTREADY
    with pytest.raises(Conflict):
        await sim.runtime.create_container(sandbox_id, container_config("late"), sandbox_config())


async def test_names_are_reserved_until_removed(sim: RuntimeBackend) -> None:
    config = sandbox_config("web")
    sandbox_id = await sim.runtime.run_pod_sandbox(config)
    with pytest.raises(AlreadyExists):
        await sim.runtime.run_pod_sandbox(config)
    await sim.images.pull_image(IMAGE)
    cid = await sim.runtime.create_container(sandbox_id, container_config("app"), config)
    with pytest.raises(AlreadyExists):
        await sim.runtime.create_container(sandbox_id, container_config("app"), config)
    await sim.runtime.remove_container(cid)
    await sim.runtime.create_container(sandbox_id, container_config("app"), config)
    await sim.runtime.remove_pod_sandbox(sandbox_id)
    await sim.runtime.run_pod_sandbox(config)


async def test_update_resources_are_kept(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config())
    await sim.runtime.update_container_resources(cid, {"cpu_shares": 512})
    assert (await sim.runtime.container_status(cid))["resources"]["linux"]["cpu_shares"] == 512
    await sim.runtime.stop_container(cid, 0)
    with pytest.raises(Conflict):
        await sim.runtime.update_container_resources(cid, {"cpu_shares": 2})


async def test_reopen_log_is_a_no_op_for_known_containers(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config())
    await sim.runtime.reopen_container_log(cid)
    with pytest.raises(NotFound):
        await sim.runtime.reopen_container_log("0" * 64)


async def test_processes_and_stats_are_not_supported(sim: RuntimeBackend) -> None:
    sandbox_id, (cid,) = await pod(sim, container_config())
    rt = sim.runtime
    for call in (
        rt.exec_sync(cid, ["true"]),
        rt.exec(cid, ["true"]),
        rt.attach(cid),
        rt.container_stats(cid),
        rt.list_container_stats(),
        rt.pod_sandbox_stats(sandbox_id),
    ):
        with pytest.raises(NotSupported):
            await call


async def test_status_copies_do_not_leak_into_the_runtime(sim: RuntimeBackend) -> None:
    _, (cid,) = await pod(sim, container_config())
    status = await sim.runtime.container_status(cid)
    status["labels"]["changed"] = "yes"
    status["annotations"]["changed"] = "yes"
    assert "changed" not in (await sim.runtime.container_status(cid))["labels"]


async def test_remove_sandbox_emits_stop_and_delete(sim: RuntimeBackend) -> None:
    events = sim.runtime.container_events()
    sandbox_id, (cid,) = await pod(sim, container_config())
    await sim.runtime.remove_pod_sandbox(sandbox_id)
    seen = []
    while not seen or seen[-1] != CONTAINER_DELETED_EVENT:
        event = await asyncio.wait_for(anext(events), 2)
        assert event["container_id"] == cid
        seen.append(event["container_event_type"])
    assert seen[-2:] == [CONTAINER_STOPPED_EVENT, CONTAINER_DELETED_EVENT]
    await events.aclose()


async def test_close_ends_event_streams_and_timers(tmp_path: Path) -> None:
    backend = make_backend(tmp_path / "data")
    events = backend.runtime.container_events()
    _, (cid,) = await pod(backend, container_config(**annotations(run=0.1)))
    await backend.close()
    assert [e["container_event_type"] async for e in events][-1] != CONTAINER_STOPPED_EVENT
    await asyncio.sleep(0.2)
    assert (await backend.runtime.container_status(cid))["state"] == CONTAINER_RUNNING


# -- images --------------------------------------------------------------------------------------


async def test_pull_makes_a_synthetic_image(sim: RuntimeBackend) -> None:
    image_id = await sim.images.pull_image("nginx")
    normalized = "docker.io/library/nginx:latest"
    assert image_id == "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()
    record = await sim.images.image_status("nginx:latest")
    assert record is not None and record["id"] == image_id
    assert record["repo_tags"] == [normalized]
    assert await sim.images.image_status(image_id) == record
    assert await sim.images.pull_image("docker.io/library/nginx") == image_id
    assert [r["id"] for r in await sim.images.list_images()] == [image_id]
    await sim.images.remove_image(image_id)
    assert await sim.images.image_status("nginx") is None
    assert await sim.images.list_images() == []


async def test_pull_by_digest(sim: RuntimeBackend) -> None:
    ref = "registry.example/app@sha256:" + "ab" * 32
    image_id = await sim.images.pull_image(ref)
    record = await sim.images.image_status(ref)
    assert record is not None and record["id"] == image_id
    assert record["repo_tags"] == [] and record["repo_digests"] == [ref]


@pytest.mark.parametrize("ref", ["doesnotexist/app:1", "registry.example/nonexistent:latest"])
async def test_pull_of_unpullable_names_fails(sim: RuntimeBackend, ref: str) -> None:
    with pytest.raises(NotFound):
        await sim.images.pull_image(ref)
    assert await sim.images.image_status(ref) is None


async def test_pull_of_malformed_reference_is_refused(sim: RuntimeBackend) -> None:
    with pytest.raises(BadRequest):
        await sim.images.pull_image("UPPER/case")


async def test_import_takes_a_tag_from_a_synthetic_image(
    sim: RuntimeBackend, tmp_path: Path
) -> None:
    tag = "kcore.test/busybox:latest"
    synthetic = await sim.images.pull_image(tag)
    layout = build_busybox_layout(tmp_path / "layout", ref_name=tag)
    (record,) = await sim.images.import_image(layout)
    assert record["id"] != synthetic
    assert (await sim.images.image_status(tag))["id"] == record["id"]
    untagged = await sim.images.image_status(synthetic)
    assert untagged is not None and untagged["repo_tags"] == [], "the tag moved, as in docker"
    assert await sim.images.pull_image(tag) == record["id"]
    (info,) = await sim.images.image_fs_info()
    assert info["used_bytes"] > 0


async def test_container_from_an_imported_image_without_command_is_invalid(
    sim: RuntimeBackend, tmp_path: Path
) -> None:
    tag = "kcore.test/nocmd:1"
    await sim.images.import_image(build_busybox_layout(tmp_path / "l", ref_name=tag, cmd=None))
    config = sandbox_config()
    sandbox_id = await sim.runtime.run_pod_sandbox(config)
    with pytest.raises(Invalid, match="no command"):
        await sim.runtime.create_container(sandbox_id, container_config(image=tag), config)
    c = container_config(image=tag) | {"command": ["/bin/sh"]}
    await sim.runtime.create_container(sandbox_id, c, config)


# -- scale ---------------------------------------------------------------------------------------

PODS = 300
PER_POD = 2


async def test_hundreds_of_pods_run_and_exit_on_schedule(tmp_path: Path) -> None:
    """300 sandboxes x 2 containers in one process: created and started in well under a
    second, each exits at its scripted time with its scripted code, and the whole
    simulation stays within a few KB per container."""
    backend = make_backend(tmp_path / "data")
    rt = backend.runtime
    await backend.images.pull_image(IMAGE)
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        started = time.monotonic()
        scripted: dict[str, tuple[float, int]] = {}
        for n in range(PODS):
            config = sandbox_config(f"pod-{n}")
            config["annotations"] = {"kubernetes.io/config.source": "api"}
            sandbox_id = await rt.run_pod_sandbox(config)
            for m in range(PER_POD):
                run, code = 0.5 + (n % 10) / 10, (n + m) % 3
                c = container_config(f"c{m}", **annotations(run=run, code=code))
                c["log_path"] = f"c{m}/0.log"
                cid = await rt.create_container(sandbox_id, c, config)
                await rt.start_container(cid)
                scripted[cid] = (run, code)
        setup = time.monotonic() - started
        gc.collect()
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_container = (used - baseline) / len(scripted)
    assert setup < 3, f"creating {len(scripted)} containers took {setup:.1f} s"
    assert per_container < 6 * 1024, f"{per_container:.0f} bytes per container"
    assert len(await rt.list_pod_sandbox()) == PODS
    assert len(await rt.list_containers()) == PODS * PER_POD

    deadline = time.monotonic() + 5
    while await rt.list_containers({"state": CONTAINER_RUNNING}):
        assert time.monotonic() < deadline, "containers ran past their scripted time"
        await asyncio.sleep(0.05)
    for status in await rt.list_containers():
        run, code = scripted[status["id"]]
        ran = (status["finished_at"] - status["started_at"]) / 1e9
        assert status["exit_code"] == code
        assert run - 0.01 <= ran < run + 1.0, f"ran {ran:.2f} s, scripted {run} s"
    assert len(await rt.list_containers({"state": CONTAINER_CREATED})) == 0
    for sandbox in await rt.list_pod_sandbox():
        await rt.remove_pod_sandbox(sandbox["id"])
    assert await rt.list_containers() == []
    await backend.close()
