"""The apps group, version v1: Deployment, ReplicaSet, DaemonSet."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kcore.api.core_v1 import PodTemplateSpec
from kcore.api.meta import (
    IntOrString,
    K8sStruct,
    LabelSelector,
    Time,
    TypedObject,
    normalize_times,
)


class RollingUpdateDeployment(K8sStruct):
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None


class DeploymentStrategy(K8sStruct):
    type: str | None = None
    """``RollingUpdate`` or ``Recreate``."""
    rolling_update: RollingUpdateDeployment | None = None


class DeploymentSpec(K8sStruct):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec = msgspec.field(default_factory=PodTemplateSpec)
    strategy: DeploymentStrategy | None = None
    min_ready_seconds: int | None = None
    revision_history_limit: int | None = None
    paused: bool | None = None
    progress_deadline_seconds: int | None = None


class DeploymentCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    last_update_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_update_time", "last_transition_time")


class DeploymentStatus(K8sStruct):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    terminating_replicas: int | None = None
    conditions: list[DeploymentCondition] = []
    collision_count: int | None = None


class Deployment(TypedObject):
    API_VERSION: ClassVar[str] = "apps/v1"
    KIND: ClassVar[str] = "Deployment"

    spec: DeploymentSpec = msgspec.field(default_factory=DeploymentSpec)
    status: DeploymentStatus = msgspec.field(default_factory=DeploymentStatus)


class ReplicaSetSpec(K8sStruct):
    replicas: int | None = None
    min_ready_seconds: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec = msgspec.field(default_factory=PodTemplateSpec)


class ReplicaSetCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_transition_time")


class ReplicaSetStatus(K8sStruct):
    replicas: int | None = None
    fully_labeled_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    terminating_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[ReplicaSetCondition] = []


class ReplicaSet(TypedObject):
    API_VERSION: ClassVar[str] = "apps/v1"
    KIND: ClassVar[str] = "ReplicaSet"

    spec: ReplicaSetSpec = msgspec.field(default_factory=ReplicaSetSpec)
    status: ReplicaSetStatus = msgspec.field(default_factory=ReplicaSetStatus)


class RollingUpdateDaemonSet(K8sStruct):
    max_unavailable: IntOrString | None = None
    max_surge: IntOrString | None = None


class DaemonSetUpdateStrategy(K8sStruct):
    type: str | None = None
    """``RollingUpdate`` or ``OnDelete``."""
    rolling_update: RollingUpdateDaemonSet | None = None


class DaemonSetSpec(K8sStruct):
    selector: LabelSelector | None = None
    template: PodTemplateSpec = msgspec.field(default_factory=PodTemplateSpec)
    update_strategy: DaemonSetUpdateStrategy | None = None
    min_ready_seconds: int | None = None
    revision_history_limit: int | None = None


class DaemonSetCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_transition_time")


class DaemonSetStatus(K8sStruct):
    current_number_scheduled: int | None = None
    number_misscheduled: int | None = None
    desired_number_scheduled: int | None = None
    number_ready: int | None = None
    observed_generation: int | None = None
    updated_number_scheduled: int | None = None
    number_available: int | None = None
    number_unavailable: int | None = None
    collision_count: int | None = None
    conditions: list[DaemonSetCondition] = []


class DaemonSet(TypedObject):
    API_VERSION: ClassVar[str] = "apps/v1"
    KIND: ClassVar[str] = "DaemonSet"

    spec: DaemonSetSpec = msgspec.field(default_factory=DaemonSetSpec)
    status: DaemonSetStatus = msgspec.field(default_factory=DaemonSetStatus)


class ControllerRevision(TypedObject):
    """An immutable snapshot of a controller's template (DaemonSet and StatefulSet
    history): ``data`` is the state (for a DaemonSet, a strategic merge patch replacing
    ``spec.template``), ``revision`` its number in the owner's history."""

    API_VERSION: ClassVar[str] = "apps/v1"
    KIND: ClassVar[str] = "ControllerRevision"

    data: Any = None
    revision: int = 0


__all__ = [
    "ControllerRevision",
    "DaemonSet",
    "DaemonSetCondition",
    "DaemonSetSpec",
    "DaemonSetStatus",
    "DaemonSetUpdateStrategy",
    "Deployment",
    "DeploymentCondition",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "ReplicaSet",
    "ReplicaSetCondition",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "RollingUpdateDaemonSet",
    "RollingUpdateDeployment",
]
