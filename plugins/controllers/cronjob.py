"""The CronJob controller: create a Job at each scheduled time.

As Kubernetes' ``pkg/controller/cronjob`` (the v2 controller):

* **Schedules** are 5-field cron lines (``?`` is ``*``; month and weekday names), the
  macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/``@midnight``,
  ``@hourly``, and ``@every <duration>``, evaluated with croniter in ``spec.timeZone``
  (IANA) or else the controller's local time zone.
* **Which time runs.** Only the most recent unmet scheduled time runs. The window starts
  at ``status.lastScheduleTime`` (else the CronJob's creation), or at ``now -
  startingDeadlineSeconds`` when that is later; a time older than
  ``startingDeadlineSeconds`` is skipped (Warning ``MissSchedule``). More than 100 missed
  times give a Warning ``TooManyMissedTimes``, and the latest still runs.
* **Jobs** are named ``<cronjob>-<scheduled unix time / 60>`` (the name is the lock
  against creating one twice), carry the template's labels and annotations plus
  ``batch.kubernetes.io/cronjob-scheduled-timestamp`` (RFC 3339 in the CronJob's zone)
  and a controller ownerReference.
* ``concurrencyPolicy``: ``Allow``; ``Forbid`` skips a run while a Job is active (event
  ``JobAlreadyActive``); ``Replace`` deletes the active Jobs first. ``suspend`` stops new
  runs.
* **History**: finished Jobs beyond ``successfulJobsHistoryLimit`` (3) and
  ``failedJobsHistoryLimit`` (1) are deleted, oldest start first (propagation
  ``Background``).
* **Status**: ``active`` (references to running Jobs), ``lastScheduleTime``,
  ``lastSuccessfulTime`` (the latest completed Job's ``completionTime``).
* The CronJob is reconciled again just after its next scheduled time.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from croniter import croniter

from kcore.controllers import (
    BY_CONTROLLER,
    Reconciler,
    is_controlled_by,
    owner_reference,
    parse_time,
)
from kcore.errors import AlreadyExists, Forbidden, KcoreError, NotFound
from kcore.plugins.controllers.scenarios import scenarios

log = structlog.get_logger("kcore.plugins.controllers.cronjob")

CRONJOB = ("batch/v1", "CronJob")
JOB = ("batch/v1", "Job")

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100
"""More missed start times than this is reported as ``TooManyMissedTimes``."""
NEXT_SCHEDULE_DELTA = 0.1
"""Come back this long after the next scheduled time."""
DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScheduleError(ValueError):
    """A schedule this controller cannot evaluate."""


def _parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` for positive durations: ``1h30m``, ``90s``, ``1.5h``."""
    text = text.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ScheduleError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ScheduleError("time: invalid duration ''")
    return total


@functools.cache
def local_zone() -> tzinfo:
    """The controller's own time zone: ``$TZ``, else ``/etc/localtime``, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def load_zone(name: str | None) -> tzinfo:
    """The IANA zone ``name`` (the local zone when unset); ``ScheduleError`` if unknown."""
    if name is None:
        return local_zone()
    if not name or name.lower() == "local":
        raise ScheduleError(f"unknown time zone {name}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name}") from exc


class Schedule:
    """A CronJob schedule in one time zone. :meth:`next` is the first scheduled time
    strictly after a time (whole seconds, as robfig/cron)."""

    def __init__(self, schedule: str, zone: tzinfo) -> None:
        text = schedule.strip()
        self.zone = zone
        self.every: float | None = None
        self.expr = ""
        if text.startswith(("TZ=", "CRON_TZ=")):
            raise ScheduleError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        if text.startswith("@every "):
            self.every = max(float(int(_parse_duration(text[len("@every ") :]))), 1.0)
            return
        if text.startswith("@"):
            if text not in MACROS:
                raise ScheduleError(f"unrecognized descriptor: {text}")
            text = MACROS[text]
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text}")
        self.expr = " ".join(f.replace("?", "*") for f in fields)
        if not croniter.is_valid(self.expr):
            raise ScheduleError(f"unparseable schedule: {schedule}")

    def next(self, t: float) -> float:
        whole = float(int(t // 1))
        if self.every is not None:
            return whole + self.every
        start = datetime.fromtimestamp(whole, self.zone)
        try:
            return croniter(self.expr, start).get_next(datetime).timestamp()
        except Exception as exc:  # croniter's CroniterBadDateError and friends
            raise ScheduleError(str(exc) or "no next scheduled time") from exc


def rfc3339(seconds: float, zone: tzinfo = UTC) -> str:
    """Go's ``time.RFC3339`` of ``seconds`` in ``zone`` (``Z`` for a zero offset)."""
    dt = datetime.fromtimestamp(int(seconds), zone)
    offset = dt.utcoffset()
    if not offset:
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def most_recent_schedule_time(
    cj: dict[str, Any], now: float, schedule: Schedule, include_deadline: bool
) -> tuple[float, float | None, int]:
    """Kubernetes' ``mostRecentScheduleTime``: ``(earliest, most recent unmet scheduled
    time or None, missed count estimate)``. Raises :class:`ScheduleError` for a schedule
    whose times are less than a second apart (or that never fires)."""
    meta = cj.get("metadata") or {}
    status = cj.get("status") or {}
    spec = cj.get("spec") or {}
    earliest = parse_time(meta.get("creationTimestamp")) or now
    last = parse_time(status.get("lastScheduleTime"))
    if last is not None:
        earliest = last
    deadline = spec.get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        earliest = max(earliest, now - int(deadline))
    t1 = schedule.next(earliest)
    if now < t1:
        return earliest, None, 0
    t2 = schedule.next(t1)
    if now < t2:
        return earliest, t1, 0
    between = round(t2 - t1)
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int(now - t1) // between + 1
    recent: float | None = None
    t = schedule.next(t1 + (missed - 2) * between)
    while t <= now:
        recent = t
        t = schedule.next(t)
    return earliest, recent, missed


def next_schedule_delay(cj: dict[str, Any], now: float, schedule: Schedule) -> float:
    """Seconds until just after the next scheduled time (``nextScheduleTimeDuration``)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cj, now, schedule, False)
    except ScheduleError:
        recent, earliest, missed = now, now, 0
    if recent is None:
        recent = earliest if missed == 0 else now
    try:
        return max(schedule.next(recent) + NEXT_SCHEDULE_DELTA - now, NEXT_SCHEDULE_DELTA)
    except ScheduleError:
        return 3600.0


def job_name(cronjob_name: str, scheduled: float) -> str:
    return f"{cronjob_name}-{int(scheduled) // 60}"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _finished(job: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` when the Job has that condition ``True``."""
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def _job_ref(job: dict[str, Any]) -> dict[str, Any]:
    m = _meta(job)
    return {
        "kind": "Job",
        "namespace": m.get("namespace"),
        "name": m.get("name"),
        "uid": m.get("uid"),
        "apiVersion": "batch/v1",
        "resourceVersion": m.get("resourceVersion"),
    }


def _status_view(status: dict[str, Any]) -> tuple[Any, ...]:
    return (
        sorted((r.get("uid") or "", r.get("name") or "") for r in status.get("active") or ()),
        status.get("lastScheduleTime"),
        status.get("lastSuccessfulTime"),
    )


class CronJobController(Reconciler):
    name = "cronjob-controller"
    kinds = (CRONJOB, JOB)

    conformance = scenarios("cronjob_scenarios")

    async def setup(self) -> None:
        self._written: dict[str, dict[str, Any]] = {}

    def _current(self, key: str) -> dict[str, Any] | None:
        """The cached CronJob, or the one this controller last wrote when that is newer."""
        cached = self.cached(key)
        written = self._written.get(key)
        if (
            cached is None
            or written is None
            or _meta(written).get("uid") != _meta(cached).get("uid")
        ):
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
        cj = self._current(key)
        if cj is None:
            return None
        cj = {**cj, "apiVersion": CRONJOB[0], "kind": CRONJOB[1]}
        m = _meta(cj)
        jobs = [
            j
            for j in self.informers.by_index(*JOB, BY_CONTROLLER, m.get("uid", ""))
            if _meta(j).get("namespace") == m.get("namespace") and is_controlled_by(j, cj)
        ]
        original = cj.get("status") or {}
        status = copy.deepcopy(original)
        status.setdefault("active", [])
        error: BaseException | None = None
        try:
            requeue = await self._sync(cj, jobs, status)
        except KcoreError as exc:
            requeue, error = None, exc
        if error is None and not m.get("deletionTimestamp"):
            await self._cleanup_finished(cj, jobs, status)
        if not status["active"]:
            status.pop("active")
        if _status_view(status) != _status_view(original):
            written = await self.api.update_status({**cj, "status": status})
            self._written[key] = written
        if error is not None:
            raise error
        return requeue

    async def _sync(
        self, cj: dict[str, Any], jobs: list[dict[str, Any]], status: dict[str, Any]
    ) -> float | None:
        m = _meta(cj)
        spec = cj.get("spec") or {}
        active: list[dict[str, Any]] = status["active"]
        active_uids = {r.get("uid") for r in active}
        children = {_meta(j).get("uid") for j in jobs}
        for job in jobs:
            jm = _meta(job)
            finished = _finished(job)
            if jm.get("uid") not in active_uids and finished is None:
                fresh = await self._fresh(cj)
                if fresh is not None and any(
                    r.get("uid") == jm.get("uid")
                    for r in (fresh.get("status") or {}).get("active") or ()
                ):
                    active.append(_job_ref(job))
                    continue
                await self.recorder.event(
                    cj,
                    "Warning",
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {jm.get('name')}",
                )
            elif finished is not None:
                if jm.get("uid") in active_uids:
                    active[:] = [r for r in active if r.get("uid") != jm.get("uid")]
                    await self.recorder.event(
                        cj,
                        "Normal",
                        "SawCompletedJob",
                        f"Saw completed job: {jm.get('name')}, condition: {finished}",
                    )
                completed = (job.get("status") or {}).get("completionTime")
                if finished == "Complete" and completed:
                    last = parse_time(status.get("lastSuccessfulTime"))
                    at = parse_time(completed)
                    if at is not None and (last is None or at > last):
                        status["lastSuccessfulTime"] = completed
        for ref in list(active):
            if ref.get("uid") in children:
                continue
            try:
                await self.api.get(*JOB, ref.get("name", ""), namespace=ref.get("namespace"))
            except NotFound:
                await self.recorder.event(
                    cj, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}"
                )
                active[:] = [r for r in active if r.get("uid") != ref.get("uid")]

        if m.get("deletionTimestamp"):
            return None
        try:
            zone = load_zone(spec.get("timeZone"))
        except ScheduleError as exc:
            await self.recorder.event(
                cj,
                "Warning",
                "UnknownTimeZone",
                f"invalid timeZone: {spec.get('timeZone')!r}: {exc}",
            )
            return None
        if spec.get("suspend"):
            return None
        schedule_text = spec.get("schedule") or ""
        try:
            schedule = Schedule(schedule_text, zone)
        except ScheduleError as exc:
            await self.recorder.event(
                cj,
                "Warning",
                "UnparseableSchedule",
                f"unparseable schedule: {schedule_text!r} : {exc}",
            )
            return None
        now = self.now()
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, schedule, True)
        except ScheduleError as exc:
            await self.recorder.event(
                cj, "Warning", "InvalidSchedule", f"invalid schedule: {schedule_text} : {exc}"
            )
            return None
        if scheduled is None:
            return next_schedule_delay(cj, now, schedule)
        if missed > MAX_MISSED:
            await self.recorder.event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
            log.info("too many missed times", cronjob=m.get("name"), missed=missed)
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + int(deadline) < now:
            await self.recorder.event(
                cj,
                "Warning",
                "MissSchedule",
                "Missed scheduled time to start a job: "
                + datetime.fromtimestamp(scheduled, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            )
            return next_schedule_delay(cj, now, schedule)
        name = job_name(m["name"], scheduled)
        if any(r.get("name") == name for r in active) or parse_time(
            status.get("lastScheduleTime")
        ) == float(int(scheduled)):
            return next_schedule_delay(cj, now, schedule)
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            await self.recorder.event(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy "
                "is Forbid",
            )
            return next_schedule_delay(cj, now, schedule)
        if policy == "Replace":
            for ref in list(active):
                await self._delete_job(cj, ref.get("name", ""), ref.get("namespace"))
                active[:] = [r for r in active if r.get("uid") != ref.get("uid")]

        job = self.job_from_template(cj, scheduled, zone)
        try:
            created = await self.api.create(job)
        except AlreadyExists:
            created = await self.api.get(*JOB, name, namespace=m.get("namespace"))
            if not is_controlled_by(created, cj):
                return None
            if any(r.get("uid") == _meta(created).get("uid") for r in active):
                return None
        except KcoreError as exc:
            if isinstance(exc, Forbidden) and "terminat" in str(exc).lower():
                return None
            await self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc}")
            raise
        else:
            await self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
            log.info("created job", cronjob=m.get("name"), job=name, scheduled=scheduled)
        active.append(_job_ref(created))
        status["lastScheduleTime"] = rfc3339(scheduled)
        cj_after = {**cj, "status": status}
        return next_schedule_delay(cj_after, now, schedule)

    def job_from_template(
        self, cj: dict[str, Any], scheduled: float, zone: tzinfo | None = None
    ) -> dict[str, Any]:
        """The Job of the run scheduled at ``scheduled`` (``getJobFromTemplate2``)."""
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        zone = UTC if zone is None or not (cj.get("spec") or {}).get("timeZone") else zone
        annotations = copy.deepcopy(tmeta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = rfc3339(scheduled, zone)
        meta: dict[str, Any] = {
            "name": job_name(_meta(cj)["name"], scheduled),
            "namespace": _meta(cj).get("namespace"),
            "annotations": annotations,
            "ownerReferences": [owner_reference(cj)],
        }
        if tmeta.get("labels"):
            meta["labels"] = copy.deepcopy(tmeta["labels"])
        return {
            "apiVersion": JOB[0],
            "kind": JOB[1],
            "metadata": meta,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }

    async def _fresh(self, cj: dict[str, Any]) -> dict[str, Any] | None:
        m = _meta(cj)
        try:
            return await self.api.get(*CRONJOB, m["name"], namespace=m.get("namespace"))
        except NotFound:
            return None

    async def _delete_job(self, cj: dict[str, Any], name: str, namespace: str | None) -> None:
        try:
            await self.api.delete(*JOB, name, namespace, propagation_policy="Background")
        except NotFound:
            return
        except KcoreError as exc:
            await self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {exc}")
            raise
        await self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}")

    async def _cleanup_finished(
        self, cj: dict[str, Any], jobs: list[dict[str, Any]], status: dict[str, Any]
    ) -> None:
        """Delete the oldest finished Jobs beyond the history limits."""
        spec = cj.get("spec") or {}
        limits = {
            "Complete": spec.get("successfulJobsHistoryLimit"),
            "Failed": spec.get("failedJobsHistoryLimit"),
        }
        for kind, limit in limits.items():
            if limit is None:
                continue
            done = [j for j in jobs if _finished(j) == kind]
            extra = len(done) - int(limit)
            if extra <= 0:
                continue
            done.sort(key=_start_order)
            for job in done[:extra]:
                jm = _meta(job)
                await self._delete_job(cj, jm["name"], jm.get("namespace"))
                status["active"] = [r for r in status["active"] if r.get("uid") != jm.get("uid")]


def _start_order(job: dict[str, Any]) -> tuple[int, float, str]:
    """Oldest ``status.startTime`` first, Jobs without one last, then by name."""
    start = parse_time((job.get("status") or {}).get("startTime"))
    return (1 if start is None else 0, start or 0.0, _meta(job).get("name", ""))


def controllers(settings: Any) -> list[Reconciler]:
    return [CronJobController()]


__all__ = [
    "MACROS",
    "SCHEDULED_TIMESTAMP",
    "CronJobController",
    "Schedule",
    "ScheduleError",
    "controllers",
    "job_name",
    "load_zone",
    "most_recent_schedule_time",
    "next_schedule_delay",
]
