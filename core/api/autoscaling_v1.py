"""autoscaling/v1 Scale: the body of the ``scale`` subresource of Deployments and ReplicaSets."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from kcore.api.meta import K8sStruct, TypedObject


class ScaleSpec(K8sStruct):
    replicas: int | None = None


class ScaleStatus(K8sStruct):
    replicas: int | None = None
    selector: str | None = None
    """The label selector in query syntax, e.g. ``app=nginx``."""


class Scale(TypedObject):
    API_VERSION: ClassVar[str] = "autoscaling/v1"
    KIND: ClassVar[str] = "Scale"

    spec: ScaleSpec = msgspec.field(default_factory=ScaleSpec)
    status: ScaleStatus = msgspec.field(default_factory=ScaleStatus)


__all__ = ["Scale", "ScaleSpec", "ScaleStatus"]
