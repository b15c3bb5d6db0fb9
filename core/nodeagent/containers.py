"""From a pod spec to the runtime's messages: the sandbox config and each container's
config (resources as cgroup values, security context, mounts), as the kubelet's
``kuberuntime`` package builds them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from kcore.api.quantity import parse_quantity
from kcore.errors import Invalid

POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
CONTAINER_KIND = "kcore.io/container-kind"  # "init" or "app"
TERMINATION_LOG = "io.kubernetes.container.terminationMessagePath"

CPU_PERIOD = 100_000
MIN_SHARES = 2
MAX_SHARES = 262_144
MIN_QUOTA = 1_000


def container_hash(container: Mapping[str, Any]) -> str:
    """A digest of the container's spec: a change means the container is replaced."""
    text = json.dumps(container, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _milli(value: Any) -> int:
    return int((parse_quantity(value) * 1000).to_integral_value(ROUND_CEILING))


def linux_resources(container: Mapping[str, Any]) -> dict[str, Any]:
    """requests and limits as cgroup values: cpu shares from the cpu request (2 when
    none), a CFS quota from the cpu limit, the memory limit in bytes (kubelet
    ``generateLinuxContainerResources``)."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    out: dict[str, Any] = {}
    cpu_request = requests.get("cpu", limits.get("cpu"))
    shares = MIN_SHARES
    if cpu_request is not None:
        shares = max(MIN_SHARES, min(MAX_SHARES, _milli(cpu_request) * 1024 // 1000))
    out["cpu_shares"] = shares
    if "cpu" in limits:
        out["cpu_period"] = CPU_PERIOD
        out["cpu_quota"] = max(MIN_QUOTA, _milli(limits["cpu"]) * CPU_PERIOD // 1000)
    if "memory" in limits:
        out["memory_limit_in_bytes"] = int(
            parse_quantity(limits["memory"]).to_integral_value(ROUND_CEILING)
        )
    return out


def security_context(
    pod: Mapping[str, Any], container: Mapping[str, Any], *, share_pid: bool
) -> dict[str, Any]:
    """The container's CRI security context from the pod's and the container's."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    out: dict[str, Any] = {}
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if user is not None:
        out["run_as_user"] = {"value": int(user)}
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if group is not None:
        out["run_as_group"] = {"value": int(group)}
    if pod_sc.get("supplementalGroups"):
        out["supplemental_groups"] = [int(g) for g in pod_sc["supplementalGroups"]]
    if sc.get("privileged"):
        out["privileged"] = True
    if sc.get("readOnlyRootFilesystem"):
        out["readonly_rootfs"] = True
    caps = sc.get("capabilities") or {}
    if caps:
        out["capabilities"] = {
            "add_capabilities": list(caps.get("add") or []),
            "drop_capabilities": list(caps.get("drop") or []),
        }
    if sc.get("allowPrivilegeEscalation") is False:
        out["no_new_privs"] = True
    spec = pod.get("spec") or {}
    out["namespace_options"] = {
        "network": "NODE" if spec.get("hostNetwork") else "POD",
        "pid": "NODE" if spec.get("hostPID") else ("POD" if share_pid else "CONTAINER"),
        "ipc": "NODE" if spec.get("hostIPC") else "POD",
    }
    return out


def sandbox_config(
    pod: Mapping[str, Any], *, attempt: int, log_directory: Path, dns: Mapping[str, Any] | None
) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    hostname = (spec.get("hostname") or meta.get("name") or "pod")[:63].rstrip("-.")
    port_mappings = [
        {
            "protocol": port.get("protocol") or "TCP",
            "container_port": int(port["containerPort"]),
            "host_port": int(port.get("hostPort") or 0),
            "host_ip": port.get("hostIP") or "",
        }
        for c in spec.get("containers") or []
        for port in c.get("ports") or []
        if port.get("hostPort")
    ]
    share_pid = bool(spec.get("shareProcessNamespace"))
    return {
        "metadata": {
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "namespace": meta.get("namespace"),
            "attempt": attempt,
        },
        "hostname": hostname,
        "log_directory": str(log_directory),
        "dns_config": dict(dns or {}),
        "port_mappings": port_mappings,
        "labels": {
            POD_UID: meta.get("uid"),
            POD_NAME: meta.get("name"),
            POD_NAMESPACE: meta.get("namespace"),
        },
        "annotations": dict(meta.get("annotations") or {}),
        "linux": {
            "security_context": {
                "namespace_options": {
                    "network": "NODE" if spec.get("hostNetwork") else "POD",
                    "pid": "NODE" if spec.get("hostPID") else ("POD" if share_pid else "CONTAINER"),
                    "ipc": "NODE" if spec.get("hostIPC") else "POD",
                }
            },
            "sysctls": {
                s["name"]: str(s.get("value", ""))
                for s in (spec.get("securityContext") or {}).get("sysctls") or []
                if s.get("name")
            },
        },
    }


def sub_path(base: Path, sub: str) -> Path:
    """``base/sub`` for a ``subPath`` mount, created as a directory when missing, refused
    when it leaves ``base`` (``..``, an absolute path, or a symlink pointing out)."""
    if sub.startswith("/") or ".." in sub.split("/"):
        raise Invalid(f"subPath {sub!r} must be a relative path without '..'")
    path = base / sub
    if not path.exists() and not path.is_symlink():
        path.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(path)
    root = os.path.realpath(base)
    if real != root and not real.startswith(root + os.sep):
        raise Invalid(f"subPath {sub!r} points outside its volume")
    return Path(real)


def mounts(
    container: Mapping[str, Any],
    volume_paths: Mapping[str, Path],
    read_only: Collection[str] = (),
) -> list[dict[str, Any]]:
    """The CRI mounts of ``volumeMounts``; ``volume_paths`` gives each volume's node path,
    ``read_only`` the volumes mounted read-only whatever the mount says (API data:
    configMap, secret, downwardAPI, projected)."""
    out = []
    for mount in container.get("volumeMounts") or []:
        name = mount.get("name")
        if name not in volume_paths:
            raise Invalid(f"volumeMount {name!r} names no volume of the pod")
        host = volume_paths[name]
        sub = mount.get("subPath") or ""
        if sub:
            host = sub_path(host, sub)
        propagation = {
            "HostToContainer": "PROPAGATION_HOST_TO_CONTAINER",
            "Bidirectional": "PROPAGATION_BIDIRECTIONAL",
        }.get(mount.get("mountPropagation") or "", "PROPAGATION_PRIVATE")
        out.append(
            {
                "container_path": mount["mountPath"],
                "host_path": str(host),
                "readonly": bool(mount.get("readOnly")) or name in read_only,
                "propagation": propagation,
            }
        )
    return out


def container_config(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    kind: str,
    attempt: int,
    env: Sequence[Mapping[str, str]],
    command: Sequence[str],
    args: Sequence[str],
    mounts: Sequence[Mapping[str, Any]],
    termination_log: Path | None,
) -> dict[str, Any]:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name = container["name"]
    all_mounts = list(mounts)
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    if termination_log is not None:
        all_mounts.append(
            {"container_path": path, "host_path": str(termination_log), "readonly": False}
        )
    config: dict[str, Any] = {
        "metadata": {"name": name, "attempt": attempt},
        "image": {"image": container.get("image") or ""},
        "command": list(command),
        "args": list(args),
        "working_dir": container.get("workingDir") or "",
        "envs": [{"key": e["name"], "value": e.get("value", "")} for e in env],
        "mounts": all_mounts,
        "labels": {
            POD_UID: meta.get("uid"),
            POD_NAME: meta.get("name"),
            POD_NAMESPACE: meta.get("namespace"),
            CONTAINER_NAME: name,
            CONTAINER_KIND: kind,
        },
        "annotations": {
            CONTAINER_HASH: container_hash(container),
            TERMINATION_LOG: path,
            "io.kubernetes.container.restartCount": str(attempt),
        },
        "log_path": f"{name}/{attempt}.log",
        "stdin": bool(container.get("stdin")),
        "stdin_once": bool(container.get("stdinOnce")),
        "tty": bool(container.get("tty")),
        "linux": {
            "resources": linux_resources(container),
            "security_context": security_context(
                pod, container, share_pid=bool(spec.get("shareProcessNamespace"))
            ),
        },
    }
    stop_signal = (container.get("lifecycle") or {}).get("stopSignal")
    if stop_signal:
        config["stop_signal"] = stop_signal
    return config


def resource_value(container: Mapping[str, Any], which: str, resource: str) -> Decimal | None:
    value = ((container.get("resources") or {}).get(which) or {}).get(resource)
    return None if value is None else parse_quantity(value)


__all__ = [
    "CONTAINER_HASH",
    "CONTAINER_KIND",
    "CONTAINER_NAME",
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_UID",
    "container_config",
    "container_hash",
    "linux_resources",
    "mounts",
    "sandbox_config",
    "security_context",
    "sub_path",
]
