"""Server-side Tables look like the ones a Kubernetes 1.20 API server sends ``kubectl get``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kcore.apiserver.tables import (
    SUPPORTED_KINDS,
    column_definitions,
    human_duration,
    partial_object_metadata,
    to_table,
)
from kcore.errors import BadRequest

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, *, ago: timedelta = timedelta(minutes=5), **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "42",
        "creationTimestamp": ts(ago),
        **extra,
    }


def cells(kind: str, obj: dict[str, Any]) -> list[Any]:
    table = to_table(kind, [obj], resource_version="7", now=NOW)
    return table["rows"][0]["cells"]


def cell(kind: str, obj: dict[str, Any], column: str) -> Any:
    names = [c["name"] for c in column_definitions(kind)]
    return cells(kind, obj)[names.index(column)]


# ---------------------------------------------------------------------------
# HumanDuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=-3), "<invalid>"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1.5), "0s"),  # up to a second of clock skew is "now"
        (timedelta(seconds=-1), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=119, milliseconds=900), "119s"),
        (timedelta(seconds=120), "2m"),
        (timedelta(seconds=121), "2m1s"),
        (timedelta(minutes=3, seconds=20), "3m20s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=59), "10m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=1), "3h1m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8), "8h"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(days=2, hours=3), "2d3h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8), "8d"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 12 + 100), "12y"),
    ],
)
def test_human_duration_matches_kubernetes(delta: timedelta, text: str) -> None:
    assert human_duration(delta) == text


def test_missing_or_zero_timestamps_render_unknown() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    assert cell("Pod", pod, "Age") == "<unknown>"
    pod["metadata"]["creationTimestamp"] = "0001-01-01T00:00:00Z"
    assert cell("Pod", pod, "Age") == "<unknown>"
    pod["metadata"]["creationTimestamp"] = "not a time"
    assert cell("Pod", pod, "Age") == "<unknown>"


def test_ages_accept_fractional_and_offset_timestamps() -> None:
    obj = {"metadata": {"name": "x", "creationTimestamp": "2024-05-01T13:54:59.5+02:00"}}
    assert cell("ConfigMap", obj, "Age") == "5m"


def test_age_uses_the_clock_when_now_is_not_given() -> None:
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    table = to_table(
        "ConfigMap",
        [{"metadata": {"name": "x", "creationTimestamp": created}}],
        resource_version="1",
    )
    assert table["rows"][0]["cells"][2] in {"0s", "1s", "2s"}


def test_a_naive_now_is_taken_as_utc() -> None:
    obj = {"metadata": {"name": "x", "creationTimestamp": ts(timedelta(hours=2))}}
    table = to_table("ConfigMap", [obj], resource_version="1", now=NOW.replace(tzinfo=None))
    assert table["rows"][0]["cells"][2] == "120m"


# ---------------------------------------------------------------------------
# Table shape and row objects
# ---------------------------------------------------------------------------


def test_table_envelope() -> None:
    table = to_table("Pod", [], resource_version="104", now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "104"}
    assert table["rows"] == []
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name",
        "Ready",
        "Status",
        "Restarts",
        "Age",
    ]
    for column in table["columnDefinitions"]:
        assert set(column) == {"name", "type", "format", "description", "priority"}
        assert column["description"]


def test_rows_carry_full_metadata_by_default() -> None:
    m = meta(
        "web-1",
        namespace="shop",
        labels={"app": "web", "tier": "front"},
        annotations={"a": "b"},
        ownerReferences=[{"kind": "ReplicaSet", "name": "web", "uid": "u", "controller": True}],
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": {"containers": []}}
    row = to_table("Pod", [pod], resource_version="1", now=NOW)["rows"][0]
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": m,
    }
    # kubectl get -A reads the namespace, --show-labels the labels, from here.
    assert row["object"]["metadata"]["namespace"] == "shop"
    assert row["object"]["metadata"]["labels"] == {"app": "web", "tier": "front"}
    # The row holds a copy: changing it does not change the stored object.
    row["object"]["metadata"]["name"] = "changed"
    assert pod["metadata"]["name"] == "web-1"


@pytest.mark.parametrize("include", ["Metadata", ""])
def test_include_object_metadata(include: str) -> None:
    obj = {"metadata": meta("c", namespace="ns"), "data": {"k": "v"}}
    row = to_table("ConfigMap", [obj], resource_version="1", include_object=include)["rows"][0]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert "data" not in row["object"]


def test_include_object_full_object() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c"), "data": {"k": "v"}}
    row = to_table("ConfigMap", [obj], resource_version="1", include_object="Object")["rows"][0]
    assert row["object"] == obj


@pytest.mark.parametrize("include", ["None", None])
def test_include_object_none(include: str | None) -> None:
    obj = {"metadata": meta("c")}
    row = to_table("ConfigMap", [obj], resource_version="1", include_object=include)["rows"][0]
    assert row["object"] is None
    assert row["cells"][0] == "c"


def test_include_object_rejects_unknown_values() -> None:
    with pytest.raises(BadRequest, match="includeObject"):
        to_table("Pod", [], resource_version="1", include_object="Everything")


def test_partial_object_metadata_without_metadata() -> None:
    assert partial_object_metadata({}) == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
    }


def test_tables_are_json_serialisable_and_rows_are_in_order() -> None:
    pods = [{"metadata": meta(f"p{i}"), "spec": {"containers": [{"name": "c"}]}} for i in range(3)]
    table = to_table("Pod", pods, resource_version="9", now=NOW)
    assert [r["cells"][0] for r in table["rows"]] == ["p0", "p1", "p2"]
    assert json.loads(json.dumps(table)) == table


def test_column_definitions_are_fresh_copies() -> None:
    column_definitions("Pod")[0]["name"] = "Changed"
    assert column_definitions("Pod")[0]["name"] == "Name"


# ---------------------------------------------------------------------------
# Column definitions: names, types and priorities
# ---------------------------------------------------------------------------

S, INT, B = "string", "integer", "boolean"
EXPECTED_COLUMNS: dict[str, list[tuple[str, str, int]]] = {
    "Pod": [
        ("Name", S, 0),
        ("Ready", S, 0),
        ("Status", S, 0),
        ("Restarts", INT, 0),
        ("Age", S, 0),
        ("IP", S, 1),
        ("Node", S, 1),
        ("Nominated Node", S, 1),
        ("Readiness Gates", S, 1),
    ],
    "Deployment": [
        ("Name", S, 0),
        ("Ready", S, 0),
        ("Up-to-date", S, 0),
        ("Available", S, 0),
        ("Age", S, 0),
        ("Containers", S, 1),
        ("Images", S, 1),
        ("Selector", S, 1),
    ],
    "ReplicaSet": [
        ("Name", S, 0),
        ("Desired", INT, 0),
        ("Current", INT, 0),
        ("Ready", INT, 0),
        ("Age", S, 0),
        ("Containers", S, 1),
        ("Images", S, 1),
        ("Selector", S, 1),
    ],
    "EndpointSlice": [
        ("Name", S, 0),
        ("AddressType", S, 0),
        ("Ports", S, 0),
        ("Endpoints", S, 0),
        ("Age", S, 0),
    ],
    "CertificateSigningRequest": [
        ("Name", S, 0),
        ("Age", S, 0),
        ("SignerName", S, 0),
        ("Requestor", S, 0),
        ("RequestedDuration", S, 0),
        ("Condition", S, 0),
    ],
    "ControllerRevision": [
        ("Name", S, 0),
        ("Controller", S, 0),
        ("Revision", INT, 0),
        ("Age", S, 0),
    ],
    "DaemonSet": [
        ("Name", S, 0),
        ("Desired", INT, 0),
        ("Current", INT, 0),
        ("Ready", INT, 0),
        ("Up-to-date", INT, 0),
        ("Available", INT, 0),
        ("Node Selector", S, 0),
        ("Age", S, 0),
        ("Containers", S, 1),
        ("Images", S, 1),
        ("Selector", S, 1),
    ],
    "Job": [
        ("Name", S, 0),
        ("Completions", S, 0),
        ("Duration", S, 0),
        ("Age", S, 0),
        ("Containers", S, 1),
        ("Images", S, 1),
        ("Selector", S, 1),
    ],
    "CronJob": [
        ("Name", S, 0),
        ("Schedule", S, 0),
        ("Suspend", B, 0),
        ("Active", INT, 0),
        ("Last Schedule", S, 0),
        ("Age", S, 0),
        ("Containers", S, 1),
        ("Images", S, 1),
        ("Selector", S, 1),
    ],
    "Service": [
        ("Name", S, 0),
        ("Type", S, 0),
        ("Cluster-IP", S, 0),
        ("External-IP", S, 0),
        ("Port(s)", S, 0),
        ("Age", S, 0),
        ("Selector", S, 1),
    ],
    "Node": [
        ("Name", S, 0),
        ("Status", S, 0),
        ("Roles", S, 0),
        ("Age", S, 0),
        ("Version", S, 0),
        ("Internal-IP", S, 1),
        ("External-IP", S, 1),
        ("OS-Image", S, 1),
        ("Kernel-Version", S, 1),
        ("Container-Runtime", S, 1),
    ],
    "Namespace": [("Name", S, 0), ("Status", S, 0), ("Age", S, 0)],
    "Event": [
        ("Last Seen", S, 0),
        ("Type", S, 0),
        ("Reason", S, 0),
        ("Object", S, 0),
        ("Subobject", S, 1),
        ("Source", S, 1),
        ("Message", S, 0),
        ("First Seen", S, 1),
        ("Count", S, 1),
        ("Name", S, 1),
    ],
    "ConfigMap": [("Name", S, 0), ("Data", S, 0), ("Age", S, 0)],
    "Secret": [("Name", S, 0), ("Type", S, 0), ("Data", S, 0), ("Age", S, 0)],
    "Endpoints": [("Name", S, 0), ("Endpoints", S, 0), ("Age", S, 0)],
    "ServiceAccount": [("Name", S, 0), ("Secrets", S, 0), ("Age", S, 0)],
    "Lease": [("Name", S, 0), ("Holder", S, 0), ("Age", S, 0)],
}


def test_every_supported_kind_is_covered_here() -> None:
    assert set(EXPECTED_COLUMNS) == SUPPORTED_KINDS


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_column_names_types_and_priorities(kind: str) -> None:
    columns = column_definitions(kind)
    assert [(c["name"], c["type"], c["priority"]) for c in columns] == EXPECTED_COLUMNS[kind]
    # Only the Name column is formatted as an object name (kubectl uses it for -o name).
    assert [c["name"] for c in columns if c["format"] == "name"] == ["Name"]
    assert all(c["format"] in ("", "name") for c in columns)


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_every_row_has_one_cell_per_column_even_for_bare_objects(kind: str) -> None:
    row_cells = cells(kind, {"metadata": {"name": "bare"}})
    assert len(row_cells) == len(EXPECTED_COLUMNS[kind])


def test_other_kinds_get_the_default_table() -> None:
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("r")}
    table = to_table("Role", [obj], resource_version="3", now=NOW)
    assert [
        (c["name"], c["type"], c["format"], c["priority"]) for c in table["columnDefinitions"]
    ] == [
        ("Name", "string", "name", 0),
        ("Created At", "date", "", 0),
    ]
    assert table["rows"][0]["cells"] == ["r", "2024-05-01T11:55:00Z"]
    assert table["rows"][0]["object"]["metadata"]["name"] == "r"


def test_default_table_converts_created_at_to_utc() -> None:
    obj = {"metadata": {"name": "r", "creationTimestamp": "2024-05-01T14:00:00+02:00"}}
    assert cells("Widget", obj) == ["r", "2024-05-01T12:00:00Z"]
    assert cells("Widget", {"metadata": {"name": "r"}}) == ["r", "0001-01-01T00:00:00Z"]


# ---------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------


def running(ready: bool = True, restarts: int = 0, name: str = "c") -> dict[str, Any]:
    return {
        "name": name,
        "ready": ready,
        "restartCount": restarts,
        "state": {"running": {"startedAt": ts(timedelta(minutes=4))}},
    }


def waiting(reason: str, restarts: int = 0, name: str = "c") -> dict[str, Any]:
    return {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason}},
    }


def terminated(reason: str | None, exit_code: int = 0, signal: int = 0, name: str = "c"):
    state: dict[str, Any] = {"exitCode": exit_code}
    if reason:
        state["reason"] = reason
    if signal:
        state["signal"] = signal
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": state}}


def pod(
    phase: str = "Running",
    statuses: list[dict[str, Any]] | None = None,
    *,
    containers: int = 1,
    init: list[dict[str, Any]] | None = None,
    init_statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    m = meta("p", namespace="default")
    if deleting:
        m["deletionTimestamp"] = ts(timedelta(seconds=1))
    status: dict[str, Any] = {"phase": phase}
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if conditions is not None:
        status["conditions"] = conditions
    if reason:
        status["reason"] = reason
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)]
    }
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec, "status": status}


def pod_status(p: dict[str, Any]) -> tuple[str, str, int]:
    c = cells("Pod", p)
    return c[1], c[2], c[3]


READY_COND = [{"type": "Ready", "status": "True"}]
NOT_READY_COND = [{"type": "Ready", "status": "False"}]


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        pytest.param(pod("Pending"), ("0/1", "Pending", 0), id="pending-unscheduled"),
        pytest.param(
            pod("Pending", [waiting("ContainerCreating")]),
            ("0/1", "ContainerCreating", 0),
            id="container-creating",
        ),
        pytest.param(
            pod("Pending", [waiting("ImagePullBackOff")]),
            ("0/1", "ImagePullBackOff", 0),
            id="image-pull-backoff",
        ),
        pytest.param(pod("Running", [running()]), ("1/1", "Running", 0), id="running"),
        pytest.param(
            pod("Running", [running(ready=False)]), ("0/1", "Running", 0), id="running-not-ready"
        ),
        pytest.param(
            pod("Running", [running(name="a"), running(ready=False, name="b")], containers=2),
            ("1/2", "Running", 0),
            id="one-of-two-ready",
        ),
        pytest.param(
            pod("Running", [waiting("CrashLoopBackOff", restarts=3)]),
            ("0/1", "CrashLoopBackOff", 3),
            id="crash-loop",
        ),
        pytest.param(
            pod("Succeeded", [terminated("Completed")]), ("0/1", "Completed", 0), id="completed"
        ),
        pytest.param(
            pod("Failed", [terminated("Error", exit_code=1)]), ("0/1", "Error", 0), id="error"
        ),
        pytest.param(
            pod("Failed", [terminated(None, exit_code=2)]), ("0/1", "ExitCode:2", 0), id="exit-code"
        ),
        pytest.param(
            pod("Failed", [terminated(None, exit_code=137, signal=9)]),
            ("0/1", "Signal:9", 0),
            id="signal",
        ),
        pytest.param(
            pod("Failed", [], reason="Evicted"), ("0/1", "Evicted", 0), id="evicted-uses-reason"
        ),
        pytest.param(
            pod("Running", [running()], deleting=True), ("1/1", "Terminating", 0), id="terminating"
        ),
        pytest.param(
            pod("Succeeded", [terminated("Completed")], deleting=True),
            ("0/1", "Completed", 0),
            id="finished-pod-being-deleted",
        ),
        pytest.param(
            pod("Running", [running()], deleting=True, reason="NodeLost"),
            ("1/1", "Unknown", 0),
            id="node-lost",
        ),
        pytest.param(
            pod(
                "Running",
                [terminated("Completed", name="a"), running(name="b")],
                containers=2,
                conditions=READY_COND,
            ),
            ("1/2", "Running", 0),
            id="completed-container-but-another-running-ready",
        ),
        pytest.param(
            pod(
                "Running",
                [terminated("Completed", name="a"), running(name="b")],
                containers=2,
                conditions=NOT_READY_COND,
            ),
            ("1/2", "NotReady", 0),
            id="completed-container-but-another-running-not-ready",
        ),
        pytest.param(
            pod(
                "Pending",
                conditions=[
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                ],
            ),
            ("0/1", "SchedulingGated", 0),
            id="scheduling-gated",
        ),
    ],
)
def test_pod_status_column(p: dict[str, Any], expected: tuple[str, str, int]) -> None:
    assert pod_status(p) == expected


INIT_ONE = [{"name": "init", "image": "busybox"}]
INIT_TWO = [{"name": "i0", "image": "busybox"}, {"name": "i1", "image": "busybox"}]


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        pytest.param(
            pod(
                "Pending",
                [waiting("PodInitializing")],
                init=INIT_ONE,
                init_statuses=[running(ready=False, name="init")],
            ),
            ("0/1", "Init:0/1", 0),
            id="first-init-running",
        ),
        pytest.param(
            pod("Pending", init=INIT_ONE, init_statuses=[waiting("PodInitializing", name="init")]),
            ("0/1", "Init:0/1", 0),
            id="pod-initializing-is-not-a-reason",
        ),
        pytest.param(
            pod(
                "Pending",
                init=INIT_TWO,
                init_statuses=[terminated("Completed", name="i0"), running(ready=False, name="i1")],
            ),
            ("0/1", "Init:1/2", 0),
            id="second-init-running",
        ),
        pytest.param(
            pod(
                "Pending",
                init=INIT_ONE,
                init_statuses=[waiting("CrashLoopBackOff", restarts=4, name="init")],
            ),
            ("0/1", "Init:CrashLoopBackOff", 4),
            id="init-crash-loop-counts-init-restarts",
        ),
        pytest.param(
            pod(
                "Pending",
                init=INIT_ONE,
                init_statuses=[terminated("Error", exit_code=1, name="init")],
            ),
            ("0/1", "Init:Error", 0),
            id="init-error",
        ),
        pytest.param(
            pod(
                "Pending", init=INIT_ONE, init_statuses=[terminated(None, exit_code=3, name="init")]
            ),
            ("0/1", "Init:ExitCode:3", 0),
            id="init-exit-code",
        ),
        pytest.param(
            pod(
                "Pending",
                init=INIT_ONE,
                init_statuses=[terminated(None, exit_code=143, signal=15, name="init")],
            ),
            ("0/1", "Init:Signal:15", 0),
            id="init-signal",
        ),
        pytest.param(
            pod(
                "Running",
                [running(restarts=2)],
                init=INIT_ONE,
                init_statuses=[{**terminated("Completed", name="init"), "restartCount": 5}],
            ),
            ("1/1", "Running", 2),
            id="after-init-only-app-restarts-count",
        ),
    ],
)
def test_pod_status_with_init_containers(p: dict[str, Any], expected: tuple[str, str, int]) -> None:
    assert pod_status(p) == expected


def test_sidecar_containers_count_towards_ready() -> None:
    sidecar = {"name": "proxy", "image": "envoy", "restartPolicy": "Always"}
    p = pod(
        "Running",
        [running(restarts=1)],
        init=[sidecar],
        init_statuses=[{**running(name="proxy", restarts=2), "started": True}],
        conditions=[{"type": "Initialized", "status": "True"}, *READY_COND],
    )
    assert pod_status(p) == ("2/2", "Running", 3)


def test_restarts_are_summed_over_containers() -> None:
    p = pod("Running", [running(restarts=2, name="a"), running(restarts=3, name="b")], containers=2)
    assert pod_status(p) == ("2/2", "Running", 5)
    assert isinstance(cells("Pod", p)[3], int)


def test_pod_wide_columns_and_full_row() -> None:
    p = pod(
        "Running",
        [running()],
        conditions=[*READY_COND, {"type": "www.example.com/lb", "status": "True"}],
    )
    p["spec"]["nodeName"] = "node-1"
    p["spec"]["readinessGates"] = [
        {"conditionType": "www.example.com/lb"},
        {"conditionType": "www.example.com/other"},
    ]
    p["status"]["podIP"] = "10.1.0.5"
    p["status"]["podIPs"] = [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}]
    p["status"]["nominatedNodeName"] = "node-2"
    assert cells("Pod", p) == [
        "p",
        "1/1",
        "Running",
        0,
        "5m",
        "10.1.0.5",
        "node-1",
        "node-2",
        "1/2",
    ]


def test_pod_wide_columns_default_to_none() -> None:
    assert cells("Pod", pod("Pending"))[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_pod_ip_falls_back_to_pod_ip_field() -> None:
    p = pod("Running", [running()])
    p["status"]["podIP"] = "10.1.0.9"
    assert cell("Pod", p, "IP") == "10.1.0.9"


def test_finished_pods_carry_row_conditions() -> None:
    table = to_table(
        "Pod",
        [
            pod("Succeeded", [terminated("Completed")]),
            pod("Failed", [terminated("Error", 1)]),
            pod("Running", [running()]),
        ],
        resource_version="1",
        now=NOW,
    )
    done, failed, live = table["rows"]
    assert done["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert failed["conditions"][0]["reason"] == "Failed"
    assert "conditions" not in live


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {
        "containers": [
            {"name": "web", "image": "nginx:1.25"},
            {"name": "log", "image": "busybox:1.36"},
        ]
    },
}


def test_deployment_cells() -> None:
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", namespace="default", ago=timedelta(days=2, hours=3)),
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}],
            },
            "template": TEMPLATE,
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("Deployment", d) == [
        "web",
        "2/3",
        3,
        2,
        "2d3h",
        "web,log",
        "nginx:1.25,busybox:1.36",
        "app=web,env in (dev,prod)",
    ]


def test_new_deployment_without_status() -> None:
    d = {"metadata": meta("web"), "spec": {"replicas": 2, "template": TEMPLATE}}
    assert cells("Deployment", d)[:4] == ["web", "0/2", 0, 0]


def test_replicaset_cells() -> None:
    rs = {
        "metadata": meta("web-5d4f8", namespace="default"),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f8"}},
            "template": TEMPLATE,
        },
        "status": {"replicas": 3, "readyReplicas": 1},
    }
    assert cells("ReplicaSet", rs) == [
        "web-5d4f8",
        3,
        3,
        1,
        "5m",
        "web,log",
        "nginx:1.25,busybox:1.36",
        "app=web,pod-template-hash=5d4f8",
    ]


def test_replicaset_scaled_to_zero_and_empty_selector() -> None:
    rs = {"metadata": meta("old"), "spec": {"replicas": 0, "selector": {}}, "status": {}}
    assert cells("ReplicaSet", rs)[1:4] == [0, 0, 0]
    assert cell("ReplicaSet", rs, "Selector") == "<none>"


def test_daemonset_cells() -> None:
    ds = {
        "metadata": meta("agent", namespace="kube-system", ago=timedelta(hours=5, minutes=7)),
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "linux", "disk": "ssd"},
                    "containers": [{"name": "agent", "image": "agent:2"}],
                }
            },
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert cells("DaemonSet", ds) == [
        "agent",
        3,
        3,
        2,
        3,
        2,
        "disk=ssd,kubernetes.io/os=linux",
        "5h7m",
        "agent",
        "agent:2",
        "app=agent",
    ]


def test_daemonset_without_node_selector_shows_none() -> None:
    ds = {"metadata": meta("agent"), "spec": {"template": {"spec": {"containers": []}}}}
    assert cell("DaemonSet", ds, "Node Selector") == "<none>"


def job(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta("pi", namespace="default", ago=timedelta(minutes=20)),
        "spec": {
            "selector": {"matchLabels": {"controller-uid": "abc"}},
            "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5"}]}},
            **spec,
        },
        "status": status,
    }


def test_completed_job_cells() -> None:
    j = job(
        {"completions": 1, "parallelism": 1},
        {
            "succeeded": 1,
            "startTime": ts(timedelta(minutes=20)),
            "completionTime": ts(timedelta(minutes=19, seconds=25)),
        },
    )
    assert cells("Job", j) == ["pi", "1/1", "35s", "20m", "pi", "perl:5", "controller-uid=abc"]


def test_running_job_duration_counts_up_to_now() -> None:
    j = job({"completions": 5}, {"succeeded": 2, "startTime": ts(timedelta(minutes=3))})
    assert cells("Job", j)[1:3] == ["2/5", "3m"]


def test_job_not_started_has_empty_duration() -> None:
    assert cells("Job", job({"completions": 1}, {}))[1:3] == ["0/1", ""]


def test_job_without_completions_uses_parallelism() -> None:
    assert cell("Job", job({"parallelism": 3}, {"succeeded": 1}), "Completions") == "1/1 of 3"
    assert cell("Job", job({"parallelism": 1}, {}), "Completions") == "0/1"
    assert cell("Job", job({}, {}), "Completions") == "0/1"


def test_cronjob_cells() -> None:
    cj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta("nightly", namespace="default", ago=timedelta(days=10)),
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": False,
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "backup:1"}]}}}
            },
        },
        "status": {
            "active": [{"kind": "Job", "name": "nightly-1"}],
            "lastScheduleTime": ts(timedelta(hours=9)),
        },
    }
    assert cells("CronJob", cj) == [
        "nightly",
        "0 3 * * *",
        "False",
        1,
        "9h",
        "10d",
        "b",
        "backup:1",
        "<none>",
    ]


def test_cronjob_never_scheduled_and_suspended() -> None:
    cj = {"metadata": meta("c"), "spec": {"schedule": "@hourly", "suspend": True}, "status": {}}
    assert cells("CronJob", cj)[1:5] == ["@hourly", "True", 0, "<none>"]
    del cj["spec"]["suspend"]
    assert cell("CronJob", cj, "Suspend") == "<unset>"


# ---------------------------------------------------------------------------
# Services and endpoints
# ---------------------------------------------------------------------------


def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("web", namespace="default", ago=timedelta(hours=1)),
        "spec": spec,
        "status": status or {},
    }


def test_cluster_ip_service_cells() -> None:
    svc = service(
        {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web"},
        }
    )
    assert cells("Service", svc) == [
        "web",
        "ClusterIP",
        "10.96.0.10",
        "<none>",
        "80/TCP,53/UDP",
        "60m",
        "app=web",
    ]


def test_node_port_service_shows_node_ports() -> None:
    svc = service(
        {
            "type": "NodePort",
            "clusterIP": "10.96.3.3",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443}],
            "externalIPs": ["192.0.2.10"],
        }
    )
    row = cells("Service", svc)
    assert row[2:5] == ["10.96.3.3", "192.0.2.10", "80/TCP,443:30443/TCP"]
    assert row[6] == "<none>"  # no selector


def test_load_balancer_service_external_ip() -> None:
    spec = {"type": "LoadBalancer", "clusterIP": "10.96.1.1", "ports": [{"port": 80}]}
    assert cell("Service", service(spec), "External-IP") == "<pending>"
    status = {
        "loadBalancer": {
            "ingress": [
                {"ip": "203.0.113.9"},
                {"hostname": "a-very-long-load-balancer-hostname.example.com"},
                {"ip": "203.0.113.7"},
            ]
        }
    }
    # The server renders the wide form: nothing is clipped to 16 characters.
    assert cell("Service", service(spec, status), "External-IP") == (
        "203.0.113.7,203.0.113.9,a-very-long-load-balancer-hostname.example.com"
    )
    spec["externalIPs"] = ["192.0.2.1"]
    assert cell("Service", service(spec, status), "External-IP").endswith(",192.0.2.1")


def test_external_name_and_headless_services() -> None:
    ext = service({"type": "ExternalName", "externalName": "db.example.com"})
    assert cells("Service", ext)[1:5] == ["ExternalName", "<none>", "db.example.com", "<none>"]
    headless = service({"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 80}]})
    assert cells("Service", headless)[2:5] == ["None", "<none>", "80/TCP"]


def endpoints(subsets: list[dict[str, Any]] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("web")}
    if subsets is not None:
        obj["subsets"] = subsets
    return obj


def addrs(*ips: str) -> list[dict[str, str]]:
    return [{"ip": ip} for ip in ips]


def test_endpoints_cells() -> None:
    ep = endpoints([{"addresses": addrs("10.0.0.1", "10.0.0.2"), "ports": [{"port": 80}]}])
    assert cells("Endpoints", ep) == ["web", "10.0.0.1:80,10.0.0.2:80", "5m"]


def test_endpoints_truncate_after_three_with_a_count_of_the_rest() -> None:
    ep = endpoints(
        [
            {
                "addresses": addrs("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"),
                "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
            }
        ]
    )
    # Five addresses on two ports: ten endpoints, three shown.
    assert cell("Endpoints", ep, "Endpoints") == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 7 more..."


def test_endpoints_exactly_three_are_not_truncated() -> None:
    ep = endpoints(
        [{"addresses": addrs("10.0.0.1", "10.0.0.2", "10.0.0.3"), "ports": [{"port": 8}]}]
    )
    assert cell("Endpoints", ep, "Endpoints") == "10.0.0.1:8,10.0.0.2:8,10.0.0.3:8"


def test_endpoints_across_subsets_headless_and_ipv6() -> None:
    ep = endpoints(
        [
            {"addresses": addrs("10.0.0.1")},  # headless without ports: bare IPs
            {"addresses": addrs("fd00::1"), "ports": [{"port": 80}]},
            {"addresses": addrs("10.0.0.2", "10.0.0.3"), "ports": [{"port": 81}]},
        ]
    )
    assert cell("Endpoints", ep, "Endpoints") == "10.0.0.1,[fd00::1]:80,10.0.0.2:81 + 1 more..."


def test_endpoints_without_subsets_or_addresses() -> None:
    assert cell("Endpoints", endpoints(None), "Endpoints") == "<none>"
    assert cell("Endpoints", endpoints([]), "Endpoints") == "<none>"
    not_ready = [{"notReadyAddresses": addrs("10.0.0.1"), "ports": [{"port": 80}]}]
    assert cell("Endpoints", endpoints(not_ready), "Endpoints") == ""


# ---------------------------------------------------------------------------
# Nodes and namespaces
# ---------------------------------------------------------------------------


def node(
    ready: str | None = "True", *, unschedulable: bool = False, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [{"type": "MemoryPressure", "status": "False"}],
        "addresses": [
            {"type": "Hostname", "address": "node-1"},
            {"type": "InternalIP", "address": "192.168.1.10"},
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.20.2-kcore",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "kernelVersion": "6.1.0-18-amd64",
            "containerRuntimeVersion": "kcore://0.1.0",
        },
    }
    if ready is not None:
        status["conditions"].append({"type": "Ready", "status": ready})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": meta("node-1", ago=timedelta(days=3), labels=labels or {}),
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": status,
    }


def test_node_cells() -> None:
    labels = {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}
    assert cells("Node", node(labels=labels)) == [
        "node-1",
        "Ready",
        "control-plane",
        "3d",
        "v1.20.2-kcore",
        "192.168.1.10",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-18-amd64",
        "kcore://0.1.0",
    ]


@pytest.mark.parametrize(
    ("ready", "unschedulable", "status"),
    [
        ("True", False, "Ready"),
        ("False", False, "NotReady"),
        ("Unknown", False, "NotReady"),
        (None, False, "Unknown"),
        ("True", True, "Ready,SchedulingDisabled"),
        ("False", True, "NotReady,SchedulingDisabled"),
    ],
)
def test_node_status(ready: str | None, unschedulable: bool, status: str) -> None:
    assert cell("Node", node(ready, unschedulable=unschedulable), "Status") == status


@pytest.mark.parametrize(
    ("labels", "roles"),
    [
        ({}, "<none>"),
        ({"node-role.kubernetes.io/worker": ""}, "worker"),
        (
            {"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/master": ""},
            "master,worker",
        ),
        ({"kubernetes.io/role": "infra"}, "infra"),
        ({"kubernetes.io/role": ""}, "<none>"),
        ({"node-role.kubernetes.io/": "x"}, "<none>"),
        ({"node-role.kubernetes.io/etcd": "", "kubernetes.io/role": "etcd"}, "etcd"),
    ],
)
def test_node_roles(labels: dict[str, str], roles: str) -> None:
    assert cell("Node", node(labels=labels), "Roles") == roles


def test_node_without_node_info() -> None:
    bare = {"metadata": meta("n"), "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    assert cells("Node", bare)[4:] == [
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


def test_namespace_cells() -> None:
    ns = {"metadata": meta("shop", ago=timedelta(days=400)), "status": {"phase": "Active"}}
    assert cells("Namespace", ns) == ["shop", "Active", "400d"]
    ns["metadata"]["deletionTimestamp"] = ts(timedelta(seconds=3))
    ns["status"]["phase"] = "Terminating"
    assert cell("Namespace", ns, "Status") == "Terminating"


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def test_core_event_cells() -> None:
    ev = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": meta("web-1.17a", namespace="default"),
        "involvedObject": {
            "kind": "Pod",
            "name": "web-1",
            "namespace": "default",
            "fieldPath": "spec.containers{web}",
        },
        "reason": "Pulled",
        "message": 'Successfully pulled image "nginx"\n',
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ts(timedelta(minutes=4)),
        "lastTimestamp": ts(timedelta(seconds=30)),
        "count": 3,
        "type": "Normal",
    }
    assert cells("Event", ev) == [
        "30s",
        "Normal",
        "Pulled",
        "pod/web-1",
        "spec.containers{web}",
        "kubelet, node-1",
        'Successfully pulled image "nginx"',
        "4m",
        3,
        "web-1.17a",
    ]


def test_event_without_timestamps_falls_back_to_event_time_and_count_one() -> None:
    ev = {
        "metadata": meta("e"),
        "involvedObject": {"kind": "Node"},
        "eventTime": "2024-05-01T11:59:47.900000Z",
        "reportingController": "kcore-scheduler",
        "reason": "Scheduled",
        "type": "Normal",
    }
    row = cells("Event", ev)
    assert row[0] == "12s"  # last seen = first seen = eventTime
    assert row[3] == "node"  # no name: the kind alone
    assert row[5] == "kcore-scheduler"
    assert row[7:9] == ["12s", 1]


def test_event_series_gives_last_seen_and_count() -> None:
    ev = {
        "metadata": meta("e"),
        "involvedObject": {"kind": "Pod", "name": "p"},
        "eventTime": ts(timedelta(minutes=30)),
        "series": {"count": 7, "lastObservedTime": ts(timedelta(seconds=45))},
        "reportingController": "kubelet",
        "reportingInstance": "node-2",
    }
    row = cells("Event", ev)
    assert row[0] == "45s"
    assert row[5] == "kubelet, node-2"
    assert row[7:9] == ["30m", 7]


def test_events_k8s_io_event_is_printed_like_a_core_event() -> None:
    ev = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": meta("web.1", namespace="default"),
        "eventTime": ts(timedelta(minutes=2)),
        "reportingController": "deployment-controller",
        "reportingInstance": "kcore-cm",
        "action": "Scale",
        "reason": "ScalingReplicaSet",
        "regarding": {"kind": "Deployment", "name": "web"},
        "note": "Scaled up replica set web-5d4f8 to 3",
        "type": "Normal",
    }
    assert cells("Event", ev) == [
        "2m",
        "Normal",
        "ScalingReplicaSet",
        "deployment/web",
        "",
        "deployment-controller, kcore-cm",
        "Scaled up replica set web-5d4f8 to 3",
        "2m",
        1,
        "web.1",
    ]


# ---------------------------------------------------------------------------
# Configuration, identity and coordination
# ---------------------------------------------------------------------------


def test_configmap_counts_data_and_binary_data() -> None:
    cm = {
        "metadata": meta("cfg", namespace="default", ago=timedelta(seconds=42)),
        "data": {"a": "1", "b": "2"},
        "binaryData": {"c": "AAE="},
    }
    assert cells("ConfigMap", cm) == ["cfg", 3, "42s"]
    assert cell("ConfigMap", {"metadata": meta("empty")}, "Data") == 0


def test_secret_cells() -> None:
    secret = {
        "metadata": meta("tls", namespace="default", ago=timedelta(days=1)),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y3J0", "tls.key": "a2V5"},
    }
    assert cells("Secret", secret) == ["tls", "kubernetes.io/tls", 2, "24h"]
    opaque = {"metadata": meta("s"), "data": {"a": "eA=="}, "stringData": {"a": "y", "b": "z"}}
    assert cells("Secret", opaque)[1:3] == ["Opaque", 2]


def test_service_account_cells() -> None:
    sa = {"metadata": meta("default", namespace="default"), "secrets": [{"name": "default-token"}]}
    assert cells("ServiceAccount", sa) == ["default", 1, "5m"]
    assert cell("ServiceAccount", {"metadata": meta("bare")}, "Secrets") == 0


def test_lease_cells() -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta("node-1", namespace="kube-node-lease", ago=timedelta(hours=2)),
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40},
    }
    assert cells("Lease", lease) == ["node-1", "node-1", "120m"]
    assert cell("Lease", {"metadata": meta("free"), "spec": {}}, "Holder") == ""
