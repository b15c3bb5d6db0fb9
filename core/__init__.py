"""kcore: a small, real Kubernetes in Python, built as a plugin microkernel.

This module is the public surface for plugin authors: the ``hookimpl`` marker, the slot
protocols, the errors and the API types. Everything not re-exported here is internal.
"""

from __future__ import annotations

from typing import Any

from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    FieldError,
    Forbidden,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
    PermanentError,
    PluginError,
    TemporaryError,
)
from kcore.hookspecs import hookimpl
from kcore.interfaces import (
    AdmissionCheck,
    AdmissionRequest,
    Controller,
    ControllerContext,
    FilterStep,
    ImageService,
    NetworkPlugin,
    NodeService,
    NodeServiceContext,
    RuntimeBackend,
    RuntimeService,
    ScoreStep,
    StreamSession,
    VolumeSource,
)
from kcore.settings import Settings
from kcore.store import Capability, EventType, KeyValue, ListResult, Store, WatchEvent

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The API model is imported on first use, so that `import kcore` stays cheap for
    # plugins that never touch it.
    if name == "api":
        import kcore.api

        return kcore.api
    raise AttributeError(f"module 'kcore' has no attribute {name!r}")


__all__ = [
    "AdmissionCheck",
    "AdmissionRequest",
    "AlreadyExists",
    "BadRequest",
    "Capability",
    "Conflict",
    "Controller",
    "ControllerContext",
    "EventType",
    "Expired",
    "FieldError",
    "FilterStep",
    "Forbidden",
    "ImageService",
    "Invalid",
    "KcoreError",
    "KeyValue",
    "ListResult",
    "NetworkPlugin",
    "NodeService",
    "NodeServiceContext",
    "NotFound",
    "NotSupported",
    "PermanentError",
    "PluginError",
    "RuntimeBackend",
    "RuntimeService",
    "ScoreStep",
    "Settings",
    "Store",
    "StreamSession",
    "TemporaryError",
    "VolumeSource",
    "WatchEvent",
    "hookimpl",
]
