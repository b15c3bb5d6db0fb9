"""CustomResourceDefinitions: resources added to the API while it runs.

Creating a ``apiextensions.k8s.io/v1`` CustomResourceDefinition makes the API server serve
its resource at once, as Kubernetes' apiextensions-apiserver does: in discovery (``kubectl
api-resources``, ``kubectl get <plural|singular|short name>``), with the usual verbs,
selectors, watches and patches (JSON and merge patch; a strategic merge patch is a 415, as
upstream), ``/status`` and ``/scale`` subresources when the definition asks for them, and
its ``additionalPrinterColumns`` in ``kubectl get``. Objects are stored as plain dicts in
the storage version and held to the version's ``openAPIV3Schema``, in upstream's order:
unknown fields are pruned (kept under ``x-kubernetes-preserve-unknown-fields``), nulls of
non-nullable fields dropped, ``default`` values filled in, then the object is validated,
each problem a field error worded as Kubernetes words it::

    Website.examples.kcore.io "w" is invalid: spec.replicas: Invalid value: "string":
    spec.replicas in body must be of type integer: "string"

The API server owns a definition's status: ``acceptedNames`` and the ``NamesAccepted`` and
``Established`` conditions are set on every write (a name another definition of the group
uses is not accepted, and the resource is then not served), ``storedVersions`` records the
storage versions. Deleting a definition sets ``Terminating`` and the
``customresourcecleanup.apiextensions.k8s.io`` finalizer; its objects are deleted, then the
definition goes and its resource with it. Definitions are read back from the store when
the API server starts and followed with a watch, so that every API server on one store
serves the same resources.

Versions are converted the ``None`` way: only ``apiVersion`` changes (webhook conversion
is not supported, so a definition that asks for it may serve one version only). CEL rules
(``x-kubernetes-validations``) and ``format`` are kept but not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import weakref
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from kcore import api
from kcore.api import registry
from kcore.api.apiextensions_v1 import CLEANUP_FINALIZER, CustomResourceDefinition
from kcore.api.meta import TypedObject
from kcore.api.registry import CustomResourceInfo, ResourceInfo, Subresource
from kcore.api.validation import (
    ErrorList,
    invalid_error,
    is_dns1035_label,
    is_dns1123_subdomain,
    validate_object_meta,
)
from kcore.errors import (
    Conflict,
    Expired,
    FieldError,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
)

if TYPE_CHECKING:
    from kcore.apiserver.objects import ObjectStore

log = structlog.get_logger("kcore.apiserver.crd")

GROUP = "apiextensions.k8s.io"
CRD_INFO: ResourceInfo = registry.by_resource(GROUP, "v1", "customresourcedefinitions")  # type: ignore[assignment]
APPROVAL_ANNOTATION = "api-approved.kubernetes.io"
SCHEMA_TYPES = ("array", "boolean", "integer", "number", "object", "string")
COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")
COLUMN_FORMATS = ("int32", "int64", "float", "double", "byte", "date", "date-time", "password")
CLEANUP_RETRY = (0.05, 2.0)
"""Seconds between looks while a deleted definition's objects still wait for their
finalizers: doubling from the first to the second."""
_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": (
        "Name must be unique within a namespace. Is required when creating resources, "
        "although some resources may allow a client to request the generation of a name "
        "automatically."
    ),
    "priority": 0,
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "description": (
        "CreationTimestamp is a timestamp representing the server time when this object "
        "was created."
    ),
    "jsonPath": ".metadata.creationTimestamp",
}


class UnsupportedMediaType(KcoreError):
    code = 415
    reason = "UnsupportedMediaType"


def is_definition(info: ResourceInfo) -> bool:
    return info.group == GROUP and info.kind == "CustomResourceDefinition"


def is_custom(info: ResourceInfo) -> bool:
    return isinstance(info, CustomResourceInfo)


# ---------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------

_KUBE_VERSION = re.compile(r"^v([1-9][0-9]*)(?:(alpha|beta)([1-9][0-9]*))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes' version priority: GA, then beta, then alpha, higher numbers
    first; names that are not Kubernetes versions last, alphabetically."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major, level, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[level]
    return (rank, -major, -minor, "")


# ---------------------------------------------------------------------------------------
# Schemas: pruning, defaults, validation (plain data in, field errors out)
# ---------------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    """The JSON type name of a value, as kube-openapi names it in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _has_type(value: Any, wanted: str) -> bool:
    if wanted == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if wanted == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return _json_type(value) == wanted


def _num(value: Any) -> Any:
    """A number as Go's ``%v`` prints it (``3``, not ``3.0``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(_num(value))
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _canonical(value: Any) -> str:
    """A value's identity for ``enum`` and ``uniqueItems`` (``1`` is ``1.0``, not ``true``)."""

    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int | float):
            return ["#num", float(v)]
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return json.dumps(norm(value), sort_keys=True)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _preserves(schema: Mapping[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def prune(
    value: Any,
    schema: Mapping[str, Any] | None,
    *,
    path: str = "",
    unknown: list[str] | None = None,
    root: bool = False,
) -> Any:
    """Drop the fields ``schema`` does not declare (in place; returns ``value``), noting
    each dropped path in ``unknown``. ``apiVersion``, ``kind`` and ``metadata`` stay at the
    root and in embedded resources."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep_meta = root or schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            if keep_meta and key in ("apiVersion", "kind", "metadata"):
                continue
            sub = props.get(key)
            if sub is None and isinstance(extra, Mapping):
                sub = extra
            if sub is not None:
                value[key] = prune(value[key], sub, path=_child(path, key), unknown=unknown)
            elif extra is True or _preserves(schema):
                continue
            else:
                if unknown is not None:
                    unknown.append(_child(path, key))
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            value[i] = prune(item, schema["items"], path=f"{path}[{i}]", unknown=unknown)
    return value


def apply_schema_defaults(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Fill in ``default`` values (in place; returns ``value``) and drop nulls of
    non-nullable fields that have none, as upstream's structural defaulting does."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value and value[key] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                else:
                    del value[key]
            elif key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_schema_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in list(value):
                if key in props:
                    continue
                if value[key] is None and not extra.get("nullable"):
                    if "default" in extra:
                        value[key] = copy.deepcopy(extra["default"])
                    else:
                        del value[key]
                        continue
                apply_schema_defaults(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_schema_defaults(item, schema["items"])
    return value


def _invalid(errs: list[FieldError], path: str, value: Any, detail: str) -> None:
    errs.append(FieldError(path, f"Invalid value: {_show(value)}: {detail}"))


def validate_value(
    value: Any, schema: Mapping[str, Any] | None, path: str, errs: list[FieldError]
) -> None:
    """Append to ``errs`` every way ``value`` breaks ``schema`` (kube-openapi's checks and
    wording, mapped to field errors as the apiextensions-apiserver maps them)."""
    if schema is None:
        return
    where = f"{path} in body" if path else "in body"
    if value is None and schema.get("nullable"):
        return
    wanted = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (_has_type(value, "integer") or isinstance(value, str)):
            got = _json_type(value)
            errs.append(
                FieldError(
                    path,
                    f'Invalid value: "{got}": {where} must be of type integer,string: "{got}"',
                    reason="FieldValueTypeInvalid",
                )
            )
            return
    elif wanted and not _has_type(value, wanted):
        got = _json_type(value)
        errs.append(
            FieldError(
                path,
                f'Invalid value: "{got}": {where} must be of type {wanted}: "{got}"',
                reason="FieldValueTypeInvalid",
            )
        )
        return
    enum = schema.get("enum")
    if enum and not any(_canonical(value) == _canonical(e) for e in enum):
        listed = ", ".join(json.dumps(e if isinstance(e, str) else _show(e)) for e in enum)
        errs.append(
            FieldError(
                path,
                f"Unsupported value: {_show(value)}: supported values: {listed}",
                reason="FieldValueNotSupported",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, where, errs)
    elif isinstance(value, str):
        _validate_string(value, schema, path, where, errs)
    elif isinstance(value, list):
        _validate_array(value, schema, path, where, errs)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, where, errs)
    _validate_combinators(value, schema, path, where, errs)


def _validate_number(
    value: float, schema: Mapping[str, Any], path: str, where: str, errs: list[FieldError]
) -> None:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        if schema.get("exclusiveMinimum") and value <= low:
            _invalid(errs, path, value, f"{where} should be greater than {_show(low)}")
        elif value < low:
            _invalid(errs, path, value, f"{where} should be greater than or equal to {_show(low)}")
    if high is not None:
        if schema.get("exclusiveMaximum") and value >= high:
            _invalid(errs, path, value, f"{where} should be less than {_show(high)}")
        elif value > high:
            _invalid(errs, path, value, f"{where} should be less than or equal to {_show(high)}")
    step = schema.get("multipleOf")
    if step and (value / step) != int(value / step):
        _invalid(errs, path, value, f"{where} should be a multiple of {_show(step)}")


def _validate_string(
    value: str, schema: Mapping[str, Any], path: str, where: str, errs: list[FieldError]
) -> None:
    longest, shortest = schema.get("maxLength"), schema.get("minLength")
    if longest is not None and len(value) > longest:
        errs.append(
            FieldError(
                path, f"Too long: may not be longer than {longest}", reason="FieldValueTooLong"
            )
        )
    if shortest is not None and len(value) < shortest:
        _invalid(errs, path, value, f"{where} should be at least {shortest} chars long")
    pattern = schema.get("pattern")
    if pattern:
        try:
            matched = re.search(pattern, value) is not None
        except re.error:
            matched = True  # refused when the definition was written
        if not matched:
            _invalid(errs, path, value, f"{where} should match '{pattern}'")


def _validate_size(
    value: Sized,
    schema: Mapping[str, Any],
    what: str,
    path: str,
    where: str,
    errs: list[FieldError],
) -> None:
    """``max<what>`` and ``min<what>`` (``Items``: of an array; ``Properties``: of an object)."""
    most, least = schema.get(f"max{what}"), schema.get(f"min{what}")
    if most is not None and len(value) > most:
        errs.append(
            FieldError(
                path,
                f"Too many: {len(value)}: must have at most {most} items",
                reason="FieldValueTooMany",
            )
        )
    if least is not None and len(value) < least:
        _invalid(errs, path, value, f"{where} should have at least {least} {what.lower()}")


def _validate_array(
    value: list[Any], schema: Mapping[str, Any], path: str, where: str, errs: list[FieldError]
) -> None:
    _validate_size(value, schema, "Items", path, where, errs)
    if schema.get("uniqueItems"):
        seen: set[str] = set()
        for i, item in enumerate(value):
            key = _canonical(item)
            if key in seen:
                errs.append(
                    FieldError(
                        f"{path}[{i}]",
                        f"Duplicate value: {_show(item)}",
                        reason="FieldValueDuplicate",
                    )
                )
            seen.add(key)
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            validate_value(item, items, f"{path}[{i}]", errs)


def _validate_object(
    value: dict[str, Any],
    schema: Mapping[str, Any],
    path: str,
    where: str,
    errs: list[FieldError],
) -> None:
    for name in schema.get("required") or ():
        if name not in value:
            errs.append(FieldError(_child(path, name), "Required value", "FieldValueRequired"))
    _validate_size(value, schema, "Properties", path, where, errs)
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if not path and key in ("apiVersion", "kind", "metadata"):
            continue  # the object's own: checked as ObjectMeta (a schema may limit the name)
        sub = props.get(key)
        if sub is None and isinstance(extra, Mapping):
            sub = extra
        if sub is not None:
            validate_value(item, sub, _child(path, key), errs)
    if not path and isinstance(value.get("metadata"), dict) and "metadata" in props:
        meta_props = props["metadata"].get("properties") or {}
        for key in ("name", "generateName"):
            if key in meta_props and key in value["metadata"]:
                validate_value(value["metadata"][key], meta_props[key], f"metadata.{key}", errs)


def _validate_combinators(
    value: Any, schema: Mapping[str, Any], path: str, where: str, errs: list[FieldError]
) -> None:
    for sub in schema.get("allOf") or ():
        validate_value(value, sub, path, errs)

    def passes(sub: Mapping[str, Any]) -> bool:
        found: list[FieldError] = []
        validate_value(value, sub, path, found)
        return not found

    any_of = schema.get("anyOf")
    if any_of and not any(passes(s) for s in any_of):
        _invalid(errs, path, value, f"{where} must validate at least one schema (anyOf)")
    one_of = schema.get("oneOf")
    if one_of and sum(passes(s) for s in one_of) != 1:
        _invalid(errs, path, value, f"{where} must validate one and only one schema (oneOf)")
    negated = schema.get("not")
    if isinstance(negated, Mapping) and passes(negated):
        _invalid(errs, path, value, f"{where} must not validate the schema (not)")


# ---------------------------------------------------------------------------------------
# JSON paths (the subset printer columns use)
# ---------------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_\-/]+)
      | \[\s*(?P<quote>['"])(?P<key>(?:\\.|(?!(?P=quote)).)*)(?P=quote)\s*\]
      | \[\s*(?P<index>-?\d+|\*)\s*\]
      | \[\?\(\s*@(?P<fpath>(?:\.[A-Za-z0-9_\-/]+)+)\s*
            (?:(?P<op>==|!=)\s*(?P<lit>'[^']*'|"[^"]*"|-?\d+(?:\.\d+)?|true|false))?\s*\)\]
      | \.\*
    """,
    re.X,
)


class JSONPathError(ValueError):
    pass


def parse_json_path(text: str) -> list[tuple[str, Any]]:
    """``.status.conditions[?(@.type=="Ready")].status`` as steps: ``("field", name)``,
    ``("index", n)``, ``("all", None)`` and ``("filter", (path, op, value))``. Braces
    (``{.spec.x}``) are allowed around it."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    if not body.startswith("."):
        raise JSONPathError("must be a simple json path starting with .")
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(body):
        m = _PATH_TOKEN.match(body, pos)
        if m is None:
            raise JSONPathError(f"unexpected {body[pos:]!r}")
        if m.group("name"):
            steps.append(("field", m.group("name")))
        elif m.group("quote"):
            steps.append(("field", re.sub(r"\\(.)", r"\1", m.group("key"))))
        elif m.group("index"):
            idx = m.group("index")
            steps.append(("all", None) if idx == "*" else ("index", int(idx)))
        elif m.group("fpath"):
            literal = m.group("lit")
            value: Any = None
            if literal is not None:
                value = json.loads(literal.replace("'", '"') if literal[0] == "'" else literal)
            steps.append(("filter", (m.group("fpath")[1:].split("."), m.group("op"), value)))
        else:
            steps.append(("all", None))
        pos = m.end()
    return steps


def find_json_path(obj: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    """Every value ``steps`` reach in ``obj`` (missing branches give nothing)."""
    current = [obj]
    for kind, arg in steps:
        found: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, dict) and arg in value:
                    found.append(value[arg])
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= arg < len(value):
                    found.append(value[arg])
            elif kind == "all":
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
            elif isinstance(value, list):
                fpath, op, literal = arg
                for item in value:
                    got: Any = item
                    for part in fpath:
                        got = got.get(part) if isinstance(got, dict) else None
                    if op is None:
                        keep = got is not None
                    else:
                        same = _canonical(got) == _canonical(literal)
                        keep = same if op == "==" else not same
                    if keep:
                        found.append(item)
        current = found
    return current


# ---------------------------------------------------------------------------------------
# One served definition
# ---------------------------------------------------------------------------------------


@dataclass
class ServedVersion:
    name: str
    schema: dict[str, Any] | None
    columns: list[dict[str, Any]]
    status: bool
    scale: dict[str, Any] | None
    info: CustomResourceInfo


@dataclass
class Definition:
    """What the API server serves for one established CustomResourceDefinition."""

    name: str
    uid: str
    group: str
    kind: str
    plural: str
    namespaced: bool
    storage_version: str
    versions: dict[str, ServedVersion] = field(default_factory=dict)
    terminating: bool = False

    @property
    def storage_info(self) -> CustomResourceInfo:
        version = self.versions.get(self.storage_version)
        if version is not None:
            return version.info
        return next(iter(self.versions.values())).info

    @classmethod
    def from_object(cls, crd: Mapping[str, Any]) -> Definition | None:
        """The definition ``crd`` establishes, or ``None`` while its names are not accepted
        (or no version is served)."""
        status = crd.get("status") or {}
        established = any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        names = status.get("acceptedNames") or {}
        spec = crd.get("spec") or {}
        if not established or not names.get("plural") or not names.get("kind"):
            return None
        meta = crd.get("metadata") or {}
        group = spec.get("group") or ""
        namespaced = spec.get("scope") != "Cluster"
        storage = next((v["name"] for v in spec.get("versions") or () if v.get("storage")), "")
        out = cls(
            name=meta.get("name") or "",
            uid=meta.get("uid") or "",
            group=group,
            kind=names["kind"],
            plural=names["plural"],
            namespaced=namespaced,
            storage_version=storage,
            terminating=bool(meta.get("deletionTimestamp")),
        )
        for version in spec.get("versions") or ():
            if not version.get("served"):
                continue
            subresources = version.get("subresources") or {}
            has_status = subresources.get("status") is not None
            scale = subresources.get("scale")
            subs: list[Subresource] = []
            if has_status:
                subs.append(Subresource("status", names["kind"]))
            if scale is not None:
                subs.append(Subresource("scale", "Scale", group="autoscaling", version="v1"))
            info = CustomResourceInfo(
                group,
                version["name"],
                names["kind"],
                names["plural"],
                names.get("singular") or names["kind"].lower(),
                namespaced,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=tuple(subs),
                list_kind_name=names.get("listKind") or f"{names['kind']}List",
                storage_version=storage,
            )
            columns = version.get("additionalPrinterColumns") or [_AGE_COLUMN]
            out.versions[version["name"]] = ServedVersion(
                name=version["name"],
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                columns=[dict(c) for c in columns],
                status=has_status,
                scale=scale,
                info=info,
            )
        if not out.versions:
            return None
        return out


# ---------------------------------------------------------------------------------------
# The definitions of one store
# ---------------------------------------------------------------------------------------


class CustomResourceDefinitions:
    """The CustomResourceDefinitions of one :class:`~kcore.apiserver.objects.ObjectStore`:
    the resources they add (a :class:`~kcore.api.registry.ResourceSource`, so that lookups
    in this process find them), and the rules for definitions and custom objects that the
    object store applies through it."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = weakref.ref(objects)
        self._definitions: dict[str, Definition] = {}
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        self._follower: asyncio.Task[None] | None = None
        registry.add_source(self)

    @property
    def objects(self) -> ObjectStore:
        objects = self._objects()
        if objects is None:
            raise RuntimeError("the object store is gone")
        return objects

    # -- what is served -------------------------------------------------------------------

    def resources(self) -> Iterable[ResourceInfo]:
        for definition in list(self._definitions.values()):
            for version in definition.versions.values():
                yield version.info

    def definitions(self) -> list[Definition]:
        return list(self._definitions.values())

    def definition(self, info: ResourceInfo) -> Definition | None:
        """The served definition ``info`` belongs to, if this store serves it."""
        for definition in self._definitions.values():
            if definition.group == info.group and definition.plural == info.plural:
                if info.version in definition.versions:
                    return definition
        return None

    def version(self, info: ResourceInfo) -> ServedVersion:
        definition = self.definition(info)
        if definition is None:
            raise NotFound("the server could not find the requested resource")
        return definition.versions[info.version]

    def resource(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        """The resource this API serves at ``group/version/plural``: a built-in one or one
        of this store's definitions (never another store's)."""
        info = registry.by_resource(group, version, plural)
        if info is not None and not is_custom(info):
            return info
        for definition in self._definitions.values():
            if definition.group == group and definition.plural == plural:
                served = definition.versions.get(version)
                if served is not None:
                    return served.info
        return None

    def resources_in(self, group: str, version: str) -> list[ResourceInfo]:
        """The resources of one group version, for its APIResourceList."""
        out = [r for r in registry.RESOURCES if r.group == group and r.version == version]
        for definition in self._definitions.values():
            served = definition.versions.get(version)
            if definition.group == group and served is not None:
                out.append(served.info)
        return out

    def groups(self) -> list[tuple[str, list[str]]]:
        """``(group, versions)`` for ``GET /apis``, preferred version first: the table's
        groups in table order, then the definitions' groups by name."""
        out: dict[str, list[str]] = {}
        for info in registry.RESOURCES:
            if info.group and info.version not in out.setdefault(info.group, []):
                out[info.group].append(info.version)
        custom: dict[str, set[str]] = {}
        for definition in self._definitions.values():
            if definition.group in out:
                continue
            custom.setdefault(definition.group, set()).update(definition.versions)
        for group in sorted(custom):
            out[group] = sorted(custom[group], key=version_priority)
        return list(out.items())

    # -- following the stored definitions ------------------------------------------------

    def observe(self, info: ResourceInfo, obj: Mapping[str, Any], *, gone: bool = False) -> None:
        """A definition was written (or is ``gone``): serve what it says now. Other kinds
        are ignored, so the object store calls this after every write."""
        if not is_definition(info):
            return
        meta = obj.get("metadata") or {}
        name = meta.get("name") or ""
        current = self._definitions.get(name)
        if gone:
            if current is not None and current.uid in ("", meta.get("uid")):
                del self._definitions[name]
                log.info("custom resource removed", crd=name)
            return
        definition = Definition.from_object(obj)
        if definition is None:
            self._definitions.pop(name, None)
        else:
            if current is None:
                log.info("custom resource served", crd=name)
            self._definitions[name] = definition
        if meta.get("deletionTimestamp") and CLEANUP_FINALIZER in (meta.get("finalizers") or ()):
            self._start_cleanup(name, meta.get("uid") or "")

    async def load(self) -> int:
        """Serve every stored definition (at API server start); returns the revision read."""
        items, revision, _ = await self.objects.list(CRD_INFO, None)
        names = set()
        for crd in items:
            names.add(crd["metadata"]["name"])
            self.observe(CRD_INFO, crd)
        for name in set(self._definitions) - names:
            del self._definitions[name]
        return revision

    def start(self) -> None:
        """Load the definitions, then follow them with a watch (until :meth:`close`)."""
        if self._follower is None:
            self._follower = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        from kcore.apiserver.objects import ListOptions

        delay = 0.1
        while True:
            try:
                revision = await self.load()
                events = self.objects.watch(
                    CRD_INFO, None, ListOptions(resource_version=str(revision)), send_initial=False
                )
                try:
                    async for item in events:
                        self.observe(CRD_INFO, item.object, gone=item.type == "DELETED")
                        delay = 0.1
                finally:
                    with contextlib.suppress(Exception):
                        await events.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except Expired:
                continue
            except Exception as exc:
                log.warning("following custom resource definitions failed", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        """Stop following and cleaning up (a cleanup goes on at the next start)."""
        tasks = [t for t in (self._follower, *self._cleanups.values()) if t is not None]
        self._follower = None
        self._cleanups.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- deletion ------------------------------------------------------------------------

    def deletion_finalizers(
        self, info: ResourceInfo, obj: dict[str, Any], finalizers: list[str]
    ) -> list[str]:
        """On the first DELETE of a definition: the cleanup finalizer and a
        ``Terminating`` condition (set on ``obj``), so that its objects go first."""
        if not is_definition(info) or (obj.get("metadata") or {}).get("deletionTimestamp"):
            return finalizers
        status = obj.setdefault("status", {})
        status["conditions"] = _set_condition(
            status.get("conditions") or [],
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        )
        if CLEANUP_FINALIZER in finalizers:
            return finalizers
        return [*finalizers, CLEANUP_FINALIZER]

    def _start_cleanup(self, name: str, uid: str) -> None:
        task = self._cleanups.get(name)
        if task is not None and not task.done():
            return
        try:
            self._cleanups[name] = asyncio.ensure_future(self._cleanup(name, uid))
        except RuntimeError:  # no event loop (a synchronous caller): the next start does it
            pass

    async def _cleanup(self, name: str, uid: str) -> None:
        """Delete every object of a terminating definition, wait until they are gone
        (their own finalizers may hold them), then release the definition."""
        objects = self.objects
        try:
            crd = await objects.get(CRD_INFO, None, name)
        except NotFound:
            return
        if crd["metadata"].get("uid") != uid:
            return
        await self._set_terminating_condition(name, "InstanceDeletionInProgress")
        spec = crd.get("spec") or {}
        names = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
        storage = next((v["name"] for v in spec.get("versions") or () if v.get("storage")), "v1")
        info = CustomResourceInfo(
            spec.get("group") or "",
            storage,
            names.get("kind") or "",
            names.get("plural") or "",
            names.get("singular") or "",
            spec.get("scope") != "Cluster",
        )
        delay = CLEANUP_RETRY[0]
        while True:
            items, _, _ = await objects.list(info, None)
            if not items:
                break
            for item in items:
                meta = item["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                with contextlib.suppress(NotFound, Conflict):
                    await objects.delete(
                        info,
                        meta.get("namespace"),
                        meta["name"],
                        {"propagationPolicy": "Background"},
                    )
            await asyncio.sleep(delay)
            delay = min(delay * 2, CLEANUP_RETRY[1])
        for _attempt in range(20):
            try:
                crd = await objects.get(CRD_INFO, None, name)
            except NotFound:
                return
            if crd["metadata"].get("uid") != uid:
                return
            finalizers = [
                f for f in crd["metadata"].get("finalizers") or () if f != CLEANUP_FINALIZER
            ]
            crd["metadata"]["finalizers"] = finalizers
            try:
                await objects.update(CRD_INFO, None, name, crd)
                return
            except Conflict:
                continue
            except NotFound:
                return

    async def _set_terminating_condition(self, name: str, reason: str) -> None:
        objects = self.objects
        for _attempt in range(5):
            try:
                crd = await objects.get(CRD_INFO, None, name)
            except NotFound:
                return
            status = crd.setdefault("status", {})
            status["conditions"] = _set_condition(
                status.get("conditions") or [],
                "Terminating",
                "True",
                reason,
                "CustomResource deletion is in progress",
            )
            try:
                await objects.update(CRD_INFO, None, name, crd, subresource="status")
                return
            except Conflict:
                continue
            except NotFound:
                return

    # -- the object store's hooks ----------------------------------------------------------

    def handles(self, info: ResourceInfo) -> bool:
        """Whether writes of ``info`` are normalized here rather than by the typed model."""
        return is_custom(info) or is_definition(info)

    def normalize(
        self,
        info: ResourceInfo,
        body: Mapping[str, Any],
        *,
        strict: bool,
        old: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Default and validate a definition or a custom object before it is stored."""
        if is_definition(info):
            return self._normalize_definition(body, strict=strict, old=old)
        return self._normalize_object(info, body, strict=strict, old=old)

    def patch_kind(self, info: ResourceInfo, kind: str) -> str:
        """Custom objects have no strategic merge patch (415); an apply patch of an
        existing one merges as a JSON merge patch does."""
        if not is_custom(info):
            return kind
        if kind == "strategic":
            raise UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml"
            )
        return "merge" if kind == "apply" else kind

    def served_as(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` (stored in the storage version) as the version ``info`` serves."""
        if is_custom(info) and obj.get("apiVersion") != info.api_version:
            obj["apiVersion"] = info.api_version
        return obj

    # -- custom objects --------------------------------------------------------------------

    def _normalize_object(
        self,
        info: ResourceInfo,
        body: Mapping[str, Any],
        *,
        strict: bool,
        old: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        definition = self.definition(info)
        if definition is None:
            raise NotFound("the server could not find the requested resource")
        served = definition.versions[info.version]
        if old is None and definition.terminating:
            raise NotSupported("create not allowed while custom resource definition is terminating")
        obj = copy.deepcopy(dict(body))
        meta = obj.get("metadata") or {}
        name = meta.get("name") if isinstance(meta, dict) else None
        try:
            typed = api.decode({"metadata": meta}, into=_Metadata)
        except Invalid as exc:
            raise _invalid_object(info.kind, info.group, name, exc.causes) from None
        if old is None and served.status:
            obj.pop("status", None)
        unknown: list[str] = []
        prune(obj, served.schema, unknown=unknown, root=True)
        if strict and unknown:
            listed = ", ".join(f'unknown field "{p}"' for p in unknown)
            raise Invalid(
                f'{info.kind} in version "{info.version}" cannot be handled as a '
                f"{info.kind}: strict decoding error: {listed}",
                [
                    FieldError(p, "field not declared in schema", reason="FieldValueNotSupported")
                    for p in unknown
                ],
            )
        apply_schema_defaults(obj, served.schema)
        errs = ErrorList()
        validate_object_meta(typed.metadata, errs, namespaced=info.namespaced or None)
        validate_value(obj, served.schema, "", errs)
        if errs:
            raise _invalid_object(info.kind, info.group, name, list(errs))
        obj["metadata"] = api.to_dict(typed.metadata)
        obj["apiVersion"] = f"{definition.group}/{definition.storage_version}"
        obj["kind"] = definition.kind
        return obj

    def table(
        self, info: ResourceInfo, items: list[dict[str, Any]], resource_version: str
    ) -> dict[str, Any]:
        """The ``kubectl get`` Table of custom objects: NAME, then the version's
        ``additionalPrinterColumns`` (AGE when it has none)."""
        from kcore.apiserver.tables import human_duration, partial_object_metadata

        served = self.version(info)
        columns = [dict(_NAME_COLUMN)]
        paths = []
        for col in served.columns:
            columns.append(
                {
                    "name": col.get("name") or "",
                    "type": col.get("type") or "string",
                    "format": col.get("format") or "",
                    "description": col.get("description") or "",
                    "priority": int(col.get("priority") or 0),
                }
            )
            try:
                paths.append(parse_json_path(col.get("jsonPath") or ""))
            except JSONPathError:
                paths.append(None)
        now = datetime.now(UTC)
        rows = []
        for obj in items:
            cells: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
            for col, steps in zip(served.columns, paths, strict=True):
                found = find_json_path(obj, steps) if steps is not None else []
                cells.append(_cell(col.get("type") or "string", found, now, human_duration))
            rows.append({"cells": cells, "object": partial_object_metadata(obj)})
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": columns,
            "rows": rows,
        }

    def scale_of(self, info: ResourceInfo, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The ``autoscaling/v1`` Scale of a custom object, read from the paths of
        ``subresources.scale``."""
        scale = self.version(info).scale or {}

        def read(path: str | None) -> Any:
            if not path:
                return None
            try:
                found = find_json_path(obj, parse_json_path(path))
            except JSONPathError:
                return None
            return found[0] if found else None

        meta = obj.get("metadata") or {}
        selector = read(scale.get("labelSelectorPath"))
        status: dict[str, Any] = {"replicas": _int_or_zero(read(scale.get("statusReplicasPath")))}
        if isinstance(selector, str) and selector:
            status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": _int_or_zero(read(scale.get("specReplicasPath")))},
            "status": status,
        }

    def replicas_pointer(self, info: ResourceInfo) -> str:
        """``specReplicasPath`` as a JSON pointer (``/spec/replicas``)."""
        path = (self.version(info).scale or {}).get("specReplicasPath") or ".spec.replicas"
        steps = parse_json_path(path)
        return "".join("/" + str(arg).replace("~", "~0").replace("/", "~1") for _, arg in steps)

    # -- definitions -------------------------------------------------------------------------

    def _normalize_definition(
        self, body: Mapping[str, Any], *, strict: bool, old: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        body = dict(body)
        if old is None:
            body.pop("status", None)  # a new definition's status is the server's
        crd = api.decode(body, into=CustomResourceDefinition, strict=strict)
        _default_definition(crd)
        errs = ErrorList(api.validation_errors(crd, require_namespace=False))
        _validate_definition(crd, errs)
        old_crd = api.decode(dict(old), into=CustomResourceDefinition) if old else None
        if old_crd is not None:
            _validate_definition_update(crd, old_crd, errs)
        if errs:
            raise _invalid_object("CustomResourceDefinition", GROUP, crd.metadata.name, list(errs))
        obj = api.to_dict(crd)
        self._set_status(obj)
        return obj

    def _set_status(self, crd: dict[str, Any]) -> None:
        """The server's part of the status: accepted names, the ``NamesAccepted`` and
        ``Established`` conditions, and the stored versions."""
        spec = crd["spec"]
        status = crd.setdefault("status", {})
        names = dict(spec.get("names") or {})
        conflict = self._names_conflict(crd["metadata"]["name"], spec.get("group") or "", names)
        conditions = list(status.get("conditions") or [])
        accepted = status.get("acceptedNames") or {}
        if conflict is None:
            status["acceptedNames"] = names
            conditions = _set_condition(
                conditions, "NamesAccepted", "True", "NoConflicts", "no conflicts found"
            )
            established = any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            )
            if not established:
                conditions = _set_condition(
                    conditions,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                )
        else:
            reason, message = conflict
            status["acceptedNames"] = accepted or {"plural": "", "kind": ""}
            conditions = _set_condition(conditions, "NamesAccepted", "False", reason, message)
            if not accepted.get("plural"):
                conditions = _set_condition(
                    conditions, "Established", "False", "NotAccepted", "not all names are accepted"
                )
        status["conditions"] = conditions
        stored = list(status.get("storedVersions") or [])
        storage = next((v["name"] for v in spec.get("versions") or () if v.get("storage")), None)
        if storage and storage not in stored:
            stored.append(storage)
        status["storedVersions"] = stored

    def _names_conflict(
        self, name: str, group: str, names: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """``(reason, message)`` when another definition of ``group`` uses one of
        ``names``."""
        for other in self._definitions.values():
            if other.name == name or other.group != group:
                continue
            info = other.storage_info
            if names.get("plural") == info.plural:
                return "PluralConflict", f'"{info.plural}" is already in use'
            if names.get("singular") in (info.singular, info.plural):
                return "SingularConflict", f'"{names.get("singular")}" is already in use'
            taken = set(info.short_names) | {info.plural, info.singular}
            for short in names.get("shortNames") or ():
                if short in taken:
                    return "ShortNamesConflict", f'"{short}" is already in use'
            if names.get("kind") in (info.kind, info.list_kind):
                return "KindConflict", f'"{names.get("kind")}" is already in use'
            if names.get("listKind") in (info.kind, info.list_kind):
                return "ListKindConflict", f'"{names.get("listKind")}" is already in use'
        return None


def _invalid_object(kind: str, group: str, name: str | None, causes: list[FieldError]) -> Invalid:
    """A 422 with the ``details`` (name, group, kind) Kubernetes gives it."""
    err = invalid_error(kind, group, name, causes)
    err.details = {"name": name, "group": group, "kind": kind}  # type: ignore[attr-defined]
    return err


class _Metadata(TypedObject):
    """A custom object's metadata, decoded with the typed model's rules."""


def _int_or_zero(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return int(value)


def _cell(kind: str, found: list[Any], now: datetime, human_duration: Any) -> Any:
    """A printer column's cell, as upstream's table convertor makes it (first result)."""
    if not found or found[0] is None:
        return None
    value = found[0]
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(_num(value))
        return json.dumps(value, separators=(",", ":"))
    if kind == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if kind == "number":
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        if not isinstance(value, str):
            return None
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return human_duration(now - stamp)
    return None


def _set_condition(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str
) -> list[dict[str, Any]]:
    """``conditions`` with ``type_`` set; the transition time moves only when the status
    does."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    found = False
    for cond in conditions:
        if cond.get("type") == type_:
            found = True
            same = cond.get("status") == status
            cond = {
                **cond,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": cond.get("lastTransitionTime") if same else stamp,
            }
            if not cond["lastTransitionTime"]:
                cond["lastTransitionTime"] = stamp
        out.append(cond)
    if not found:
        out.append(
            {
                "type": type_,
                "status": status,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }
        )
    return out


# ---------------------------------------------------------------------------------------
# Defaults and rules of a definition
# ---------------------------------------------------------------------------------------


def _default_definition(crd: CustomResourceDefinition) -> None:
    from kcore.api.apiextensions_v1 import CustomResourceConversion

    names = crd.spec.names
    if names.kind and not names.singular:
        names.singular = names.kind.lower()
    if names.kind and not names.list_kind:
        names.list_kind = f"{names.kind}List"
    if crd.spec.conversion is None:
        crd.spec.conversion = CustomResourceConversion(strategy="None")
    elif crd.spec.conversion.strategy is None:
        crd.spec.conversion.strategy = "None"
    for version in crd.spec.versions:
        if version.served is None:
            version.served = False
        if version.storage is None:
            version.storage = False


def _builtin_groups() -> set[str]:
    return {info.group for info in registry.RESOURCES} | {
        "autoscaling",
        "authentication.k8s.io",
    }


def _protected_group(group: str) -> bool:
    return any(
        group == suffix or group.endswith("." + suffix) for suffix in ("k8s.io", "kubernetes.io")
    )


def _validate_definition(crd: CustomResourceDefinition, errs: ErrorList) -> None:
    spec = crd.spec
    names = spec.names
    group = spec.group or ""
    if not group:
        errs.required("spec.group")
    else:
        errs.check("spec.group", group, is_dns1123_subdomain(group))
        if "." not in group:
            errs.invalid("spec.group", group, "should be a domain with at least one dot")
        elif group in _builtin_groups():
            errs.forbidden("spec.group", f"{group} is served by the API server itself")
        elif _protected_group(group) and APPROVAL_ANNOTATION not in crd.metadata.annotations:
            errs.required(
                f"metadata.annotations[{APPROVAL_ANNOTATION}]",
                'protected groups must have approval annotation "api-approved.kubernetes.io", '
                "see https://github.com/kubernetes/enhancements/pull/1111",
            )
    if crd.metadata.name and names.plural and group:
        expected = f"{names.plural}.{group}"
        if crd.metadata.name != expected:
            errs.invalid(
                "metadata.name", crd.metadata.name, 'must be spec.names.plural+"."+spec.group'
            )
    _validate_names(names, "spec.names", errs)
    if not spec.scope:
        errs.required("spec.scope")
    elif spec.scope not in ("Cluster", "Namespaced"):
        errs.not_supported("spec.scope", spec.scope, ("Cluster", "Namespaced"))
    if spec.preserve_unknown_fields:
        errs.invalid(
            "spec.preserveUnknownFields",
            True,
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in "
            "spec.versions[*].schema instead",
        )
    conversion = spec.conversion.strategy if spec.conversion else "None"
    if conversion not in ("None", "Webhook"):
        errs.not_supported("spec.conversion.strategy", conversion, ("None", "Webhook"))
    if not spec.versions:
        errs.required("spec.versions", "must have exactly one version marked as storage version")
        return
    storage = [v.name for v in spec.versions if v.storage]
    if len(storage) != 1:
        errs.invalid(
            "spec.versions",
            [v.name for v in spec.versions],
            "must have exactly one version marked as storage version",
        )
    served = [v.name for v in spec.versions if v.served]
    if conversion == "Webhook" and len(served) > 1:
        errs.forbidden(
            "spec.conversion.strategy",
            "kcore converts versions only the None way (apiVersion changes): a definition "
            "with conversion webhooks may serve one version only",
        )
    seen: set[str] = set()
    for i, version in enumerate(spec.versions):
        path = f"spec.versions[{i}]"
        if not version.name:
            errs.required(f"{path}.name")
        else:
            errs.check(f"{path}.name", version.name, is_dns1035_label(version.name))
            if version.name in seen:
                errs.duplicate(f"{path}.name", version.name)
            seen.add(version.name)
        schema = version.schema.open_api_v3_schema if version.schema else None
        if schema is None:
            errs.required(f"{path}.schema.openAPIV3Schema", "schemas are required")
        else:
            _check_schema(api.to_dict(schema), f"{path}.schema.openAPIV3Schema", errs, root=True)
        for j, col in enumerate(version.additional_printer_columns):
            _validate_column(col, f"{path}.additionalPrinterColumns[{j}]", errs)
        scale = version.subresources.scale if version.subresources else None
        if scale is not None:
            _validate_scale(scale, f"{path}.subresources.scale", errs)


def _validate_names(names: Any, path: str, errs: ErrorList) -> None:
    for attr, wire in (
        ("plural", "plural"),
        ("singular", "singular"),
        ("kind", "kind"),
        ("list_kind", "listKind"),
    ):
        value = getattr(names, attr)
        if not value:
            errs.required(f"{path}.{wire}")
            continue
        checked = value.lower() if attr in ("kind", "list_kind") else value
        problems = is_dns1035_label(checked)
        if problems:
            errs.invalid(f"{path}.{wire}", value, ",".join(problems))
    if names.kind and names.kind == names.list_kind:
        errs.invalid(f"{path}.listKind", names.list_kind, "kind and listKind cannot be the same")
    for i, short in enumerate(names.short_names):
        problems = is_dns1035_label(short)
        if problems:
            errs.invalid(f"{path}.shortNames[{i}]", short, ",".join(problems))
    for i, category in enumerate(names.categories):
        problems = is_dns1035_label(category)
        if problems:
            errs.invalid(f"{path}.categories[{i}]", category, ",".join(problems))


def _validate_column(col: Any, path: str, errs: ErrorList) -> None:
    if not col.name:
        errs.required(f"{path}.name")
    if not col.type:
        errs.required(f"{path}.type")
    elif col.type not in COLUMN_TYPES:
        errs.not_supported(f"{path}.type", col.type, COLUMN_TYPES)
    if col.format and col.format not in COLUMN_FORMATS:
        errs.not_supported(f"{path}.format", col.format, COLUMN_FORMATS)
    if col.priority is not None and col.priority < 0:
        errs.invalid(f"{path}.priority", col.priority, "must be greater than or equal to 0")
    if not col.json_path:
        errs.required(f"{path}.jsonPath")
    else:
        try:
            parse_json_path(col.json_path)
        except JSONPathError as exc:
            errs.invalid(f"{path}.jsonPath", col.json_path, str(exc))


def _validate_scale(scale: Any, path: str, errs: ErrorList) -> None:
    for attr, wire, prefixes in (
        ("spec_replicas_path", "specReplicasPath", (".spec.",)),
        ("status_replicas_path", "statusReplicasPath", (".status.",)),
        ("label_selector_path", "labelSelectorPath", (".spec.", ".status.")),
    ):
        value = getattr(scale, attr)
        if not value:
            if attr != "label_selector_path":
                errs.required(f"{path}.{wire}")
            continue
        ok = value.startswith(prefixes)
        if ok:
            try:
                steps = parse_json_path(value)
                ok = all(kind == "field" for kind, _ in steps)
            except JSONPathError:
                ok = False
        if not ok:
            listed = " or ".join(prefixes)
            errs.invalid(f"{path}.{wire}", value, f"should be a json path under {listed}")


def _check_schema(
    schema: Mapping[str, Any], path: str, errs: ErrorList, *, root: bool = False, item: bool = False
) -> None:
    """The structural-schema rules of ``apiextensions.k8s.io/v1`` that kcore relies on."""
    type_ = schema.get("type")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if root:
        if not type_:
            errs.required(f"{path}.type", "must not be empty at the root")
        elif type_ != "object":
            errs.invalid(f"{path}.type", type_, "must be object at the root")
    if type_ and type_ not in SCHEMA_TYPES:
        errs.not_supported(f"{path}.type", type_, SCHEMA_TYPES)
    if int_or_string and type_:
        errs.forbidden(f"{path}.type", "must be empty if x-kubernetes-int-or-string is true")
    if not root and not type_ and not int_or_string and not _preserves(schema):
        what = "array items" if item else "object fields"
        errs.required(f"{path}.type", f"must not be empty for specified {what}")
    if "$ref" in schema:
        errs.forbidden(f"{path}.$ref", "$ref is not supported")
    if type_ == "array" and not isinstance(schema.get("items"), Mapping):
        errs.required(f"{path}.items", "must be specified")
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    if props and extra is not None:
        errs.forbidden(
            f"{path}.additionalProperties",
            "additionalProperties and properties are mutual exclusive",
        )
    pattern = schema.get("pattern")
    if pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            errs.invalid(
                f"{path}.pattern", pattern, f"must be a valid regular expression, but isn't: {exc}"
            )
    for key, sub in props.items():
        _check_schema(sub, f"{path}.properties[{key}]", errs)
    if isinstance(extra, Mapping):
        _check_schema(extra, f"{path}.additionalProperties", errs)
    if isinstance(schema.get("items"), Mapping):
        _check_schema(schema["items"], f"{path}.items", errs, item=True)
    if "default" in schema:
        if root:
            errs.forbidden(f"{path}.default", "must not be set at the root")
        else:
            value = prune(copy.deepcopy(schema["default"]), schema)
            found: list[FieldError] = []
            validate_value(value, schema, "", found)
            for problem in found:
                errs.append(FieldError(f"{path}.default", problem.message, problem.reason))


def _validate_definition_update(
    new: CustomResourceDefinition, old: CustomResourceDefinition, errs: ErrorList
) -> None:
    established = any(c.type == "Established" and c.status == "True" for c in old.status.conditions)
    if established and new.spec.scope != old.spec.scope:
        errs.invalid("spec.scope", new.spec.scope, "field is immutable")
    if new.spec.group != old.spec.group:
        errs.invalid("spec.group", new.spec.group, "field is immutable")
    names = {v.name for v in new.spec.versions}
    for i, stored in enumerate(old.status.stored_versions):
        if stored not in names:
            errs.invalid(f"status.storedVersions[{i}]", stored, "must appear in spec.versions")


__all__ = [
    "CRD_INFO",
    "CustomResourceDefinitions",
    "Definition",
    "JSONPathError",
    "UnsupportedMediaType",
    "apply_schema_defaults",
    "find_json_path",
    "is_custom",
    "is_definition",
    "parse_json_path",
    "prune",
    "validate_value",
    "version_priority",
]
