"""Server-side Table output, for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

``kubectl get`` asks the API server for a ``meta.k8s.io/v1`` Table and prints its cells as
they come; it only hides the columns whose ``priority`` is above 0 unless ``-o wide`` is
given. Like the real server, :func:`to_table` therefore always fills every cell, wide ones
included, and puts each object's metadata in its row (as a ``PartialObjectMetadata`` by
default) so that ``get -A`` can show the NAMESPACE column and ``--show-labels`` the labels.

The columns follow the Kubernetes 1.20 API server, the version kcore reports from
``/version``: the pod RESTARTS column is an ``integer`` cell (newer servers send a string
such as ``"3 (5s ago)"``), Jobs show COMPLETIONS, DURATION and AGE (no STATUS) and CronJobs
have no TIMEZONE column. The pod STATUS computation includes what later releases added
without changing the columns: sidecar (restartable init) containers count towards READY,
``SchedulingGated`` is shown, and a pod that has already succeeded or failed is not shown
as ``Terminating`` while it is being deleted.

A kind with no printer of its own gets the server's default table: NAME and CREATED AT,
the latter an RFC 3339 timestamp in a ``date`` column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kcore.errors import BadRequest
from kcore.selectors import from_label_selector_object

__all__ = [
    "INCLUDE_METADATA",
    "INCLUDE_NONE",
    "INCLUDE_OBJECT",
    "SUPPORTED_KINDS",
    "column_definitions",
    "human_duration",
    "partial_object_metadata",
    "to_table",
]

INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"
INCLUDE_OBJECT = "Object"
_INCLUDE_VALUES = (INCLUDE_METADATA, INCLUDE_NONE, INCLUDE_OBJECT)

TABLE_API_VERSION = "meta.k8s.io/v1"

_NONE = "<none>"
_UNKNOWN = "<unknown>"
_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_NODE_ROLE_LABEL = "kubernetes.io/role"
_NODE_UNREACHABLE_POD_REASON = "NodeLost"
_ENDPOINTS_SHOWN = 3

Obj = Mapping[str, Any]
Cells = list[Any]


# ---------------------------------------------------------------------------
# Durations and timestamps
# ---------------------------------------------------------------------------


def human_duration(d: timedelta) -> str:
    """``d`` the way Kubernetes' ``duration.HumanDuration`` writes it (two or three
    significant figures): ``"59s"``, ``"119s"``, ``"2m"``, ``"9m59s"``, ``"10m"``,
    ``"179m"``, ``"3h"``, ``"7h59m"``, ``"8h"``, ``"47h"``, ``"2d"``, ``"7d23h"``, ``"8d"``,
    ``"729d"``, ``"2y"``, ``"7y364d"``, ``"8y"``.

    Up to a second in the future counts as ``"0s"`` (clock skew); further is
    ``"<invalid>"``.
    """
    seconds = int(d.total_seconds())  # truncates towards zero, as Go's int() does
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    total_us = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    minutes = total_us // 60_000_000
    if minutes < 10:
        s = (total_us // 1_000_000) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = total_us // 3_600_000_000
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime | None:
    """A ``Time``/``MicroTime`` value as an aware UTC datetime; ``None`` when it is
    missing, unreadable, or Go's zero time (which Kubernetes treats as unset)."""
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str) and value:
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    if t.year <= 1:
        return None
    return t


def _since(value: Any, now: datetime) -> str:
    t = _parse_time(value)
    if t is None:
        return _UNKNOWN
    return human_duration(now - t)


def _created_at(obj: Obj) -> str:
    """``creationTimestamp`` in UTC as RFC 3339 (Go's zero time when unset)."""
    t = _parse_time(_meta(obj).get("creationTimestamp"))
    if t is None:
        return "0001-01-01T00:00:00Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------
# Small accessors and formatters
# ---------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _meta(obj: Obj) -> Mapping[str, Any]:
    return _map(obj.get("metadata"))


def _spec(obj: Obj) -> Mapping[str, Any]:
    return _map(obj.get("spec"))


def _status(obj: Obj) -> Mapping[str, Any]:
    return _map(obj.get("status"))


def _name(obj: Obj) -> str:
    return _meta(obj).get("name") or ""


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    return default


def _age(obj: Obj, now: datetime) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: ``k=v`` pairs sorted by key, or ``<none>``."""
    pairs = ",".join(f"{k}={v}" for k, v in sorted(_map(labels).items()))
    return pairs or _NONE


def _selector_string(selector: Any) -> str:
    """A ``LabelSelector`` object as selector text (``""`` when it selects everything or
    nothing); raises ``BadRequest`` when it is malformed."""
    if selector is not None and not isinstance(selector, Mapping):
        raise BadRequest("label selector must be an object")
    return str(from_label_selector_object(selector))


def _format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: the selector text, ``<none>`` when empty."""
    try:
        text = _selector_string(selector)
    except BadRequest:
        return "<error>"
    return text or _NONE


def _containers_and_images(pod_spec: Any) -> tuple[str, str]:
    containers = [_map(c) for c in _list(_map(pod_spec).get("containers"))]
    names = ",".join(c.get("name") or "" for c in containers)
    images = ",".join(c.get("image") or "" for c in containers)
    return names, images


def _template_spec(obj: Obj) -> Mapping[str, Any]:
    return _map(_map(_spec(obj).get("template")).get("spec"))


def _bool_ptr(value: Any) -> str:
    if value is None:
        return "<unset>"
    return "True" if value else "False"


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _condition_true(conditions: Any, type_: str) -> bool:
    for c in _list(conditions):
        c = _map(c)
        if c.get("type") == type_:
            return c.get("status") == "True"
    return False


def _col(
    name: str, type_: str, description: str, *, priority: int = 0, fmt: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "type": type_,
        "format": fmt,
        "description": description,
        "priority": priority,
    }


_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of a name automatically."
)
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)
_NAME = _col("Name", "string", _NAME_DOC, fmt="name")
_AGE = _col("Age", "string", _AGE_DOC)
_CONTAINERS = _col("Containers", "string", "Names of each container in the template.", priority=1)
_IMAGES = _col(
    "Images", "string", "Images referenced by each container in the template.", priority=1
)


def _selector_col(description: str) -> dict[str, Any]:
    return _col("Selector", "string", description, priority=1)


# ---------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------

_POD_SUCCEEDED_CONDITIONS = [
    {
        "type": "Completed",
        "status": "True",
        "reason": "Succeeded",
        "message": "The pod has completed successfully.",
    }
]
_POD_FAILED_CONDITIONS = [
    {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
]


def _restartable(container: Any) -> bool:
    """A sidecar: an init container with ``restartPolicy: Always``."""
    return _map(container).get("restartPolicy") == "Always"


def _terminated_reason(terminated: Mapping[str, Any]) -> str:
    reason = terminated.get("reason")
    if reason:
        return reason
    signal = _int(terminated.get("signal"))
    if signal:
        return f"Signal:{signal}"
    return f"ExitCode:{_int(terminated.get('exitCode'))}"


def _pod_summary(pod: Obj) -> tuple[int, int, str, int]:
    """``(ready, total, status, restarts)`` for a pod, as kubectl shows them."""
    spec = _spec(pod)
    status = _status(pod)
    meta = _meta(pod)
    init_specs = [_map(c) for c in _list(spec.get("initContainers"))]
    init_by_name = {c.get("name"): c for c in init_specs}
    total = len(_list(spec.get("containers"))) + sum(1 for c in init_specs if _restartable(c))
    ready = 0

    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in _list(status.get("conditions")):
        cond = _map(cond)
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    restarts = 0
    sidecar_restarts = 0
    initializing = False
    for i, cs in enumerate(_list(status.get("initContainerStatuses"))):
        cs = _map(cs)
        count = _int(cs.get("restartCount"))
        restarts += count
        sidecar = _restartable(init_by_name.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += count
        state = _map(cs.get("state"))
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated is not None and _int(_map(terminated).get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:
            reason = "Init:" + _terminated_reason(_map(terminated))
        elif (
            waiting is not None
            and _map(waiting).get("reason")
            and _map(waiting).get("reason") != "PodInitializing"
        ):
            reason = "Init:" + _map(waiting)["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status.get("conditions"), "Initialized"):
        restarts = sidecar_restarts
        has_running = False
        for cs in reversed(_list(status.get("containerStatuses"))):
            cs = _map(cs)
            restarts += _int(cs.get("restartCount"))
            state = _map(cs.get("state"))
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if waiting is not None and _map(waiting).get("reason"):
                reason = _map(waiting)["reason"]
            elif terminated is not None:
                reason = _terminated_reason(_map(terminated))
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A pod whose last container finished but another still runs is not "Completed".
        if reason == "Completed" and has_running:
            ready_cond = _condition_true(status.get("conditions"), "Ready")
            reason = "Running" if ready_cond else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == _NODE_UNREACHABLE_POD_REASON:
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return ready, total, reason, restarts


def _pod_cells(pod: Obj, now: datetime) -> Cells:
    spec = _spec(pod)
    status = _status(pod)
    ready, total, reason, restarts = _pod_summary(pod)
    pod_ips = _list(status.get("podIPs"))
    ip = (_map(pod_ips[0]).get("ip") if pod_ips else None) or status.get("podIP") or _NONE
    gates = _list(spec.get("readinessGates"))
    if gates:
        conditions = {
            _map(c).get("type"): _map(c).get("status") for c in _list(status.get("conditions"))
        }
        true_gates = sum(1 for g in gates if conditions.get(_map(g).get("conditionType")) == "True")
        readiness_gates = f"{true_gates}/{len(gates)}"
    else:
        readiness_gates = _NONE
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts,
        _age(pod, now),
        ip,
        spec.get("nodeName") or _NONE,
        status.get("nominatedNodeName") or _NONE,
        readiness_gates,
    ]


def _pod_conditions(pod: Obj) -> list[dict[str, Any]] | None:
    phase = _status(pod).get("phase")
    if phase == "Succeeded":
        return [dict(c) for c in _POD_SUCCEEDED_CONDITIONS]
    if phase == "Failed":
        return [dict(c) for c in _POD_FAILED_CONDITIONS]
    return None


_POD_COLUMNS = (
    _NAME,
    _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", "string", "The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        "integer",
        "The number of times the containers in this pod have been restarted.",
    ),
    _AGE,
    _col("IP", "string", "IP address allocated to the pod.", priority=1),
    _col("Node", "string", "The node this pod is scheduled onto.", priority=1),
    _col(
        "Nominated Node",
        "string",
        "The node that preemption nominated for this pod.",
        priority=1,
    ),
    _col(
        "Readiness Gates",
        "string",
        "How many of the pod's readiness gates are true.",
        priority=1,
    ),
)


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------


def _deployment_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    desired = _int(spec.get("replicas"), 1)
    names, images = _containers_and_images(_template_spec(obj))
    try:
        selector = _selector_string(spec.get("selector"))
    except BadRequest:
        selector = "<invalid>"
    return [
        _name(obj),
        f"{_int(status.get('readyReplicas'))}/{desired}",
        _int(status.get("updatedReplicas")),
        _int(status.get("availableReplicas")),
        _age(obj, now),
        names,
        images,
        selector,
    ]


_DEPLOYMENT_COLUMNS = (
    _NAME,
    _col("Ready", "string", "Number of the pod with ready state"),
    _col("Up-to-date", "string", "Total number of pods that have the desired template."),
    _col("Available", "string", "Total number of available pods."),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _selector_col("Label query over pods that should match the replica count."),
)


def _replicaset_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers_and_images(_template_spec(obj))
    return [
        _name(obj),
        _int(spec.get("replicas"), 1),
        _int(status.get("replicas")),
        _int(status.get("readyReplicas")),
        _age(obj, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


_REPLICASET_COLUMNS = (
    _NAME,
    _col("Desired", "integer", "The number of desired replicas."),
    _col("Current", "integer", "The most recently observed number of replicas."),
    _col("Ready", "integer", "The number of ready replicas."),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _selector_col("Label query over pods that should match the replica count."),
)


def _daemonset_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    template_spec = _template_spec(obj)
    names, images = _containers_and_images(template_spec)
    return [
        _name(obj),
        _int(status.get("desiredNumberScheduled")),
        _int(status.get("currentNumberScheduled")),
        _int(status.get("numberReady")),
        _int(status.get("updatedNumberScheduled")),
        _int(status.get("numberAvailable")),
        _format_labels(template_spec.get("nodeSelector")),
        _age(obj, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _controllerrevision_cells(obj: Obj, now: datetime) -> Cells:
    owner = next(
        (
            r
            for r in (obj.get("metadata") or {}).get("ownerReferences") or ()
            if r.get("controller")
        ),
        None,
    )
    controller = "<none>"
    if owner is not None:
        group = (
            (owner.get("apiVersion") or "").partition("/")[0]
            if "/" in (owner.get("apiVersion") or "")
            else ""
        )
        kind = (owner.get("kind") or "").lower()
        controller = (
            f"{kind}.{group}/{owner.get('name')}" if group else f"{kind}/{owner.get('name')}"
        )
    return [_name(obj), controller, _int(obj.get("revision")), _age(obj, now)]


_CONTROLLERREVISION_COLUMNS = (
    _NAME,
    _col("Controller", "string", "The controller that owns the revision."),
    _col("Revision", "integer", "The revision number in the controller's history."),
    _AGE,
)


_DAEMONSET_COLUMNS = (
    _NAME,
    _col("Desired", "integer", "The total number of nodes that should be running the pod."),
    _col("Current", "integer", "The number of nodes running at least one daemon pod."),
    _col("Ready", "integer", "The number of nodes whose daemon pod is ready."),
    _col("Up-to-date", "integer", "The number of nodes running the updated daemon pod."),
    _col("Available", "integer", "The number of nodes whose daemon pod is available."),
    _col("Node Selector", "string", "The node selector of the pod template."),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _selector_col("A label query over pods that are managed by the daemon set."),
)


def _job_completions(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    succeeded = _int(status.get("succeeded"))
    completions = spec.get("completions")
    if isinstance(completions, int):
        return f"{succeeded}/{completions}"
    parallelism = _int(spec.get("parallelism"))
    if parallelism > 1:
        return f"{succeeded}/1 of {parallelism}"
    return f"{succeeded}/1"


def _job_duration(status: Mapping[str, Any], now: datetime) -> str:
    start = _parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = _parse_time(status.get("completionTime"))
    return human_duration((end or now) - start)


def _job_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    names, images = _containers_and_images(_template_spec(obj))
    return [
        _name(obj),
        _job_completions(spec, status),
        _job_duration(status, now),
        _age(obj, now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


_JOB_COLUMNS = (
    _NAME,
    _col("Completions", "string", "The number of pods which reached phase Succeeded."),
    _col("Duration", "string", "Time required to complete the job."),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _selector_col("A label query over pods that should match the pod count."),
)


def _cronjob_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    job_spec = _map(_map(spec.get("jobTemplate")).get("spec"))
    names, images = _containers_and_images(_map(_map(job_spec.get("template")).get("spec")))
    last = status.get("lastScheduleTime")
    return [
        _name(obj),
        spec.get("schedule") or "",
        _bool_ptr(spec.get("suspend")),
        len(_list(status.get("active"))),
        _since(last, now) if last else _NONE,
        _age(obj, now),
        names,
        images,
        _format_label_selector(job_spec.get("selector")),
    ]


_CRONJOB_COLUMNS = (
    _NAME,
    _col("Schedule", "string", "The schedule in Cron format."),
    _col("Suspend", "boolean", "Whether subsequent executions are suspended."),
    _col("Active", "integer", "The number of currently running jobs."),
    _col("Last Schedule", "string", "When the job was last successfully scheduled."),
    _AGE,
    _CONTAINERS,
    _IMAGES,
    _selector_col("A label query over pods that should match the pod count."),
)


# ---------------------------------------------------------------------------
# Services and endpoints
# ---------------------------------------------------------------------------


def _load_balancer_ips(status: Mapping[str, Any]) -> list[str]:
    found: set[str] = set()
    for ingress in _list(_map(status.get("loadBalancer")).get("ingress")):
        ingress = _map(ingress)
        if ingress.get("ip"):
            found.add(ingress["ip"])
        elif ingress.get("hostname"):
            found.add(ingress["hostname"])
    return sorted(found)


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    # The server renders the wide form, so load balancer addresses are never clipped.
    svc_type = spec.get("type") or "ClusterIP"
    external_ips = [ip for ip in _list(spec.get("externalIPs")) if isinstance(ip, str)]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else _NONE
    if svc_type == "LoadBalancer":
        lb_ips = _load_balancer_ips(status)
        if external_ips:
            return ",".join(lb_ips + external_ips)
        return ",".join(lb_ips) if lb_ips else "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName") or ""
    return _UNKNOWN


def _service_ports(spec: Mapping[str, Any]) -> str:
    pieces = []
    for port in _list(spec.get("ports")):
        port = _map(port)
        protocol = port.get("protocol") or "TCP"
        node_port = _int(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{_int(port.get('port'))}:{node_port}/{protocol}")
        else:
            pieces.append(f"{_int(port.get('port'))}/{protocol}")
    return ",".join(pieces) or _NONE


def _service_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    cluster_ips = _list(spec.get("clusterIPs"))
    cluster_ip = (cluster_ips[0] if cluster_ips else None) or spec.get("clusterIP") or _NONE
    return [
        _name(obj),
        spec.get("type") or "ClusterIP",
        cluster_ip,
        _service_external_ip(spec, status),
        _service_ports(spec),
        _age(obj, now),
        _format_labels(spec.get("selector")),
    ]


_SERVICE_COLUMNS = (
    _NAME,
    _col("Type", "string", "How the service is exposed."),
    _col("Cluster-IP", "string", "The IP address of the service inside the cluster."),
    _col("External-IP", "string", "IP addresses the service also accepts traffic on."),
    _col("Port(s)", "string", "The ports the service exposes."),
    _AGE,
    _selector_col("Route service traffic to pods with label keys and values matching this."),
)


def _format_endpoints(obj: Obj) -> str:
    subsets = _list(obj.get("subsets"))
    if not subsets:
        return _NONE
    shown: list[str] = []
    more = False
    count = 0
    for subset in subsets:
        subset = _map(subset)
        addresses = [_map(a).get("ip") or "" for a in _list(subset.get("addresses"))]
        ports = _list(subset.get("ports"))
        if not ports:
            # A headless service may have no ports: list the bare addresses.
            count += len(addresses)
            for ip in addresses:
                if len(shown) == _ENDPOINTS_SHOWN:
                    more = True
                    break
                shown.append(ip)
            continue
        for port in ports:
            port_number = _int(_map(port).get("port"))
            count += len(addresses)
            for ip in addresses:
                if len(shown) == _ENDPOINTS_SHOWN:
                    more = True
                    break
                shown.append(_join_host_port(ip, port_number))
    text = ",".join(shown)
    if more:
        return f"{text} + {count - _ENDPOINTS_SHOWN} more..."
    return text


def _endpoints_cells(obj: Obj, now: datetime) -> Cells:
    return [_name(obj), _format_endpoints(obj), _age(obj, now)]


_ENDPOINTS_COLUMNS = (
    _NAME,
    _col("Endpoints", "string", "The addresses and ports the service is served at."),
    _AGE,
)


def _list_with_more(shown: list[str], more: bool, count: int) -> str:
    text = ",".join(shown)
    if more:
        return f"{text} + {count - _ENDPOINTS_SHOWN} more..."
    return text or "<unset>"


def _slice_ports(obj: Obj) -> str:
    ports = _list(obj.get("ports"))
    shown: list[str] = []
    for port in ports[:_ENDPOINTS_SHOWN]:
        port = _map(port)
        if port.get("port") is not None:
            shown.append(str(_int(port.get("port"))))
        elif port.get("name") is not None:
            shown.append(str(port["name"]))
        else:
            shown.append("*")
    return _list_with_more(shown, len(ports) > _ENDPOINTS_SHOWN, len(ports))


def _slice_endpoints(obj: Obj) -> str:
    addresses = [
        str(address)
        for endpoint in _list(obj.get("endpoints"))
        for address in _list(_map(endpoint).get("addresses"))
    ]
    shown = addresses[:_ENDPOINTS_SHOWN]
    return _list_with_more(shown, len(addresses) > _ENDPOINTS_SHOWN, len(addresses))


def _endpointslice_cells(obj: Obj, now: datetime) -> Cells:
    return [
        _name(obj),
        obj.get("addressType") or "",
        _slice_ports(obj),
        _slice_endpoints(obj),
        _age(obj, now),
    ]


_ENDPOINTSLICE_COLUMNS = (
    _NAME,
    _col("AddressType", "string", "The type of address carried by this EndpointSlice."),
    _col("Ports", "string", "The network ports exposed by each endpoint in this slice."),
    _col("Endpoints", "string", "The addresses of the endpoints in this slice."),
    _AGE,
)


# ---------------------------------------------------------------------------
# Nodes and namespaces
# ---------------------------------------------------------------------------


def _node_roles(labels: Mapping[str, Any]) -> str:
    roles: set[str] = set()
    for key, value in labels.items():
        if key.startswith(_NODE_ROLE_PREFIX):
            role = key[len(_NODE_ROLE_PREFIX) :]
            if role:
                roles.add(role)
        elif key == _NODE_ROLE_LABEL and value:
            roles.add(str(value))
    return ",".join(sorted(roles)) or _NONE


def _node_address(status: Mapping[str, Any], type_: str) -> str:
    for address in _list(status.get("addresses")):
        address = _map(address)
        if address.get("type") == type_:
            return address.get("address") or ""
    return _NONE


def _node_cells(obj: Obj, now: datetime) -> Cells:
    spec, status = _spec(obj), _status(obj)
    states: list[str] = []
    ready = None
    for cond in _list(status.get("conditions")):
        cond = _map(cond)
        if cond.get("type") == "Ready":
            ready = cond  # the last one wins, as in Kubernetes' condition map
    if ready is not None:
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    info = _map(status.get("nodeInfo"))
    return [
        _name(obj),
        ",".join(states),
        _node_roles(_map(_meta(obj).get("labels"))),
        _age(obj, now),
        info.get("kubeletVersion") or "",
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        info.get("osImage") or _UNKNOWN,
        info.get("kernelVersion") or _UNKNOWN,
        info.get("containerRuntimeVersion") or _UNKNOWN,
    ]


_NODE_COLUMNS = (
    _NAME,
    _col("Status", "string", "The status of the node"),
    _col("Roles", "string", "The roles of the node"),
    _AGE,
    _col("Version", "string", "Kubelet Version reported by the node."),
    _col("Internal-IP", "string", "The node's first InternalIP address.", priority=1),
    _col("External-IP", "string", "The node's first ExternalIP address.", priority=1),
    _col("OS-Image", "string", "OS image reported by the node.", priority=1),
    _col("Kernel-Version", "string", "Kernel version reported by the node.", priority=1),
    _col("Container-Runtime", "string", "Container runtime version reported.", priority=1),
)


def _namespace_cells(obj: Obj, now: datetime) -> Cells:
    return [_name(obj), _status(obj).get("phase") or "", _age(obj, now)]


_NAMESPACE_COLUMNS = (
    _NAME,
    _col("Status", "string", "The status of the namespace"),
    _AGE,
)


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------


def _core_event_view(obj: Obj) -> Mapping[str, Any]:
    """An ``events.k8s.io/v1`` Event seen with the field names of a core/v1 Event (the
    server converts both to the same internal type before printing)."""
    if not str(obj.get("apiVersion") or "").startswith("events.k8s.io/"):
        return obj
    view = dict(obj)
    view["involvedObject"] = obj.get("regarding")
    view["message"] = obj.get("note")
    view["source"] = obj.get("deprecatedSource")
    view["firstTimestamp"] = obj.get("deprecatedFirstTimestamp")
    view["lastTimestamp"] = obj.get("deprecatedLastTimestamp")
    view["count"] = obj.get("deprecatedCount")
    return view


def _event_source(obj: Obj) -> str:
    source = _map(obj.get("source"))
    component = source.get("component") or obj.get("reportingController") or ""
    host = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_cells(obj: Obj, now: datetime) -> Cells:
    event = _core_event_view(obj)
    if _parse_time(event.get("firstTimestamp")) is not None:
        first_seen = _since(event.get("firstTimestamp"), now)
    else:
        first_seen = _since(event.get("eventTime"), now)
    if _parse_time(event.get("lastTimestamp")) is not None:
        last_seen = _since(event.get("lastTimestamp"), now)
    else:
        last_seen = first_seen
    count = _int(event.get("count"))
    series = event.get("series")
    if isinstance(series, Mapping):
        last_seen = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1  # a singleton event from the new API has no count
    involved = _map(event.get("involvedObject"))
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen,
        event.get("type") or "",
        event.get("reason") or "",
        target,
        involved.get("fieldPath") or "",
        _event_source(event),
        str(event.get("message") or "").strip(),
        first_seen,
        count,
        _name(event),
    ]


_EVENT_COLUMNS = (
    _col("Last Seen", "string", "The time at which the most recent occurrence was recorded."),
    _col("Type", "string", "Type of this event (Normal, Warning)."),
    _col("Reason", "string", "Short, machine understandable reason for the event."),
    _col("Object", "string", "The object that this event is about."),
    _col("Subobject", "string", "The part of the object the event is about.", priority=1),
    _col("Source", "string", "The component reporting this event.", priority=1),
    _col("Message", "string", "A human-readable description of the event."),
    _col(
        "First Seen",
        "string",
        "The time at which the event was first recorded.",
        priority=1,
    ),
    _col("Count", "string", "The number of times this event has occurred.", priority=1),
    _col("Name", "string", _NAME_DOC, priority=1, fmt="name"),
)


# ---------------------------------------------------------------------------
# Configuration, identity and coordination
# ---------------------------------------------------------------------------


def _configmap_cells(obj: Obj, now: datetime) -> Cells:
    count = len(_map(obj.get("data"))) + len(_map(obj.get("binaryData")))
    return [_name(obj), count, _age(obj, now)]


_CONFIGMAP_COLUMNS = (
    _NAME,
    _col("Data", "string", "The number of keys in data and binaryData."),
    _AGE,
)


def _secret_cells(obj: Obj, now: datetime) -> Cells:
    # stringData is write-only and merged into data; count a key found in both once.
    keys = set(_map(obj.get("data"))) | set(_map(obj.get("stringData")))
    return [_name(obj), obj.get("type") or "Opaque", len(keys), _age(obj, now)]


_SECRET_COLUMNS = (
    _NAME,
    _col("Type", "string", "Used to facilitate programmatic handling of secret data."),
    _col("Data", "string", "The number of keys in the secret."),
    _AGE,
)


def _serviceaccount_cells(obj: Obj, now: datetime) -> Cells:
    return [_name(obj), len(_list(obj.get("secrets"))), _age(obj, now)]


_SERVICEACCOUNT_COLUMNS = (
    _NAME,
    _col("Secrets", "string", "The number of secrets pods of this service account may use."),
    _AGE,
)


def _lease_cells(obj: Obj, now: datetime) -> Cells:
    return [_name(obj), _spec(obj).get("holderIdentity") or "", _age(obj, now)]


_LEASE_COLUMNS = (
    _NAME,
    _col("Holder", "string", "The identity of the holder of the current lease."),
    _AGE,
)


def _csr_condition(obj: Obj) -> str:
    types = [
        str(_map(c).get("type"))
        for c in _list(_status(obj).get("conditions"))
        if _map(c).get("type") and _map(c).get("status") in (None, "", "True")
    ]
    if _status(obj).get("certificate"):
        types.append("Issued")
    return ",".join(types) or "Pending"


def _csr_cells(obj: Obj, now: datetime) -> Cells:
    spec = _spec(obj)
    seconds = spec.get("expirationSeconds")
    duration = human_duration(timedelta(seconds=seconds)) if isinstance(seconds, int) else "<none>"
    return [
        _name(obj),
        _age(obj, now),
        spec.get("signerName") or "<none>",
        spec.get("username") or "",
        duration,
        _csr_condition(obj),
    ]


_CSR_COLUMNS = (
    _NAME,
    _AGE,
    _col("SignerName", "string", "Requested signer for the request."),
    _col("Requestor", "string", "Name of the user which created the request."),
    _col("RequestedDuration", "string", "Requested duration of the issued certificate."),
    _col("Condition", "string", "The approval and issuance state of the request."),
)


# ---------------------------------------------------------------------------
# The default table and the registry
# ---------------------------------------------------------------------------


def _default_cells(obj: Obj, now: datetime) -> Cells:
    return [_name(obj), _created_at(obj)]


_DEFAULT_COLUMNS = (_NAME, _col("Created At", "date", _AGE_DOC))


@dataclass(frozen=True, slots=True)
class _Printer:
    columns: tuple[dict[str, Any], ...]
    cells: Callable[[Obj, datetime], Cells]
    conditions: Callable[[Obj], list[dict[str, Any]] | None] | None = None


_PRINTERS: dict[str, _Printer] = {
    "Pod": _Printer(_POD_COLUMNS, _pod_cells, _pod_conditions),
    "Deployment": _Printer(_DEPLOYMENT_COLUMNS, _deployment_cells),
    "ReplicaSet": _Printer(_REPLICASET_COLUMNS, _replicaset_cells),
    "DaemonSet": _Printer(_DAEMONSET_COLUMNS, _daemonset_cells),
    "ControllerRevision": _Printer(_CONTROLLERREVISION_COLUMNS, _controllerrevision_cells),
    "Job": _Printer(_JOB_COLUMNS, _job_cells),
    "CronJob": _Printer(_CRONJOB_COLUMNS, _cronjob_cells),
    "Service": _Printer(_SERVICE_COLUMNS, _service_cells),
    "Endpoints": _Printer(_ENDPOINTS_COLUMNS, _endpoints_cells),
    "EndpointSlice": _Printer(_ENDPOINTSLICE_COLUMNS, _endpointslice_cells),
    "Node": _Printer(_NODE_COLUMNS, _node_cells),
    "Namespace": _Printer(_NAMESPACE_COLUMNS, _namespace_cells),
    "Event": _Printer(_EVENT_COLUMNS, _event_cells),
    "ConfigMap": _Printer(_CONFIGMAP_COLUMNS, _configmap_cells),
    "Secret": _Printer(_SECRET_COLUMNS, _secret_cells),
    "ServiceAccount": _Printer(_SERVICEACCOUNT_COLUMNS, _serviceaccount_cells),
    "Lease": _Printer(_LEASE_COLUMNS, _lease_cells),
    "CertificateSigningRequest": _Printer(_CSR_COLUMNS, _csr_cells),
}
_DEFAULT_PRINTER = _Printer(_DEFAULT_COLUMNS, _default_cells)

SUPPORTED_KINDS: frozenset[str] = frozenset(_PRINTERS)
"""Kinds with columns of their own; every other kind gets NAME and CREATED AT."""


def column_definitions(kind: str) -> list[dict[str, Any]]:
    """The Table ``columnDefinitions`` for ``kind`` (fresh dicts, safe to change)."""
    return [dict(c) for c in _PRINTERS.get(kind, _DEFAULT_PRINTER).columns]


def partial_object_metadata(obj: Obj) -> dict[str, Any]:
    """``obj``'s metadata wrapped as a ``meta.k8s.io/v1`` ``PartialObjectMetadata``."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": TABLE_API_VERSION,
        "metadata": dict(_meta(obj)),
    }


def _include_mode(include_object: str | None) -> str:
    if include_object is None:
        return INCLUDE_NONE
    if include_object == "":
        return INCLUDE_METADATA
    if include_object not in _INCLUDE_VALUES:
        supported = ", ".join(f'"{v}"' for v in _INCLUDE_VALUES)
        raise BadRequest(
            f'includeObject: Unsupported value: "{include_object}": supported values: {supported}'
        )
    return include_object


def to_table(
    kind: str,
    objects: Sequence[Obj],
    *,
    resource_version: str,
    include_object: str | None = INCLUDE_METADATA,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (all of kind ``kind``) as the API server
    renders it for ``kubectl get``.

    Every column is filled, ``-o wide`` ones included. ``include_object`` is Kubernetes'
    ``includeObject``: ``"Metadata"`` (the default; ``""`` too) puts a
    ``PartialObjectMetadata`` with the object's whole metadata in each row, ``"Object"``
    the object itself, ``"None"`` (or ``None``) nothing (``"object": null``). Ages are
    measured up to ``now`` (default: the current time; a naive value is taken as UTC).

    :raises BadRequest: ``include_object`` is not one of those values.
    """
    mode = _include_mode(include_object)
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    printer = _PRINTERS.get(kind, _DEFAULT_PRINTER)
    rows: list[dict[str, Any]] = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer.cells(obj, now)}
        if printer.conditions is not None:
            conditions = printer.conditions(obj)
            if conditions:
                row["conditions"] = conditions
        if mode == INCLUDE_METADATA:
            row["object"] = partial_object_metadata(obj)
        elif mode == INCLUDE_OBJECT:
            row["object"] = obj
        else:
            row["object"] = None
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    }
