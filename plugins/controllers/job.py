"""The Job controller: run pods until enough of them succeed, or give up.

As Kubernetes' ``pkg/controller/job`` (1.31+):

* **Pods** come from the template (its labels carry ``batch.kubernetes.io/controller-uid``
  and ``batch.kubernetes.io/job-name``, plus the legacy ``controller-uid`` and
  ``job-name``, which the API server adds), with a controller ownerReference and the
  finalizer ``batch.kubernetes.io/job-tracking``; names are ``<job>-<5 random>``. At most
  ``parallelism`` run, and never more than the completions still missing. With
  ``completions`` unset (a work queue) no pod starts once one has succeeded, and the Job
  is done when one has succeeded and the rest have ended.
* **Indexed** Jobs give each pod an index in ``0..completions-1``: annotation and label
  ``batch.kubernetes.io/job-completion-index``, env ``JOB_COMPLETION_INDEX``, hostname
  ``<job>-<i>``, name ``<job>-<i>-<5 random>``; ``status.completedIndexes`` lists the
  indexes done ("0-2,4").
* **Counting** is exactly once, through the finalizer: a pod that ended (Succeeded,
  Failed, or deleted by someone else before succeeding) goes into
  ``status.uncountedTerminatedPods``, then loses its finalizer, then moves into
  ``succeeded`` or ``failed``. A crash between the steps neither loses nor repeats a pod.
  Pods this controller deletes itself (too many, suspended, Job finished) lose the
  finalizer first and are not counted.
* **Failing.** More failed pods than ``backoffLimit`` (default 6), or under
  ``restartPolicy: OnFailure`` as many container restarts, is ``BackoffLimitExceeded``;
  ``activeDeadlineSeconds`` after ``startTime`` is ``DeadlineExceeded``, which wins when
  both hold. ``podFailurePolicy`` rules (first match wins, on ``onExitCodes`` or
  ``onPodConditions``): ``FailJob`` fails the Job (reason ``PodFailurePolicy``),
  ``Ignore`` does not count the pod, ``Count`` counts it. A failed pod is replaced after
  a back-off of 10 s x 2^(n-1) (n failures since the last success), at most 10 minutes.
* **Finishing** sets ``FailureTarget`` (or ``SuccessCriteriaMet``, reason
  ``CompletionsReached``) at once, deletes the pods still active, and sets ``Failed`` (or
  ``Complete`` with ``completionTime``) once no pod of the Job is left running.
* ``suspend`` deletes the active pods (condition ``Suspended``); resuming resets
  ``startTime``. ``ttlSecondsAfterFinished``: that long after finishing, the Job's pods and
  then the Job (propagation ``Background``) are deleted.
* Jobs whose ``spec.managedBy`` names another controller are left alone.
* Events: ``SuccessfulCreate``, ``SuccessfulDelete``, ``Completed``, the failure reason
  (``BackoffLimitExceeded``, ``DeadlineExceeded``, ``PodFailurePolicy``), ``Suspended``,
  ``Resumed``.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog

from kcore.controllers import (
    ADDED,
    DELETED,
    MODIFIED,
    ControllerRefManager,
    Expectations,
    Reconciler,
    ResourceEvent,
    being_deleted,
    controller_ref,
    deletion_order,
    from_label_selector_object,
    is_controlled_by,
    is_pod_active,
    is_pod_ready,
    is_pod_terminating,
    make_key,
    namespace_terminating,
    owner_reference,
    parse_time,
    ref_matches_kind,
    split_key,
)
from kcore.errors import BadRequest, KcoreError, NotFound, PermanentError
from kcore.plugins.controllers.replicaset import slow_start_batch
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.job")

JOB = ("batch/v1", "Job")
POD = ("v1", "Pod")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"

DEFAULT_BACKOFF_LIMIT = 6
BACKOFF_BASE = 10.0
"""Seconds before the first failed pod is replaced; doubles with each further failure."""
BACKOFF_MAX = 600.0
"""Kubernetes' ``MaxJobPodFailureBackOff`` (the docs say 6 minutes, the code 10)."""
MANAGED_BY = "kubernetes.io/job-controller"
"""``spec.managedBy`` of the Jobs this controller syncs (unset means this one too)."""
BURST = 500
"""At most this many pods created or deleted per sync."""

COMPLETE, FAILED = "Complete", "Failed"
FAILURE_TARGET, SUCCESS_CRITERIA_MET, SUSPENDED = "FailureTarget", "SuccessCriteriaMet", "Suspended"
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")


# -- small helpers ----------------------------------------------------------------------


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _uid(obj: dict[str, Any]) -> str:
    return _meta(obj).get("uid") or ""


def _phase(pod: dict[str, Any]) -> str | None:
    return (pod.get("status") or {}).get("phase")


def _has_finalizer(pod: dict[str, Any]) -> bool:
    return TRACKING_FINALIZER in (_meta(pod).get("finalizers") or ())


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The Job's condition of ``type_`` if it is ``True``."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def finished_condition(job: dict[str, Any]) -> dict[str, Any] | None:
    """``Complete`` or ``Failed`` (``True``): the Job is done."""
    return job_condition(job, COMPLETE) or job_condition(job, FAILED)


def finish_time(job: dict[str, Any]) -> float | None:
    """When a finished Job finished (its finished condition's transition time)."""
    cond = finished_condition(job)
    if cond is None:
        return None
    status = job.get("status") or {}
    at = parse_time(cond.get("lastTransitionTime"))
    if at is None and cond.get("type") == COMPLETE:
        at = parse_time(status.get("completionTime"))
    return at


def completion_index(pod: dict[str, Any]) -> int | None:
    """The pod's completion index (annotation, else label), if it has a valid one."""
    m = _meta(pod)
    value = (m.get("annotations") or {}).get(COMPLETION_INDEX)
    if value is None:
        value = (m.get("labels") or {}).get(COMPLETION_INDEX)
    if value is None or not str(value).isdigit():
        return None
    return int(value)


def parse_indexes(text: str | None) -> set[int]:
    """``"0-2,4"`` -> ``{0, 1, 2, 4}`` (unreadable parts are skipped)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            continue
        out.update(range(int(low), int(high or low) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """``{0, 1, 2, 4}`` -> ``"0-2,4"``."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def backoff_delay(failures: int) -> float:
    """10 s x 2^(failures-1), at most 10 minutes (0 without failures)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_BASE * 2 ** min(failures - 1, 32), BACKOFF_MAX)


def _exit_code_matches(code: int, requirement: dict[str, Any]) -> bool:
    values = requirement.get("values") or ()
    if requirement.get("operator") == "NotIn":
        return code not in values
    return code in values


def match_pod_failure_policy(
    policy: dict[str, Any] | None, pod: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The action (``FailJob``, ``Ignore``, ``Count``, ``FailIndex``) of the first rule of
    ``policy`` that a failed ``pod`` matches, and for ``FailJob`` the condition message;
    ``(None, None)`` when no rule matches."""
    status = pod.get("status") or {}
    m = _meta(pod)
    for index, rule in enumerate((policy or {}).get("rules") or ()):
        action = rule.get("action")
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            for cs in [
                *(status.get("containerStatuses") or ()),
                *(status.get("initContainerStatuses") or ()),
            ]:
                terminated = (cs.get("state") or {}).get("terminated")
                if terminated is None:
                    continue
                wanted = on_codes.get("containerName")
                if wanted and wanted != cs.get("name"):
                    continue
                code = int(terminated.get("exitCode") or 0)
                if code != 0 and _exit_code_matches(code, on_codes):
                    return action, (
                        f"Container {cs.get('name')} for pod {m.get('namespace')}/{m.get('name')} "
                        f"failed with exit code {code} matching {action} rule at index {index}"
                    )
            continue
        for pattern in rule.get("onPodConditions") or ():
            for cond in status.get("conditions") or ():
                if cond.get("type") == pattern.get("type") and cond.get("status") == (
                    pattern.get("status") or "True"
                ):
                    return action, (
                        f"Pod {m.get('namespace')}/{m.get('name')} has condition "
                        f"{cond.get('type')} matching {action} rule at index {index}"
                    )
    return None, None


def _restarts(pods: Iterable[dict[str, Any]]) -> int:
    total = 0
    for pod in pods:
        if _phase(pod) not in ("Running", "Pending"):
            continue
        status = pod.get("status") or {}
        for cs in [
            *(status.get("containerStatuses") or ()),
            *(status.get("initContainerStatuses") or ()),
        ]:
            total += int(cs.get("restartCount") or 0)
    return total


def _status_view(status: dict[str, Any]) -> tuple[Any, ...]:
    """What of a Job status this controller writes, normalized for comparison."""
    unc = status.get("uncountedTerminatedPods") or {}
    return (
        tuple(int(status.get(f) or 0) for f in ("active", "ready", "terminating", "succeeded")),
        int(status.get("failed") or 0),
        status.get("startTime"),
        status.get("completionTime"),
        status.get("completedIndexes") or "",
        sorted(unc.get("succeeded") or ()),
        sorted(unc.get("failed") or ()),
        [
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
            for c in status.get("conditions") or ()
        ],
    )


def set_condition(
    status: dict[str, Any], type_: str, value: str, reason: str, message: str, now: float
) -> bool:
    """Set the condition ``type_`` to ``value``; returns whether anything changed."""
    conditions = status.setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") != type_:
            continue
        if (cond.get("status"), cond.get("reason"), cond.get("message")) == (
            value,
            reason,
            message,
        ):
            return False
        if cond.get("status") != value:
            cond["lastTransitionTime"] = rfc3339(now)
        cond.update(status=value, reason=reason, message=message, lastProbeTime=rfc3339(now))
        return True
    conditions.append(
        {
            "type": type_,
            "status": value,
            "lastProbeTime": rfc3339(now),
            "lastTransitionTime": rfc3339(now),
            "reason": reason,
            "message": message,
        }
    )
    return True


BY_JOB = "job"
"""Pod index: ``namespace/name`` of the Job that controls the pod or that its
``job-name`` labels name."""


def _job_index(pod: dict[str, Any]) -> list[str]:
    namespace = _meta(pod).get("namespace")
    labels = _meta(pod).get("labels") or {}
    names = {labels.get(JOB_NAME_LABEL), labels.get(LEGACY_JOB_NAME_LABEL)}
    ref = controller_ref(pod)
    if ref is not None and ref_matches_kind(ref, *JOB):
        names.add(ref.get("name"))
    return [make_key(namespace, n) for n in names if n]


# -- the controller ---------------------------------------------------------------------


class JobController(Reconciler):
    name = "job-controller"
    kinds = (JOB, POD)
    burst = BURST

    conformance = scenarios("job_scenarios")

    async def setup(self) -> None:
        self.informers.add_index(*POD, BY_JOB, _job_index)
        self.expectations = Expectations()
        self._finalizer_removed: set[str] = set()
        """Pods whose finalizer this controller removed, until the cache shows it."""
        self._backoff: dict[str, tuple[int, float]] = {}
        """Per Job key: failures since the last success, and when the last was seen."""
        self._written: dict[str, dict[str, Any]] = {}
        """Per Job key: the Job as this controller last wrote it (newer than a lagging
        cache)."""

    # -- events ---------------------------------------------------------------------------

    def observe(self, event: ResourceEvent) -> None:
        if (event.api_version, event.kind) == JOB:
            if event.type == DELETED:
                self.expectations.forget(event.key)
                self._backoff.pop(event.key, None)
                self._written.pop(event.key, None)
            return
        pod = event.obj
        uid = _uid(pod)
        if event.type == DELETED or not _has_finalizer(pod):
            self._finalizer_removed.discard(uid)
        ref = controller_ref(pod)
        if ref is None or not ref_matches_kind(ref, *JOB):
            return
        key = make_key(_meta(pod).get("namespace"), ref.get("name", ""))
        if event.type == ADDED:
            if being_deleted(pod):
                self.expectations.deletion_observed(key, uid)
            else:
                self.expectations.creation_observed(key)
        elif event.type == MODIFIED:
            if being_deleted(pod):
                self.expectations.deletion_observed(key, uid)
        elif event.type == DELETED:
            self.expectations.deletion_observed(key, uid)

    def keys_for(self, event: ResourceEvent) -> Iterable[str]:
        if (event.api_version, event.kind) == JOB:
            return [event.key]
        pod, old = event.obj, event.old
        if event.type == MODIFIED and old is not None:
            if _meta(old).get("resourceVersion") == _meta(pod).get("resourceVersion"):
                return []  # a resync
        namespace = _meta(pod).get("namespace")
        keys: list[str] = []
        for obj in (pod, old):
            if obj is None:
                continue
            ref = controller_ref(obj)
            if ref is not None and ref_matches_kind(ref, *JOB):
                key = make_key(namespace, ref.get("name", ""))
            elif ref is None and _has_finalizer(obj):
                # An orphan still holding our finalizer: its Job releases it.
                labels = _meta(obj).get("labels") or {}
                name = labels.get(JOB_NAME_LABEL) or labels.get(LEGACY_JOB_NAME_LABEL)
                key = make_key(namespace, name) if name else ""
            else:
                key = ""
            if key and key not in keys:
                keys.append(key)
        if controller_ref(pod) is None and event.type != DELETED and not being_deleted(pod):
            keys += [k for k in self.selecting(JOB, pod) if k not in keys]
        return keys

    # -- reconcile ------------------------------------------------------------------------

    def _current(self, key: str) -> dict[str, Any] | None:
        """The cached Job, or the one this controller last wrote when that is newer."""
        cached = self.cached(key)
        written = self._written.get(key)
        if cached is None or written is None or _uid(written) != _uid(cached):
            if cached is None:
                self._written.pop(key, None)
            return cached
        try:
            if int(_meta(written)["resourceVersion"]) > int(_meta(cached)["resourceVersion"]):
                return written
        except (KeyError, TypeError, ValueError):
            pass
        self._written.pop(key, None)
        return cached

    async def reconcile(self, key: str) -> float | None:
        namespace, name = split_key(key)
        job = self._current(key)
        await self._release_strays(namespace, name, job)
        if job is None:
            self.expectations.forget(key)
            return None
        job = {**job, "apiVersion": JOB[0], "kind": JOB[1]}
        managed_by = (job.get("spec") or {}).get("managedBy")
        if managed_by and managed_by != MANAGED_BY:
            return None  # another controller's Job
        try:
            selector = from_label_selector_object((job.get("spec") or {}).get("selector"))
        except BadRequest as exc:
            raise PermanentError(f"invalid selector: {exc}") from exc
        pods = await self._claim_pods(job, selector)
        if being_deleted(job):
            await self._remove_finalizers([p for p in pods if _has_finalizer(p)])
            return None
        if finished_condition(job) is not None:
            await self._remove_finalizers([p for p in pods if _has_finalizer(p)])
            return await self._expire(key, job, pods)
        return await self._sync(key, job, pods)

    async def _release_strays(
        self, namespace: str | None, name: str, job: dict[str, Any] | None
    ) -> None:
        """Remove our finalizer from ended or deleted pods of a Job ``name`` that is gone
        or was replaced (another uid), and from orphans that lost their Job reference."""
        job_uid = _uid(job) if job is not None else None
        strays = []
        for pod in self.informers.by_index(*POD, BY_JOB, make_key(namespace, name)):
            if not _has_finalizer(pod) or _uid(pod) in self._finalizer_removed:
                continue
            if _phase(pod) not in ("Succeeded", "Failed") and not being_deleted(pod):
                continue
            ref = controller_ref(pod)
            labels = _meta(pod).get("labels") or {}
            if ref is not None:
                if not ref_matches_kind(ref, *JOB) or ref.get("name") != name:
                    continue
                if job_uid is not None and ref.get("uid") == job_uid:
                    continue
            else:
                if (labels.get(JOB_NAME_LABEL) or labels.get(LEGACY_JOB_NAME_LABEL)) != name:
                    continue
                pod_job_uid = labels.get(CONTROLLER_UID_LABEL) or labels.get(
                    LEGACY_CONTROLLER_UID_LABEL
                )
                if job_uid is not None and pod_job_uid == job_uid and not being_deleted(pod):
                    continue  # the Job adopts it
            strays.append(pod)
        await self._remove_finalizers(strays)

    async def _claim_pods(self, job: dict[str, Any], selector: Any) -> list[dict[str, Any]]:
        """The Job's pods (all phases): those it controls that match, plus matching
        orphans it adopts; those that stopped matching are released (and lose our
        finalizer)."""
        m = _meta(job)
        if (job.get("spec") or {}).get("manualSelector"):
            pods = self.informers.list(*POD, m.get("namespace"))
        else:  # the generated selector selects the Job's own labels: use the index
            pods = self.informers.by_index(*POD, BY_JOB, make_key(m.get("namespace"), m["name"]))
        candidates = [
            p
            for p in pods
            if is_controlled_by(p, job)
            or (controller_ref(p) is None and selector.matches_object(p))
        ]
        manager = ControllerRefManager(self.api, job, selector)
        pods = await manager.claim(candidates)
        if manager.released:
            released = set(manager.released)
            await self._remove_finalizers(
                [p for p in candidates if _meta(p).get("name") in released and _has_finalizer(p)]
            )
        return pods

    async def _sync(
        self, key: str, job: dict[str, Any], pods: list[dict[str, Any]]
    ) -> float | None:
        now = self.now()
        spec = job.get("spec") or {}
        original = job.get("status") or {}
        status = copy.deepcopy(original)
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        parallelism = spec.get("parallelism")
        parallelism = 1 if parallelism is None else int(parallelism)
        backoff_limit = spec.get("backoffLimit")
        backoff_limit = DEFAULT_BACKOFF_LIMIT if backoff_limit is None else int(backoff_limit)
        policy = spec.get("podFailurePolicy")
        suspended = bool(spec.get("suspend"))
        restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")

        # 1. Pods that ended and still carry the finalizer become "uncounted".
        unc = status.get("uncountedTerminatedPods") or {}
        unc_succeeded = list(unc.get("succeeded") or ())
        unc_failed = list(unc.get("failed") or ())
        known = set(unc_succeeded) | set(unc_failed) | self._finalizer_removed
        completed = parse_indexes(status.get("completedIndexes")) if indexed else set()
        new_succeeded: list[dict[str, Any]] = []
        new_failed: list[dict[str, Any]] = []
        ignored: list[dict[str, Any]] = []
        fail_job_message: str | None = None
        for pod in pods:
            if not _has_finalizer(pod) or _uid(pod) in known:
                continue
            phase = _phase(pod)
            if phase == "Succeeded":
                if indexed:
                    ix = completion_index(pod)
                    if ix is None or completions is None or ix >= completions or ix in completed:
                        ignored.append(pod)
                        continue
                    completed.add(ix)
                new_succeeded.append(pod)
            elif phase == "Failed" or being_deleted(pod):
                action, message = (None, None)
                if phase == "Failed" and policy:
                    action, message = match_pod_failure_policy(policy, pod)
                if action == "Ignore":
                    ignored.append(pod)
                    continue
                if action == "FailJob" and fail_job_message is None:
                    fail_job_message = message
                new_failed.append(pod)
        if new_succeeded:
            self._backoff.pop(key, None)
        if new_failed:
            failures, _ = self._backoff.get(key, (0, 0.0))
            self._backoff[key] = (failures + len(new_failed), now)
        if new_succeeded or new_failed:
            unc_succeeded += [_uid(p) for p in new_succeeded]
            unc_failed += [_uid(p) for p in new_failed]
            status["uncountedTerminatedPods"] = {
                "succeeded": unc_succeeded,
                "failed": unc_failed,
            }
            if indexed:
                status["completedIndexes"] = format_indexes(completed)
            job = await self._write_status(key, job, status)
            original = job.get("status") or {}
            status = copy.deepcopy(original)

        # 2. Their finalizers go; 3. then they are counted.
        uncounted = set(unc_succeeded) | set(unc_failed)
        removed = await self._remove_finalizers(
            [p for p in pods if _has_finalizer(p) and _uid(p) in uncounted] + ignored
        )
        by_uid = {_uid(p): p for p in pods}

        def settled(uid: str) -> bool:
            pod = by_uid.get(uid)
            return pod is None or uid in removed or not _has_finalizer(pod)

        done_succeeded = [u for u in unc_succeeded if settled(u)]
        done_failed = [u for u in unc_failed if settled(u)]
        status["succeeded"] = int(status.get("succeeded") or 0) + len(done_succeeded)
        status["failed"] = int(status.get("failed") or 0) + len(done_failed)
        status["uncountedTerminatedPods"] = {
            k: v
            for k, v in (
                ("succeeded", [u for u in unc_succeeded if u not in done_succeeded]),
                ("failed", [u for u in unc_failed if u not in done_failed]),
            )
            if v
        }
        succeeded = status["succeeded"] + len(
            status["uncountedTerminatedPods"].get("succeeded", ())
        )
        failed = status["failed"] + len(status["uncountedTerminatedPods"].get("failed", ()))

        active = [p for p in pods if is_pod_active(p)]
        terminating = [p for p in pods if is_pod_terminating(p)]
        requeue: list[float] = []

        # 4. Finished?
        finish = self._finish(
            status, spec, now, suspended, indexed, completions, succeeded, failed, completed,
            active, backoff_limit, restart_policy, fail_job_message,
        )  # fmt: skip
        created = deleted = waiting = 0
        manage_error: BaseException | None = None
        if finish is not None:
            type_, reason, message = finish
            interim = FAILURE_TARGET if type_ == FAILED else SUCCESS_CRITERIA_MET
            if set_condition(status, interim, "True", reason, message, now) and type_ == FAILED:
                await self.recorder.event(job, "Warning", reason, message)
            deleted, waiting = await self._delete_pods(key, job, active)
        elif suspended:
            deleted, waiting = await self._delete_pods(key, job, active)
            if set_condition(status, SUSPENDED, "True", "JobSuspended", "Job suspended", now):
                await self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        else:
            if job_condition(job, SUSPENDED) is not None:
                set_condition(status, SUSPENDED, "False", "JobResumed", "Job resumed", now)
                await self.recorder.event(job, "Normal", "Resumed", "Job resumed")
                status["startTime"] = rfc3339(now)
            if not status.get("startTime"):
                status["startTime"] = rfc3339(now)
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None:
                start = parse_time(status["startTime"])
                if start is not None:
                    requeue.append(max(start + int(deadline) - now, 0.0) + 0.01)
            if self.expectations.satisfied(key):
                try:
                    created, deleted, waiting, wait = await self._manage(
                        key, job, active, terminating, succeeded, completed, parallelism,
                        completions, indexed, now,
                    )  # fmt: skip
                except KcoreError as exc:
                    manage_error = exc
                    created, deleted, waiting, wait = 0, 0, 0, None
                if wait is not None:
                    requeue.append(wait)

        status["active"] = max(len(active) + created - deleted, 0)
        status["ready"] = max(sum(1 for p in active if is_pod_ready(p)) - deleted, 0)
        status["terminating"] = len(terminating) + waiting
        if finish is not None and not status["uncountedTerminatedPods"]:
            type_, reason, message = finish
            if status["active"] == 0 and status["terminating"] == 0:
                if type_ == COMPLETE and not status.get("completionTime"):
                    status["completionTime"] = rfc3339(now)
                if set_condition(status, type_, "True", reason, message, now):
                    if type_ == COMPLETE:
                        await self.recorder.event(job, "Normal", "Completed", "Job completed")
                    log.info("job finished", job=key, condition=type_, reason=reason)
        if _status_view(status) != _status_view(original):
            job = await self._write_status(key, job, status)
        if manage_error is not None:
            raise manage_error
        if finished_condition(job) is not None:
            return await self._expire(key, job, [])
        return min(requeue) if requeue else None

    def _finish(
        self,
        status: dict[str, Any],
        spec: dict[str, Any],
        now: float,
        suspended: bool,
        indexed: bool,
        completions: int | None,
        succeeded: int,
        failed: int,
        completed: set[int],
        active: list[dict[str, Any]],
        backoff_limit: int,
        restart_policy: str | None,
        fail_job_message: str | None,
    ) -> tuple[str, str, str] | None:
        """``(Complete|Failed, reason, message)`` once the Job has reached an end."""
        for cond in status.get("conditions") or ():
            if cond.get("status") != "True":
                continue
            if cond.get("type") == FAILURE_TARGET:
                return FAILED, cond.get("reason") or "", cond.get("message") or ""
            if cond.get("type") == SUCCESS_CRITERIA_MET:
                return COMPLETE, cond.get("reason") or "", cond.get("message") or ""
        if fail_job_message is not None:
            return FAILED, "PodFailurePolicy", fail_job_message
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time(status.get("startTime"))
        if not suspended and deadline is not None and start is not None:
            if now >= start + int(deadline):
                return FAILED, *DEADLINE_EXCEEDED
        restarts = _restarts(active) if restart_policy == "OnFailure" else 0
        past_restarts = restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit
        if failed > backoff_limit or (restart_policy == "OnFailure" and past_restarts):
            return FAILED, *BACKOFF_LIMIT_EXCEEDED
        if indexed:
            done = completions is not None and len(completed) >= completions
        elif completions is None:
            done = succeeded > 0 and not active
        else:
            done = succeeded >= completions
        if done:
            return COMPLETE, *COMPLETIONS_REACHED
        return None

    async def _manage(
        self,
        key: str,
        job: dict[str, Any],
        active: list[dict[str, Any]],
        terminating: list[dict[str, Any]],
        succeeded: int,
        completed: set[int],
        parallelism: int,
        completions: int | None,
        indexed: bool,
        now: float,
    ) -> tuple[int, int, int, float | None]:
        """Create or delete pods towards the wanted number of active ones. Returns
        ``(created, deleted, still terminating after delete, seconds to wait)``."""
        spec = job.get("spec") or {}
        replace_failed_only = (
            spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None
        )
        if indexed:
            want = max(0, min(parallelism, (completions or 0) - len(completed)))
        elif completions is None:
            want = len(active) if succeeded > 0 else parallelism
        else:
            want = max(0, min(parallelism, completions - succeeded))

        excess: list[dict[str, Any]] = []
        keep = list(active)
        if indexed:
            seen: set[int] = set()
            keep = []
            for pod in sorted(active, key=lambda p: _meta(p).get("creationTimestamp") or ""):
                ix = completion_index(pod)
                if ix is None or ix >= (completions or 0) or ix in completed or ix in seen:
                    excess.append(pod)
                else:
                    seen.add(ix)
                    keep.append(pod)
            if len(keep) > want:
                keep.sort(key=lambda p: completion_index(p) or 0)
                excess += keep[want:]
                keep = keep[:want]
        elif len(keep) > want:
            ordered = list(deletion_order(keep, None, now))
            excess = ordered[: len(keep) - want]  # type: ignore[assignment]
            keep = [p for p in keep if p not in excess]
        excess = excess[: self.burst]
        deleted, waiting = await self._delete_pods(key, job, excess)

        running = len(keep) + (len(terminating) if replace_failed_only else 0)
        missing = min(want - running, self.burst)
        if missing <= 0:
            return 0, deleted, waiting, None
        failures, last = self._backoff.get(key, (0, 0.0))
        left = last + backoff_delay(failures) - now
        if left > 0:
            return 0, deleted, waiting, left + 0.01
        indexes: list[int | None] = [None] * missing
        if indexed:
            busy = {completion_index(p) for p in keep}
            if replace_failed_only:
                busy |= {completion_index(p) for p in terminating}
            free = [i for i in range(completions or 0) if i not in completed and i not in busy]
            indexes = list(free[:missing])
            missing = len(indexes)
            if not missing:
                return 0, deleted, waiting, None
        self.expectations.expect_creations(key, missing)
        pending = iter(indexes)
        successes, error = await slow_start_batch(
            missing, 1, lambda: self._create_pod(job, next(pending))
        )
        for _ in range(missing - successes):
            self.expectations.creation_observed(key)  # never coming
        if error is not None and not namespace_terminating(error):
            raise error
        return successes, deleted, waiting, None

    # -- pods -----------------------------------------------------------------------------

    def pod_from_template(self, job: dict[str, Any], index: int | None = None) -> dict[str, Any]:
        template = (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        name = _meta(job)["name"]
        meta: dict[str, Any] = {
            "generateName": f"{name}-" if index is None else f"{name}-{index}-",
            "namespace": _meta(job).get("namespace"),
            "labels": copy.deepcopy(tmeta.get("labels") or {}),
            "annotations": copy.deepcopy(tmeta.get("annotations") or {}),
        }
        finalizers = list(tmeta.get("finalizers") or ())
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        meta["finalizers"] = finalizers
        meta["ownerReferences"] = [owner_reference(job)]
        spec = copy.deepcopy(template.get("spec") or {})
        if index is not None:
            meta["labels"][COMPLETION_INDEX] = str(index)
            meta["annotations"][COMPLETION_INDEX] = str(index)
            if not spec.get("hostname"):
                spec["hostname"] = f"{name}-{index}"[:63].rstrip("-.")
            env_var = {
                "name": COMPLETION_INDEX_ENV,
                "valueFrom": {
                    "fieldRef": {
                        "apiVersion": "v1",
                        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']",
                    }
                },
            }
            for field in ("initContainers", "containers"):
                for container in spec.get(field) or ():
                    env = container.setdefault("env", [])
                    if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                        env.append(copy.deepcopy(env_var))
        if not meta["annotations"]:
            del meta["annotations"]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    async def _create_pod(self, job: dict[str, Any], index: int | None) -> None:
        await self.create_pod(job, self.pod_from_template(job, index))

    async def _delete_pods(
        self, key: str, job: dict[str, Any], pods: list[dict[str, Any]]
    ) -> tuple[int, int]:
        """Delete ``pods`` (each loses our finalizer first, so it is not counted).
        Returns ``(deleted, still terminating)``; raises the first error after trying all."""
        if not pods:
            return 0, 0
        self.expectations.expect_deletions(key, [_uid(p) for p in pods])
        results = await asyncio.gather(
            *(self._delete_pod(key, job, p) for p in pods), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return len(pods), sum(1 for r in results if r)

    async def _delete_pod(self, key: str, job: dict[str, Any], pod: dict[str, Any]) -> bool:
        """Delete one pod; whether it is still terminating."""
        m = _meta(pod)
        try:
            if _has_finalizer(pod):
                await self._remove_finalizer(pod)
            answer = await self.api.delete("v1", "Pod", m["name"], m.get("namespace"))
        except KcoreError as exc:
            self.expectations.deletion_observed(key, m.get("uid", ""))  # not coming
            if isinstance(exc, NotFound):
                return False
            await self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {exc}")
            raise
        await self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")
        return bool(_meta(answer).get("deletionTimestamp")) if isinstance(answer, dict) else False

    async def _remove_finalizer(self, pod: dict[str, Any]) -> None:
        m = _meta(pod)
        patch = {
            "metadata": {
                "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
                "uid": m.get("uid"),
            }
        }
        await self.api.patch(
            "v1", "Pod", m["name"], patch, "strategic", namespace=m.get("namespace")
        )
        self._finalizer_removed.add(m.get("uid", ""))

    async def _remove_finalizers(self, pods: list[dict[str, Any]]) -> set[str]:
        """Remove our finalizer from ``pods``; the uids done (or gone). Raises the first
        error after trying them all."""
        if not pods:
            return set()
        results = await asyncio.gather(
            *(self._remove_finalizer(p) for p in pods), return_exceptions=True
        )
        done: set[str] = set()
        errors: list[BaseException] = []
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, NotFound) or not isinstance(result, BaseException):
                done.add(_uid(pod))
            else:
                errors.append(result)
        if errors:
            raise errors[0]
        return done

    # -- status, TTL ----------------------------------------------------------------------

    async def _write_status(
        self, key: str, job: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """Write ``status``. A stale Job raises Conflict: the reconcile starts over from
        the cache (counting is safe to redo)."""
        written = await self.api.update_status({**job, "status": status})
        self._written[key] = written
        return {**written, "apiVersion": JOB[0], "kind": JOB[1]}

    async def _expire(
        self, key: str, job: dict[str, Any], pods: list[dict[str, Any]]
    ) -> float | None:
        """``ttlSecondsAfterFinished``: seconds until the Job expires, or delete it (its
        pods first, so that nothing is left even without a garbage collector)."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = finish_time(job)
        if ttl is None or finished is None:
            return None
        left = finished + int(ttl) - self.now()
        if left > 0:
            return left + 0.01
        m = _meta(job)
        if not pods:
            pods = [
                p for p in self.informers.by_index(*POD, BY_JOB, key) if is_controlled_by(p, job)
            ]
        log.info("deleting finished job after its TTL", job=key, ttl=ttl)
        results = await asyncio.gather(
            *(self._delete_pod_quietly(p) for p in pods), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        try:
            await self.api.delete(
                *JOB,
                m["name"],
                m.get("namespace"),
                propagation_policy="Background",
                preconditions={"uid": m.get("uid", "")},
            )
        except NotFound:
            pass
        return None

    async def _delete_pod_quietly(self, pod: dict[str, Any]) -> None:
        m = _meta(pod)
        try:
            if _has_finalizer(pod):
                await self._remove_finalizer(pod)
            await self.api.delete("v1", "Pod", m["name"], m.get("namespace"))
        except NotFound:
            pass


def controllers(settings: Any) -> list[Reconciler]:
    return [JobController()]


__all__ = [
    "COMPLETION_INDEX",
    "CONTROLLER_UID_LABEL",
    "JOB_NAME_LABEL",
    "TRACKING_FINALIZER",
    "JobController",
    "backoff_delay",
    "completion_index",
    "controllers",
    "finish_time",
    "finished_condition",
    "format_indexes",
    "match_pod_failure_policy",
    "parse_indexes",
]
