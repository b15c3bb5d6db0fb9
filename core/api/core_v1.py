"""The core group, version v1 (``apiVersion: v1``): Pod, Service, Node, Namespace ...

Field names and shapes follow ``k8s.io/api/core/v1``. Subtrees that kcore does not act on
(affinity, topology spread, most cloud volume types) are passed through as plain dicts so
that nothing a manifest sets is lost.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import msgspec

from kcore.api.meta import (
    IntOrString,
    K8sStruct,
    LocalObjectReference,
    MicroTime,
    ObjectMeta,
    ObjectReference,
    Quantity,
    Time,
    TypedObject,
    normalize_times,
)

Raw = dict[str, Any]

# --------------------------------------------------------------------------- env


class ObjectFieldSelector(K8sStruct):
    api_version: str | None = None
    field_path: str | None = None


class ResourceFieldSelector(K8sStruct):
    container_name: str | None = None
    resource: str | None = None
    divisor: Quantity | None = None


class ConfigMapKeySelector(K8sStruct):
    name: str | None = None
    key: str | None = None
    optional: bool | None = None


class SecretKeySelector(K8sStruct):
    name: str | None = None
    key: str | None = None
    optional: bool | None = None


class EnvVarSource(K8sStruct):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None
    secret_key_ref: SecretKeySelector | None = None
    file_key_ref: Raw | None = None


class EnvVar(K8sStruct):
    name: str | None = None
    value: str | None = None
    value_from: EnvVarSource | None = None


class ConfigMapEnvSource(K8sStruct):
    name: str | None = None
    optional: bool | None = None


class SecretEnvSource(K8sStruct):
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(K8sStruct):
    prefix: str | None = None
    config_map_ref: ConfigMapEnvSource | None = None
    secret_ref: SecretEnvSource | None = None


# --------------------------------------------------------------------------- containers


class ContainerPort(K8sStruct):
    name: str | None = None
    host_port: int | None = None
    container_port: int | None = None
    protocol: str | None = None
    host_ip: str | None = msgspec.field(default=None, name="hostIP")


class ResourceRequirements(K8sStruct):
    limits: dict[str, Quantity] = {}
    requests: dict[str, Quantity] = {}
    claims: list[Raw] = []


class VolumeMount(K8sStruct):
    name: str | None = None
    read_only: bool | None = None
    recursive_read_only: str | None = None
    mount_path: str | None = None
    sub_path: str | None = None
    mount_propagation: str | None = None
    """``None``, ``HostToContainer`` or ``Bidirectional``."""
    sub_path_expr: str | None = None


class VolumeDevice(K8sStruct):
    name: str | None = None
    device_path: str | None = None


class ExecAction(K8sStruct):
    command: list[str] = []


class HTTPHeader(K8sStruct):
    name: str | None = None
    value: str | None = None


class HTTPGetAction(K8sStruct):
    path: str | None = None
    port: IntOrString | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] = []


class TCPSocketAction(K8sStruct):
    port: IntOrString | None = None
    host: str | None = None


class GRPCAction(K8sStruct):
    port: int | None = None
    service: str | None = None


class SleepAction(K8sStruct):
    seconds: int | None = None


class Probe(K8sStruct):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    termination_grace_period_seconds: int | None = None


class LifecycleHandler(K8sStruct):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(K8sStruct):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None
    stop_signal: str | None = None


class Capabilities(K8sStruct):
    add: list[str] = []
    drop: list[str] = []


class SELinuxOptions(K8sStruct):
    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class SeccompProfile(K8sStruct):
    type: str | None = None
    localhost_profile: str | None = None


class AppArmorProfile(K8sStruct):
    type: str | None = None
    localhost_profile: str | None = None


class SecurityContext(K8sStruct):
    """Container-level security settings."""

    capabilities: Capabilities | None = None
    privileged: bool | None = None
    se_linux_options: SELinuxOptions | None = None
    windows_options: Raw | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    proc_mount: str | None = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None


class Sysctl(K8sStruct):
    name: str | None = None
    value: str | None = None


class PodSecurityContext(K8sStruct):
    """Pod-level security settings, the defaults for every container."""

    se_linux_options: SELinuxOptions | None = None
    windows_options: Raw | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    supplemental_groups: list[int] = []
    supplemental_groups_policy: str | None = None
    fs_group: int | None = None
    sysctls: list[Sysctl] = []
    fs_group_change_policy: str | None = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    se_linux_change_policy: str | None = None


class Container(K8sStruct):
    name: str | None = None
    image: str | None = None
    command: list[str] = []
    args: list[str] = []
    working_dir: str | None = None
    ports: list[ContainerPort] = []
    env_from: list[EnvFromSource] = []
    env: list[EnvVar] = []
    resources: ResourceRequirements | None = None
    resize_policy: list[Raw] = []
    restart_policy: str | None = None
    """Only on init containers: ``Always`` makes a sidecar."""
    restart_policy_rules: list[Raw] = []
    volume_mounts: list[VolumeMount] = []
    volume_devices: list[VolumeDevice] = []
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    image_pull_policy: str | None = None
    security_context: SecurityContext | None = None
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None


# --------------------------------------------------------------------------- volumes


class KeyToPath(K8sStruct):
    key: str | None = None
    path: str | None = None
    mode: int | None = None


class EmptyDirVolumeSource(K8sStruct):
    medium: str | None = None
    size_limit: Quantity | None = None


class HostPathVolumeSource(K8sStruct):
    path: str | None = None
    type: str | None = None


class SecretVolumeSource(K8sStruct):
    secret_name: str | None = None
    items: list[KeyToPath] = []
    default_mode: int | None = None
    optional: bool | None = None


class ConfigMapVolumeSource(K8sStruct):
    name: str | None = None
    items: list[KeyToPath] = []
    default_mode: int | None = None
    optional: bool | None = None


class DownwardAPIVolumeFile(K8sStruct):
    path: str | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    mode: int | None = None


class DownwardAPIVolumeSource(K8sStruct):
    items: list[DownwardAPIVolumeFile] = []
    default_mode: int | None = None


class SecretProjection(K8sStruct):
    name: str | None = None
    items: list[KeyToPath] = []
    optional: bool | None = None


class ConfigMapProjection(K8sStruct):
    name: str | None = None
    items: list[KeyToPath] = []
    optional: bool | None = None


class DownwardAPIProjection(K8sStruct):
    items: list[DownwardAPIVolumeFile] = []


class ServiceAccountTokenProjection(K8sStruct):
    audience: str | None = None
    expiration_seconds: int | None = None
    path: str | None = None


class VolumeProjection(K8sStruct):
    secret: SecretProjection | None = None
    config_map: ConfigMapProjection | None = None
    downward_api: DownwardAPIProjection | None = msgspec.field(default=None, name="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None
    cluster_trust_bundle: Raw | None = None
    pod_certificate: Raw | None = None


class ProjectedVolumeSource(K8sStruct):
    sources: list[VolumeProjection] = []
    default_mode: int | None = None


class PersistentVolumeClaimVolumeSource(K8sStruct):
    claim_name: str | None = None
    read_only: bool | None = None


VOLUME_SOURCE_FIELDS: tuple[str, ...] = (
    "empty_dir",
    "host_path",
    "secret",
    "config_map",
    "downward_api",
    "projected",
    "persistent_volume_claim",
    "nfs",
    "csi",
    "ephemeral",
    "image",
    "iscsi",
    "rbd",
    "cephfs",
    "fc",
    "flex_volume",
    "cinder",
    "glusterfs",
    "git_repo",
    "gce_persistent_disk",
    "aws_elastic_block_store",
    "azure_disk",
    "azure_file",
    "vsphere_volume",
    "portworx_volume",
    "photon_persistent_disk",
    "quobyte",
    "scale_io",
    "storageos",
    "flocker",
)
"""The attribute names of :class:`Volume` that each select a volume type."""


class Volume(K8sStruct):
    """A pod volume. Exactly one source is set; kcore acts on the first seven."""

    name: str | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    host_path: HostPathVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    downward_api: DownwardAPIVolumeSource | None = msgspec.field(default=None, name="downwardAPI")
    projected: ProjectedVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    # Passed through: kcore has no driver for these, but must not lose them.
    nfs: Raw | None = None
    csi: Raw | None = None
    ephemeral: Raw | None = None
    image: Raw | None = None
    iscsi: Raw | None = None
    rbd: Raw | None = None
    cephfs: Raw | None = None
    fc: Raw | None = None
    flex_volume: Raw | None = None
    cinder: Raw | None = None
    glusterfs: Raw | None = None
    git_repo: Raw | None = None
    gce_persistent_disk: Raw | None = None
    aws_elastic_block_store: Raw | None = None
    azure_disk: Raw | None = None
    azure_file: Raw | None = None
    vsphere_volume: Raw | None = None
    portworx_volume: Raw | None = None
    photon_persistent_disk: Raw | None = None
    quobyte: Raw | None = None
    scale_io: Raw | None = msgspec.field(default=None, name="scaleIO")
    storageos: Raw | None = None
    flocker: Raw | None = None

    def sources(self) -> list[str]:
        """The attribute names of the volume sources that are set."""
        return [f for f in VOLUME_SOURCE_FIELDS if getattr(self, f) is not None]


# --------------------------------------------------------------------------- pods


class Toleration(K8sStruct):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class HostAlias(K8sStruct):
    ip: str | None = None
    hostnames: list[str] = []


class PodDNSConfigOption(K8sStruct):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(K8sStruct):
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[PodDNSConfigOption] = []


class PodReadinessGate(K8sStruct):
    condition_type: str | None = None


class PodSpec(K8sStruct):
    volumes: list[Volume] = []
    init_containers: list[Container] = []
    containers: list[Container] = []
    ephemeral_containers: list[Raw] = []
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str | None = None
    node_selector: dict[str, str] = {}
    service_account_name: str | None = None
    service_account: str | None = None
    """Deprecated alias of ``serviceAccountName``, kept in step with it."""
    automount_service_account_token: bool | None = None
    node_name: str | None = None
    host_network: bool | None = None
    host_pid: bool | None = msgspec.field(default=None, name="hostPID")
    host_ipc: bool | None = msgspec.field(default=None, name="hostIPC")
    share_process_namespace: bool | None = None
    security_context: PodSecurityContext | None = None
    image_pull_secrets: list[LocalObjectReference] = []
    hostname: str | None = None
    hostname_override: str | None = None
    subdomain: str | None = None
    affinity: Raw | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] = []
    host_aliases: list[HostAlias] = []
    priority_class_name: str | None = None
    priority: int | None = None
    dns_config: PodDNSConfig | None = None
    readiness_gates: list[PodReadinessGate] = []
    runtime_class_name: str | None = None
    enable_service_links: bool | None = None
    preemption_policy: str | None = None
    overhead: dict[str, Quantity] = {}
    topology_spread_constraints: list[Raw] = []
    set_hostname_as_fqdn: bool | None = msgspec.field(default=None, name="setHostnameAsFQDN")
    os: Raw | None = None
    host_users: bool | None = None
    scheduling_gates: list[Raw] = []
    resource_claims: list[Raw] = []
    resources: ResourceRequirements | None = None

    def all_containers(self) -> list[Container]:
        """Init containers, then app containers."""
        return [*self.init_containers, *self.containers]


class PodCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    observed_generation: int | None = None
    last_probe_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_probe_time", "last_transition_time")


class ContainerStateWaiting(K8sStruct):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(K8sStruct):
    started_at: Time | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "started_at")


class ContainerStateTerminated(K8sStruct):
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    container_id: str | None = msgspec.field(default=None, name="containerID")

    def __post_init__(self) -> None:
        normalize_times(self, "started_at", "finished_at")


class ContainerState(K8sStruct):
    """At most one of ``waiting``, ``running``, ``terminated`` is set."""

    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(K8sStruct):
    name: str | None = None
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    ready: bool | None = None
    restart_count: int | None = None
    image: str | None = None
    image_id: str | None = msgspec.field(default=None, name="imageID")
    container_id: str | None = msgspec.field(default=None, name="containerID")
    started: bool | None = None
    allocated_resources: dict[str, Quantity] = {}
    resources: ResourceRequirements | None = None
    volume_mounts: list[Raw] = []
    user: Raw | None = None
    allocated_resources_status: list[Raw] = []
    stop_signal: str | None = None


class PodIP(K8sStruct):
    ip: str | None = None


class HostIP(K8sStruct):
    ip: str | None = None


class PodStatus(K8sStruct):
    observed_generation: int | None = None
    phase: str | None = None
    """``Pending``, ``Running``, ``Succeeded``, ``Failed`` or ``Unknown``."""
    conditions: list[PodCondition] = []
    message: str | None = None
    reason: str | None = None
    nominated_node_name: str | None = None
    host_ip: str | None = msgspec.field(default=None, name="hostIP")
    host_ips: list[HostIP] = msgspec.field(default_factory=list, name="hostIPs")
    pod_ip: str | None = msgspec.field(default=None, name="podIP")
    pod_ips: list[PodIP] = msgspec.field(default_factory=list, name="podIPs")
    start_time: Time | None = None
    init_container_statuses: list[ContainerStatus] = []
    container_statuses: list[ContainerStatus] = []
    qos_class: str | None = None
    ephemeral_container_statuses: list[ContainerStatus] = []
    resize: str | None = None
    resource_claim_statuses: list[Raw] = []

    def __post_init__(self) -> None:
        normalize_times(self, "start_time")


class Pod(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Pod"

    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class PodTemplateSpec(K8sStruct):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec = msgspec.field(default_factory=PodSpec)


class Binding(TypedObject):
    """The body of ``POST pods/{name}/binding``: assigns the pod to ``target`` (a Node)."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Binding"

    target: ObjectReference = msgspec.field(default_factory=ObjectReference)


# --------------------------------------------------------------------------- namespaces


class NamespaceSpec(K8sStruct):
    finalizers: list[str] = []


class NamespaceCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_transition_time")


class NamespaceStatus(K8sStruct):
    phase: str | None = None
    """``Active`` or ``Terminating``."""
    conditions: list[NamespaceCondition] = []


class Namespace(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Namespace"

    spec: NamespaceSpec = msgspec.field(default_factory=NamespaceSpec)
    status: NamespaceStatus = msgspec.field(default_factory=NamespaceStatus)


# --------------------------------------------------------------------------- nodes


class Taint(K8sStruct):
    key: str | None = None
    value: str | None = None
    effect: str | None = None
    """``NoSchedule``, ``PreferNoSchedule`` or ``NoExecute``."""
    time_added: Time | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "time_added")


class NodeSpec(K8sStruct):
    pod_cidr: str | None = msgspec.field(default=None, name="podCIDR")
    pod_cidrs: list[str] = msgspec.field(default_factory=list, name="podCIDRs")
    provider_id: str | None = msgspec.field(default=None, name="providerID")
    unschedulable: bool | None = None
    taints: list[Taint] = []
    config_source: Raw | None = None
    external_id: str | None = msgspec.field(default=None, name="externalID")


class NodeCondition(K8sStruct):
    type: str | None = None
    status: str | None = None
    last_heartbeat_time: Time | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_heartbeat_time", "last_transition_time")


class NodeAddress(K8sStruct):
    type: str | None = None
    """``Hostname``, ``InternalIP``, ``ExternalIP`` ..."""
    address: str | None = None


class DaemonEndpoint(K8sStruct):
    port: int | None = msgspec.field(default=None, name="Port")


class NodeDaemonEndpoints(K8sStruct):
    kubelet_endpoint: DaemonEndpoint | None = None


class NodeSystemInfo(K8sStruct):
    machine_id: str | None = msgspec.field(default=None, name="machineID")
    system_uuid: str | None = msgspec.field(default=None, name="systemUUID")
    boot_id: str | None = msgspec.field(default=None, name="bootID")
    kernel_version: str | None = None
    os_image: str | None = None
    container_runtime_version: str | None = None
    kubelet_version: str | None = None
    kube_proxy_version: str | None = None
    operating_system: str | None = None
    architecture: str | None = None
    swap: Raw | None = None


class ContainerImage(K8sStruct):
    names: list[str] = []
    size_bytes: int | None = None


class AttachedVolume(K8sStruct):
    name: str | None = None
    device_path: str | None = None


class NodeStatus(K8sStruct):
    capacity: dict[str, Quantity] = {}
    allocatable: dict[str, Quantity] = {}
    phase: str | None = None
    conditions: list[NodeCondition] = []
    addresses: list[NodeAddress] = []
    daemon_endpoints: NodeDaemonEndpoints | None = None
    node_info: NodeSystemInfo | None = None
    images: list[ContainerImage] = []
    volumes_in_use: list[str] = []
    volumes_attached: list[AttachedVolume] = []
    config: Raw | None = None
    runtime_handlers: list[Raw] = []
    features: Raw | None = None
    declared_features: list[str] = []


class Node(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Node"

    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


# --------------------------------------------------------------------------- services


class ServicePort(K8sStruct):
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None
    port: int | None = None
    target_port: IntOrString | None = None
    node_port: int | None = None


class ServiceSpec(K8sStruct):
    ports: list[ServicePort] = []
    selector: dict[str, str] = {}
    cluster_ip: str | None = msgspec.field(default=None, name="clusterIP")
    cluster_ips: list[str] = msgspec.field(default_factory=list, name="clusterIPs")
    type: str | None = None
    """``ClusterIP``, ``NodePort``, ``LoadBalancer`` or ``ExternalName``."""
    external_ips: list[str] = msgspec.field(default_factory=list, name="externalIPs")
    session_affinity: str | None = None
    load_balancer_ip: str | None = msgspec.field(default=None, name="loadBalancerIP")
    load_balancer_source_ranges: list[str] = []
    external_name: str | None = None
    external_traffic_policy: str | None = None
    health_check_node_port: int | None = None
    publish_not_ready_addresses: bool | None = None
    session_affinity_config: Raw | None = None
    ip_families: list[str] = msgspec.field(default_factory=list, name="ipFamilies")
    ip_family_policy: str | None = msgspec.field(default=None, name="ipFamilyPolicy")
    allocate_load_balancer_node_ports: bool | None = None
    load_balancer_class: str | None = None
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None


class PortStatus(K8sStruct):
    port: int | None = None
    protocol: str | None = None
    error: str | None = None


class LoadBalancerIngress(K8sStruct):
    ip: str | None = None
    hostname: str | None = None
    ip_mode: str | None = None
    ports: list[PortStatus] = []


class LoadBalancerStatus(K8sStruct):
    ingress: list[LoadBalancerIngress] = []


class ServiceStatus(K8sStruct):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[Raw] = []


class Service(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Service"

    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)
    status: ServiceStatus = msgspec.field(default_factory=ServiceStatus)


class EndpointAddress(K8sStruct):
    ip: str | None = None
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(K8sStruct):
    name: str | None = None
    port: int | None = None
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSubset(K8sStruct):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class Endpoints(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Endpoints"

    subsets: list[EndpointSubset] = []


# --------------------------------------------------------------------------- config


class Secret(TypedObject):
    """``data`` holds base64 strings, exactly as on the wire; see :meth:`decoded`."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Secret"

    immutable: bool | None = None
    data: dict[str, str] = {}
    string_data: dict[str, str] = {}
    """Write-only: merged into ``data`` on the way in (see :func:`kcore.api.apply_defaults`)."""
    type: str | None = None

    def decoded(self) -> dict[str, bytes]:
        """``data`` with each value base64-decoded, plus ``stringData`` (which wins)."""
        out = {k: base64.b64decode(v) for k, v in self.data.items()}
        out.update({k: v.encode() for k, v in self.string_data.items()})
        return out


class ConfigMap(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ConfigMap"

    immutable: bool | None = None
    data: dict[str, str] = {}
    binary_data: dict[str, str] = {}
    """Base64 strings, as on the wire."""


class ServiceAccount(TypedObject):
    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "ServiceAccount"

    secrets: list[ObjectReference] = []
    image_pull_secrets: list[LocalObjectReference] = []
    automount_service_account_token: bool | None = None


# --------------------------------------------------------------------------- events


class EventSource(K8sStruct):
    component: str | None = None
    host: str | None = None


class EventSeries(K8sStruct):
    count: int | None = None
    last_observed_time: MicroTime | None = None

    def __post_init__(self) -> None:
        normalize_times(self, micro=("last_observed_time",))


class Event(TypedObject):
    """core/v1 Event, the shape ``kubectl describe`` reads."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Event"

    involved_object: ObjectReference = msgspec.field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    first_timestamp: Time | None = None
    last_timestamp: Time | None = None
    count: int | None = None
    type: str | None = None
    """``Normal`` or ``Warning``."""
    event_time: MicroTime | None = None
    series: EventSeries | None = None
    action: str | None = None
    related: ObjectReference | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        normalize_times(self, "first_timestamp", "last_timestamp", micro=("event_time",))


__all__ = [
    "VOLUME_SOURCE_FIELDS",
    "AppArmorProfile",
    "AttachedVolume",
    "Binding",
    "Capabilities",
    "ConfigMap",
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "ConfigMapProjection",
    "ConfigMapVolumeSource",
    "Container",
    "ContainerImage",
    "ContainerPort",
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
    "DaemonEndpoint",
    "DownwardAPIProjection",
    "DownwardAPIVolumeFile",
    "DownwardAPIVolumeSource",
    "EmptyDirVolumeSource",
    "EndpointAddress",
    "EndpointPort",
    "EndpointSubset",
    "Endpoints",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "Event",
    "EventSeries",
    "EventSource",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "HTTPHeader",
    "HostAlias",
    "HostIP",
    "HostPathVolumeSource",
    "KeyToPath",
    "Lifecycle",
    "LifecycleHandler",
    "LoadBalancerIngress",
    "LoadBalancerStatus",
    "Namespace",
    "NamespaceCondition",
    "NamespaceSpec",
    "NamespaceStatus",
    "Node",
    "NodeAddress",
    "NodeCondition",
    "NodeDaemonEndpoints",
    "NodeSpec",
    "NodeStatus",
    "NodeSystemInfo",
    "ObjectFieldSelector",
    "PersistentVolumeClaimVolumeSource",
    "Pod",
    "PodCondition",
    "PodDNSConfig",
    "PodDNSConfigOption",
    "PodIP",
    "PodReadinessGate",
    "PodSecurityContext",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "PortStatus",
    "Probe",
    "ProjectedVolumeSource",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "SELinuxOptions",
    "SeccompProfile",
    "Secret",
    "SecretEnvSource",
    "SecretKeySelector",
    "SecretProjection",
    "SecretVolumeSource",
    "SecurityContext",
    "Service",
    "ServiceAccount",
    "ServiceAccountTokenProjection",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SleepAction",
    "Sysctl",
    "TCPSocketAction",
    "Taint",
    "Toleration",
    "Volume",
    "VolumeDevice",
    "VolumeMount",
    "VolumeProjection",
]
