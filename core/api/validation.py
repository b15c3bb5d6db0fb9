"""Validation: every rule in one place, every error with its field path.

:func:`validate` collects *all* the problems of an object and raises one
:class:`~kcore.errors.Invalid` whose ``causes`` name each field the way Kubernetes does
(``spec.containers[0].image``) with Kubernetes' own wording, so that kubectl and the
Python client print what a Kubernetes user expects::

    Pod "web" is invalid: spec.containers[0].image: Required value

Validation runs after defaulting, as in Kubernetes, but never relies on it: an unset
field that defaulting would fill is not an error.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import posixpath
import re
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from kcore.api import (
    apps_v1,
    batch_v1,
    certificates_v1,
    coordination_v1,
    core_v1,
    discovery_v1,
    events_v1,
    registry,
)
from kcore.api.meta import LabelSelector, ObjectMeta
from kcore.api.quantity import QUANTITY_ERROR, parse_quantity
from kcore.errors import FieldError, Invalid

# --------------------------------------------------------------------------- messages


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Kubernetes' ``RegexError``, double spaces and all."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = f"({QUALIFIED_NAME_FMT})?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
CONFIG_KEY_ERR = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
PERCENT_FMT = "[0-9]+%"
PERCENT_ERR = "a valid percent string must be a numeric string followed by an ending '%'"
PORT_RANGE_ERR = "must be between 1 and 65535, inclusive"
NON_NEGATIVE_ERR = "must be greater than or equal to 0"
TOTAL_ANNOTATION_SIZE = 256 * 1024
MAX_CONFIG_SIZE = 1024 * 1024

_DNS1123_LABEL = re.compile(f"^{DNS1123_LABEL_FMT}\\Z")
_DNS1123_SUBDOMAIN = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}\\Z")
_DNS1035_LABEL = re.compile(f"^{DNS1035_LABEL_FMT}\\Z")
_QUALIFIED_NAME = re.compile(f"^{QUALIFIED_NAME_FMT}\\Z")
_LABEL_VALUE = re.compile(f"^{LABEL_VALUE_FMT}\\Z")
_CONFIG_KEY = re.compile(f"^{CONFIG_KEY_FMT}\\Z")
_PERCENT = re.compile(f"^{PERCENT_FMT}\\Z")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+\Z")
_HAS_LETTER = re.compile("[a-z]")


# --------------------------------------------------------------------------- string checks
# Each returns a list of messages (empty when valid), as apimachinery's IsXxx do.


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _DNS1123_LABEL.match(value):
        errs.append(_regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not _DNS1123_SUBDOMAIN.match(value):
        errs.append(_regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _DNS1035_LABEL.match(value):
        errs.append(_regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and ``/``, then a name."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend(f"prefix part {m}" for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _QUALIFIED_NAME.match(name):
        errs.append(
            "name part "
            + _regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _LABEL_VALUE.match(value):
        errs.append(_regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_name(value: str) -> list[str]:
    """An IANA service name, as container and target ports use."""
    errs = []
    if len(value) > 15:
        errs.append(_max_len(15))
    if not _IANA_SVC_NAME.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(value: int) -> list[str]:
    return [] if 1 <= value <= 65535 else [PORT_RANGE_ERR]


def is_config_map_key(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not _CONFIG_KEY.match(value):
        errs.append(
            _regex_error(CONFIG_KEY_ERR, CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")
        )
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_env_var_name(value: str) -> list[str]:
    if all(" " <= ch <= "~" for ch in value) and "=" not in value:
        return []
    return [
        "a valid environment variable name must consist only of printable ASCII characters "
        "other than '='"
    ]


def is_ip(value: str) -> list[str]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_cidr(value: str) -> list[str]:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    return []


# --------------------------------------------------------------------------- error list


def _show(value: Any) -> str:
    """Format a value the way Kubernetes' field errors print it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in sorted(value.items()))
        return f"map[string]string{{{items}}}"
    return json.dumps(value, default=str, sort_keys=True)


class ErrorList(list[FieldError]):
    """The field errors found so far, with one method per Kubernetes error type."""

    def required(self, path: str, detail: str = "") -> None:
        msg = f"Required value: {detail}" if detail else "Required value"
        self.append(FieldError(path, msg, reason="FieldValueRequired"))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.append(FieldError(path, f"Invalid value: {_show(value)}: {detail}"))

    def not_supported(self, path: str, value: Any, supported: Iterable[str]) -> None:
        listed = ", ".join(json.dumps(s) for s in supported)
        self.append(
            FieldError(
                path,
                f"Unsupported value: {_show(value)}: supported values: {listed}",
                reason="FieldValueNotSupported",
            )
        )

    def duplicate(self, path: str, value: Any) -> None:
        self.append(
            FieldError(path, f"Duplicate value: {_show(value)}", reason="FieldValueDuplicate")
        )

    def not_found(self, path: str, value: Any) -> None:
        self.append(FieldError(path, f"Not found: {_show(value)}", reason="FieldValueNotFound"))

    def forbidden(self, path: str, detail: str) -> None:
        self.append(FieldError(path, f"Forbidden: {detail}", reason="FieldValueForbidden"))

    def too_long(self, path: str, limit: int) -> None:
        self.append(
            FieldError(
                path,
                f"Too long: may not be more than {limit} bytes",
                reason="FieldValueTooLong",
            )
        )

    def check(self, path: str, value: Any, messages: list[str]) -> None:
        for msg in messages:
            self.invalid(path, value, msg)

    def non_negative(self, path: str, value: int | None) -> None:
        if value is not None and value < 0:
            self.invalid(path, value, NON_NEGATIVE_ERR)

    def one_of(self, path: str, value: str | None, supported: tuple[str, ...]) -> None:
        if value is not None and value not in supported:
            self.not_supported(path, value, supported)


def invalid_error(kind: str, group: str, name: str | None, causes: list[FieldError]) -> Invalid:
    """The Invalid error for an object, worded as Kubernetes words it.

    ``Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be ...``
    """
    qualified = f"{kind}.{group}" if group else kind
    listed = "; ".join(str(c) for c in causes)
    body = listed if len(causes) == 1 else f"[{listed}]"
    return Invalid(f'{qualified} "{name or ""}" is invalid: {body}', causes)


# --------------------------------------------------------------------------- metadata

NameCheck = Callable[[str], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_labels(labels: dict[str, str], path: str, errs: ErrorList) -> None:
    for key, value in labels.items():
        errs.check(path, key, is_qualified_name(key))
        errs.check(path, value, is_valid_label_value(value))


def validate_annotations(annotations: dict[str, str], path: str, errs: ErrorList) -> None:
    total = 0
    for key, value in annotations.items():
        errs.check(path, key, is_qualified_name(key.lower()))
        total += len(key) + len(value)
    if total > TOTAL_ANNOTATION_SIZE:
        errs.too_long(path, TOTAL_ANNOTATION_SIZE)


def validate_object_meta(
    meta: ObjectMeta,
    errs: ErrorList,
    *,
    name_check: NameCheck = is_dns1123_subdomain,
    namespaced: bool | None = True,
    path: str = "metadata",
) -> None:
    """Name, namespace, labels, annotations, owner references and finalizers.

    ``namespaced=None`` skips the namespace checks (templates, or a caller that fills the
    namespace in later).
    """
    if meta.generate_name:
        errs.check(
            f"{path}.generateName",
            meta.generate_name,
            name_check(_mask_trailing_dash(meta.generate_name)),
        )
    if not meta.name:
        if not meta.generate_name:
            errs.required(f"{path}.name", "name or generateName is required")
    else:
        errs.check(f"{path}.name", meta.name, name_check(meta.name))
    if namespaced is True:
        if not meta.namespace:
            errs.required(f"{path}.namespace")
        else:
            errs.check(f"{path}.namespace", meta.namespace, is_dns1123_label(meta.namespace))
    elif namespaced is False and meta.namespace:
        errs.forbidden(f"{path}.namespace", "not allowed on this type")
    if meta.generation is not None:
        errs.non_negative(f"{path}.generation", meta.generation)
    if meta.deletion_grace_period_seconds is not None:
        errs.non_negative(f"{path}.deletionGracePeriodSeconds", meta.deletion_grace_period_seconds)
    validate_labels(meta.labels, f"{path}.labels", errs)
    validate_annotations(meta.annotations, f"{path}.annotations", errs)
    controllers = 0
    for i, ref in enumerate(meta.owner_references):
        ref_path = f"{path}.ownerReferences[{i}]"
        for attr, wire in (
            ("api_version", "apiVersion"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ):
            if not getattr(ref, attr):
                errs.required(f"{ref_path}.{wire}")
        if ref.controller:
            controllers += 1
    if controllers > 1:
        errs.invalid(
            f"{path}.ownerReferences",
            [r.name for r in meta.owner_references if r.controller],
            "Only one reference can have Controller set to true",
        )
    for i, finalizer in enumerate(meta.finalizers):
        errs.check(f"{path}.finalizers[{i}]", finalizer, is_qualified_name(finalizer))


# --------------------------------------------------------------------------- paths


def validate_local_descending_path(value: str, path: str, errs: ErrorList) -> None:
    """A path inside a volume: relative, and no ``..`` element."""
    if posixpath.isabs(value) or value.startswith("\\"):
        errs.invalid(path, value, "must be a relative path")
    validate_path_no_backsteps(value, path, errs)


def validate_path_no_backsteps(value: str, path: str, errs: ErrorList) -> None:
    if ".." in value.replace("\\", "/").split("/"):
        errs.invalid(path, value, "must not contain '..'")


def validate_local_non_reserved_path(value: str, path: str, errs: ErrorList) -> None:
    validate_local_descending_path(value, path, errs)
    if value.startswith("..") and not value.startswith("../"):
        errs.invalid(path, value, "must not start with '..'")


# --------------------------------------------------------------------------- pods

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP", "SCTP")
MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Exists", "Equal")
ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
RESOURCE_FIELD_REFS = (
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
)
_SUBSCRIPTED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]\Z")
MAX_FILE_MODE = 0o777


def _validate_field_ref(
    ref: core_v1.ObjectFieldSelector, path: str, supported: tuple[str, ...], errs: ErrorList
) -> None:
    if not ref.field_path:
        errs.required(f"{path}.fieldPath")
        return
    subscripted = _SUBSCRIPTED_FIELD.match(ref.field_path)
    if subscripted:
        errs.check(
            f"{path}.fieldPath",
            subscripted.group(2),
            is_qualified_name(subscripted.group(2).lower()),
        )
    elif ref.field_path not in supported:
        errs.not_supported(f"{path}.fieldPath", ref.field_path, supported)


def _validate_resource_field_ref(
    ref: core_v1.ResourceFieldSelector, path: str, errs: ErrorList
) -> None:
    if not ref.resource:
        errs.required(f"{path}.resource")
    elif ref.resource not in RESOURCE_FIELD_REFS and not ref.resource.startswith(
        ("limits.hugepages-", "requests.hugepages-")
    ):
        errs.not_supported(f"{path}.resource", ref.resource, RESOURCE_FIELD_REFS)
    if ref.divisor is not None:
        _validate_quantity(ref.divisor, f"{path}.divisor", errs)


def _validate_quantity(value: Any, path: str, errs: ErrorList) -> Any:
    try:
        q = parse_quantity(value)
    except (ValueError, TypeError):
        errs.invalid(path, value, QUANTITY_ERROR)
        return None
    if q < 0:
        errs.invalid(path, value, NON_NEGATIVE_ERR)
        return None
    return q


def _validate_env(env: list[core_v1.EnvVar], path: str, errs: ErrorList) -> None:
    for i, var in enumerate(env):
        p = f"{path}[{i}]"
        if not var.name:
            errs.required(f"{p}.name")
        else:
            errs.check(f"{p}.name", var.name, is_env_var_name(var.name))
        src = var.value_from
        if src is None:
            continue
        if var.value:
            errs.invalid(f"{p}.valueFrom", "", "may not be specified when `value` is not empty")
        refs = [
            n
            for n in (
                "field_ref",
                "resource_field_ref",
                "config_map_key_ref",
                "secret_key_ref",
                "file_key_ref",
            )
            if getattr(src, n) is not None
        ]
        if not refs:
            errs.invalid(
                f"{p}.valueFrom",
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )
        elif len(refs) > 1:
            errs.invalid(
                f"{p}.valueFrom", "", "may not have more than one field specified at a time"
            )
        if src.field_ref is not None:
            _validate_field_ref(src.field_ref, f"{p}.valueFrom.fieldRef", ENV_FIELD_PATHS, errs)
        if src.resource_field_ref is not None:
            _validate_resource_field_ref(
                src.resource_field_ref, f"{p}.valueFrom.resourceFieldRef", errs
            )
        for attr, wire in (
            ("config_map_key_ref", "configMapKeyRef"),
            ("secret_key_ref", "secretKeyRef"),
        ):
            ref = getattr(src, attr)
            if ref is None:
                continue
            if not ref.name:
                errs.required(f"{p}.valueFrom.{wire}.name")
            if not ref.key:
                errs.required(f"{p}.valueFrom.{wire}.key")
            else:
                errs.check(f"{p}.valueFrom.{wire}.key", ref.key, is_config_map_key(ref.key))


def _validate_env_from(env_from: list[core_v1.EnvFromSource], path: str, errs: ErrorList) -> None:
    for i, src in enumerate(env_from):
        p = f"{path}[{i}]"
        if src.prefix:
            errs.check(f"{p}.prefix", src.prefix, is_env_var_name(src.prefix))
        refs = [r for r in (src.config_map_ref, src.secret_ref) if r is not None]
        if not refs:
            errs.invalid(p, "", "must specify one of: `configMapRef` or `secretRef`")
        elif len(refs) > 1:
            errs.invalid(p, "", "may not have more than one field specified at a time")
        if src.config_map_ref is not None and not src.config_map_ref.name:
            errs.required(f"{p}.configMapRef.name")
        if src.secret_ref is not None and not src.secret_ref.name:
            errs.required(f"{p}.secretRef.name")


def _validate_port_ref(port: Any, path: str, errs: ErrorList, *, required: bool = True) -> None:
    """An int-or-string port: a number in range, or an IANA service name."""
    if port is None or port == "":
        if required:
            errs.required(path)
        return
    if isinstance(port, int):
        errs.check(path, port, is_valid_port_num(port))
    else:
        errs.check(path, port, is_valid_port_name(port))


def _handler_types(handler: Any, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if getattr(handler, n, None) is not None]


def _validate_handler(handler: Any, path: str, errs: ErrorList, names: tuple[str, ...]) -> None:
    kinds = _handler_types(handler, names)
    if not kinds:
        errs.required(path, "must specify a handler type")
    elif len(kinds) > 1:
        errs.forbidden(f"{path}.{_camel(kinds[1])}", "may not specify more than 1 handler type")
    if handler.exec is not None and not handler.exec.command:
        errs.required(f"{path}.exec.command")
    if handler.http_get is not None:
        _validate_port_ref(handler.http_get.port, f"{path}.httpGet.port", errs)
        errs.one_of(f"{path}.httpGet.scheme", handler.http_get.scheme, ("HTTP", "HTTPS"))
    if handler.tcp_socket is not None:
        _validate_port_ref(handler.tcp_socket.port, f"{path}.tcpSocket.port", errs)
    grpc = getattr(handler, "grpc", None)
    if grpc is not None:
        if grpc.port is None:
            errs.required(f"{path}.grpc.port")
        else:
            errs.check(f"{path}.grpc.port", grpc.port, is_valid_port_num(grpc.port))
    sleep = getattr(handler, "sleep", None)
    if sleep is not None and sleep.seconds is not None:
        errs.non_negative(f"{path}.sleep.seconds", sleep.seconds)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def _validate_probe(
    probe: core_v1.Probe | None, path: str, errs: ErrorList, *, single_success: bool
) -> None:
    if probe is None:
        return
    _validate_handler(probe, path, errs, ("exec", "http_get", "tcp_socket", "grpc"))
    for attr in (
        "initial_delay_seconds",
        "timeout_seconds",
        "period_seconds",
        "success_threshold",
        "failure_threshold",
    ):
        value = getattr(probe, attr)
        errs.non_negative(f"{path}.{_camel(attr)}", value)
    if single_success and probe.success_threshold is not None and probe.success_threshold != 1:
        errs.invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1")
    if (
        probe.termination_grace_period_seconds is not None
        and probe.termination_grace_period_seconds <= 0
    ):
        errs.invalid(
            f"{path}.terminationGracePeriodSeconds",
            probe.termination_grace_period_seconds,
            "must be greater than 0",
        )


def _validate_resources(
    res: core_v1.ResourceRequirements | None, path: str, errs: ErrorList
) -> None:
    if res is None:
        return
    limits = {k: _validate_quantity(v, f"{path}.limits[{k}]", errs) for k, v in res.limits.items()}
    for key, value in res.requests.items():
        q = _validate_quantity(value, f"{path}.requests[{key}]", errs)
        limit = limits.get(key)
        if q is not None and limit is not None and q > limit:
            errs.invalid(
                f"{path}.requests[{key}]",
                str(value),
                f"must be less than or equal to {key} limit of {res.limits[key]}",
            )


def _validate_container(
    ctr: core_v1.Container,
    path: str,
    volumes: set[str],
    errs: ErrorList,
    *,
    host_network: bool,
    init: bool,
) -> None:
    if not ctr.name:
        errs.required(f"{path}.name")
    else:
        errs.check(f"{path}.name", ctr.name, is_dns1123_label(ctr.name))
    if not ctr.image:
        errs.required(f"{path}.image")
    elif ctr.image != ctr.image.strip():
        errs.invalid(f"{path}.image", ctr.image, "must not have leading or trailing whitespace")
    errs.one_of(f"{path}.imagePullPolicy", ctr.image_pull_policy, PULL_POLICIES)
    errs.one_of(
        f"{path}.terminationMessagePolicy", ctr.termination_message_policy, MESSAGE_POLICIES
    )
    if init:
        errs.one_of(f"{path}.restartPolicy", ctr.restart_policy, ("Always",))
    elif ctr.restart_policy is not None:
        errs.forbidden(f"{path}.restartPolicy", "may not be set for non-init containers")

    port_names: set[str] = set()
    for i, port in enumerate(ctr.ports):
        p = f"{path}.ports[{i}]"
        if port.name:
            errs.check(f"{p}.name", port.name, is_valid_port_name(port.name))
            if port.name in port_names:
                errs.duplicate(f"{p}.name", port.name)
            port_names.add(port.name)
        if not port.container_port:
            errs.required(f"{p}.containerPort")
        else:
            errs.check(
                f"{p}.containerPort", port.container_port, is_valid_port_num(port.container_port)
            )
        if port.host_port:
            errs.check(f"{p}.hostPort", port.host_port, is_valid_port_num(port.host_port))
            if host_network and port.container_port and port.host_port != port.container_port:
                errs.invalid(
                    f"{p}.hostPort",
                    port.host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                )
        errs.one_of(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.host_ip:
            errs.check(f"{p}.hostIP", port.host_ip, is_ip(port.host_ip))

    _validate_env(ctr.env, f"{path}.env", errs)
    _validate_env_from(ctr.env_from, f"{path}.envFrom", errs)
    _validate_resources(ctr.resources, f"{path}.resources", errs)

    mount_paths: set[str] = set()
    for i, mount in enumerate(ctr.volume_mounts):
        p = f"{path}.volumeMounts[{i}]"
        if not mount.name:
            errs.required(f"{p}.name")
        elif mount.name not in volumes:
            errs.not_found(f"{p}.name", mount.name)
        if not mount.mount_path:
            errs.required(f"{p}.mountPath")
        elif mount.mount_path in mount_paths:
            errs.invalid(f"{p}.mountPath", mount.mount_path, "must be unique")
        else:
            mount_paths.add(mount.mount_path)
        if mount.sub_path:
            validate_local_descending_path(mount.sub_path, f"{p}.subPath", errs)
        if mount.sub_path_expr:
            if mount.sub_path:
                errs.invalid(
                    f"{p}.subPathExpr",
                    mount.sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                )
            validate_local_descending_path(mount.sub_path_expr, f"{p}.subPathExpr", errs)
        errs.one_of(f"{p}.mountPropagation", mount.mount_propagation, MOUNT_PROPAGATIONS)

    _validate_probe(ctr.liveness_probe, f"{path}.livenessProbe", errs, single_success=True)
    _validate_probe(ctr.readiness_probe, f"{path}.readinessProbe", errs, single_success=False)
    _validate_probe(ctr.startup_probe, f"{path}.startupProbe", errs, single_success=True)
    if init and ctr.restart_policy != "Always":
        for attr, wire in (
            ("liveness_probe", "livenessProbe"),
            ("readiness_probe", "readinessProbe"),
            ("startup_probe", "startupProbe"),
        ):
            if getattr(ctr, attr) is not None:
                errs.forbidden(f"{path}.{wire}", "may not be set for init containers")
    if ctr.lifecycle is not None:
        names = ("exec", "http_get", "tcp_socket", "sleep")
        if ctr.lifecycle.post_start is not None:
            _validate_handler(ctr.lifecycle.post_start, f"{path}.lifecycle.postStart", errs, names)
        if ctr.lifecycle.pre_stop is not None:
            _validate_handler(ctr.lifecycle.pre_stop, f"{path}.lifecycle.preStop", errs, names)
    sc = ctr.security_context
    if sc is not None:
        errs.non_negative(f"{path}.securityContext.runAsUser", sc.run_as_user)
        errs.non_negative(f"{path}.securityContext.runAsGroup", sc.run_as_group)


def _validate_mode(mode: int | None, path: str, errs: ErrorList) -> None:
    if mode is not None and not 0 <= mode <= MAX_FILE_MODE:
        errs.invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")


def _validate_key_to_paths(items: list[core_v1.KeyToPath], path: str, errs: ErrorList) -> list[str]:
    targets = []
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        if not item.key:
            errs.required(f"{p}.key")
        if not item.path:
            errs.required(f"{p}.path")
        else:
            validate_local_non_reserved_path(item.path, f"{p}.path", errs)
            targets.append(item.path)
        _validate_mode(item.mode, f"{p}.mode", errs)
    return targets


def _validate_downward_items(
    items: list[core_v1.DownwardAPIVolumeFile], path: str, errs: ErrorList
) -> list[str]:
    targets = []
    for i, item in enumerate(items):
        p = f"{path}[{i}]"
        if not item.path:
            errs.required(f"{p}.path")
        else:
            validate_local_non_reserved_path(item.path, f"{p}.path", errs)
            targets.append(item.path)
        _validate_mode(item.mode, f"{p}.mode", errs)
        if item.field_ref is not None and item.resource_field_ref is not None:
            errs.invalid(p, "", "fieldRef and resourceFieldRef can not be specified simultaneously")
        elif item.field_ref is None and item.resource_field_ref is None:
            errs.required(p, "one of fieldRef and resourceFieldRef is required")
        if item.field_ref is not None:
            _validate_field_ref(item.field_ref, f"{p}.fieldRef", VOLUME_FIELD_PATHS, errs)
        if item.resource_field_ref is not None:
            _validate_resource_field_ref(item.resource_field_ref, f"{p}.resourceFieldRef", errs)
    return targets


def _validate_projected(src: core_v1.ProjectedVolumeSource, path: str, errs: ErrorList) -> None:
    _validate_mode(src.default_mode, f"{path}.defaultMode", errs)
    seen: set[str] = set()
    for i, proj in enumerate(src.sources):
        p = f"{path}.sources[{i}]"
        kinds = [
            n
            for n in (
                "secret",
                "config_map",
                "downward_api",
                "service_account_token",
                "cluster_trust_bundle",
                "pod_certificate",
            )
            if getattr(proj, n) is not None
        ]
        if not kinds:
            errs.required(p, "must specify exactly 1 volume projection type")
        elif len(kinds) > 1:
            errs.forbidden(p, "may not specify more than 1 volume type per source")
        targets: list[str] = []
        if proj.secret is not None:
            if not proj.secret.name:
                errs.required(f"{p}.secret.name")
            targets += _validate_key_to_paths(proj.secret.items, f"{p}.secret.items", errs)
        if proj.config_map is not None:
            if not proj.config_map.name:
                errs.required(f"{p}.configMap.name")
            targets += _validate_key_to_paths(proj.config_map.items, f"{p}.configMap.items", errs)
        if proj.downward_api is not None:
            targets += _validate_downward_items(
                proj.downward_api.items, f"{p}.downwardAPI.items", errs
            )
        token = proj.service_account_token
        if token is not None:
            tp = f"{p}.serviceAccountToken"
            if not token.path:
                errs.required(f"{tp}.path")
            else:
                validate_local_non_reserved_path(token.path, f"{tp}.path", errs)
                targets.append(token.path)
            if token.expiration_seconds is not None:
                if token.expiration_seconds < 600:
                    errs.invalid(
                        f"{tp}.expirationSeconds",
                        token.expiration_seconds,
                        "may not specify a duration less than 10 minutes",
                    )
                elif token.expiration_seconds > 1 << 32:
                    errs.invalid(
                        f"{tp}.expirationSeconds",
                        token.expiration_seconds,
                        "may not specify a duration larger than 2^32 seconds",
                    )
        for target in targets:
            if target in seen:
                errs.invalid(p, target, "conflicting duplicate paths")
            seen.add(target)


def _validate_volumes(volumes: list[core_v1.Volume], path: str, errs: ErrorList) -> set[str]:
    names: set[str] = set()
    for i, vol in enumerate(volumes):
        p = f"{path}[{i}]"
        if not vol.name:
            errs.required(f"{p}.name")
        else:
            errs.check(f"{p}.name", vol.name, is_dns1123_label(vol.name))
            if vol.name in names:
                errs.duplicate(f"{p}.name", vol.name)
            names.add(vol.name)
        sources = vol.sources()
        if not sources:
            errs.required(p, "must specify a volume type")
        elif len(sources) > 1:
            wire = "downwardAPI" if sources[1] == "downward_api" else _camel(sources[1])
            errs.forbidden(f"{p}.{wire}", "may not specify more than 1 volume type")
        if vol.host_path is not None:
            if not vol.host_path.path:
                errs.required(f"{p}.hostPath.path")
            else:
                validate_path_no_backsteps(vol.host_path.path, f"{p}.hostPath.path", errs)
            if vol.host_path.type is not None and vol.host_path.type not in HOST_PATH_TYPES:
                errs.not_supported(f"{p}.hostPath.type", vol.host_path.type, HOST_PATH_TYPES[1:])
        if vol.empty_dir is not None and vol.empty_dir.size_limit is not None:
            _validate_quantity(vol.empty_dir.size_limit, f"{p}.emptyDir.sizeLimit", errs)
        if vol.secret is not None:
            if not vol.secret.secret_name:
                errs.required(f"{p}.secret.secretName")
            _validate_key_to_paths(vol.secret.items, f"{p}.secret.items", errs)
            _validate_mode(vol.secret.default_mode, f"{p}.secret.defaultMode", errs)
        if vol.config_map is not None:
            if not vol.config_map.name:
                errs.required(f"{p}.configMap.name")
            _validate_key_to_paths(vol.config_map.items, f"{p}.configMap.items", errs)
            _validate_mode(vol.config_map.default_mode, f"{p}.configMap.defaultMode", errs)
        if vol.downward_api is not None:
            _validate_downward_items(vol.downward_api.items, f"{p}.downwardAPI.items", errs)
            _validate_mode(vol.downward_api.default_mode, f"{p}.downwardAPI.defaultMode", errs)
        if vol.projected is not None:
            _validate_projected(vol.projected, f"{p}.projected", errs)
        if vol.persistent_volume_claim is not None and not vol.persistent_volume_claim.claim_name:
            errs.required(f"{p}.persistentVolumeClaim.claimName")
        if vol.csi is not None:
            _validate_inline_csi(vol.csi, f"{p}.csi", errs)
    return names


def _validate_inline_csi(raw: Any, path: str, errs: ErrorList) -> None:
    """An inline CSI volume: a driver name (as ``validateCSIDriverName``) and string
    attributes; the driver is a plugin's ``csi:<driver>`` volume source on the node."""
    csi = raw
    if not isinstance(csi, dict):
        errs.invalid(path, None, "must be an object")
        return
    driver = csi.get("driver")
    if not driver:
        errs.required(f"{path}.driver")
    elif not isinstance(driver, str):
        errs.invalid(f"{path}.driver", driver, "must be a string")
    else:
        if len(driver) > 63:
            errs.too_long(f"{path}.driver", 63)
        errs.check(f"{path}.driver", driver, is_dns1123_subdomain(driver.lower()))
    attributes = csi.get("volumeAttributes")
    if attributes is not None and not isinstance(attributes, dict):
        errs.invalid(f"{path}.volumeAttributes", attributes, "must be a map of strings")
    for key, value in (attributes or {}).items():
        if not isinstance(value, str):
            errs.invalid(f"{path}.volumeAttributes[{key}]", value, "must be a string")


def _validate_tolerations(
    tolerations: list[core_v1.Toleration], path: str, errs: ErrorList
) -> None:
    for i, tol in enumerate(tolerations):
        p = f"{path}[{i}]"
        if tol.key:
            errs.check(f"{p}.key", tol.key, is_qualified_name(tol.key))
        elif tol.operator != "Exists":
            errs.invalid(
                f"{p}.operator",
                tol.operator or "",
                'operator must be Exists when `key` is empty, which means "match all values and all keys"',
            )
        errs.one_of(f"{p}.operator", tol.operator, TOLERATION_OPERATORS)
        if tol.operator == "Exists" and tol.value:
            errs.invalid(
                f"{p}.operator", tol.value, "value must be empty when `operator` is 'Exists'"
            )
        elif tol.value:
            errs.check(f"{p}.value", tol.value, is_valid_label_value(tol.value))
        errs.one_of(f"{p}.effect", tol.effect or None, TAINT_EFFECTS)
        if tol.toleration_seconds is not None and tol.effect != "NoExecute":
            errs.invalid(
                f"{p}.effect",
                tol.effect or "",
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            )


def validate_pod_spec(spec: core_v1.PodSpec, path: str, errs: ErrorList) -> None:
    """Everything in a PodSpec; ``path`` is ``spec`` or ``spec.template.spec``."""
    volumes = _validate_volumes(spec.volumes, f"{path}.volumes", errs)
    if not spec.containers:
        errs.required(f"{path}.containers")
    names: set[str] = set()
    host_network = bool(spec.host_network)
    for wire, containers, init in (
        ("initContainers", spec.init_containers, True),
        ("containers", spec.containers, False),
    ):
        for i, ctr in enumerate(containers):
            p = f"{path}.{wire}[{i}]"
            _validate_container(ctr, p, volumes, errs, host_network=host_network, init=init)
            if ctr.name:
                if ctr.name in names:
                    errs.duplicate(f"{p}.name", ctr.name)
                names.add(ctr.name)
    errs.one_of(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    errs.one_of(f"{path}.dnsPolicy", spec.dns_policy, DNS_POLICIES)
    if spec.dns_policy == "None" and spec.dns_config is None:
        errs.required(f"{path}.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
    if spec.dns_config is not None:
        for i, ns in enumerate(spec.dns_config.nameservers):
            errs.check(f"{path}.dnsConfig.nameservers[{i}]", ns, is_ip(ns))
    if spec.node_name:
        errs.check(f"{path}.nodeName", spec.node_name, is_dns1123_subdomain(spec.node_name))
    if spec.service_account_name:
        errs.check(
            f"{path}.serviceAccountName",
            spec.service_account_name,
            is_dns1123_subdomain(spec.service_account_name),
        )
    if spec.hostname:
        errs.check(f"{path}.hostname", spec.hostname, is_dns1123_label(spec.hostname))
    if spec.subdomain:
        errs.check(f"{path}.subdomain", spec.subdomain, is_dns1123_label(spec.subdomain))
    validate_labels(spec.node_selector, f"{path}.nodeSelector", errs)
    _validate_tolerations(spec.tolerations, f"{path}.tolerations", errs)
    errs.non_negative(
        f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds
    )
    if (
        spec.active_deadline_seconds is not None
        and not 1 <= spec.active_deadline_seconds <= 2**31 - 1
    ):
        errs.invalid(
            f"{path}.activeDeadlineSeconds",
            spec.active_deadline_seconds,
            "must be between 1 and 2147483647, inclusive",
        )
    for i, alias in enumerate(spec.host_aliases):
        if not alias.ip:
            errs.required(f"{path}.hostAliases[{i}].ip")
        else:
            errs.check(f"{path}.hostAliases[{i}].ip", alias.ip, is_ip(alias.ip))
    sc = spec.security_context
    if sc is not None:
        errs.non_negative(f"{path}.securityContext.runAsUser", sc.run_as_user)
        errs.non_negative(f"{path}.securityContext.runAsGroup", sc.run_as_group)
        errs.non_negative(f"{path}.securityContext.fsGroup", sc.fs_group)


# --------------------------------------------------------------------------- workloads

SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: LabelSelector, path: str, errs: ErrorList) -> None:
    validate_labels(selector.match_labels, f"{path}.matchLabels", errs)
    for i, req in enumerate(selector.match_expressions):
        p = f"{path}.matchExpressions[{i}]"
        if not req.key:
            errs.required(f"{p}.key")
        else:
            errs.check(f"{p}.key", req.key, is_qualified_name(req.key))
        if req.operator in ("In", "NotIn"):
            if not req.values:
                errs.required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif req.operator in ("Exists", "DoesNotExist"):
            if req.values:
                errs.forbidden(
                    f"{p}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
        elif not req.operator:
            errs.required(f"{p}.operator")
        else:
            errs.not_supported(f"{p}.operator", req.operator, SELECTOR_OPERATORS)


def _validate_template(
    template: core_v1.PodTemplateSpec,
    selector: LabelSelector | None,
    path: str,
    errs: ErrorList,
    *,
    restart_policies: tuple[str, ...],
    selector_required: bool,
    what: str,
) -> None:
    """``spec.selector`` and ``spec.template`` of a workload, and that they agree."""
    if selector is None:
        if selector_required:
            errs.required(f"{path}.selector")
    elif selector.is_empty():
        errs.invalid(f"{path}.selector", {}, f"empty selector is invalid for {what}")
    else:
        validate_label_selector(selector, f"{path}.selector", errs)
        if not selector.matches(template.metadata.labels):
            errs.invalid(
                f"{path}.template.metadata.labels",
                template.metadata.labels,
                "`selector` does not match template `labels`",
            )
    tpath = f"{path}.template"
    validate_labels(template.metadata.labels, f"{tpath}.metadata.labels", errs)
    validate_annotations(template.metadata.annotations, f"{tpath}.metadata.annotations", errs)
    validate_pod_spec(template.spec, f"{tpath}.spec", errs)
    policy = template.spec.restart_policy or "Always"
    if policy in RESTART_POLICIES and policy not in restart_policies:
        errs.not_supported(f"{tpath}.spec.restartPolicy", policy, restart_policies)
    if template.spec.active_deadline_seconds is not None and what != "job":
        owner = "DaemonSet" if what == "daemonset" else "ReplicaSet"
        errs.forbidden(
            f"{tpath}.spec.activeDeadlineSeconds",
            f"activeDeadlineSeconds in {owner} is not Supported",
        )


def _int_or_percent(value: Any, path: str, errs: ErrorList, *, max_percent: bool) -> int | None:
    """Validate a count or a ``"25%"`` string; return it as a comparable number."""
    if value is None:
        return None
    if isinstance(value, int):
        errs.non_negative(path, value)
        return value
    if not _PERCENT.match(value):
        errs.invalid(path, value, _regex_error(PERCENT_ERR, PERCENT_FMT, "1%", "93%"))
        return None
    pct = int(value[:-1])
    if max_percent and pct > 100:
        errs.invalid(path, value, "must not be greater than 100%")
    return pct


def _validate_rolling(rolling: Any, path: str, errs: ErrorList) -> None:
    unavailable = _int_or_percent(
        rolling.max_unavailable, f"{path}.maxUnavailable", errs, max_percent=True
    )
    surge = _int_or_percent(rolling.max_surge, f"{path}.maxSurge", errs, max_percent=False)
    if unavailable == 0 and surge == 0:
        errs.invalid(
            f"{path}.maxUnavailable", rolling.max_unavailable, "may not be 0 when `maxSurge` is 0"
        )


def _validate_deployment(obj: apps_v1.Deployment, errs: ErrorList) -> None:
    spec = obj.spec
    errs.non_negative("spec.replicas", spec.replicas)
    _validate_template(
        spec.template, spec.selector, "spec", errs,
        restart_policies=("Always",), selector_required=True, what="deployment",
    )  # fmt: skip
    strategy = spec.strategy
    if strategy is not None:
        errs.one_of("spec.strategy.type", strategy.type, ("Recreate", "RollingUpdate"))
        if strategy.type == "Recreate" and strategy.rolling_update is not None:
            errs.forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        elif strategy.rolling_update is not None:
            _validate_rolling(strategy.rolling_update, "spec.strategy.rollingUpdate", errs)
    errs.non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    errs.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.progress_deadline_seconds is not None:
        errs.non_negative("spec.progressDeadlineSeconds", spec.progress_deadline_seconds)
        if spec.progress_deadline_seconds <= (spec.min_ready_seconds or 0):
            errs.invalid(
                "spec.progressDeadlineSeconds",
                spec.progress_deadline_seconds,
                "must be greater than minReadySeconds",
            )


def _validate_replica_set(obj: apps_v1.ReplicaSet, errs: ErrorList) -> None:
    errs.non_negative("spec.replicas", obj.spec.replicas)
    errs.non_negative("spec.minReadySeconds", obj.spec.min_ready_seconds)
    _validate_template(
        obj.spec.template, obj.spec.selector, "spec", errs,
        restart_policies=("Always",), selector_required=True, what="replicaset",
    )  # fmt: skip


def _validate_daemon_set(obj: apps_v1.DaemonSet, errs: ErrorList) -> None:
    spec = obj.spec
    _validate_template(
        spec.template, spec.selector, "spec", errs,
        restart_policies=("Always",), selector_required=True, what="daemonset",
    )  # fmt: skip
    strategy = spec.update_strategy
    if strategy is not None:
        errs.one_of("spec.updateStrategy.type", strategy.type, ("RollingUpdate", "OnDelete"))
        if strategy.rolling_update is not None:
            _validate_rolling(strategy.rolling_update, "spec.updateStrategy.rollingUpdate", errs)
    errs.non_negative("spec.minReadySeconds", spec.min_ready_seconds)
    errs.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)


def _validate_job_spec(
    spec: batch_v1.JobSpec, path: str, errs: ErrorList, *, selector_required: bool
) -> None:
    for attr in ("parallelism", "completions", "backoff_limit", "ttl_seconds_after_finished",
                 "backoff_limit_per_index", "max_failed_indexes"):  # fmt: skip
        errs.non_negative(f"{path}.{_camel(attr)}", getattr(spec, attr))
    if spec.active_deadline_seconds is not None and spec.active_deadline_seconds <= 0:
        errs.invalid(
            f"{path}.activeDeadlineSeconds", spec.active_deadline_seconds, "must be greater than 0"
        )
    errs.one_of(f"{path}.completionMode", spec.completion_mode, ("NonIndexed", "Indexed"))
    if spec.completion_mode == "Indexed" and spec.completions is None:
        errs.required(f"{path}.completions", "when completion mode is Indexed")
    errs.one_of(
        f"{path}.podReplacementPolicy",
        spec.pod_replacement_policy,
        ("TerminatingOrFailed", "Failed"),
    )
    _validate_template(
        spec.template, spec.selector, path, errs,
        restart_policies=("OnFailure", "Never"),
        selector_required=selector_required or bool(spec.manual_selector),
        what="job",
    )  # fmt: skip


_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
    ),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+\Z")


def cron_schedule_error(schedule: str) -> str | None:
    """Why ``schedule`` is not a cron schedule Kubernetes accepts, or ``None`` if it is."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@"):
        if text in _CRON_MACROS:
            return None
        if text.startswith("@every "):
            return (
                None if _DURATION.match(text[len("@every ") :].strip()) else "unparseable duration"
            )
        return f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: {text}"
    for value, (_what, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in value.split(","):
            problem = _cron_range_error(part, low, high, names)
            if problem:
                return problem
    return None


def _cron_range_error(part: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    """robfig/cron's ``getRange`` checks (and messages) for one comma-separated part."""
    range_part, *steps = part.split("/")
    if len(steps) > 1:
        return f"too many slashes: {part}"
    bounds = range_part.split("-")
    if bounds[0] in ("*", "?"):
        start, end = low, high
    else:
        if len(bounds) > 2:
            return f"too many hyphens: {part}"
        numbers = []
        for bound in bounds:
            upper = bound.upper()
            if upper in names:
                numbers.append(names.index(upper) + (1 if low == 1 else 0))
            elif bound.isdigit():
                numbers.append(int(bound))
            else:
                return f"failed to parse int from {bound}"
        start, end = numbers[0], numbers[-1]
        if steps and len(bounds) == 1:
            end = high  # "N/step" means "N-max/step"
    step = 1
    if steps:
        if not steps[0].isdigit():
            return f"failed to parse int from {steps[0]}"
        step = int(steps[0])
    if start < low:
        return f"beginning of range ({start}) below minimum ({low}): {part}"
    if end > high:
        return f"end of range ({end}) above maximum ({high}): {part}"
    if start > end:
        return f"beginning of range ({start}) beyond end of range ({end}): {part}"
    if step == 0:
        return f"step of range should be a positive number: {part}"
    return None


_TIME_ZONE_PART = re.compile(r"^[A-Za-z\.\-_0-9+]{1,14}\Z")


def time_zone_error(name: str) -> str | None:
    """Why ``name`` is not a ``spec.timeZone`` Kubernetes accepts, or ``None``."""
    if not name:
        return "timeZone must be nil or non-empty string"
    for part in name.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TIME_ZONE_PART.match(part):
            return f"unknown time zone {name}"
    if name.lower() == "local":
        return (
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
        )
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f"unknown time zone {name}"
    return None


def _validate_cron_job(obj: batch_v1.CronJob, errs: ErrorList) -> None:
    spec = obj.spec
    if not spec.schedule:
        errs.required("spec.schedule")
    else:
        problem = cron_schedule_error(spec.schedule)
        if problem:
            errs.invalid("spec.schedule", spec.schedule, problem)
    if spec.time_zone is not None:
        problem = time_zone_error(spec.time_zone)
        if problem:
            errs.invalid("spec.timeZone", spec.time_zone, problem)
    errs.one_of("spec.concurrencyPolicy", spec.concurrency_policy, ("Allow", "Forbid", "Replace"))
    errs.non_negative("spec.startingDeadlineSeconds", spec.starting_deadline_seconds)
    errs.non_negative("spec.successfulJobsHistoryLimit", spec.successful_jobs_history_limit)
    errs.non_negative("spec.failedJobsHistoryLimit", spec.failed_jobs_history_limit)
    validate_labels(spec.job_template.metadata.labels, "spec.jobTemplate.metadata.labels", errs)
    validate_annotations(
        spec.job_template.metadata.annotations, "spec.jobTemplate.metadata.annotations", errs
    )
    _validate_job_spec(
        spec.job_template.spec, "spec.jobTemplate.spec", errs, selector_required=False
    )


# --------------------------------------------------------------------------- other kinds

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
SERVICE_IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack", "RequireDualStack")
MAX_SESSION_AFFINITY_TIMEOUT = 86400


def _validate_service(obj: core_v1.Service, errs: ErrorList) -> None:
    spec = obj.spec
    errs.one_of("spec.type", spec.type, SERVICE_TYPES)
    external = spec.type == "ExternalName"
    headless = spec.cluster_ip == "None"
    if external:
        if not spec.external_name:
            errs.required("spec.externalName")
        else:
            errs.check(
                "spec.externalName",
                spec.external_name,
                is_dns1123_subdomain(spec.external_name.rstrip(".")),
            )
        if spec.cluster_ip:
            errs.forbidden("spec.clusterIP", "may not be set for ExternalName services")
    elif not spec.ports and not headless:
        errs.required("spec.ports")
    if spec.cluster_ip and spec.cluster_ip != "None" and not external:
        errs.check("spec.clusterIP", spec.cluster_ip, is_ip(spec.cluster_ip))
    for i, ip in enumerate(spec.cluster_ips):
        if ip != "None":
            errs.check(f"spec.clusterIPs[{i}]", ip, is_ip(ip))
    if spec.cluster_ips and spec.cluster_ip and spec.cluster_ips[0] != spec.cluster_ip:
        errs.invalid("spec.clusterIPs", spec.cluster_ips, "first value must match `clusterIP`")
    node_ports_allowed = spec.type in ("NodePort", "LoadBalancer")
    if headless and node_ports_allowed:
        errs.invalid(
            "spec.clusterIPs[0]", "None", f"may not be set to 'None' for {spec.type} services"
        )
    errs.one_of("spec.ipFamilyPolicy", spec.ip_family_policy, SERVICE_IP_FAMILY_POLICIES)
    for i, family in enumerate(spec.ip_families):
        errs.one_of(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6"))
        if family in spec.ip_families[:i]:
            errs.duplicate(f"spec.ipFamilies[{i}]", family)
    names: set[str] = set()
    seen: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        p = f"spec.ports[{i}]"
        if not port.name:
            if len(spec.ports) > 1:
                errs.required(f"{p}.name")
        else:
            errs.check(f"{p}.name", port.name, is_dns1123_label(port.name))
            if port.name in names:
                errs.duplicate(f"{p}.name", port.name)
            names.add(port.name)
        errs.one_of(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.port is None:
            errs.required(f"{p}.port")
        else:
            errs.check(f"{p}.port", port.port, is_valid_port_num(port.port))
            key = (port.port, port.protocol or "TCP")
            if key in seen:
                errs.duplicate(p, {"port": str(port.port), "protocol": key[1]})
            seen.add(key)
        if port.target_port is not None:
            _validate_port_ref(port.target_port, f"{p}.targetPort", errs, required=False)
        if port.node_port:
            if not node_ports_allowed:
                errs.forbidden(
                    f"{p}.nodePort", f"may not be used when `type` is '{spec.type or 'ClusterIP'}'"
                )
            errs.check(f"{p}.nodePort", port.node_port, is_valid_port_num(port.node_port))
            node_port = (port.node_port, port.protocol or "TCP")
            if node_port in node_ports:
                errs.duplicate(f"{p}.nodePort", port.node_port)
            node_ports.add(node_port)
    errs.one_of("spec.sessionAffinity", spec.session_affinity, ("None", "ClientIP"))
    _validate_session_affinity_config(spec, errs)
    validate_labels(spec.selector, "spec.selector", errs)
    errs.one_of("spec.externalTrafficPolicy", spec.external_traffic_policy, ("Cluster", "Local"))
    if spec.external_traffic_policy is not None and not node_ports_allowed:
        errs.invalid(
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy,
            "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
        )
    errs.one_of("spec.internalTrafficPolicy", spec.internal_traffic_policy, ("Cluster", "Local"))
    for i, ip in enumerate(spec.external_ips):
        errs.check(f"spec.externalIPs[{i}]", ip, is_ip(ip))


def _validate_session_affinity_config(spec: core_v1.ServiceSpec, errs: ErrorList) -> None:
    path = "spec.sessionAffinityConfig"
    config = spec.session_affinity_config
    if spec.session_affinity == "None" and config is not None:
        errs.forbidden(path, "must not be set when session affinity is None")
    if spec.session_affinity != "ClientIP":
        return
    when = "when session affinity type is ClientIP"
    client_ip = config.get("clientIP") if isinstance(config, dict) else None
    if config is None:
        errs.required(path, when)
    elif not isinstance(client_ip, dict):
        errs.required(f"{path}.clientIP", when)
    elif client_ip.get("timeoutSeconds") is None:
        errs.required(f"{path}.clientIP.timeoutSeconds", when)
    else:
        timeout = client_ip["timeoutSeconds"]
        if (
            not isinstance(timeout, int)
            or isinstance(timeout, bool)
            or not 0 < timeout <= MAX_SESSION_AFFINITY_TIMEOUT
        ):
            errs.invalid(
                f"{path}.clientIP.timeoutSeconds",
                timeout,
                f"must be greater than 0 and less than {MAX_SESSION_AFFINITY_TIMEOUT}",
            )


def _validate_endpoints(obj: core_v1.Endpoints, errs: ErrorList) -> None:
    for i, subset in enumerate(obj.subsets):
        p = f"subsets[{i}]"
        for wire, addresses in (
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ):
            for j, addr in enumerate(addresses):
                if not addr.ip:
                    errs.required(f"{p}.{wire}[{j}].ip")
                else:
                    errs.check(f"{p}.{wire}[{j}].ip", addr.ip, is_ip(addr.ip))
                if addr.hostname:
                    errs.check(
                        f"{p}.{wire}[{j}].hostname", addr.hostname, is_dns1123_label(addr.hostname)
                    )
        for j, port in enumerate(subset.ports):
            pp = f"{p}.ports[{j}]"
            if port.name:
                errs.check(f"{pp}.name", port.name, is_dns1123_label(port.name))
            elif len(subset.ports) > 1:
                errs.required(f"{pp}.name")
            if port.port is None:
                errs.required(f"{pp}.port")
            else:
                errs.check(f"{pp}.port", port.port, is_valid_port_num(port.port))
            errs.one_of(f"{pp}.protocol", port.protocol, PROTOCOLS)


MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_ADDRESSES = 100
MAX_SLICE_PORTS = 100
MAX_ZONE_HINTS = 8


def _too_many(errs: ErrorList, path: str, actual: int, limit: int) -> None:
    errs.append(
        FieldError(
            path,
            f"Too many: {actual}: must have at most {limit} items",
            reason="FieldValueTooMany",
        )
    )


def _endpoint_ip_errors(value: str, version: int) -> list[str]:
    """An endpoint address: an IP of the slice's family, and not one no pod can have."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        ip = None
    if ip is None or ip.version != version:
        return [f"must be a valid IPv{version} address"]
    errs = []
    if ip.is_unspecified:
        errs.append(f"may not be unspecified ({value})")
    if ip.is_loopback:
        errs.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if ip.is_link_local:
        errs.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    if ip in _LINK_LOCAL_MULTICAST[version]:
        errs.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return errs


_LINK_LOCAL_MULTICAST = {
    4: ipaddress.ip_network("224.0.0.0/24"),
    6: ipaddress.ip_network("ff02::/16"),
}


def _fqdn_errors(value: str) -> list[str]:
    name = value.removesuffix(".")
    errs = is_dns1123_subdomain(name)
    if len(name.split(".")) < 2:
        errs.append("should be a domain with at least two segments separated by dots")
    return errs


def _validate_endpoint_slice(obj: discovery_v1.EndpointSlice, errs: ErrorList) -> None:
    address_type = obj.address_type
    if not address_type:
        errs.required("addressType")
    else:
        errs.one_of("addressType", address_type, discovery_v1.ADDRESS_TYPES)
    if len(obj.endpoints) > MAX_SLICE_ENDPOINTS:
        _too_many(errs, "endpoints", len(obj.endpoints), MAX_SLICE_ENDPOINTS)
    else:
        for i, ep in enumerate(obj.endpoints):
            p = f"endpoints[{i}]"
            if not ep.addresses:
                errs.required(f"{p}.addresses", "must contain at least 1 address")
            elif len(ep.addresses) > MAX_SLICE_ADDRESSES:
                _too_many(errs, f"{p}.addresses", len(ep.addresses), MAX_SLICE_ADDRESSES)
            for j, address in enumerate(ep.addresses):
                if address_type in ("IPv4", "IPv6"):
                    version = 4 if address_type == "IPv4" else 6
                    errs.check(
                        f"{p}.addresses[{j}]", address, _endpoint_ip_errors(address, version)
                    )
                elif address_type == "FQDN":
                    errs.check(f"{p}.addresses[{j}]", address, _fqdn_errors(address))
            if ep.node_name is not None:
                errs.check(f"{p}.nodeName", ep.node_name, is_dns1123_subdomain(ep.node_name))
            if ep.hostname is not None:
                errs.check(f"{p}.hostname", ep.hostname, is_dns1123_label(ep.hostname))
            validate_labels(ep.deprecated_topology, f"{p}.deprecatedTopology", errs)
            if ep.hints is not None:
                zones = ep.hints.for_zones
                if len(zones) > MAX_ZONE_HINTS:
                    _too_many(errs, f"{p}.hints.forZones", len(zones), MAX_ZONE_HINTS)
                    continue
                seen: set[str] = set()
                for k, zone in enumerate(zones):
                    zp = f"{p}.hints.forZones[{k}].name"
                    if zone.name in seen:
                        errs.duplicate(zp, zone.name)
                    seen.add(zone.name)
                    errs.check(zp, zone.name, is_valid_label_value(zone.name))
    if len(obj.ports) > MAX_SLICE_PORTS:
        _too_many(errs, "ports", len(obj.ports), MAX_SLICE_PORTS)
        return
    names: set[str] = set()
    for i, port in enumerate(obj.ports):
        p = f"ports[{i}]"
        name = port.name or ""
        if name:
            errs.check(f"{p}.name", name, is_dns1123_label(name))
        if name in names:
            errs.duplicate(f"{p}.name", name)
        names.add(name)
        if port.protocol is None:
            errs.required(f"{p}.protocol")
        else:
            errs.one_of(f"{p}.protocol", port.protocol, PROTOCOLS)
        if port.port is not None:
            errs.check(f"{p}.port", port.port, is_valid_port_num(port.port))
        if port.app_protocol is not None:
            errs.check(f"{p}.appProtocol", port.app_protocol, is_qualified_name(port.app_protocol))


def _b64decode(value: str) -> bytes:
    """Decode base64 as Go's decoder does for ``[]byte`` fields: line breaks are ignored."""
    return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)


def _validate_config_keys(data: dict[str, str], path: str, errs: ErrorList) -> None:
    for key in data:
        errs.check(f"{path}[{key}]", key, is_config_map_key(key))


def _validate_config_map(obj: core_v1.ConfigMap, errs: ErrorList) -> None:
    _validate_config_keys(obj.data, "data", errs)
    _validate_config_keys(obj.binary_data, "binaryData", errs)
    size = sum(len(v.encode()) for v in obj.data.values())
    for key, value in obj.binary_data.items():
        if key in obj.data:
            errs.invalid(f"binaryData[{key}]", key, "duplicate of key present in data")
        try:
            size += len(_b64decode(value))
        except (binascii.Error, ValueError):
            errs.invalid(f"binaryData[{key}]", "<binary data>", "must be valid base64")
    if size > MAX_CONFIG_SIZE:
        errs.too_long("data", MAX_CONFIG_SIZE)


SECRET_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


def _validate_secret(obj: core_v1.Secret, errs: ErrorList) -> None:
    _validate_config_keys(obj.data, "data", errs)
    _validate_config_keys(obj.string_data, "stringData", errs)
    size = 0
    for key, value in obj.data.items():
        try:
            size += len(_b64decode(value))
        except (binascii.Error, ValueError):
            errs.invalid(f"data[{key}]", "<secret contents redacted>", "must be valid base64")
    size += sum(len(v.encode()) for k, v in obj.string_data.items() if k not in obj.data)
    if size > MAX_CONFIG_SIZE:
        errs.too_long("data", MAX_CONFIG_SIZE)
    keys = set(obj.data) | set(obj.string_data)
    for key in SECRET_REQUIRED_KEYS.get(obj.type or "", ()):
        if key not in keys:
            errs.required(f"data[{key}]")
    if obj.type == "kubernetes.io/basic-auth" and not keys & {"username", "password"}:
        errs.required(
            "data[username]", "must have at least one of the `username` or `password` keys"
        )
    if obj.type == "kubernetes.io/service-account-token":
        ann = "kubernetes.io/service-account.name"
        if not obj.metadata.annotations.get(ann):
            errs.required(f"metadata.annotations[{ann}]")
    json_key = {
        "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        "kubernetes.io/dockercfg": ".dockercfg",
    }.get(obj.type or "")
    if json_key is not None and json_key in keys:
        try:
            raw = (
                _b64decode(obj.data[json_key])
                if json_key in obj.data
                else obj.string_data[json_key].encode()
            )
            json.loads(raw)
        except (binascii.Error, ValueError):
            errs.invalid(f"data[{json_key}]", "<secret contents redacted>", "must be valid JSON")


def _validate_namespace(obj: core_v1.Namespace, errs: ErrorList) -> None:
    for i, finalizer in enumerate(obj.spec.finalizers):
        errs.check(f"spec.finalizers[{i}]", finalizer, is_qualified_name(finalizer))
    errs.one_of("status.phase", obj.status.phase, ("Active", "Terminating"))


def _validate_node(obj: core_v1.Node, errs: ErrorList) -> None:
    spec = obj.spec
    if spec.pod_cidr:
        errs.check("spec.podCIDR", spec.pod_cidr, is_cidr(spec.pod_cidr))
    for i, cidr in enumerate(spec.pod_cidrs):
        errs.check(f"spec.podCIDRs[{i}]", cidr, is_cidr(cidr))
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(spec.taints):
        p = f"spec.taints[{i}]"
        if not taint.key:
            errs.required(f"{p}.key")
        else:
            errs.check(f"{p}.key", taint.key, is_qualified_name(taint.key))
        if taint.value:
            errs.check(f"{p}.value", taint.value, is_valid_label_value(taint.value))
        if not taint.effect:
            errs.required(f"{p}.effect")
        else:
            errs.one_of(f"{p}.effect", taint.effect, TAINT_EFFECTS)
        key = (taint.key or "", taint.effect or "")
        if key in seen:
            errs.duplicate(p, {"key": key[0], "effect": key[1]})
        seen.add(key)


def _validate_service_account(obj: core_v1.ServiceAccount, errs: ErrorList) -> None:
    for i, ref in enumerate(obj.image_pull_secrets):
        if not ref.name:
            errs.required(f"imagePullSecrets[{i}].name")


def _validate_event(obj: core_v1.Event, errs: ErrorList) -> None:
    involved = obj.involved_object
    if (
        obj.metadata.namespace
        and involved.namespace
        and involved.namespace != obj.metadata.namespace
    ):
        errs.invalid(
            "involvedObject.namespace", involved.namespace, "does not match event.namespace"
        )
    errs.one_of("type", obj.type, ("Normal", "Warning"))


def _validate_events_v1(obj: events_v1.Event, errs: ErrorList) -> None:
    for attr, wire in (
        ("reporting_controller", "reportingController"),
        ("reporting_instance", "reportingInstance"),
        ("action", "action"),
        ("reason", "reason"),
    ):
        if not getattr(obj, attr):
            errs.required(wire)
    if obj.event_time is None:
        errs.required("eventTime")
    if not obj.type:
        errs.required("type")
    else:
        errs.one_of("type", obj.type, ("Normal", "Warning"))
    if obj.note and len(obj.note) > 1024:
        errs.too_long("note", 1024)


def _validate_lease(obj: coordination_v1.Lease, errs: ErrorList) -> None:
    if obj.spec.lease_duration_seconds is not None and obj.spec.lease_duration_seconds <= 0:
        errs.invalid(
            "spec.leaseDurationSeconds", obj.spec.lease_duration_seconds, "must be greater than 0"
        )
    errs.non_negative("spec.leaseTransitions", obj.spec.lease_transitions)


def _cron_job_name(name: str) -> list[str]:
    errs = is_dns1123_subdomain(name)
    if len(name) > 52:
        errs.append(_max_len(52))
    return errs


def _job_name(name: str) -> list[str]:
    """Job names become the ``job-name`` label value of their pods."""
    errs = is_dns1123_subdomain(name)
    if len(name) > 63:
        errs.append(_max_len(63))
    return errs


_KIND_RULES: dict[type, tuple[NameCheck, Callable[[Any, ErrorList], None] | None]] = {
    core_v1.Pod: (is_dns1123_subdomain, lambda o, e: validate_pod_spec(o.spec, "spec", e)),
    core_v1.Namespace: (is_dns1123_label, _validate_namespace),
    core_v1.Node: (is_dns1123_subdomain, _validate_node),
    core_v1.Service: (is_dns1035_label, _validate_service),
    core_v1.Endpoints: (is_dns1123_subdomain, _validate_endpoints),
    discovery_v1.EndpointSlice: (is_dns1123_subdomain, _validate_endpoint_slice),
    core_v1.Secret: (is_dns1123_subdomain, _validate_secret),
    core_v1.ConfigMap: (is_dns1123_subdomain, _validate_config_map),
    core_v1.ServiceAccount: (is_dns1123_subdomain, _validate_service_account),
    core_v1.Event: (is_dns1123_subdomain, _validate_event),
    events_v1.Event: (is_dns1123_subdomain, _validate_events_v1),
    coordination_v1.Lease: (is_dns1123_subdomain, _validate_lease),
    certificates_v1.CertificateSigningRequest: (
        is_dns1123_subdomain,
        certificates_v1.validate_csr,
    ),
    apps_v1.Deployment: (is_dns1123_subdomain, _validate_deployment),
    apps_v1.ReplicaSet: (is_dns1123_subdomain, _validate_replica_set),
    apps_v1.DaemonSet: (is_dns1123_subdomain, _validate_daemon_set),
    batch_v1.Job: (
        _job_name,
        lambda o, e: _validate_job_spec(o.spec, "spec", e, selector_required=False),
    ),
    batch_v1.CronJob: (_cron_job_name, _validate_cron_job),
}


def validation_errors(obj: Any, *, require_namespace: bool = True) -> list[FieldError]:
    """Every problem with ``obj``, as field errors (empty when it is valid)."""
    errs = ErrorList()
    name_check, rules = _KIND_RULES.get(type(obj), (is_dns1123_subdomain, None))
    info = next((r for r in registry.RESOURCES if r.type is type(obj)), None)
    namespaced: bool | None = info.namespaced if info is not None else None
    if namespaced and not require_namespace:
        namespaced = None
    meta = getattr(obj, "metadata", None)
    if isinstance(meta, ObjectMeta):
        validate_object_meta(meta, errs, name_check=name_check, namespaced=namespaced)
    if rules is not None:
        rules(obj, errs)
    return list(errs)


def validate(obj: Any, *, require_namespace: bool = True) -> None:
    """Raise :class:`~kcore.errors.Invalid` naming every invalid field of ``obj``.

    ``require_namespace=False`` accepts a namespaced object without a namespace (a
    manifest checked before the namespace is known); the API server keeps the default.
    """
    causes = validation_errors(obj, require_namespace=require_namespace)
    if causes:
        raise _invalid_for(obj, causes)


def _invalid_for(obj: Any, causes: list[FieldError]) -> Invalid:
    kind = getattr(obj, "kind", None) or type(obj).__name__
    group = (getattr(obj, "api_version", "") or "").rpartition("/")[0]
    meta = getattr(obj, "metadata", None)
    name = getattr(meta, "name", None) or getattr(meta, "generate_name", None)
    return invalid_error(kind, group, name, causes)


# --------------------------------------------------------------------------- updates

_IMMUTABLE = "field is immutable"


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _pod_spec_without_mutable(spec: core_v1.PodSpec) -> Any:
    plain = _plain(spec)
    for key in ("containers", "initContainers"):
        for ctr in plain.get(key, []):
            ctr.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        plain.pop(key, None)
    return plain


def update_errors(new: Any, old: Any) -> list[FieldError]:
    """What an update from ``old`` to ``new`` may not change (beyond :func:`validate`)."""
    errs = ErrorList()
    nm, om = new.metadata, old.metadata
    for attr, wire in (("name", "name"), ("namespace", "namespace"), ("uid", "uid")):
        if getattr(om, attr) and getattr(nm, attr) != getattr(om, attr):
            errs.invalid(f"metadata.{wire}", getattr(nm, attr) or "", _IMMUTABLE)
    if isinstance(new, core_v1.Pod):
        if _pod_spec_without_mutable(new.spec) != _pod_spec_without_mutable(old.spec):
            errs.forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )
        old_tol = _plain(old.spec.tolerations)
        new_tol = _plain(new.spec.tolerations)
        if any(t not in new_tol for t in old_tol):
            errs.forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            )
    elif isinstance(new, core_v1.ConfigMap | core_v1.Secret):
        if old.immutable:
            if not new.immutable:
                errs.forbidden("immutable", "field is immutable when `immutable` is set")
            if new.data != old.data:
                errs.forbidden("data", "field is immutable when `immutable` is set")
            other = "binary_data" if isinstance(new, core_v1.ConfigMap) else "string_data"
            if getattr(new, other) and getattr(new, other) != getattr(old, other):
                errs.forbidden(_camel(other), "field is immutable when `immutable` is set")
        if isinstance(new, core_v1.Secret) and (new.type or "Opaque") != (old.type or "Opaque"):
            errs.invalid("type", new.type or "", _IMMUTABLE)
    elif isinstance(
        new, apps_v1.Deployment | apps_v1.ReplicaSet | apps_v1.DaemonSet | batch_v1.Job
    ):
        if old.spec.selector is not None and _plain(new.spec.selector) != _plain(old.spec.selector):
            errs.invalid("spec.selector", _plain(new.spec.selector), _IMMUTABLE)
        if isinstance(new, batch_v1.Job):
            if new.spec.completion_mode != old.spec.completion_mode and old.spec.completion_mode:
                errs.invalid("spec.completionMode", new.spec.completion_mode or "", _IMMUTABLE)
    elif isinstance(new, core_v1.Service):
        old_ips = old.spec.cluster_ips or ([old.spec.cluster_ip] if old.spec.cluster_ip else [])
        new_ips = new.spec.cluster_ips or ([new.spec.cluster_ip] if new.spec.cluster_ip else [])
        if (
            old_ips
            and new.spec.type != "ExternalName"
            and old.spec.type != "ExternalName"
            and new_ips[:1] != old_ips[:1]
        ):
            errs.invalid("spec.clusterIPs[0]", new_ips, "may not change once set")
    elif isinstance(new, discovery_v1.EndpointSlice):
        if old.address_type and new.address_type != old.address_type:
            errs.invalid("addressType", new.address_type or "", _IMMUTABLE)
    elif isinstance(new, core_v1.Node):
        if old.spec.pod_cidr and new.spec.pod_cidr != old.spec.pod_cidr:
            errs.forbidden(
                "spec.podCIDR", 'node updates may not change podCIDR except from "" to valid'
            )
    return list(errs)


def validate_update(new: Any, old: Any) -> None:
    """:func:`validate` ``new``, then check what the update from ``old`` may not change."""
    causes = validation_errors(new) + update_errors(new, old)
    if causes:
        raise _invalid_for(new, causes)


__all__ = [
    "ErrorList",
    "cron_schedule_error",
    "invalid_error",
    "is_config_map_key",
    "is_dns1035_label",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "is_valid_port_name",
    "is_valid_port_num",
    "time_zone_error",
    "update_errors",
    "validate",
    "validate_label_selector",
    "validate_object_meta",
    "validate_pod_spec",
    "validate_update",
    "validation_errors",
]
