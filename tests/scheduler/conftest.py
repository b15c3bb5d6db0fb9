"""An in-process API (SQLite in memory, no node agents) and a scheduler running on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import pytest
from inprocess_api import in_process_api

from kcore import ControllerContext, Settings
from kcore.client import ApiClient
from kcore.plugins.scheduler import Scheduler


@dataclass
class Cluster:
    api: ApiClient

    async def create(self, *objects: dict[str, Any]) -> None:
        for obj in objects:
            await self.api.create(obj)

    async def pod(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return await self.api.get("v1", "Pod", name, namespace=namespace)

    async def wait_for(self, check, timeout: float = 5.0) -> Any:
        """Poll ``await check()`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {check.__qualname__}")
            await asyncio.sleep(0.02)

    async def node_of(self, name: str, timeout: float = 5.0) -> str:
        async def bound():
            return (await self.pod(name))["spec"].get("nodeName")

        return await self.wait_for(bound, timeout)

    async def condition(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """The pod's PodScheduled condition, once it is False."""

        async def unschedulable():
            status = (await self.pod(name)).get("status") or {}
            for cond in status.get("conditions") or ():
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    return cond
            return None

        return await self.wait_for(unschedulable, timeout)

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        items, _ = await self.api.list("v1", "Event", namespace="default")
        return [
            (e["type"], e["reason"], e["message"])
            for e in items
            if e["involvedObject"].get("name") == name
        ]

    @contextlib.asynccontextmanager
    async def scheduler(self, scheduler: Scheduler | None = None, extra: dict | None = None):
        scheduler = scheduler or Scheduler(initial_backoff=0.05, max_backoff=0.2, seed=1)
        stop = asyncio.Event()
        ctx = ControllerContext(api=self.api, settings=Settings(), extra=extra or {})
        task = asyncio.ensure_future(scheduler.run(ctx, stop))
        try:
            await asyncio.wait_for(scheduler.synced.wait(), 5)
            yield scheduler
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)


@pytest.fixture
async def cluster():
    async with in_process_api() as (api, _store, _objects):
        yield Cluster(api)
