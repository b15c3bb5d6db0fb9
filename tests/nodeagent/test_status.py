"""The kubelet's status rules (phase, conditions, container statuses) and back-off."""

from __future__ import annotations

import pytest

from kcore.interfaces import CONTAINER_CREATED, CONTAINER_EXITED, CONTAINER_RUNNING
from kcore.nodeagent.backoff import Backoff
from kcore.nodeagent.status import ContainerView, container_status, pod_conditions, pod_phase

S = 1_000_000_000


def running(name="app"):
    return {"name": name, "state": {"running": {}}, "lastState": {}}


def exited(code, name="app"):
    return {"name": name, "state": {"terminated": {"exitCode": code}}, "lastState": {}}


def waiting(name="app", last=None):
    return {
        "name": name,
        "state": {"waiting": {"reason": "X"}},
        "lastState": {"terminated": {"exitCode": last}} if last is not None else {},
    }


def spec(policy="Always", containers=("app",), inits=()):
    return {
        "restartPolicy": policy,
        "containers": [{"name": n} for n in containers],
        "initContainers": [{"name": n} for n in inits],
    }


@pytest.mark.parametrize(
    ("policy", "statuses", "terminal", "phase"),
    [
        ("Always", [waiting()], False, "Pending"),
        ("Always", [running()], False, "Running"),
        ("Always", [exited(0)], False, "Running"),
        ("Never", [exited(0)], False, "Succeeded"),
        ("Never", [exited(2)], False, "Failed"),
        ("OnFailure", [exited(0)], False, "Succeeded"),
        ("OnFailure", [exited(1)], False, "Running"),
        ("OnFailure", [waiting(last=1)], False, "Running"),
        ("Always", [exited(0)], True, "Succeeded"),
        ("Always", [exited(137)], True, "Failed"),
        ("Always", [], False, "Pending"),
    ],
)
def test_phase_follows_the_kubelet(policy, statuses, terminal, phase):
    assert pod_phase(spec(policy), [], statuses, terminal=terminal) == phase


def test_phase_with_two_containers_one_running():
    s = spec("Never", containers=("a", "b"))
    assert pod_phase(s, [], [running("a"), exited(1, "b")]) == "Running"
    assert pod_phase(s, [], [exited(0, "a"), exited(1, "b")]) == "Failed"
    assert pod_phase(s, [], [exited(0, "a"), exited(0, "b")]) == "Succeeded"


def test_init_containers_keep_the_pod_pending_and_fail_it_under_never():
    s = spec("Never", inits=("init",))
    assert pod_phase(s, [running("init")], [waiting()]) == "Pending"
    assert pod_phase(s, [exited(1, "init")], [waiting()]) == "Failed"
    s = spec("OnFailure", inits=("init",))
    assert pod_phase(s, [waiting("init", last=1)], [waiting()]) == "Pending"


def test_conditions_and_their_transition_times():
    s = spec("Always", inits=("init",))
    first = pod_conditions(
        s, "Pending", [running("init")], [waiting()], sandbox_ready=True, previous=[], now=100
    )
    kinds = {c["type"]: c for c in first}
    assert [c["type"] for c in first] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert kinds["Initialized"]["status"] == "False"
    assert kinds["Initialized"]["message"] == "containers with incomplete status: [init]"
    assert kinds["ContainersReady"]["message"] == "containers with unready status: [app]"
    ready = dict(running(), ready=True)
    later = pod_conditions(
        s, "Running", [exited(0, "init")], [ready], sandbox_ready=True, previous=first, now=200
    )
    kinds2 = {c["type"]: c for c in later}
    assert kinds2["Ready"]["status"] == "True"
    assert kinds2["Ready"]["lastTransitionTime"] != kinds["Ready"]["lastTransitionTime"]
    assert (
        kinds2["PodReadyToStartContainers"]["lastTransitionTime"]
        == kinds["PodReadyToStartContainers"]["lastTransitionTime"]
    )


def test_completed_pods_are_not_ready_and_foreign_conditions_stay():
    previous = [{"type": "example.com/gate", "status": "True"}]
    out = pod_conditions(
        spec("Never"),
        "Succeeded",
        [],
        [exited(0)],
        sandbox_ready=False,
        previous=previous,
        now=1,
    )
    kinds = {c["type"]: c for c in out}
    assert kinds["ContainersReady"]["reason"] == "PodCompleted"
    assert kinds["Ready"]["status"] == "False"
    assert kinds["example.com/gate"]["status"] == "True"


def test_readiness_gates_hold_ready_back():
    s = dict(spec(), readinessGates=[{"conditionType": "example.com/lb"}])
    ready = dict(running(), ready=True)
    out = pod_conditions(s, "Running", [], [ready], sandbox_ready=True, previous=[], now=1)
    kinds = {c["type"]: c for c in out}
    assert kinds["ContainersReady"]["status"] == "True"
    assert kinds["Ready"]["reason"] == "ReadinessGatesNotReady"


def record(state, code=0, reason="", attempt=0):
    return {
        "id": f"c{attempt}",
        "state": state,
        "exit_code": code,
        "reason": reason,
        "started_at": 10 * S,
        "finished_at": 20 * S if state == CONTAINER_EXITED else 0,
        "image_ref": "sha256:abc",
        "metadata": {"attempt": attempt},
    }


def test_container_status_states():
    run = container_status(
        ContainerView("app", "img", current=record(CONTAINER_RUNNING), ready=True, started=True),
        default_waiting="ContainerCreating",
    )
    assert run["state"]["running"]["startedAt"] == "1970-01-01T00:00:10Z"
    assert run["ready"] is True and run["containerID"] == "kcore://c0"
    done = container_status(
        ContainerView("app", "img", current=record(CONTAINER_EXITED, 3, "Error")),
        default_waiting="ContainerCreating",
    )
    assert done["state"]["terminated"]["exitCode"] == 3
    assert done["state"]["terminated"]["reason"] == "Error"
    assert done["ready"] is False
    backing_off = container_status(
        ContainerView(
            "app",
            "img",
            current=record(CONTAINER_EXITED, 1, "Error", attempt=2),
            previous=record(CONTAINER_EXITED, 1, "Error", attempt=1),
            waiting=("CrashLoopBackOff", "back-off 20s restarting failed container"),
            restart_count=2,
        ),
        default_waiting="ContainerCreating",
    )
    assert backing_off["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert backing_off["lastState"]["terminated"]["containerID"] == "kcore://c2"
    assert backing_off["restartCount"] == 2
    none = container_status(ContainerView("app", "img"), default_waiting="PodInitializing")
    assert none["state"] == {"waiting": {"reason": "PodInitializing"}}
    created = container_status(
        ContainerView("app", "img", current=record(CONTAINER_CREATED)),
        default_waiting="ContainerCreating",
    )
    assert created["state"]["waiting"]["reason"] == "ContainerCreating"
    unknown = container_status(
        ContainerView("app", "img", current=record("CONTAINER_UNKNOWN")),
        default_waiting="ContainerCreating",
    )
    assert unknown["state"]["terminated"]["reason"] == "ContainerStatusUnknown"


def test_backoff_doubles_to_the_maximum_and_resets_after_quiet():
    b = Backoff(10, 300)
    assert b.remaining("k", since=0, now=0) == 0
    assert b.next("k", 0) == 10
    assert b.remaining("k", since=100, now=105) == 5
    delays = [b.next("k", t) for t in (20, 50, 100, 200, 400, 800)]
    assert delays == [20, 40, 80, 160, 300, 300]
    assert b.remaining("k", since=800, now=900) == 200
    assert b.next("k", 800 + 601) == 10  # more than twice the maximum without a failure
    b.forget("k")
    assert b.delay("k") == 0
