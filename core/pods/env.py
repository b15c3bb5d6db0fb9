"""A container's environment, as the kubelet's ``makeEnvironmentVariables`` builds it.

``envFrom`` first (each ConfigMap's ``data`` or Secret's ``data``, with ``prefix``), then
``env`` in order, overriding: ``value`` with ``$(VAR)`` expanded against what is defined
so far (and the service variables), or ``valueFrom`` (``configMapKeyRef``,
``secretKeyRef``, ``fieldRef``, ``resourceFieldRef``). Then the service variables the
container did not define. A missing object or key that is not ``optional`` raises
``NotFound`` with the kubelet's message (``configmap "x" not found``, ``couldn't find key
k in ConfigMap ns/x``), which the node agent reports as ``CreateContainerConfigError``.

The node agent also expands ``command`` and ``args`` with :func:`expand_args`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kcore.errors import NotFound
from kcore.pods.fieldpath import pod_field
from kcore.pods.objects import fetch, pod_namespace, secret_data
from kcore.pods.resources import container_resource_value, find_container

Warn = Callable[[str, str], None]
"""``warn(reason, message)``: how the node agent learns of a Warning event to record."""


def expand(text: str, *mappings: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: the first mapping that has ``VAR`` gives its
    value; an unknown or unclosed reference stays as written; ``$$`` is a literal ``$``."""
    out: list[str] = []
    i, checkpoint, n = 0, 0, len(text)
    while i < n:
        if text[i] == "$" and i + 1 < n:
            out.append(text[checkpoint:i])
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 1
            elif nxt == "(":
                close = text.find(")", i + 2)
                if close == -1:
                    out.append("$(")
                    i += 1
                else:
                    name = text[i + 2 : close]
                    for mapping in mappings:
                        if name in mapping:
                            out.append(mapping[name])
                            break
                    else:
                        out.append(f"$({name})")
                    i = close
            else:
                out.append("$" + nxt)
                i += 1
            checkpoint = i + 1
        i += 1
    out.append(text[checkpoint:])
    return "".join(out)


def expand_args(args: Sequence[str] | None, env: Sequence[Mapping[str, str]]) -> list[str]:
    """``command`` or ``args`` with ``$(VAR)`` expanded against the container's final
    environment (a list as :func:`resolve_env` returns it)."""
    values = {e["name"]: e["value"] for e in env}
    return [expand(arg, values) for arg in args or []]


def _valid_name(name: str) -> bool:
    """Any printable ASCII but ``=`` (kubernetes/kubernetes#123385)."""
    return bool(name) and all(" " <= c <= "~" for c in name) and "=" not in name


async def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    api: Any,
    *,
    node_allocatable: Mapping[str, Any] | None = None,
    pod_ips: Sequence[str] | None = None,
    host_ips: Sequence[str] | None = None,
    service_env: Mapping[str, str] | None = None,
    warn: Warn | None = None,
) -> list[dict[str, str]]:
    """The environment of ``container`` in ``pod``: ``[{"name": ..., "value": ...}]``.

    ``pod_ips`` and ``host_ips`` default to the pod's status; ``node_allocatable`` gives
    the limits a container does not set (default: this machine's); ``service_env`` are the
    ``<SVC>_SERVICE_HOST``... variables; ``warn`` gets ``InvalidEnvironmentVariableNames``
    for ``envFrom`` keys that cannot be variable names (they are skipped)."""
    namespace = pod_namespace(pod)
    services = dict(service_env or {})
    objects: dict[tuple[str, str], Mapping[str, bytes] | None] = {}

    async def data_of(kind: str, name: str, optional: bool) -> Mapping[str, bytes] | None:
        if (kind, name) not in objects:
            obj = await fetch(api, kind, namespace, name, optional=optional)
            if obj is None:
                return None
            if kind == "ConfigMap":
                objects[kind, name] = {
                    k: str(v).encode() for k, v in (obj.get("data") or {}).items()
                }
            else:
                objects[kind, name] = secret_data(obj)
        return objects[kind, name]

    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        for key, kind, word in (
            ("configMapRef", "ConfigMap", "configMap"),
            ("secretRef", "Secret", "secret"),
        ):
            ref = source.get(key)
            if ref is None:
                continue
            name = ref.get("name") or ""
            data = await data_of(kind, name, bool(ref.get("optional")))
            if data is None:
                continue
            invalid = []
            for k, v in data.items():
                if not _valid_name(prefix + k):
                    invalid.append(prefix + k)
                    continue
                env[prefix + k] = v.decode(errors="replace")
            if invalid and warn is not None:
                warn(
                    "InvalidEnvironmentVariableNames",
                    f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {word} "
                    f"{namespace}/{name} were skipped since they are considered invalid "
                    "environment variable names.",
                )

    for var in container.get("env") or []:
        name = var.get("name") or ""
        value = var.get("value") or ""
        source = var.get("valueFrom")
        if value or source is None:
            env[name] = expand(value, env, services)
            continue
        if source.get("fieldRef") is not None:
            env[name] = pod_field(
                pod,
                source["fieldRef"],
                for_env=True,
                pod_ips=pod_ips,
                host_ips=host_ips,
                field=f"env[{name}].valueFrom.fieldRef.fieldPath",
            )
        elif source.get("resourceFieldRef") is not None:
            ref = source["resourceFieldRef"]
            target = (
                find_container(pod, ref["containerName"]) if ref.get("containerName") else container
            )
            env[name] = container_resource_value(
                target, ref.get("resource") or "", ref.get("divisor"), node_allocatable
            )
        elif source.get("configMapKeyRef") is not None or source.get("secretKeyRef") is not None:
            kind = "ConfigMap" if source.get("configMapKeyRef") is not None else "Secret"
            ref = source["configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"]
            optional = bool(ref.get("optional"))
            ref_name, ref_key = ref.get("name") or "", ref.get("key") or ""
            data = await data_of(kind, ref_name, optional)
            if data is None:
                continue
            if ref_key not in data:
                if optional:
                    continue
                raise NotFound(f"couldn't find key {ref_key} in {kind} {namespace}/{ref_name}")
            env[name] = data[ref_key].decode(errors="replace")
        else:
            env[name] = ""

    out = [{"name": k, "value": v} for k, v in env.items()]
    out += [{"name": k, "value": v} for k, v in services.items() if k not in env]
    return out


__all__ = ["Warn", "expand", "expand_args", "resolve_env"]
