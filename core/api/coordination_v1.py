"""coordination.k8s.io/v1: Lease, used for node heartbeats and leader election."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from kcore.api.meta import K8sStruct, MicroTime, TypedObject, normalize_times


class LeaseSpec(K8sStruct):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: MicroTime | None = None
    renew_time: MicroTime | None = None
    lease_transitions: int | None = None
    strategy: str | None = None
    preferred_holder: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, micro=("acquire_time", "renew_time"))


class Lease(TypedObject):
    API_VERSION: ClassVar[str] = "coordination.k8s.io/v1"
    KIND: ClassVar[str] = "Lease"

    spec: LeaseSpec = msgspec.field(default_factory=LeaseSpec)


__all__ = ["Lease", "LeaseSpec"]
