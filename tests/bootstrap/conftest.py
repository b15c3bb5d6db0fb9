"""Fixtures of the bootstrap tests: an in-process API (no node agent) and a controller
manager running the controllers a test names."""

from __future__ import annotations

import contextlib

import pytest
from inprocess_api import in_process_api

from kcore.controllers import ControllerManager


@pytest.fixture
async def api():
    async with in_process_api() as (client, _store, _objects):
        yield client


@contextlib.asynccontextmanager
async def running(api, *controllers):
    manager = ControllerManager(api, list(controllers), leader_election=None)
    manager.start()
    try:
        yield manager
    finally:
        await manager.stop()
