"""Defaulting: every default Kubernetes fills in, in one place.

:func:`apply_defaults` fills only what the object leaves unset (``None``), so a value the
user gave always wins, and running it twice changes nothing. The values follow
``k8s.io/kubernetes/pkg/apis/*/v1/defaults.go``; where Kubernetes sets a value from an
admission plugin rather than a defaulting function (a Pod's ``serviceAccountName``) this
module does it too and says so.

Two helpers cover fields that need the server's knowledge: :func:`generate_job_selector`
(needs the Job's uid) and :func:`qos_class` (for a new Pod's ``status.qosClass``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from kcore.api import apps_v1, batch_v1, core_v1, discovery_v1
from kcore.api.meta import LabelSelector
from kcore.api.quantity import parse_quantity

_T = TypeVar("_T")

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_FILE_MODE = 0o644
DEFAULT_TOKEN_EXPIRATION = 3600
DEFAULT_SESSION_AFFINITY_TIMEOUT = 10800
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# --------------------------------------------------------------------------- containers


def image_tag(image: str) -> str | None:
    """The tag of an image reference (``nginx:1.25`` -> ``1.25``), or ``None``.

    A registry port is not a tag (``localhost:5000/app`` has none), and a digest
    (``app@sha256:...``) is not either.
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return None


def default_pull_policy(image: str | None) -> str:
    """``Always`` for ``:latest`` or an untagged image without a digest, else ``IfNotPresent``."""
    image = image or ""
    tag = image_tag(image)
    if tag == "latest" or (tag is None and "@" not in image):
        return "Always"
    return "IfNotPresent"


def _default_http_get(action: core_v1.HTTPGetAction | None) -> None:
    if action is None:
        return
    if action.path is None:
        action.path = "/"
    if action.scheme is None:
        action.scheme = "HTTP"


def _default_probe(probe: core_v1.Probe | None) -> None:
    if probe is None:
        return
    if probe.timeout_seconds is None:
        probe.timeout_seconds = 1
    if probe.period_seconds is None:
        probe.period_seconds = 10
    if probe.success_threshold is None:
        probe.success_threshold = 1
    if probe.failure_threshold is None:
        probe.failure_threshold = 3
    _default_http_get(probe.http_get)


def _default_field_ref(ref: core_v1.ObjectFieldSelector | None) -> None:
    if ref is not None and ref.api_version is None:
        ref.api_version = "v1"


def _default_container(ctr: core_v1.Container) -> None:
    if ctr.image_pull_policy is None:
        ctr.image_pull_policy = default_pull_policy(ctr.image)
    if ctr.termination_message_path is None:
        ctr.termination_message_path = "/dev/termination-log"
    if ctr.termination_message_policy is None:
        ctr.termination_message_policy = "File"
    for port in ctr.ports:
        if port.protocol is None:
            port.protocol = "TCP"
    for var in ctr.env:
        if var.value_from is not None:
            _default_field_ref(var.value_from.field_ref)
    _default_probe(ctr.liveness_probe)
    _default_probe(ctr.readiness_probe)
    _default_probe(ctr.startup_probe)
    if ctr.lifecycle is not None:
        for handler in (ctr.lifecycle.post_start, ctr.lifecycle.pre_stop):
            if handler is not None:
                _default_http_get(handler.http_get)


# --------------------------------------------------------------------------- volumes


def _default_volume(vol: core_v1.Volume) -> None:
    if not vol.sources():
        vol.empty_dir = core_v1.EmptyDirVolumeSource()
    if vol.host_path is not None and vol.host_path.type is None:
        vol.host_path.type = ""
    for src in (vol.secret, vol.config_map, vol.downward_api, vol.projected):
        if src is not None and src.default_mode is None:
            src.default_mode = DEFAULT_FILE_MODE
    if vol.downward_api is not None:
        for item in vol.downward_api.items:
            _default_field_ref(item.field_ref)
    if vol.projected is not None:
        for source in vol.projected.sources:
            if source.downward_api is not None:
                for item in source.downward_api.items:
                    _default_field_ref(item.field_ref)
            token = source.service_account_token
            if token is not None and token.expiration_seconds is None:
                token.expiration_seconds = DEFAULT_TOKEN_EXPIRATION


# --------------------------------------------------------------------------- pods


def default_pod_spec(spec: core_v1.PodSpec) -> None:
    """The defaults of every PodSpec, in a Pod or in a workload's template."""
    if spec.dns_policy is None:
        spec.dns_policy = "ClusterFirst"
    if spec.restart_policy is None:
        spec.restart_policy = "Always"
    if spec.termination_grace_period_seconds is None:
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD
    if spec.security_context is None:
        spec.security_context = core_v1.PodSecurityContext()
    if spec.scheduler_name is None:
        spec.scheduler_name = DEFAULT_SCHEDULER_NAME
    for vol in spec.volumes:
        _default_volume(vol)
    for ctr in spec.all_containers():
        _default_container(ctr)


def _default_pod(pod: core_v1.Pod) -> None:
    spec = pod.spec
    default_pod_spec(spec)
    # Only on Pods, not templates: requests default to limits.
    for ctr in spec.all_containers():
        if ctr.resources is not None and ctr.resources.limits:
            for key, value in ctr.resources.limits.items():
                ctr.resources.requests.setdefault(key, value)
    if spec.enable_service_links is None:
        spec.enable_service_links = True
    if spec.host_network:
        for ctr in spec.all_containers():
            for port in ctr.ports:
                if port.host_port is None:
                    port.host_port = port.container_port
    # Kubernetes' ServiceAccount admission plugin does this; the deprecated alias mirrors it.
    if spec.service_account_name is None:
        spec.service_account_name = spec.service_account or DEFAULT_SERVICE_ACCOUNT
    if spec.service_account is None:
        spec.service_account = spec.service_account_name


def qos_class(spec: core_v1.PodSpec) -> str:
    """``Guaranteed``, ``Burstable`` or ``BestEffort``, from the containers' cpu and memory.

    Guaranteed: every container limits cpu and memory and requests (if given) equal the
    limits. BestEffort: no container requests or limits anything. Burstable otherwise.
    """
    any_set = False
    guaranteed = True
    for ctr in spec.all_containers():
        res = ctr.resources or core_v1.ResourceRequirements()
        requests = {k: v for k, v in res.requests.items() if k in ("cpu", "memory")}
        limits = {k: v for k, v in res.limits.items() if k in ("cpu", "memory")}
        if requests or limits:
            any_set = True
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
            continue
        for key, limit in limits.items():
            request = requests.get(key, limit)
            if parse_quantity(request) != parse_quantity(limit):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# --------------------------------------------------------------------------- services


def _default_service(svc: core_v1.Service) -> None:
    spec = svc.spec
    if spec.session_affinity is None:
        spec.session_affinity = "None"
    if spec.session_affinity == "None":
        spec.session_affinity_config = None
    elif spec.session_affinity == "ClientIP":
        config = spec.session_affinity_config
        client_ip = config.get("clientIP") if isinstance(config, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec.session_affinity_config = {
                "clientIP": {"timeoutSeconds": DEFAULT_SESSION_AFFINITY_TIMEOUT}
            }
    if spec.type is None:
        spec.type = "ClusterIP"
    for port in spec.ports:
        if port.protocol is None:
            port.protocol = "TCP"
        if port.target_port in (None, 0, ""):
            port.target_port = port.port
    if spec.type in ("NodePort", "LoadBalancer") and spec.external_traffic_policy is None:
        spec.external_traffic_policy = "Cluster"
    if spec.type != "ExternalName" and spec.internal_traffic_policy is None:
        spec.internal_traffic_policy = "Cluster"
    if spec.type == "LoadBalancer" and spec.allocate_load_balancer_node_ports is None:
        spec.allocate_load_balancer_node_ports = True


def _default_endpoints(ep: core_v1.Endpoints) -> None:
    for subset in ep.subsets:
        for port in subset.ports:
            if port.protocol is None:
                port.protocol = "TCP"


def _default_endpoint_slice(eps: discovery_v1.EndpointSlice) -> None:
    for port in eps.ports:
        if port.name is None:
            port.name = ""
        if port.protocol is None:
            port.protocol = "TCP"


# --------------------------------------------------------------------------- workloads


def _default_deployment(dep: apps_v1.Deployment) -> None:
    spec = dep.spec
    if spec.replicas is None:
        spec.replicas = 1
    if spec.strategy is None:
        spec.strategy = apps_v1.DeploymentStrategy()
    if spec.strategy.type is None:
        spec.strategy.type = "RollingUpdate"
    if spec.strategy.type == "RollingUpdate":
        rolling = spec.strategy.rolling_update
        if rolling is None:
            rolling = spec.strategy.rolling_update = apps_v1.RollingUpdateDeployment()
        if rolling.max_unavailable is None:
            rolling.max_unavailable = "25%"
        if rolling.max_surge is None:
            rolling.max_surge = "25%"
    if spec.revision_history_limit is None:
        spec.revision_history_limit = 10
    if spec.progress_deadline_seconds is None:
        spec.progress_deadline_seconds = 600
    default_pod_spec(spec.template.spec)


def _default_replica_set(rs: apps_v1.ReplicaSet) -> None:
    if rs.spec.replicas is None:
        rs.spec.replicas = 1
    default_pod_spec(rs.spec.template.spec)


def _default_daemon_set(ds: apps_v1.DaemonSet) -> None:
    spec = ds.spec
    if spec.update_strategy is None:
        spec.update_strategy = apps_v1.DaemonSetUpdateStrategy()
    if spec.update_strategy.type is None:
        spec.update_strategy.type = "RollingUpdate"
    if spec.update_strategy.type == "RollingUpdate":
        rolling = spec.update_strategy.rolling_update
        if rolling is None:
            rolling = spec.update_strategy.rolling_update = apps_v1.RollingUpdateDaemonSet()
        if rolling.max_unavailable is None:
            rolling.max_unavailable = 1
        if rolling.max_surge is None:
            rolling.max_surge = 0
    if spec.revision_history_limit is None:
        spec.revision_history_limit = 10
    default_pod_spec(spec.template.spec)


def _default_job_spec(spec: batch_v1.JobSpec) -> None:
    if spec.completions is None and spec.parallelism is None:
        spec.completions = 1
        spec.parallelism = 1
    if spec.parallelism is None:
        spec.parallelism = 1
    if spec.backoff_limit is None:
        spec.backoff_limit = 2**31 - 1 if spec.backoff_limit_per_index is not None else 6
    if spec.completion_mode is None:
        spec.completion_mode = "NonIndexed"
    if spec.suspend is None:
        spec.suspend = False
    if spec.pod_replacement_policy is None:
        spec.pod_replacement_policy = "Failed" if spec.pod_failure_policy else "TerminatingOrFailed"


def _default_job(job: batch_v1.Job) -> None:
    _default_job_spec(job.spec)
    if job.spec.template.metadata.labels and not job.metadata.labels:
        job.metadata.labels = dict(job.spec.template.metadata.labels)
    default_pod_spec(job.spec.template.spec)


def generate_job_selector(job: batch_v1.Job) -> None:
    """Label the template with the Job's uid and select on it, as the Job registry does.

    Call it on create, after the uid is assigned, unless ``spec.manualSelector`` is true.
    """
    if job.spec.manual_selector or not job.metadata.uid:
        return
    uid, name = job.metadata.uid, job.metadata.name or ""
    labels = job.spec.template.metadata.labels
    labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    labels.setdefault("batch.kubernetes.io/job-name", name)
    labels.setdefault("controller-uid", uid)
    labels.setdefault("job-name", name)
    if job.spec.selector is None:
        job.spec.selector = LabelSelector(match_labels={"batch.kubernetes.io/controller-uid": uid})


def _default_cron_job(cj: batch_v1.CronJob) -> None:
    spec = cj.spec
    if spec.concurrency_policy is None:
        spec.concurrency_policy = "Allow"
    if spec.suspend is None:
        spec.suspend = False
    if spec.successful_jobs_history_limit is None:
        spec.successful_jobs_history_limit = 3
    if spec.failed_jobs_history_limit is None:
        spec.failed_jobs_history_limit = 1
    default_pod_spec(spec.job_template.spec.template.spec)


# --------------------------------------------------------------------------- the rest


def _default_secret(secret: core_v1.Secret) -> None:
    if secret.type is None:
        secret.type = "Opaque"
    # stringData is write-only: Kubernetes merges it into data on the way in.
    if secret.string_data:
        for key, value in secret.string_data.items():
            secret.data[key] = base64.b64encode(value.encode()).decode()
        secret.string_data = {}


def _default_namespace(ns: core_v1.Namespace) -> None:
    if ns.metadata.name:
        ns.metadata.labels[NAMESPACE_NAME_LABEL] = ns.metadata.name
    if ns.status.phase is None:
        ns.status.phase = "Active"


def _default_node(node: core_v1.Node) -> None:
    if not node.status.allocatable and node.status.capacity:
        node.status.allocatable = dict(node.status.capacity)


_DEFAULTERS: dict[type, Callable[[Any], None]] = {
    core_v1.Pod: _default_pod,
    core_v1.Service: _default_service,
    core_v1.Endpoints: _default_endpoints,
    discovery_v1.EndpointSlice: _default_endpoint_slice,
    core_v1.Secret: _default_secret,
    core_v1.Namespace: _default_namespace,
    core_v1.Node: _default_node,
    apps_v1.Deployment: _default_deployment,
    apps_v1.ReplicaSet: _default_replica_set,
    apps_v1.DaemonSet: _default_daemon_set,
    batch_v1.Job: _default_job,
    batch_v1.CronJob: _default_cron_job,
}


def apply_defaults(obj: _T) -> _T:
    """Fill in Kubernetes' defaults on ``obj`` in place, and return it.

    Kinds without defaults (ConfigMap, ServiceAccount, Lease, Event ...) come back as they
    were.
    """
    defaulter = _DEFAULTERS.get(type(obj))
    if defaulter is not None:
        defaulter(obj)
    return obj


__all__ = [
    "DEFAULT_SCHEDULER_NAME",
    "DEFAULT_SERVICE_ACCOUNT",
    "DEFAULT_TERMINATION_GRACE_PERIOD",
    "NAMESPACE_NAME_LABEL",
    "apply_defaults",
    "default_pod_spec",
    "default_pull_policy",
    "generate_job_selector",
    "image_tag",
    "qos_class",
]
