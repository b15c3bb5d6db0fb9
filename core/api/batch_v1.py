"""The batch group, version v1: Job and CronJob."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from kcore.api.core_v1 import PodTemplateSpec
from kcore.api.meta import (
    K8sStruct,
    LabelSelector,
    ObjectMeta,
    ObjectReference,
    Time,
    TypedObject,
    normalize_times,
)


class JobSpec(K8sStruct):
    parallelism: int | None = None
    completions: int | None = None
    active_deadline_seconds: int | None = None
    pod_failure_policy: dict[str, Any] | None = None
    success_policy: dict[str, Any] | None = None
    backoff_limit: int | None = None
    backoff_limit_per_index: int | None = None
    max_failed_indexes: int | None = None
    selector: LabelSelector | None = None
    manual_selector: bool | None = None
    template: PodTemplateSpec = msgspec.field(default_factory=PodTemplateSpec)
    ttl_seconds_after_finished: int | None = None
    completion_mode: str | None = None
    """``NonIndexed`` or ``Indexed``."""
    suspend: bool | None = None
    pod_replacement_policy: str | None = None
    managed_by: str | None = None


class JobCondition(K8sStruct):
    type: str | None = None
    """``Complete``, ``Failed``, ``Suspended``, ``FailureTarget``, ``SuccessCriteriaMet``."""
    status: str | None = None
    last_probe_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_probe_time", "last_transition_time")


class UncountedTerminatedPods(K8sStruct):
    succeeded: list[str] = []
    failed: list[str] = []


class JobStatus(K8sStruct):
    conditions: list[JobCondition] = []
    start_time: Time | None = None
    completion_time: Time | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    terminating: int | None = None
    completed_indexes: str | None = None
    failed_indexes: str | None = None
    uncounted_terminated_pods: UncountedTerminatedPods | None = None
    ready: int | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "start_time", "completion_time")


class Job(TypedObject):
    API_VERSION: ClassVar[str] = "batch/v1"
    KIND: ClassVar[str] = "Job"

    spec: JobSpec = msgspec.field(default_factory=JobSpec)
    status: JobStatus = msgspec.field(default_factory=JobStatus)


class JobTemplateSpec(K8sStruct):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: JobSpec = msgspec.field(default_factory=JobSpec)


class CronJobSpec(K8sStruct):
    schedule: str | None = None
    time_zone: str | None = None
    starting_deadline_seconds: int | None = None
    concurrency_policy: str | None = None
    """``Allow``, ``Forbid`` or ``Replace``."""
    suspend: bool | None = None
    job_template: JobTemplateSpec = msgspec.field(default_factory=JobTemplateSpec)
    successful_jobs_history_limit: int | None = None
    failed_jobs_history_limit: int | None = None


class CronJobStatus(K8sStruct):
    active: list[ObjectReference] = []
    last_schedule_time: Time | None = None
    last_successful_time: Time | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_schedule_time", "last_successful_time")


class CronJob(TypedObject):
    API_VERSION: ClassVar[str] = "batch/v1"
    KIND: ClassVar[str] = "CronJob"

    spec: CronJobSpec = msgspec.field(default_factory=CronJobSpec)
    status: CronJobStatus = msgspec.field(default_factory=CronJobStatus)


__all__ = [
    "CronJob",
    "CronJobSpec",
    "CronJobStatus",
    "Job",
    "JobCondition",
    "JobSpec",
    "JobStatus",
    "JobTemplateSpec",
    "UncountedTerminatedPods",
]
