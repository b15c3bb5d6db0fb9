"""The kubelet's image garbage collector: frees the image filesystem by removing unused
images, least recently used first.

Each run first takes stock (Kubernetes' ``detectImages``): every image the runtime lists
gets a record, first detected now if it is new, last used now if any container the runtime
lists, in any state, refers to it (by image id, image ref, or the tag or digest it was
created from). Records of images that are gone are dropped. Then, when the filesystem that
holds the images is at least ``high_threshold`` percent full, images are removed until the
bytes freed (by their sizes) reach what brings it down to ``low_threshold``: never one in
use or pinned, never one detected less than ``min_age`` seconds ago (it may have just been
pulled for a container about to start), oldest last use first (never used before used),
earliest detected first among equals.

Usage is the filesystem's, as the kubelet measures it (capacity and available bytes from
``statvfs`` of the ``image_fs_info`` mountpoint), not only the images' share of it.
Failures are logged and returned, never raised; the events are the kubelet's, on the node:
Warning ``FreeDiskSpaceFailed`` when not enough could be freed, ``ImageGCFailed`` when a
run fails right after a failed one, ``InvalidDiskCapacity`` for a filesystem of size 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from kcore.errors import Invalid, KcoreError
from kcore.images import normalize_reference

log = structlog.get_logger("kcore.nodeagent.image_gc")

IMAGE_GC_PERIOD = 300.0
"""Seconds between runs (the kubelet's ``ImageGCPeriod``, 5 min)."""

OnEvent = Callable[[str, str, str], None]
"""``on_event(type, reason, message)``: records an event on the node."""


def filesystem_usage(mountpoint: str) -> tuple[int, int]:
    """``(capacity, available)`` bytes of the filesystem holding ``mountpoint`` (or, while
    it does not exist yet, its nearest existing parent)."""
    path = Path(mountpoint)
    while not path.exists() and path.parent != path:
        path = path.parent
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


@dataclass
class ImageRecord:
    """What the collector knows of one image (by id). ``last_used`` is ``None`` until a
    container is seen using it."""

    first_detected: float
    last_used: float | None = None
    size: int = 0
    pinned: bool = False


@dataclass
class GCResult:
    """The outcome of one run."""

    usage_percent: int | None = None
    bytes_to_free: int = 0
    freed_bytes: int = 0
    removed: list[str] = field(default_factory=list)
    error: str | None = None


class ImageGC:
    """See the module docstring. ``images`` is an ``ImageService``; of ``runtime`` only
    ``list_containers`` is used; ``clock`` gives seconds; ``usage(mountpoint)`` gives
    ``(capacity, available)`` bytes."""

    def __init__(
        self,
        images: Any,
        runtime: Any,
        *,
        high_threshold: int = 85,
        low_threshold: int = 80,
        min_age: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        usage: Callable[[str], tuple[int, int]] = filesystem_usage,
        on_event: OnEvent | None = None,
    ) -> None:
        if not 0 <= high_threshold <= 100:
            raise Invalid(f"the image GC high threshold {high_threshold} must be in [0, 100]")
        if not 0 <= low_threshold <= 100:
            raise Invalid(f"the image GC low threshold {low_threshold} must be in [0, 100]")
        if low_threshold >= high_threshold:
            raise Invalid(
                f"the image GC low threshold ({low_threshold}) must be less than the high "
                f"threshold ({high_threshold})"
            )
        if min_age < 0:
            raise Invalid(f"the minimum image GC age {min_age} must not be negative")
        self.images = images
        self.runtime = runtime
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.min_age = min_age
        self.clock = clock
        self.usage = usage
        self.on_event = on_event
        self.records: dict[str, ImageRecord] = {}
        self.last_result: GCResult | None = None
        self._failed_before = False

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, period: float = IMAGE_GC_PERIOD) -> None:
        """Run now, then every ``period`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def run_once(self) -> GCResult:
        """One collection (never raises); the result is also kept as ``last_result``."""
        result = GCResult()
        try:
            await self._collect(result)
        except Exception as exc:
            result.error = str(exc) or type(exc).__name__
        if result.error is not None:
            if self._failed_before:
                log.error("image garbage collection failed again", error=result.error)
                self._event("ImageGCFailed", result.error)
            else:
                log.warning("image garbage collection failed", error=result.error)
        self._failed_before = result.error is not None
        self.last_result = result
        return result

    # -- one run ----------------------------------------------------------------------------

    async def _collect(self, result: GCResult) -> None:
        now = self.clock()
        in_use = await self._detect(now)
        candidates = [
            (image_id, record)
            for image_id, record in self.records.items()
            if image_id not in in_use and not record.pinned
        ]
        candidates.sort(
            key=lambda item: (
                item[1].last_used is not None,
                item[1].last_used or 0.0,
                item[1].first_detected,
            )
        )
        capacity, available = await self._filesystem()
        if capacity <= 0:
            self._event("InvalidDiskCapacity", "invalid capacity 0 on image filesystem")
            raise Invalid("invalid capacity 0 on image filesystem")
        available = min(available, capacity)
        result.usage_percent = 100 - available * 100 // capacity
        if result.usage_percent < self.high_threshold:
            return
        result.bytes_to_free = capacity * (100 - self.low_threshold) // 100 - available
        log.info(
            "image filesystem over the high threshold, freeing down to the low threshold",
            usage=result.usage_percent,
            high=self.high_threshold,
            low=self.low_threshold,
            bytes_to_free=result.bytes_to_free,
        )
        errors = await self._free(result, candidates, now)
        if errors:
            raise _Failed(
                f"wanted to free {result.bytes_to_free} bytes, but freed {result.freed_bytes} "
                f"bytes space with errors in image deletion: {_aggregate(errors)}"
            )
        if result.freed_bytes < result.bytes_to_free:
            message = (
                "Failed to garbage collect required amount of images. Attempted to free "
                f"{result.bytes_to_free} bytes, but only found {result.freed_bytes} bytes "
                "eligible to free."
            )
            self._event("FreeDiskSpaceFailed", message)
            raise _Failed(message)

    async def _free(
        self, result: GCResult, candidates: list[tuple[str, ImageRecord]], now: float
    ) -> list[str]:
        errors: list[str] = []
        for image_id, record in candidates:
            if result.freed_bytes >= result.bytes_to_free:
                break
            if now - record.first_detected < self.min_age:
                continue
            try:
                await self.images.remove_image(image_id)
            except Exception as exc:
                errors.append(str(exc) or type(exc).__name__)
                continue
            log.info("removed an unused image", image=image_id, size=record.size)
            self.records.pop(image_id, None)
            result.removed.append(image_id)
            result.freed_bytes += record.size
        return errors

    async def _detect(self, now: float) -> set[str]:
        """Update the records from the runtime; the ids of the images in use."""
        images = list(await self.images.list_images())
        containers = list(await self.runtime.list_containers())
        by_ref: dict[str, str] = {}
        for image in images:
            image_id = image["id"]
            by_ref[image_id] = image_id
            for ref in [*(image.get("repo_tags") or ()), *(image.get("repo_digests") or ())]:
                by_ref[ref] = image_id
        in_use: set[str] = set()
        for container in containers:
            for ref in _container_refs(container):
                image_id = by_ref.get(ref) or by_ref.get(_normalized(ref))
                if image_id is not None:
                    in_use.add(image_id)
        for image in images:
            record = self.records.get(image["id"])
            if record is None:
                record = self.records[image["id"]] = ImageRecord(first_detected=now)
            if image["id"] in in_use:
                record.last_used = now
            record.size = int(image.get("size") or 0)
            record.pinned = bool(image.get("pinned"))
        present = {image["id"] for image in images}
        for image_id in [i for i in self.records if i not in present]:
            del self.records[image_id]
        return in_use

    async def _filesystem(self) -> tuple[int, int]:
        filesystems = list(await self.images.image_fs_info())
        if not filesystems:
            raise Invalid("the runtime reports no image filesystem")
        mountpoint = (filesystems[0].get("fs_id") or {}).get("mountpoint")
        if not mountpoint:
            raise Invalid("the runtime reports no mountpoint for the image filesystem")
        return self.usage(mountpoint)

    def _event(self, reason: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event("Warning", reason, message)
            except Exception as exc:
                log.warning("could not record an image GC event", reason=reason, error=str(exc))


class _Failed(Exception):
    """A run that could not free what it had to; the message is the kubelet's."""


def _container_refs(container: Mapping[str, Any]) -> list[str]:
    """Every way a container record names its image."""
    refs = [container.get("image_id"), container.get("image_ref")]
    image = container.get("image")
    refs.append(image.get("image") if isinstance(image, Mapping) else image)
    return [r for r in refs if isinstance(r, str) and r]


def _normalized(ref: str) -> str:
    try:
        return normalize_reference(ref)
    except KcoreError:
        return ref


def _aggregate(messages: list[str]) -> str:
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


__all__ = ["IMAGE_GC_PERIOD", "GCResult", "ImageGC", "ImageRecord", "filesystem_usage"]
