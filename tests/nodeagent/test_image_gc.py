"""The image garbage collector on a real image store: what it removes, in which order, and
what it leaves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kcore.conformance.testimages import build_busybox_layout
from kcore.errors import Conflict, Invalid, TemporaryError
from kcore.images import ImageStore
from kcore.interfaces import CONTAINER_EXITED, CONTAINER_RUNNING
from kcore.nodeagent.image_gc import ImageGC, filesystem_usage

NAMES = ("a", "b", "c", "d", "e")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("gc-images")
    return {
        name: build_busybox_layout(
            top / name, ref_name=f"kcore.test/{name}:latest", extra_files={"marker": name.encode()}
        )
        for name in NAMES
    }


class StoreImages:
    """The image service part the collector uses, over a real ``ImageStore``."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.removed: list[str] = []
        self.refuse: dict[str, Exception] = {}
        self.pinned: set[str] = set()

    async def list_images(self):
        return [{**r, "pinned": r["id"] in self.pinned} for r in self.store.list()]

    async def remove_image(self, image):
        if image in self.refuse:
            raise self.refuse[image]
        self.store.remove(image)
        self.removed.append(image)

    async def image_fs_info(self):
        usage = self.store.fs_usage()
        return [
            {
                "timestamp": time.time_ns(),
                "fs_id": {"mountpoint": usage["mountpoint"]},
                "used_bytes": usage["used_bytes"],
                "inodes_used": usage["inodes_used"],
            }
        ]


class Runtime:
    """A runtime that only lists containers (the collector needs nothing else)."""

    def __init__(self) -> None:
        self.containers: list[dict] = []
        self.error: Exception | None = None

    async def list_containers(self, filter=None):
        if self.error is not None:
            raise self.error
        return list(self.containers)


class Disk:
    """The image filesystem's capacity and free bytes, as the test wants them."""

    def __init__(self) -> None:
        self.capacity = 1000
        self.available = 1000
        self.asked: list[str] = []

    def __call__(self, mountpoint: str) -> tuple[int, int]:
        self.asked.append(mountpoint)
        return self.capacity, self.available

    def needs(self, to_free: int, usage_percent: int = 90, low: int = 80) -> None:
        """Set the disk so that a run must free ``to_free`` bytes (at ``usage_percent``)."""
        self.capacity = to_free * 100 // (usage_percent - low)
        self.available = self.capacity * (100 - usage_percent) // 100


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def node(tmp_path, layouts):
    store = ImageStore(tmp_path / "images")
    ids = {name: store.import_path(layouts[name])[0]["id"] for name in NAMES}
    images = StoreImages(store)
    runtime = Runtime()
    disk = Disk()
    clock = Clock()
    events: list[tuple[str, str, str]] = []
    gc = ImageGC(
        images,
        runtime,
        clock=clock,
        usage=disk,
        on_event=lambda *event: events.append(event),
    )

    class Node:
        pass

    n = Node()
    n.store, n.ids, n.images, n.runtime, n.disk, n.clock, n.events, n.gc = (
        store,
        ids,
        images,
        runtime,
        disk,
        clock,
        events,
        gc,
    )
    n.size = store.status(ids["a"])["size"]
    n.names = {v: k for k, v in ids.items()}
    return n


def container(cid, state=CONTAINER_RUNNING, **refs):
    return {"id": cid, "state": state, **refs}


async def detect_then_age(node, seconds=600.0):
    """A first run (below the threshold) detects the images; then time passes."""
    result = await node.gc.run_once()
    assert result.removed == [] and result.error is None
    node.clock.now += seconds


def removed(node):
    return [node.names[i] for i in node.images.removed]


async def test_below_the_high_threshold_nothing_is_removed(node):
    node.disk.capacity, node.disk.available = 1000, 160  # 84 % used
    await detect_then_age(node)
    result = await node.gc.run_once()
    assert result.usage_percent == 84
    assert result.removed == [] and result.bytes_to_free == 0
    assert len(node.store.list()) == len(NAMES)
    assert node.disk.asked[0] == str(node.store.root)
    assert node.events == []


async def test_frees_least_recently_used_first_and_stops_at_the_low_threshold(node):
    ids = node.ids
    # e and d are used (then their containers go away); a, b, c never are.
    node.runtime.containers = [container("c1", image_id=ids["d"])]
    await detect_then_age(node, 100)
    node.runtime.containers = [container("c2", image_id=ids["e"])]
    await node.gc.run_once()
    node.runtime.containers = []
    node.clock.now += 600
    node.disk.needs(node.size * 3 + node.size // 2)
    result = await node.gc.run_once()
    assert result.usage_percent == 90
    assert removed(node) == ["a", "b", "c", "d"]
    assert result.freed_bytes == 4 * node.size
    assert result.error is None and node.events == []
    assert [r["repo_tags"] for r in node.store.list()] == [["kcore.test/e:latest"]]


async def test_exactly_enough_is_freed(node):
    await detect_then_age(node)
    node.disk.needs(node.size * 2)
    result = await node.gc.run_once()
    assert removed(node) == ["a", "b"]
    assert result.freed_bytes == result.bytes_to_free == 2 * node.size
    assert result.error is None


async def test_images_in_use_are_never_removed(node):
    ids = node.ids
    digest_ref = node.store.status(ids["b"])["repo_digests"][0]
    node.runtime.containers = [
        container("running", image_id=ids["a"]),
        container("exited", state=CONTAINER_EXITED, image_ref=digest_ref),
        container("by-tag", state=CONTAINER_EXITED, image={"image": "kcore.test/c"}),
    ]
    await detect_then_age(node)
    node.disk.needs(node.size * 100)
    result = await node.gc.run_once()
    assert sorted(removed(node)) == ["d", "e"]
    assert {r["id"] for r in node.store.list()} == {ids["a"], ids["b"], ids["c"]}
    message = (
        "Failed to garbage collect required amount of images. Attempted to free "
        f"{result.bytes_to_free} bytes, but only found {2 * node.size} bytes eligible to free."
    )
    assert result.error == message
    assert node.events == [("Warning", "FreeDiskSpaceFailed", message)]


async def test_pinned_images_are_kept(node):
    node.images.pinned = {node.ids["a"], node.ids["c"]}
    await detect_then_age(node)
    node.disk.needs(node.size * 2)
    await node.gc.run_once()
    assert removed(node) == ["b", "d"]


async def test_young_images_are_kept(node):
    await detect_then_age(node, 60)  # younger than the 2 min minimum age
    node.disk.needs(node.size)
    result = await node.gc.run_once()
    assert result.removed == []
    assert result.error.startswith("Failed to garbage collect required amount of images.")
    assert [e[1] for e in node.events] == ["FreeDiskSpaceFailed"]
    node.clock.now += 60
    result = await node.gc.run_once()
    assert removed(node) == ["a"] and result.error is None


async def test_an_image_pulled_later_is_young_while_older_ones_go(node, layouts, tmp_path):
    node.store.remove(node.ids["a"])
    await detect_then_age(node, 300)
    node.store.import_path(layouts["a"])  # pulled again: first detected at the next run
    node.disk.needs(node.size * 5)
    result = await node.gc.run_once()
    assert removed(node) == ["b", "c", "d", "e"]
    assert [r["repo_tags"] for r in node.store.list()] == [["kcore.test/a:latest"]]
    assert result.error is not None  # could not free all it wanted


async def test_a_run_that_fails_is_logged_and_a_second_one_is_an_event(node):
    node.runtime.error = TemporaryError("runtime not answering")
    first = await node.gc.run_once()
    assert first.error == "runtime not answering"
    assert node.events == []
    second = await node.gc.run_once()
    assert second.error == "runtime not answering"
    assert node.events == [("Warning", "ImageGCFailed", "runtime not answering")]
    assert node.images.removed == []
    node.runtime.error = None
    assert (await node.gc.run_once()).error is None
    node.runtime.error = TemporaryError("again")
    await node.gc.run_once()
    assert len(node.events) == 1  # a single failure after a success is not an event


async def test_a_refused_removal_does_not_stop_the_others(node):
    node.images.refuse[node.ids["a"]] = Conflict("image is in use by container x")
    await detect_then_age(node)
    node.disk.needs(node.size * 2)
    result = await node.gc.run_once()
    assert removed(node) == ["b", "c"]
    assert result.error == (
        f"wanted to free {2 * node.size} bytes, but freed {2 * node.size} bytes space with "
        "errors in image deletion: image is in use by container x"
    )
    assert node.events == []  # the first failure is only logged


async def test_a_filesystem_of_size_zero(node):
    node.disk.capacity = node.disk.available = 0
    result = await node.gc.run_once()
    assert result.error == "invalid capacity 0 on image filesystem"
    assert node.events == [("Warning", "InvalidDiskCapacity", result.error)]
    assert node.images.removed == []


async def test_records_follow_the_images(node):
    await node.gc.run_once()
    assert set(node.gc.records) == set(node.ids.values())
    node.store.remove(node.ids["e"])
    node.runtime.containers = [container("c", image_id=node.ids["d"])]
    node.clock.now += 5
    await node.gc.run_once()
    assert set(node.gc.records) == {node.ids[n] for n in "abcd"}
    assert node.gc.records[node.ids["d"]].last_used == node.clock.now
    assert node.gc.records[node.ids["a"]].last_used is None
    assert node.gc.records[node.ids["a"]].first_detected == node.clock.now - 5
    assert node.gc.records[node.ids["a"]].size == node.size


async def test_run_repeats_until_stopped(node):
    stop = asyncio.Event()
    task = asyncio.create_task(node.gc.run(stop, period=0.01))
    for _ in range(200):
        if len(node.disk.asked) >= 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert len(node.disk.asked) >= 3
    assert node.gc.last_result is not None and node.gc.last_result.error is None


def test_filesystem_usage_reads_statvfs(tmp_path):
    capacity, available = filesystem_usage(str(tmp_path))
    assert capacity > 0 and 0 <= available <= capacity
    assert filesystem_usage(str(tmp_path / "not" / "yet"))[0] == capacity


@pytest.mark.parametrize(
    ("high", "low", "min_age"),
    [(85, 85, 120.0), (80, 90, 120.0), (101, 80, 120.0), (85, -1, 120.0), (85, 80, -1.0)],
)
def test_bad_settings_are_refused(high, low, min_age):
    with pytest.raises(Invalid):
        ImageGC(None, None, high_threshold=high, low_threshold=low, min_age=min_age)
