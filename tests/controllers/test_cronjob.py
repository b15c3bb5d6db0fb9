"""The CronJob controller against an in-process API with a controlled clock (no Job
controller: Jobs finish when a test patches their status)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kcore.controllers import ControllerManager, controller_ref, parse_time
from kcore.errors import Invalid
from kcore.plugins.controllers.cronjob import (
    SCHEDULED_TIMESTAMP,
    CronJobController,
    Schedule,
    ScheduleError,
    job_name,
    most_recent_schedule_time,
    next_schedule_delay,
    rfc3339,
)

from .helpers import Clock, eventually

NS = "default"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def controller(cluster, clock):
    cc = CronJobController()
    manager = ControllerManager(cluster.api, [cc], clock=clock, leader_election=None)
    manager.start()
    await eventually(lambda: "cronjob-controller" in manager.runners)
    cc.manager = manager
    try:
        yield cc
    finally:
        await manager.stop()


def cronjob(name: str = "tick", schedule: str = "* * * * *", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "hi"}},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                },
            },
            **spec,
        },
    }


async def jobs_of(api, name: str = "tick") -> list[dict[str, Any]]:
    cj = await api.get("batch/v1", "CronJob", name, NS)
    jobs, _ = await api.list("batch/v1", "Job", NS)
    return sorted(
        (j for j in jobs if (controller_ref(j) or {}).get("uid") == cj["metadata"]["uid"]),
        key=lambda j: j["metadata"]["name"],
    )


async def tick(controller, clock, at: float, name: str = "tick") -> None:
    """Move the clock to ``at`` and let the controller look (as its requeue would)."""
    clock.set(at)
    controller.enqueue(f"{NS}/{name}")
    await asyncio.sleep(0.1)


async def wait_jobs(api, count: int, name: str = "tick") -> list[dict[str, Any]]:
    async def check():
        jobs = await jobs_of(api, name)
        return (jobs,) if len(jobs) == count else None

    (jobs,) = await eventually(check, timeout=10)
    return jobs


async def wait_status(api, name: str = "tick", **want: Any) -> dict[str, Any]:
    async def check():
        cj = await api.get("batch/v1", "CronJob", name, NS)
        status = cj.get("status") or {}
        for k, v in want.items():
            if k == "active":
                if sorted(r["name"] for r in status.get("active") or []) != sorted(v):
                    return None
            elif status.get(k) != v:
                return None
        return cj

    return await eventually(check, timeout=10)


async def finish_job(api, job: dict[str, Any], type_: str, at: float) -> None:
    status: dict[str, Any] = {
        "startTime": rfc3339(at - 30),
        "conditions": [{"type": type_, "status": "True"}],
    }
    if type_ == "Complete":
        status["completionTime"] = rfc3339(at)
        status["succeeded"] = 1
    else:
        status["failed"] = 1
    await api.patch(
        "batch/v1",
        "Job",
        job["metadata"]["name"],
        {"status": status},
        namespace=NS,
        subresource="status",
    )


async def events(api, reason: str) -> list[str]:
    items, _ = await api.list("v1", "Event", NS)
    return [e["message"] for e in items if e["reason"] == reason]


async def first_run(api, name: str = "tick") -> float:
    """The first scheduled time after the CronJob's creation (a whole minute here)."""
    cj = await api.get("batch/v1", "CronJob", name, NS)
    created = parse_time(cj["metadata"]["creationTimestamp"])
    return Schedule(cj["spec"]["schedule"], UTC).next(created)


# -- schedules -------------------------------------------------------------------------------


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_schedules_macros_question_marks_and_every():
    t = at("2024-01-01T00:00:00+00:00")
    assert Schedule("*/5 * * * *", UTC).next(t) == t + 300
    assert Schedule("*/5 * * * *", UTC).next(t + 299.5) == t + 300
    assert Schedule("@hourly", UTC).next(t) == t + 3600
    assert Schedule("@daily", UTC).next(t) == t + 86400
    assert Schedule("@weekly", UTC).next(t) == at("2024-01-07T00:00:00+00:00")  # a Sunday
    assert Schedule("@monthly", UTC).next(t) == at("2024-02-01T00:00:00+00:00")
    assert Schedule("@yearly", UTC).next(t) == Schedule("@annually", UTC).next(t)
    assert Schedule("0 0 ? * *", UTC).next(t) == t + 86400
    assert Schedule("? * * * *", UTC).next(t) == t + 60
    assert Schedule("@every 1h30m", UTC).next(t + 0.7) == t + 5400
    assert Schedule("0 9 * * MON-fri", UTC).next(t) == at("2024-01-01T09:00:00+00:00")
    for bad in ("* * * *", "@sometimes", "TZ=UTC * * * * *", "@every 5x"):
        with pytest.raises(ScheduleError):
            Schedule(bad, UTC)


def test_time_zones_and_daylight_saving():
    berlin = ZoneInfo("Europe/Berlin")
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    assert Schedule("0 9 * * *", berlin).next(at("2024-01-10T12:00:00+00:00")) == at(
        "2024-01-11T08:00:00+00:00"
    )
    assert Schedule("0 9 * * *", berlin).next(at("2024-07-10T12:00:00+00:00")) == at(
        "2024-07-11T07:00:00+00:00"
    )
    assert rfc3339(at("2024-07-11T07:00:00+00:00"), berlin) == "2024-07-11T09:00:00+02:00"
    assert rfc3339(at("2024-07-11T07:00:00+00:00")) == "2024-07-11T07:00:00Z"


def test_most_recent_schedule_time_counts_missed_runs():
    created = at("2024-01-01T00:00:30+00:00")
    cj = {"metadata": {"creationTimestamp": rfc3339(created)}, "spec": {}, "status": {}}
    every_minute = Schedule("* * * * *", UTC)
    assert most_recent_schedule_time(cj, created + 10, every_minute, True) == (created, None, 0)
    t1 = at("2024-01-01T00:01:00+00:00")
    assert most_recent_schedule_time(cj, t1 + 5, every_minute, True) == (created, t1, 0)
    _, recent, missed = most_recent_schedule_time(cj, t1 + 3600 * 3 + 5, every_minute, True)
    assert recent == t1 + 3600 * 3 and missed == 181
    cj["spec"]["startingDeadlineSeconds"] = 200
    _, recent, missed = most_recent_schedule_time(cj, t1 + 3600 * 3 + 5, every_minute, True)
    assert recent == t1 + 3600 * 3 and missed == 4
    assert next_schedule_delay(cj, t1 + 5, every_minute) == pytest.approx(55.1)
    assert job_name("tick", t1) == f"tick-{int(t1) // 60}"


# -- the controller --------------------------------------------------------------------------


async def test_a_job_is_created_at_the_scheduled_time(cluster, controller, clock):
    api = cluster.api
    cj = await api.create(cronjob(schedule="*/5 * * * *"))
    run = await first_run(api)
    await tick(controller, clock, run - 1)
    assert await jobs_of(api) == []
    await tick(controller, clock, run + 1)
    (job,) = await wait_jobs(api, 1)
    meta = job["metadata"]
    assert meta["name"] == f"tick-{int(run) // 60}"
    assert meta["labels"]["team"] == "a"
    assert meta["annotations"]["note"] == "hi"
    assert meta["annotations"][SCHEDULED_TIMESTAMP] == rfc3339(run)
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "tick",
            "uid": cj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    cj = await wait_status(api, active=[meta["name"]], lastScheduleTime=rfc3339(run))
    (ref,) = cj["status"]["active"]
    assert ref["kind"] == "Job" and ref["uid"] == meta["uid"] and ref["namespace"] == NS
    assert await events(api, "SuccessfulCreate") == [f"Created job {meta['name']}"]
    # Nothing more until the next time; the Job completing sets lastSuccessfulTime.
    await tick(controller, clock, run + 299)
    assert len(await jobs_of(api)) == 1
    await finish_job(api, job, "Complete", run + 60)
    await wait_status(api, active=[], lastSuccessfulTime=rfc3339(run + 60))
    await tick(controller, clock, run + 301)
    await wait_jobs(api, 2)


async def test_time_zone(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(schedule="30 9 * * *", timeZone="Asia/Tokyo"))
    run = await first_run(api)  # computed in UTC: moved below
    tokyo = ZoneInfo("Asia/Tokyo")
    cj = await api.get("batch/v1", "CronJob", "tick", NS)
    run = Schedule("30 9 * * *", tokyo).next(parse_time(cj["metadata"]["creationTimestamp"]))
    assert datetime.fromtimestamp(run, tokyo).strftime("%H:%M") == "09:30"
    await tick(controller, clock, run + 1)
    (job,) = await wait_jobs(api, 1)
    assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP].endswith("T09:30:00+09:00")


async def test_forbid_skips_while_a_job_runs(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(concurrencyPolicy="Forbid"))
    run = await first_run(api)
    await tick(controller, clock, run + 1)
    (first,) = await wait_jobs(api, 1)
    await wait_status(api, active=[first["metadata"]["name"]])
    await tick(controller, clock, run + 61)
    assert len(await jobs_of(api)) == 1
    assert await eventually(lambda: events(api, "JobAlreadyActive"))
    # Once it finishes, the missed run (still the latest) starts.
    await finish_job(api, first, "Complete", run + 62)
    jobs = await wait_jobs(api, 2)
    assert jobs[1]["metadata"]["name"] == f"tick-{int(run + 60) // 60}"


async def test_replace_deletes_the_running_job(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(concurrencyPolicy="Replace"))
    run = await first_run(api)
    await tick(controller, clock, run + 1)
    (first,) = await wait_jobs(api, 1)
    await wait_status(api, active=[first["metadata"]["name"]])
    await tick(controller, clock, run + 61)

    async def replaced():
        jobs = await jobs_of(api)
        names = [j["metadata"]["name"] for j in jobs]
        return names == [f"tick-{int(run + 60) // 60}"]

    await eventually(replaced)
    await wait_status(api, active=[f"tick-{int(run + 60) // 60}"])
    assert await events(api, "SuccessfulDelete") == [f"Deleted job {first['metadata']['name']}"]


async def test_allow_runs_jobs_side_by_side(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob())
    run = await first_run(api)
    await tick(controller, clock, run + 1)
    await wait_jobs(api, 1)
    await wait_status(api, lastScheduleTime=rfc3339(run))
    await tick(controller, clock, run + 61)
    jobs = await wait_jobs(api, 2)
    await wait_status(api, active=[j["metadata"]["name"] for j in jobs])


async def test_after_an_outage_only_the_latest_missed_run_starts(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob())
    run = await first_run(api)
    await tick(controller, clock, run + 1)
    await wait_jobs(api, 1)
    await wait_status(api, lastScheduleTime=rfc3339(run))
    # Ten minutes down: one Job, for the latest minute.
    await tick(controller, clock, run + 600 + 5)
    jobs = await wait_jobs(api, 2)
    assert jobs[1]["metadata"]["name"] == f"tick-{int(run + 600) // 60}"
    await wait_status(api, lastScheduleTime=rfc3339(run + 600))
    assert await events(api, "TooManyMissedTimes") == []
    # More than 100 missed: a warning, and still the latest runs.
    await tick(controller, clock, run + 600 + 200 * 60 + 5)
    jobs = await wait_jobs(api, 3)
    assert jobs[2]["metadata"]["name"] == f"tick-{int(run + 600 + 200 * 60) // 60}"
    warnings = await eventually(lambda: events(api, "TooManyMissedTimes"))
    assert warnings == [
        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
        "check clock skew"
    ]


async def test_starting_deadline_skips_late_runs(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(schedule="*/10 * * * *", startingDeadlineSeconds=30))
    run = await first_run(api)
    await tick(controller, clock, run + 45)  # too late for this run
    assert await jobs_of(api) == []
    await tick(controller, clock, run + 600 + 20)  # in time for the next
    (job,) = await wait_jobs(api, 1)
    assert job["metadata"]["name"] == f"tick-{int(run + 600) // 60}"


async def test_suspend_stops_new_runs(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(suspend=True))
    run = await first_run(api)
    await tick(controller, clock, run + 1)
    assert await jobs_of(api) == []
    await api.patch("batch/v1", "CronJob", "tick", {"spec": {"suspend": False}}, namespace=NS)
    (job,) = await wait_jobs(api, 1)
    assert job["metadata"]["name"] == f"tick-{int(run) // 60}"


async def test_history_limits_delete_the_oldest_finished_jobs(cluster, controller, clock):
    api = cluster.api
    await api.create(cronjob(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1))
    run = await first_run(api)
    for i in range(5):
        await tick(controller, clock, run + 60 * i + 1)
        await wait_jobs(api, i + 1)
        await wait_status(api, lastScheduleTime=rfc3339(run + 60 * i))
    jobs = await jobs_of(api)
    for i, job in enumerate(jobs):
        await finish_job(api, job, "Complete" if i < 3 else "Failed", run + 60 * i + 30)
    names = [j["metadata"]["name"] for j in jobs]

    async def trimmed():
        left = [j["metadata"]["name"] for j in await jobs_of(api)]
        return left if left == [names[1], names[2], names[4]] else None

    await eventually(trimmed)
    cj = await wait_status(api, active=[])
    assert cj["status"]["lastSuccessfulTime"] == rfc3339(run + 60 * 2 + 30)
    assert sorted(await events(api, "SuccessfulDelete")) == sorted(
        [f"Deleted job {names[0]}", f"Deleted job {names[3]}"]
    )


async def test_a_manual_job_is_reported_not_adopted(cluster, controller, clock):
    api = cluster.api
    cj = await api.create(cronjob(schedule="0 0 1 1 *"))
    manual = CronJobController().job_from_template(cj, clock())
    manual["metadata"]["name"] = "tick-manual"
    await api.create(manual)
    assert await eventually(lambda: events(api, "UnexpectedJob")) == [
        "Saw a job that the controller did not create or forgot: tick-manual"
    ]
    cj = await api.get("batch/v1", "CronJob", "tick", NS)
    assert not (cj.get("status") or {}).get("active")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"schedule": "61 * * * *"}, "spec.schedule", "end of range (61) above maximum (59): 61"),
        ({"schedule": "* * * *"}, "spec.schedule", "expected exactly 5 fields, found 4: * * * *"),
        ({"schedule": "*/0 * * * *"}, "spec.schedule", "step of range should be a positive"),
        ({"schedule": "CRON_TZ=UTC 0 * * * *"}, "spec.schedule", "cannot use TZ or CRON_TZ"),
        ({"timeZone": "Mars/Olympus_Mons"}, "spec.timeZone", "unknown time zone Mars/Olympus_Mons"),
        ({"timeZone": "Local"}, "spec.timeZone", "must be an explicit time zone"),
    ],
)
async def test_invalid_schedules_and_time_zones_are_refused(cluster, change, field, message):
    with pytest.raises(Invalid) as err:
        await cluster.api.create(cronjob(**change))
    assert err.value.code == 422
    assert [c.field for c in err.value.causes] == [field]
    assert message in err.value.causes[0].message
