"""End to end: the daemon (API, controllers, scheduler, a node agent on runtime_sim) and
the real kubectl. Simulated containers exit after ``sim.kcore.io/run-seconds`` with
``sim.kcore.io/exit-code``, set as pod-template annotations."""

from __future__ import annotations

import json
import time

import pytest

from .helpers import ok

pytestmark = pytest.mark.slow


def job_manifest(name: str, *, run_seconds: str, exit_code: str = "0", **spec) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                **spec,
                "template": {
                    "metadata": {
                        "annotations": {
                            "sim.kcore.io/run-seconds": run_seconds,
                            "sim.kcore.io/exit-code": exit_code,
                        }
                    },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "work", "image": "busybox"}],
                    },
                },
            },
        }
    )


CRONJOB = """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "*/1 * * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    metadata:
      labels: {team: a}
    spec:
      template:
        metadata:
          annotations: {sim.kcore.io/run-seconds: "0.5"}
        spec:
          restartPolicy: Never
          containers:
          - name: work
            image: busybox
"""


@pytest.fixture(scope="module")
def daemon(sim_daemon):
    return sim_daemon


def get_json(daemon, *args: str) -> dict:
    return json.loads(ok(daemon.kubectl("get", *args, "-o", "json")))


def conditions(job: dict) -> dict[str, dict]:
    return {c["type"]: c for c in job.get("status", {}).get("conditions", [])}


def test_a_job_with_completions_and_parallelism_completes(daemon):
    manifest = job_manifest("pi", run_seconds="1", completions=5, parallelism=2)
    assert "job.batch/pi created" in ok(daemon.kubectl("apply", "-f", "-", input=manifest))
    ok(daemon.kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=60s", timeout=90))
    job = get_json(daemon, "job", "pi")
    assert job["status"]["succeeded"] == 5
    assert job["status"].get("failed", 0) == 0
    assert conditions(job)["Complete"]["reason"] == "CompletionsReached"
    assert job["status"]["completionTime"] >= job["status"]["startTime"]
    pods = get_json(daemon, "pods", "-l", "batch.kubernetes.io/job-name=pi")["items"]
    assert len(pods) == 5
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded"
        assert "batch.kubernetes.io/job-tracking" not in pod["metadata"].get("finalizers", [])
    events = ok(daemon.kubectl("get", "events", "--field-selector", "involvedObject.name=pi"))
    assert "SuccessfulCreate" in events and "Completed" in events
    # kubectl deletes in the background: the garbage collector takes the pods.
    ok(daemon.kubectl("delete", "job", "pi", timeout=90))
    deadline = time.monotonic() + 30
    while get_json(daemon, "pods", "-l", "batch.kubernetes.io/job-name=pi")["items"]:
        assert time.monotonic() < deadline, "the Job's pods were not deleted"
        time.sleep(0.2)


def test_a_failing_job_stops_at_the_backoff_limit(daemon):
    manifest = job_manifest("fail", run_seconds="0.5", exit_code="1", backoffLimit=1)
    ok(daemon.kubectl("apply", "-f", "-", input=manifest))
    # One failure, a 10 s back-off, a second failure: over the limit.
    ok(daemon.kubectl("wait", "--for=condition=failed", "job/fail", "--timeout=60s", timeout=90))
    job = get_json(daemon, "job", "fail")
    assert job["status"]["failed"] == 2
    assert conditions(job)["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conditions(job)["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert "completionTime" not in job["status"]
    events = ok(daemon.kubectl("get", "events", "--field-selector", "involvedObject.name=fail"))
    assert "BackoffLimitExceeded" in events


def test_a_job_created_from_a_cronjob_template_runs(daemon):
    assert "cronjob.batch/tick created" in ok(daemon.kubectl("apply", "-f", "-", input=CRONJOB))
    ok(daemon.kubectl("create", "job", "manual", "--from=cronjob/tick"))
    ok(
        daemon.kubectl(
            "wait", "--for=condition=complete", "job/manual", "--timeout=60s", timeout=90
        )
    )
    job = get_json(daemon, "job", "manual")
    cronjob = get_json(daemon, "cronjob", "tick")
    (ref,) = job["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("CronJob", "tick", cronjob["metadata"]["uid"])
    assert job["metadata"]["labels"]["team"] == "a"
    assert job["status"]["succeeded"] == 1


def test_an_invalid_schedule_or_time_zone_is_refused(daemon):
    bad = daemon.kubectl("create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *")
    assert bad.returncode != 0
    assert 'spec.schedule: Invalid value: "61 * * * *"' in bad.stderr, bad.stderr
    manifest = CRONJOB.replace(
        'schedule: "*/1 * * * *"', 'schedule: "@hourly"\n  timeZone: Mars/Base'
    )
    bad = daemon.kubectl("apply", "-f", "-", input=manifest.replace("name: tick", "name: mars"))
    assert bad.returncode != 0
    assert 'spec.timeZone: Invalid value: "Mars/Base": unknown time zone Mars/Base' in bad.stderr
