"""Pod fields as the downward API shows them (KK ``pkg/fieldpath/fieldpath.go`` and the
kubelet's ``podFieldSelectorRuntimeValue``).

Both env and volumes: ``metadata.name|namespace|uid``, ``metadata.labels['k']``,
``metadata.annotations['k']``. Volumes only: ``metadata.labels`` and
``metadata.annotations`` (sorted ``key="value"`` lines, Go ``%q`` quoting, no final
newline). Env only: ``spec.nodeName``, ``spec.serviceAccountName``, ``status.hostIP(s)``,
``status.podIP(s)`` (plurals comma-joined).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kcore.pods.objects import invalid

BOTH = frozenset({"metadata.name", "metadata.namespace", "metadata.uid"})
VOLUME_ONLY = frozenset({"metadata.labels", "metadata.annotations"})
ENV_ONLY = frozenset(
    {
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
SUBSCRIPTED = frozenset({"metadata.labels", "metadata.annotations"})

_ESCAPES = {
    "\a": r"\a",
    "\b": r"\b",
    "\f": r"\f",
    "\n": r"\n",
    "\r": r"\r",
    "\t": r"\t",
    "\v": r"\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(text: str) -> str:
    """``text`` as Go's ``strconv.Quote`` (``%q``) writes it: printable characters kept,
    the usual backslash escapes, ``\\xNN`` below 0x80, ``\\uNNNN`` or ``\\UNNNNNNNN`` above."""
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def format_map(values: Mapping[str, str] | None) -> str:
    """Sorted ``key="value"`` lines without a final newline (``fieldpath.FormatMap``)."""
    return "\n".join(f"{key}={go_quote(str(values[key]))}" for key in sorted(values or {}))


def split_subscript(field_path: str) -> tuple[str, str | None]:
    """``metadata.labels['app']`` -> ``("metadata.labels", "app")``; else ``(path, None)``."""
    if not field_path.endswith("']"):
        return field_path, None
    path, sep, key = field_path[:-2].partition("['")
    if not sep or not path:
        return field_path, None
    return path, key


def pod_field(
    pod: Mapping[str, Any],
    field_ref: Mapping[str, Any],
    *,
    for_env: bool = False,
    pod_ips: Sequence[str] | None = None,
    host_ips: Sequence[str] | None = None,
    field: str = "fieldRef.fieldPath",
) -> str:
    """The value of ``fieldRef`` (``{apiVersion, fieldPath}``) for ``pod``. ``pod_ips`` and
    ``host_ips`` default to the pod's status (the node agent knows them before it posts
    that status)."""
    version = field_ref.get("apiVersion") or "v1"
    if version != "v1":
        raise invalid(field, f"unsupported pod version: {version}")
    field_path = field_ref.get("fieldPath") or ""
    meta = pod.get("metadata") or {}
    path, key = split_subscript(field_path)
    if key is not None:
        if path not in SUBSCRIPTED:
            raise invalid(field, f'fieldPath "{field_path}" does not support subscript')
        if not key:
            raise invalid(field, f"invalid key subscript in {field_path}")
        return str((meta.get(path.split(".")[1]) or {}).get(key, ""))
    allowed = BOTH | (ENV_ONLY if for_env else VOLUME_ONLY)
    if field_path not in allowed:
        raise invalid(field, f"unsupported fieldPath: {field_path}")
    if field_path in VOLUME_ONLY:
        return format_map(meta.get(field_path.split(".")[1]))
    if field_path in BOTH:
        return str(meta.get(field_path.split(".")[1]) or "")
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if field_path == "spec.nodeName":
        return str(spec.get("nodeName") or "")
    if field_path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName") or "")
    if field_path.startswith("status.host"):
        ips = list(host_ips) if host_ips is not None else _ips(status, "hostIP")
    else:
        ips = list(pod_ips) if pod_ips is not None else _ips(status, "podIP")
    return ",".join(ips) if field_path.endswith("IPs") else (ips[0] if ips else "")


def _ips(status: Mapping[str, Any], key: str) -> list[str]:
    listed = [entry.get("ip", "") for entry in status.get(key + "s") or [] if entry.get("ip")]
    if listed:
        return listed
    return [status[key]] if status.get(key) else []


__all__ = ["format_map", "go_quote", "pod_field", "split_subscript"]
