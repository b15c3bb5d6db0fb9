"""The Job controller against an in-process API with a controlled clock (no node agent:
pods end when a test patches their status)."""

from __future__ import annotations

from typing import Any

import pytest

from kcore.controllers import ControllerManager, controller_ref
from kcore.plugins.controllers import job as jobmod
from kcore.plugins.controllers.job import (
    COMPLETION_INDEX,
    TRACKING_FINALIZER,
    JobController,
    backoff_delay,
    format_indexes,
    match_pod_failure_policy,
    parse_indexes,
)

from .helpers import Clock, eventually

NS = "default"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def controller(cluster, clock):
    jc = JobController()
    manager = ControllerManager(cluster.api, [jc], clock=clock, leader_election=None)
    manager.start()
    await eventually(lambda: "job-controller" in manager.runners)
    jc.manager = manager
    try:
        yield jc
    finally:
        await manager.stop()


def job_manifest(name: str = "pi", **spec: Any) -> dict[str, Any]:
    template_spec = {
        "restartPolicy": spec.pop("restartPolicy", "Never"),
        "containers": [{"name": "c", "image": "busybox"}],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec},
            **spec,
        },
    }


async def get_job(api, name: str = "pi") -> dict[str, Any]:
    return await api.get("batch/v1", "Job", name, NS)


async def job_pods(api, name: str = "pi", *, active_only: bool = False) -> list[dict[str, Any]]:
    job = await get_job(api, name)
    pods, _ = await api.list("v1", "Pod", NS)
    out = [p for p in pods if (controller_ref(p) or {}).get("uid") == job["metadata"]["uid"]]
    if active_only:
        out = [
            p
            for p in out
            if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ]
    return sorted(out, key=lambda p: p["metadata"]["name"])


async def wait_active(api, count: int, name: str = "pi") -> list[dict[str, Any]]:
    async def check():
        pods = await job_pods(api, name, active_only=True)
        return (pods,) if len(pods) == count else None

    (pods,) = await eventually(check, timeout=10)
    return pods


async def finish_pod(api, pod: dict[str, Any], phase: str, exit_code: int | None = None) -> None:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [
            {
                "name": "c",
                "image": "busybox",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Error"}},
            }
        ]
    await api.patch(
        "v1", "Pod", pod["metadata"]["name"], {"status": status}, namespace=NS, subresource="status"
    )


def condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in job.get("status", {}).get("conditions", []):
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


async def wait_condition(api, type_: str, name: str = "pi") -> dict[str, Any]:
    async def check():
        job = await get_job(api, name)
        return job if condition(job, type_) else None

    return await eventually(check, timeout=10)


async def events(api, reason: str) -> list[str]:
    items, _ = await api.list("v1", "Event", NS)
    return sorted(e["message"] for e in items if e["reason"] == reason)


# -- pure helpers ----------------------------------------------------------------------------


def test_index_sets_and_back_off():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert parse_indexes("0-2,4,6-7") == {0, 1, 2, 4, 6, 7}
    assert parse_indexes("") == set()
    assert [backoff_delay(n) for n in (0, 1, 2, 3)] == [0, 10, 20, 40]
    assert backoff_delay(30) == jobmod.BACKOFF_MAX


def test_pod_failure_policy_matching():
    policy = {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42, 3]}},
        ]
    }
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 42}}}],
        },
    }
    assert match_pod_failure_policy(policy, pod) == (
        "FailJob",
        "Container c for pod ns/p failed with exit code 42 matching FailJob rule at index 1",
    )
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 3
    assert match_pod_failure_policy(policy, pod) == (None, None)
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 1
    assert match_pod_failure_policy(policy, pod)[0] == "Count"
    pod["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True"}]
    assert match_pod_failure_policy(policy, pod)[0] == "Ignore"


# -- the controller --------------------------------------------------------------------------


async def test_completions_with_parallelism_never_run_more_than_allowed(cluster, controller):
    api = cluster.api
    job = await api.create(job_manifest(completions=5, parallelism=2))
    uid = job["metadata"]["uid"]
    seen_active = []
    finished = 0
    while finished < 5:
        pods = await wait_active(api, min(2, 5 - finished))
        seen_active.append(len(await job_pods(api, active_only=True)))
        for pod in pods:
            meta = pod["metadata"]
            assert meta["name"].startswith("pi-") and len(meta["name"]) == len("pi-") + 5
            assert meta["labels"]["batch.kubernetes.io/controller-uid"] == uid
            assert meta["labels"]["batch.kubernetes.io/job-name"] == "pi"
            assert meta["labels"]["controller-uid"] == uid
            assert meta["labels"]["job-name"] == "pi"
            assert meta["finalizers"] == [TRACKING_FINALIZER]
            assert controller_ref(pod)["uid"] == uid
        await finish_pod(api, pods[0], "Succeeded")
        finished += 1
        # Each success is counted once and the pod loses the finalizer.
        await eventually(lambda n=finished: _status_is(api, succeeded=n), timeout=10)
    assert max(seen_active) <= 2
    job = await wait_condition(api, "Complete")
    assert condition(job, "SuccessCriteriaMet")["reason"] == "CompletionsReached"
    assert condition(job, "Complete")["reason"] == "CompletionsReached"
    status = job["status"]
    assert status["succeeded"] == 5 and status.get("failed", 0) == 0
    assert status.get("active", 0) == 0
    assert status["startTime"] and status["completionTime"]
    for pod in await job_pods(api):
        assert TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or [])
    assert len(await events(api, "SuccessfulCreate")) == 5
    assert await eventually(lambda: events(api, "Completed")) == ["Job completed"]
    # Converged: reconciling again writes nothing.
    stats = controller.manager.runners["job-controller"].stats
    writes, reconciles = stats.writes, stats.reconciles
    controller.enqueue(f"{NS}/pi")
    await eventually(lambda: stats.reconciles > reconciles)
    assert stats.writes == writes and stats.failures == 0


async def _status_is(api, name: str = "pi", **want: int) -> bool:
    status = (await get_job(api, name)).get("status") or {}
    return all((status.get(k) or 0) == v for k, v in want.items()) and not (
        status.get("uncountedTerminatedPods") or {}
    ).get("succeeded")


async def test_backoff_limit_fails_the_job_after_back_off(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(backoffLimit=1))
    (pod,) = await wait_active(api, 1)
    await finish_pod(api, pod, "Failed", exit_code=1)
    await eventually(lambda: _status_is(api, failed=1, active=0))
    # The replacement waits 10 s (on the controller's clock).
    controller.enqueue(f"{NS}/pi")
    await _quiet()
    assert await job_pods(api, active_only=True) == []
    clock.advance(backoff_delay(1) + 1)
    controller.enqueue(f"{NS}/pi")
    (pod,) = await wait_active(api, 1)
    await finish_pod(api, pod, "Failed", exit_code=1)
    job = await wait_condition(api, "Failed")
    assert condition(job, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert condition(job, "Failed")["message"] == "Job has reached the specified backoff limit"
    assert job["status"]["failed"] == 2
    assert "completionTime" not in job["status"]
    assert await eventually(lambda: events(api, "BackoffLimitExceeded")) == [
        "Job has reached the specified backoff limit"
    ]


async def _quiet(seconds: float = 0.2) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_active_deadline_deletes_pods_and_wins_over_the_backoff_limit(
    cluster, controller, clock
):
    api = cluster.api
    await api.create(
        job_manifest(parallelism=2, completions=4, backoffLimit=0, activeDeadlineSeconds=30)
    )
    pods = await wait_active(api, 2)
    clock.advance(31)
    # Both limits are passed when the controller looks next: the deadline wins.
    await finish_pod(api, pods[0], "Failed", exit_code=1)
    job = await wait_condition(api, "Failed")
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    assert condition(job, "Failed")["message"] == "Job was active longer than specified deadline"
    assert await job_pods(api, active_only=True) == []
    deleted = await eventually(lambda: events(api, "SuccessfulDelete"))
    assert deleted == [f"Deleted pod: {pods[1]['metadata']['name']}"]
    assert await eventually(lambda: events(api, "DeadlineExceeded"))


async def test_active_deadline_alone(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(activeDeadlineSeconds=60))
    await wait_active(api, 1)
    clock.advance(61)
    controller.enqueue(f"{NS}/pi")
    job = await wait_condition(api, "Failed")
    assert condition(job, "FailureTarget")["reason"] == "DeadlineExceeded"
    assert job["status"].get("active", 0) == 0


async def test_indexed_job(cluster, controller):
    api = cluster.api
    await api.create(job_manifest(completions=3, parallelism=3, completionMode="Indexed"))
    pods = await wait_active(api, 3)
    by_index = {}
    for pod in pods:
        meta = pod["metadata"]
        index = meta["annotations"][COMPLETION_INDEX]
        assert meta["labels"][COMPLETION_INDEX] == index
        assert meta["name"].startswith(f"pi-{index}-")
        assert pod["spec"]["hostname"] == f"pi-{index}"
        env = pod["spec"]["containers"][0]["env"]
        assert {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {
                "fieldRef": {
                    "apiVersion": "v1",
                    "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']",
                }
            },
        } in env
        by_index[int(index)] = pod
    assert sorted(by_index) == [0, 1, 2]
    await finish_pod(api, by_index[1], "Succeeded")

    async def indexes(want):
        job = await get_job(api)
        return job.get("status", {}).get("completedIndexes") == want

    await eventually(lambda: indexes("1"))
    await finish_pod(api, by_index[0], "Succeeded")
    await finish_pod(api, by_index[2], "Succeeded")
    job = await wait_condition(api, "Complete")
    assert job["status"]["completedIndexes"] == "0-2"
    assert job["status"]["succeeded"] == 3


async def test_indexed_job_replaces_a_failed_index(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(completions=2, parallelism=1, completionMode="Indexed"))
    (first,) = await wait_active(api, 1)
    assert first["metadata"]["annotations"][COMPLETION_INDEX] == "0"
    await finish_pod(api, first, "Failed", exit_code=2)
    await eventually(lambda: _status_is(api, failed=1))
    clock.advance(11)
    controller.enqueue(f"{NS}/pi")
    (again,) = await wait_active(api, 1)
    assert again["metadata"]["annotations"][COMPLETION_INDEX] == "0"


async def test_suspend_and_resume(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(parallelism=2, completions=2, suspend=True))
    job = await wait_condition(api, "Suspended")
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    assert "startTime" not in job["status"]
    assert await job_pods(api) == []

    clock.advance(100)
    await api.patch("batch/v1", "Job", "pi", {"spec": {"suspend": False}}, namespace=NS)
    await wait_active(api, 2)

    async def resumed():
        job = await get_job(api)
        conds = {c["type"]: c for c in job["status"].get("conditions", [])}
        return job if conds.get("Suspended", {}).get("status") == "False" else None

    job = await eventually(resumed)
    assert {c["type"]: c for c in job["status"]["conditions"]}["Suspended"][
        "reason"
    ] == "JobResumed"
    assert job["status"]["startTime"] == jobmod.rfc3339(clock())

    await api.patch("batch/v1", "Job", "pi", {"spec": {"suspend": True}}, namespace=NS)
    await wait_active(api, 0)
    await wait_condition(api, "Suspended")
    job = await get_job(api)
    assert job["status"].get("failed", 0) == 0  # pods the controller deleted are not failures
    assert await eventually(lambda: events(api, "Resumed")) == ["Job resumed"]


async def test_work_queue_mode_stops_starting_pods_after_a_success(cluster, controller):
    api = cluster.api
    await api.create(job_manifest(parallelism=3))  # completions unset: a work queue
    pods = await wait_active(api, 3)
    await finish_pod(api, pods[0], "Succeeded")
    await eventually(lambda: _status_is(api, succeeded=1, active=2))
    await wait_active(api, 2)  # no replacement
    await finish_pod(api, pods[1], "Succeeded")
    await finish_pod(api, pods[2], "Succeeded")
    job = await wait_condition(api, "Complete")
    assert job["status"]["succeeded"] == 3


async def test_ttl_after_finished_deletes_the_job_and_its_pods(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(ttlSecondsAfterFinished=100))
    (pod,) = await wait_active(api, 1)
    await finish_pod(api, pod, "Succeeded")
    await wait_condition(api, "Complete")
    controller.enqueue(f"{NS}/pi")
    await _quiet()
    assert await get_job(api)  # not yet
    clock.advance(101)
    controller.enqueue(f"{NS}/pi")

    async def gone():
        jobs, _ = await api.list("batch/v1", "Job", NS)
        pods, _ = await api.list("v1", "Pod", NS)
        return not jobs and not pods

    await eventually(gone)


async def test_pod_failure_policy_fail_job_and_ignore(cluster, controller):
    api = cluster.api
    policy = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
        ]
    }
    await api.create(job_manifest(backoffLimit=0, podFailurePolicy=policy))
    (pod,) = await wait_active(api, 1)
    await finish_pod(api, pod, "Failed", exit_code=3)  # ignored: replaced at once, not counted
    (again,) = await wait_active(api, 1)
    assert again["metadata"]["name"] != pod["metadata"]["name"]
    job = await get_job(api)
    assert job["status"].get("failed", 0) == 0 and not condition(job, "Failed")
    await finish_pod(api, again, "Failed", exit_code=42)
    job = await wait_condition(api, "Failed")
    assert condition(job, "Failed")["reason"] == "PodFailurePolicy"
    assert (
        "failed with exit code 42 matching FailJob rule at index 0"
        in (condition(job, "Failed")["message"])
    )


async def test_restarts_under_on_failure_count_towards_the_backoff_limit(cluster, controller):
    api = cluster.api
    await api.create(job_manifest(backoffLimit=2, restartPolicy="OnFailure"))
    (pod,) = await wait_active(api, 1)
    status = {
        "phase": "Running",
        "containerStatuses": [
            {"name": "c", "image": "busybox", "imageID": "", "ready": False, "restartCount": 2}
        ],
    }
    await api.patch(
        "v1", "Pod", pod["metadata"]["name"], {"status": status}, namespace=NS, subresource="status"
    )
    job = await wait_condition(api, "Failed")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"


async def test_a_pod_deleted_by_someone_else_counts_as_failed(cluster, controller, clock):
    api = cluster.api
    await api.create(job_manifest(backoffLimit=3))
    (pod,) = await wait_active(api, 1)
    await api.delete("v1", "Pod", pod["metadata"]["name"], NS)
    await eventually(lambda: _status_is(api, failed=1))

    async def gone():
        pods, _ = await api.list("v1", "Pod", NS)
        return pod["metadata"]["uid"] not in {p["metadata"]["uid"] for p in pods}

    await eventually(gone)  # the finalizer was released


async def test_a_deleted_jobs_pods_lose_the_finalizer(cluster, controller):
    api = cluster.api
    await api.create(job_manifest())
    (pod,) = await wait_active(api, 1)
    await api.delete("batch/v1", "Job", "pi", NS, propagation_policy="Background")
    # No garbage collector here: delete the pod as it would; the finalizer must not hold it.
    await api.delete("v1", "Pod", pod["metadata"]["name"], NS)

    async def gone():
        pods, _ = await api.list("v1", "Pod", NS)
        return not pods

    await eventually(gone)


async def test_uncounted_pods_are_counted_exactly_once_after_a_restart(cluster, clock):
    """A controller that stopped between recording pods as uncounted and counting them:
    the next one finishes the job without counting any pod twice or losing one."""
    api = cluster.api
    job = await api.create(job_manifest(completions=2, parallelism=2))
    labels = job["spec"]["template"]["metadata"]["labels"]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "pi",
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    uids = []
    for name, finalizers in (("pi-a", [TRACKING_FINALIZER]), ("pi-b", [])):
        pod = await api.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": labels,
                    "ownerReferences": [owner],
                    "finalizers": finalizers,
                },
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }
        )
        await finish_pod(api, pod, "Succeeded")
        uids.append(pod["metadata"]["uid"])
    job = await get_job(api)
    job["status"] = {"startTime": jobmod.rfc3339(clock()),
                     "uncountedTerminatedPods": {"succeeded": uids}}  # fmt: skip
    await api.update_status(job)

    jc = JobController()
    manager = ControllerManager(cluster.api, [jc], clock=clock, leader_election=None)
    manager.start()
    try:
        job = await wait_condition(api, "Complete")
    finally:
        await manager.stop()
    assert job["status"]["succeeded"] == 2
    assert not job["status"].get("uncountedTerminatedPods")
    assert await events(api, "SuccessfulCreate") == []
    pod = await api.get("v1", "Pod", "pi-a", NS)
    assert TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or [])
