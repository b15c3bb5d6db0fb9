"""The three PATCH bodies the API server accepts, as pure functions on JSON-like values.

* :func:`apply_json_patch`: JSON Patch, RFC 6902 (``application/json-patch+json``).
* :func:`apply_merge_patch`: JSON Merge Patch, RFC 7386 (``application/merge-patch+json``).
* :func:`apply_strategic_merge_patch`: Kubernetes' strategic merge patch
  (``application/strategic-merge-patch+json``), the body ``kubectl apply``, ``kubectl edit``
  and ``kubectl patch`` send by default.

JSON-like means ``dict`` (string keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and
``None``. No function changes its arguments, and a result never shares a mutable part with
them, so a caller may change the result freely.

Errors follow the API server's answers. A patch body that is not a patch of its type (a JSON
patch that is not an array, an unknown ``op``, a ``$patch`` directive with an unknown value,
a merging list element without its merge key) raises :class:`MalformedPatch`, a
:class:`~kcore.errors.BadRequest` (400). A well-formed patch that does not apply to the
document (a path that does not exist, an index out of range, a failed ``test``) raises
:class:`PatchNotApplicable`, an :class:`~kcore.errors.Invalid` (422).

Strategic merge patch
---------------------
A strategic merge patch is a JSON merge patch (objects merge, ``null`` deletes a key) in
which some lists merge instead of being replaced. How a list merges is a property of the
field, the ``patchStrategy`` and ``patchMergeKey`` tags of the Go types: a list of objects
with ``patchStrategy: merge`` merges element by element, matching elements on the merge key
(``containers`` by ``name``); a list of scalars with ``patchStrategy: merge`` is a set (the
union of the two lists); every other list is replaced by the patch's list. The tags of the
types kcore serves are in :data:`STRATEGIC_MERGE_RULES`, keyed by kind and field path (the
field names from the object's root, list positions left out); :func:`strategy_for` looks one
up.

Directives (keys that start with ``$``; none is ever stored in the result):

* ``$patch: replace`` in an object replaces the object with the rest of the patch object;
  as an element of a list (``{"$patch": "replace"}``) it replaces the list with the patch's
  other elements.
* ``$patch: delete`` in an object deletes the object (as ``null`` would); as an element of
  a merging list (``{"name": "x", "$patch": "delete"}``) it deletes every element whose merge
  key has that value.
* ``$patch: merge`` in an object is the default (merge); as an element of a list it makes
  the list merge even where its field would be replaced (a list of objects still needs a
  merge key).
* ``$retainKeys: [k, ...]`` clears every key of the object that is not listed; the patch's
  own keys must all be listed.
* ``$setElementOrder/<list>: [...]`` gives the order of a merging list: merge-key objects
  (``[{"name": "a"}, {"name": "b"}]``) or, for a list of scalars, the values.
* ``$deleteFromPrimitiveList/<list>: [...]`` removes those values from a list of scalars.

Other keys starting with ``$`` are ignored, as Kubernetes ignores directives it does not know.

The order of a merged list follows Kubernetes (apimachinery's ``strategicpatch``): the
elements the patch names (in ``$setElementOrder`` when present, else in the patch list) take
the patch's order; the elements only the stored list has keep their relative order and are
interleaved with them, an element going before a patch element that it preceded in the stored
list. An element new to the list therefore lands before the stored elements that follow no
patch element: patching ``{"containers": [{"name": "b"}]}`` into a pod whose containers are
``[a]`` gives ``[b, a]``, as the kubectl patch tutorial on kubernetes.io shows. ``kubectl
apply`` sends ``$setElementOrder`` for every list it changes, which fixes the order it wants.

Two deliberate differences from the Go implementation, both for the stored object's sake:
patch values new to the document are cleaned of directives and ``null`` members before they
are stored (Go stores them verbatim), and ``$patch: delete`` on a nested object removes the
key (Go leaves an empty object, which its typed decoding then usually drops).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from kcore.errors import BadRequest, FieldError, Invalid

__all__ = [
    "MERGE",
    "REPLACE",
    "RETAIN_KEYS",
    "STRATEGIC_MERGE_RULES",
    "FieldRule",
    "MalformedPatch",
    "PatchNotApplicable",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "strategy_for",
]


class MalformedPatch(BadRequest):
    """The body is not a well-formed patch of its type; the API server answers 400."""


class PatchNotApplicable(Invalid):
    """A well-formed patch that cannot be applied to this document; the API server answers 422.

    ``causes`` holds one :class:`~kcore.errors.FieldError` naming where the patch failed.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message, [FieldError(field or "patch", message)])


# --------------------------------------------------------------------------------------------
# JSON values


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON defines it: ``1 == 1.0``, but ``true != 1`` and ``"1" != 1``."""
    kind = _kind_of(a)
    if kind != _kind_of(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _identity(value: Any) -> tuple[Any, ...]:
    """A hashable stand-in for a JSON value, equal for values that are :func:`_json_equal`
    (for scalars exactly; containers by their canonical text)."""
    kind = _kind_of(value)
    if kind in ("array", "object"):
        return (kind, json.dumps(value, sort_keys=True, default=str))
    return (kind, value)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------
# JSON Patch, RFC 6902

_OPS = ("add", "remove", "replace", "move", "copy", "test")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


class _Op(NamedTuple):
    number: int
    op: str
    path: tuple[str, ...]
    pointer: str
    source: tuple[str, ...] | None  # "from", for move and copy
    source_pointer: str
    value: Any


def _parse_pointer(pointer: Any, what: str) -> tuple[str, ...]:
    """Split a JSON pointer (RFC 6901) into its reference tokens, unescaping ``~1`` and ``~0``."""
    if not isinstance(pointer, str):
        raise MalformedPatch(f"{what} must be a JSON pointer string, not {_kind_of(pointer)}")
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise MalformedPatch(f"{what} {pointer!r} is not a JSON pointer: it must start with '/'")
    if _BAD_ESCAPE.search(pointer):
        raise MalformedPatch(
            f"{what} {pointer!r} is not a JSON pointer: '~' must be followed by '0' or '1'"
        )
    # ~1 first, then ~0, so that "~01" means the key "~1" (RFC 6901, section 4).
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


def _parse_json_patch(patch_ops: Any) -> list[_Op]:
    if not isinstance(patch_ops, list):
        raise MalformedPatch(
            f"a JSON patch must be an array of operations, not {_kind_of(patch_ops)}"
        )
    ops = []
    for number, raw in enumerate(patch_ops):
        where = f"JSON patch operation {number}"
        if not isinstance(raw, dict):
            raise MalformedPatch(f"{where} must be an object, not {_kind_of(raw)}")
        op = raw.get("op")
        if op not in _OPS:
            got = "no 'op' member" if "op" not in raw else f"'op' {_short(op)}"
            raise MalformedPatch(f"{where} has {got}; 'op' must be one of {', '.join(_OPS)}")
        if "path" not in raw:
            raise MalformedPatch(f"{where} ({op}) has no 'path' member")
        path = _parse_pointer(raw["path"], f"{where} ({op}): 'path'")
        source: tuple[str, ...] | None = None
        if op in ("move", "copy"):
            if "from" not in raw:
                raise MalformedPatch(f"{where} ({op}) has no 'from' member")
            source = _parse_pointer(raw["from"], f"{where} ({op}): 'from'")
        if op in ("add", "replace", "test") and "value" not in raw:
            raise MalformedPatch(f"{where} ({op}) has no 'value' member")
        ops.append(
            _Op(number, op, path, raw["path"], source, raw.get("from", ""), raw.get("value"))
        )
    return ops


def _array_index(
    array: list[Any], token: str, *, for_add: bool, fail: Callable[[str], NoReturn]
) -> int:
    if token == "-":
        if for_add:
            return len(array)
        fail("'-' names the place after the last element; only 'add' may use it")
    if not _ARRAY_INDEX.fullmatch(token):
        fail(f"{token!r} is not an array index")
    index = int(token)
    if index > len(array) or (index == len(array) and not for_add):
        fail(f"index {index} is out of range for an array of {len(array)} elements")
    return index


def _resolve(doc: Any, tokens: Sequence[str], fail: Callable[[str], NoReturn]) -> Any:
    """The value at ``tokens``; ``fail`` is called (and raises) when it does not exist."""
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                fail(f"the member {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_array_index(node, token, for_add=False, fail=fail)]
        else:
            fail(f"a {_kind_of(node)} has no member {token!r}")
    return node


def _add(doc: Any, tokens: tuple[str, ...], value: Any, fail: Callable[[str], NoReturn]) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], fail)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(parent, last, for_add=True, fail=fail), value)
    else:
        fail(f"cannot add a member to a {_kind_of(parent)}")
    return doc


def _remove(doc: Any, tokens: tuple[str, ...], fail: Callable[[str], NoReturn]) -> Any:
    """Remove the value at ``tokens`` from ``doc`` in place and return it."""
    if not tokens:
        fail("the whole document cannot be removed")
    parent = _resolve(doc, tokens[:-1], fail)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            fail(f"the member {last!r} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_array_index(parent, last, for_add=False, fail=fail))
    fail(f"a {_kind_of(parent)} has no member {last!r}")


def _apply_op(doc: Any, op: _Op) -> Any:
    def fail_at(pointer: str) -> Callable[[str], NoReturn]:
        def fail(reason: str) -> Any:
            raise PatchNotApplicable(
                f"JSON patch operation {op.number} ({op.op} {pointer!r}) does not apply: {reason}",
                field=pointer or "/",
            )

        return fail

    fail = fail_at(op.pointer)
    if op.op == "add":
        return _add(doc, op.path, copy.deepcopy(op.value), fail)
    if op.op == "remove":
        _remove(doc, op.path, fail)
        return doc
    if op.op == "replace":
        _resolve(doc, op.path, fail)  # the target must exist
        if not op.path:
            return copy.deepcopy(op.value)
        parent = _resolve(doc, op.path[:-1], fail)
        if isinstance(parent, dict):
            parent[op.path[-1]] = copy.deepcopy(op.value)
        else:
            parent[_array_index(parent, op.path[-1], for_add=False, fail=fail)] = copy.deepcopy(
                op.value
            )
        return doc
    if op.op == "test":
        actual = _resolve(doc, op.path, fail)
        if not _json_equal(actual, op.value):
            fail(f"the value is {_short(actual)}, not {_short(op.value)}")
        return doc
    assert op.source is not None
    source_fail = fail_at(op.source_pointer)
    if op.op == "copy":
        value = copy.deepcopy(_resolve(doc, op.source, source_fail))
        return _add(doc, op.path, value, fail)
    # move
    if op.source == op.path:
        _resolve(doc, op.source, source_fail)
        return doc
    if op.path[: len(op.source)] == op.source:
        fail(f"a value cannot be moved into itself (from {op.source_pointer!r})")
    value = _remove(doc, op.source, source_fail)
    return _add(doc, op.path, value, fail)


def apply_json_patch(doc: Any, patch_ops: Any) -> Any:
    """Apply a JSON patch (RFC 6902) and return the new document.

    ``patch_ops`` is the decoded body: a list of operations ``add``, ``remove``, ``replace``,
    ``move``, ``copy`` and ``test``, each with a JSON pointer ``path`` (``~1`` for ``/`` and
    ``~0`` for ``~``; ``-`` appends to an array in ``add``). Members an operation does not
    use are ignored. The operations apply in order and all or none take effect.

    Raises :class:`MalformedPatch` (400) when the body is not a JSON patch, and
    :class:`PatchNotApplicable` (422) when an operation does not apply (a missing target, an
    index out of range, a failed ``test``).
    """
    ops = _parse_json_patch(patch_ops)
    result = copy.deepcopy(doc)
    for op in ops:
        result = _apply_op(result, op)
    return result


# --------------------------------------------------------------------------------------------
# JSON Merge Patch, RFC 7386


def apply_merge_patch(doc: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386) and return the new document.

    An object patch merges member by member into an object (a document that is not an object
    counts as ``{}``): ``null`` deletes a member, an object merges recursively, anything else
    (lists included) replaces. A patch that is not an object replaces the whole document.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    base = doc if isinstance(doc, dict) else {}
    result: dict[str, Any] = {}
    for key, value in base.items():
        if key not in patch:
            result[key] = copy.deepcopy(value)
        elif patch[key] is not None:
            result[key] = apply_merge_patch(value, patch[key])
    for key, value in patch.items():
        if key not in base and value is not None:
            result[key] = apply_merge_patch(None, value)
    return result


# --------------------------------------------------------------------------------------------
# Strategic merge patch: the field rules

MERGE = "merge"
"""Merge a list element by element (by merge key; a list of scalars as a set)."""
REPLACE = "replace"
"""Replace the value wholesale: the default for lists, declared here for atomic lists."""
RETAIN_KEYS = "retainKeys"
"""The field is a union: ``kubectl apply`` sends ``$retainKeys`` to clear the other members."""


class FieldRule(NamedTuple):
    """The patch strategy of one field: ``strategy`` holds Kubernetes' ``patchStrategy`` tag
    (``""`` when the field has none: objects merge, lists are replaced; or ``"merge"``,
    ``"replace"``, ``"retainKeys"``, ``"merge,retainKeys"``) and ``merge_key`` its
    ``patchMergeKey`` (``None`` for a list of scalars or a field without one)."""

    strategy: str = ""
    merge_key: str | None = None

    @property
    def merges(self) -> bool:
        return MERGE in self.strategy.split(",")

    @property
    def replaces(self) -> bool:
        return REPLACE in self.strategy.split(",")


_NO_RULE = FieldRule()


class _Field(NamedTuple):
    strategy: str = ""
    merge_key: str | None = None
    type: str | None = None  # the schema of the value (of a list's elements) below this field


# The tags of k8s.io/api's Go types (patchStrategy / patchMergeKey), for the fields whose
# strategy is not the default and the fields that lead to them. A field listed with REPLACE
# has no tag in Kubernetes (the default already replaces lists): it is listed to document
# that the list is atomic.
_TYPES: dict[str, dict[str, _Field]] = {
    "ObjectMeta": {
        "finalizers": _Field(MERGE),
        "ownerReferences": _Field(MERGE, "uid"),
    },
    "PodTemplateSpec": {
        "metadata": _Field(type="ObjectMeta"),
        "spec": _Field(type="PodSpec"),
    },
    "PodSpec": {
        "containers": _Field(MERGE, "name", "Container"),
        "initContainers": _Field(MERGE, "name", "Container"),
        "ephemeralContainers": _Field(MERGE, "name", "Container"),
        "volumes": _Field(f"{MERGE},{RETAIN_KEYS}", "name"),
        "imagePullSecrets": _Field(MERGE, "name"),
        "hostAliases": _Field(MERGE, "ip"),
        "topologySpreadConstraints": _Field(MERGE, "topologyKey"),
        "schedulingGates": _Field(MERGE, "name"),
        "resourceClaims": _Field(f"{MERGE},{RETAIN_KEYS}", "name"),
        "tolerations": _Field(REPLACE),
        "readinessGates": _Field(REPLACE),
    },
    "Container": {
        "ports": _Field(MERGE, "containerPort"),
        "env": _Field(MERGE, "name"),
        "envFrom": _Field(REPLACE),
        "volumeMounts": _Field(MERGE, "mountPath"),
        "volumeDevices": _Field(MERGE, "devicePath"),
    },
    "PodStatus": {
        "conditions": _Field(MERGE, "type"),
        "podIPs": _Field(MERGE, "ip"),
        "hostIPs": _Field(MERGE, "ip"),
    },
    "StatusWithConditions": {
        "conditions": _Field(MERGE, "type"),
    },
    "WorkloadSpec": {  # ReplicaSet, ReplicationController, DaemonSet, Job
        "template": _Field(type="PodTemplateSpec"),
    },
    "DeploymentSpec": {
        "template": _Field(type="PodTemplateSpec"),
        "strategy": _Field(RETAIN_KEYS),
    },
    "StatefulSetSpec": {
        "template": _Field(type="PodTemplateSpec"),
        "volumeClaimTemplates": _Field(REPLACE),
    },
    "JobTemplateSpec": {
        "metadata": _Field(type="ObjectMeta"),
        "spec": _Field(type="WorkloadSpec"),
    },
    "CronJobSpec": {
        "jobTemplate": _Field(type="JobTemplateSpec"),
    },
    "CronJobStatus": {
        "active": _Field(REPLACE),
    },
    "ServiceSpec": {
        # Server-side apply keys Service ports by (port, protocol); the strategic merge
        # patch, like Kubernetes', matches them on port alone.
        "ports": _Field(MERGE, "port"),
    },
    "NodeSpec": {
        "podCIDRs": _Field(MERGE),
        "taints": _Field(REPLACE),
    },
    "NodeStatus": {
        "conditions": _Field(MERGE, "type"),
        "addresses": _Field(MERGE, "type"),
    },
}

_META = _Field(type="ObjectMeta")
_CONDITIONS = _Field(type="StatusWithConditions")


def _workload(spec: str, status: _Field = _CONDITIONS) -> dict[str, _Field]:
    return {"metadata": _META, "spec": _Field(type=spec), "status": status}


_KINDS: dict[str, dict[str, _Field]] = {
    "Pod": {"metadata": _META, "spec": _Field(type="PodSpec"), "status": _Field(type="PodStatus")},
    "PodTemplate": {"metadata": _META, "template": _Field(type="PodTemplateSpec")},
    "ReplicationController": _workload("WorkloadSpec"),
    "ReplicaSet": _workload("WorkloadSpec"),
    "Deployment": _workload("DeploymentSpec"),
    "DaemonSet": _workload("WorkloadSpec"),
    "StatefulSet": _workload("StatefulSetSpec"),
    "Job": _workload("WorkloadSpec"),
    "CronJob": _workload("CronJobSpec", _Field(type="CronJobStatus")),
    "Service": {"metadata": _META, "spec": _Field(type="ServiceSpec"), "status": _CONDITIONS},
    "Endpoints": {"metadata": _META, "subsets": _Field(REPLACE)},
    "Node": {
        "metadata": _META,
        "spec": _Field(type="NodeSpec"),
        "status": _Field(type="NodeStatus"),
    },
    "Namespace": {"metadata": _META, "status": _CONDITIONS},
    "PersistentVolumeClaim": {"metadata": _META, "status": _CONDITIONS},
    "ServiceAccount": {
        "metadata": _META,
        "secrets": _Field(MERGE, "name"),
        "imagePullSecrets": _Field(REPLACE),
    },
}

# Any other kind (ConfigMap, Secret, Event, ...): only the object metadata has rules.
_ANY_KIND: dict[str, _Field] = {"metadata": _META}


def _fields_of(kind: str | None) -> dict[str, _Field]:
    return _KINDS.get(kind or "", _ANY_KIND)


def strategy_for(kind: str | None, path: Sequence[str] | str) -> FieldRule:
    """The patch strategy of the field at ``path`` in an object of ``kind``.

    ``path`` holds the field names from the object's root, without list positions: the
    containers of a Deployment are ``("spec", "template", "spec", "containers")`` and their
    env ``(..., "containers", "env")``; a dotted string is accepted too. The kind is the
    bare kind (``"Deployment"``), whatever its apiVersion. A field without a rule gets
    ``FieldRule("", None)``: objects merge, lists are replaced.
    """
    tokens = tuple(path.split(".")) if isinstance(path, str) else tuple(path)
    fields: dict[str, _Field] = _fields_of(kind)
    for depth, name in enumerate(tokens):
        field = fields.get(name)
        if field is None:
            return _NO_RULE
        if depth == len(tokens) - 1:
            return FieldRule(field.strategy, field.merge_key)
        fields = _TYPES.get(field.type or "", {})
    return _NO_RULE


def _flatten(
    fields: dict[str, _Field], prefix: tuple[str, ...]
) -> dict[tuple[str, ...], FieldRule]:
    table: dict[tuple[str, ...], FieldRule] = {}
    for name, field in fields.items():
        path = (*prefix, name)
        if field.strategy:
            table[path] = FieldRule(field.strategy, field.merge_key)
        if field.type:
            table.update(_flatten(_TYPES[field.type], path))
    return table


STRATEGIC_MERGE_RULES: dict[str, dict[tuple[str, ...], FieldRule]] = {
    kind: _flatten(fields, ()) for kind, fields in {**_KINDS, "*": _ANY_KIND}.items()
}
"""Every field with a patch strategy, by kind and field path (``"*"``: any other kind)."""


# --------------------------------------------------------------------------------------------
# Strategic merge patch: applying it

RuleLookup = Callable[[tuple[str, ...]], FieldRule]
KindPathRules = str | Mapping[Any, Any] | Callable[[tuple[str, ...]], Any] | None

_PATCH = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"
_DELETE = object()  # merge_map's answer to "$patch: delete"


def _where(path: tuple[str, ...]) -> str:
    return ".".join(path) or "the patch root"


def _as_rule(rule: Any) -> FieldRule:
    """A :class:`FieldRule` from a rule, a ``(strategy, merge_key)`` pair, a bare strategy
    string or ``None`` (no rule)."""
    if rule is None:
        return _NO_RULE
    if isinstance(rule, str):
        return FieldRule(rule)
    return FieldRule(*rule)


def _rule_lookup(kind_path_rules: KindPathRules, doc: Any, patch: Any) -> RuleLookup:
    rules = kind_path_rules
    if rules is None:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if not isinstance(kind, str):
            kind = patch.get("kind") if isinstance(patch, dict) else None
        rules = kind if isinstance(kind, str) else ""
    if isinstance(rules, str):
        kind_name = rules
        return lambda path: strategy_for(kind_name, path)
    if isinstance(rules, Mapping):
        table = {
            (tuple(p.split(".")) if isinstance(p, str) else tuple(p)): _as_rule(rule)
            for p, rule in rules.items()
        }
        return lambda path: table.get(path, _NO_RULE)
    if callable(rules):
        lookup = rules
        return lambda path: _as_rule(lookup(path))
    raise TypeError(f"kind_path_rules must be a kind, a mapping or a callable, not {rules!r}")


class _StrategicMerge:
    def __init__(self, rules: RuleLookup) -> None:
        self.rules = rules

    def fresh(self, value: Any, path: tuple[str, ...], order: Any = None) -> Any:
        """``value`` from the patch as it is stored where nothing was: directives applied
        and dropped, ``null`` members dropped, nothing shared with the patch."""
        if isinstance(value, dict):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            return self.merge_list([], value, path, order)
        return value

    def merge_map(
        self, original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]
    ) -> Any:
        """Merge ``patch`` into ``original`` (which this call owns and changes); returns the
        result, or ``_DELETE`` for ``$patch: delete``."""
        if _PATCH in patch:
            directive = patch[_PATCH]
            if directive == "delete":
                return _DELETE
            if directive == "replace":
                return self.merge_map({}, {k: v for k, v in patch.items() if k != _PATCH}, path)
            if directive != "merge":
                raise MalformedPatch(
                    f"{_where(path)}: unknown $patch directive {_short(directive)}"
                    " (expected replace, merge or delete)"
                )
        if _RETAIN in patch:
            self._retain_keys(original, patch, path)
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            field_path = (*path, key)
            if value is None:
                original.pop(key, None)
                continue
            order = patch.get(_ORDER + key)
            current = original.get(key)
            if isinstance(value, dict) and isinstance(current, dict):
                if self.rules(field_path).replaces:
                    merged = self.fresh(value, field_path)
                else:
                    merged = self.merge_map(current, value, field_path)
            elif isinstance(value, list) and isinstance(current, list):
                merged = self.merge_list(current, value, field_path, order)
            else:  # new, a scalar, or a value of another type: the patch's value wins
                merged = self.fresh(value, field_path, order)
            if merged is _DELETE:
                original.pop(key, None)
            else:
                original[key] = merged
        for key, value in patch.items():
            if key.startswith(_ORDER):
                self._order_only(original, patch, key[len(_ORDER) :], value, path)
            elif key.startswith(_DELETE_FROM):
                self._delete_from_list(original, key[len(_DELETE_FROM) :], value, path)
        return original

    def _retain_keys(
        self, original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]
    ) -> None:
        keep = patch[_RETAIN]
        if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
            raise MalformedPatch(f"{_where(path)}: $retainKeys must be a list of field names")
        for key, value in patch.items():
            if value is not None and not key.startswith("$") and key not in keep:
                raise MalformedPatch(
                    f"{_where(path)}: the patch sets {key!r}, which $retainKeys {keep} does not"
                    " list; $retainKeys must name every field the patch sets"
                )
        for key in [k for k in original if k not in keep]:
            del original[key]

    def _order_only(
        self,
        original: dict[str, Any],
        patch: dict[str, Any],
        name: str,
        order: Any,
        path: tuple[str, ...],
    ) -> None:
        if not name:
            raise MalformedPatch(f"{_where(path)}: {_ORDER} must name a list")
        if not isinstance(order, list):
            raise MalformedPatch(f"{_where(path)}: {_ORDER}{name} must be a list")
        current = original.get(name)
        if name not in patch and isinstance(current, list):
            original[name] = self.merge_list(current, [], (*path, name), order, reorder_only=True)

    def _delete_from_list(
        self, original: dict[str, Any], name: str, values: Any, path: tuple[str, ...]
    ) -> None:
        if not name:
            raise MalformedPatch(f"{_where(path)}: {_DELETE_FROM} must name a list")
        if not isinstance(values, list):
            raise MalformedPatch(f"{_where(path)}: {_DELETE_FROM}{name} must be a list")
        current = original.get(name)
        if isinstance(current, list):
            doomed = {_identity(v) for v in values}
            original[name] = [item for item in current if _identity(item) not in doomed]

    def merge_list(
        self,
        original: list[Any],
        patch: list[Any],
        path: tuple[str, ...],
        order: Any = None,
        *,
        reorder_only: bool = False,
    ) -> list[Any]:
        rule = self.rules(path)
        where = _where(path)
        plain: list[Any] = []
        deletes: list[dict[str, Any]] = []
        replace = force_merge = False
        for item in patch:
            if isinstance(item, dict) and _PATCH in item:
                directive = item[_PATCH]
                if directive == "replace":
                    replace = True
                elif directive == "delete":
                    deletes.append(item)
                elif directive == "merge":
                    force_merge = True
                    rest = {k: v for k, v in item.items() if k != _PATCH}
                    if rest:
                        plain.append(rest)
                else:
                    raise MalformedPatch(
                        f"{where}: unknown $patch directive {_short(directive)} in a list element"
                        " (expected replace, merge or delete)"
                    )
            else:
                plain.append(item)
        key = rule.merge_key
        if reorder_only:
            if key is None and any(isinstance(x, dict | list) for x in original):
                return original  # a list of objects without a merge key has no order to set
            return self._ordered(original, original, order, key, path)
        if replace or not (rule.merges or force_merge):
            return [self._fresh_element(item, path) for item in plain]
        if any(isinstance(item, list) for item in plain):
            raise MalformedPatch(f"{where}: lists of lists cannot be merged")
        if key is None:
            if deletes or any(isinstance(item, dict) for item in plain):
                raise MalformedPatch(
                    f"{where}: this list has no merge key, so its elements cannot be objects"
                    " to merge or delete"
                )
            merged = _unique([*original, *plain])
            if order is not None:
                self._check_order(plain, order, None, path)
            return self._ordered(merged, original, plain if order is None else order, None, path)
        for item in (*plain, *deletes):
            if not isinstance(item, dict) or key not in item:
                raise MalformedPatch(
                    f"{where}: every element of this list must be an object with its merge key"
                    f" {key!r}; got {_short(item)}"
                )
        result = list(original)
        for item in deletes:
            doomed = _identity(item[key])
            result = [x for x in result if _element_id(x, key) != doomed]
        stored = list(result)
        for item in plain:
            wanted = _identity(item[key])
            for index, existing in enumerate(result):
                if _element_id(existing, key) == wanted:
                    result[index] = self.merge_map(existing, item, path)
                    break
            else:
                result.append(self.merge_map({}, item, path))
        if order is not None:
            self._check_order(plain, order, key, path)
        return self._ordered(result, stored, plain if order is None else order, key, path)

    def _fresh_element(self, item: Any, path: tuple[str, ...]) -> Any:
        if isinstance(item, dict):
            merged = self.merge_map({}, item, path)
            return {} if merged is _DELETE else merged
        if isinstance(item, list):
            return self.merge_list([], item, path)
        return item

    def _order_ids(self, order: Any, key: str | None, path: tuple[str, ...]) -> list[Any]:
        if not isinstance(order, list):
            raise MalformedPatch(f"{_where(path)}: $setElementOrder must be a list")
        if key is None:
            return [_identity(v) for v in order]
        ids = []
        for entry in order:
            if not isinstance(entry, dict) or key not in entry:
                raise MalformedPatch(
                    f"{_where(path)}: each $setElementOrder entry must be an object with the"
                    f" merge key {key!r}; got {_short(entry)}"
                )
            ids.append(_identity(entry[key]))
        return ids

    def _check_order(
        self, plain: list[Any], order: Any, key: str | None, path: tuple[str, ...]
    ) -> None:
        ids = self._order_ids(order, key, path)
        position = {}
        for index, ident in enumerate(ids):
            position.setdefault(ident, index)
        last = -1
        for item in plain:
            ident = _identity(item) if key is None else _identity(item[key])
            here = position.get(ident)
            if here is None or here < last:
                raise MalformedPatch(
                    f"{_where(path)}: the patch list does not match its $setElementOrder list:"
                    " each element must be listed there, in the same relative order"
                )
            last = here

    def _ordered(
        self,
        merged: list[Any],
        stored: list[Any],
        order: list[Any],
        key: str | None,
        path: tuple[str, ...],
    ) -> list[Any]:
        """Order ``merged`` as Kubernetes does: the elements ``order`` names take its order;
        the others (found only in the stored list) keep theirs and are interleaved, each
        going before a named element that it preceded in ``stored``."""
        rank: dict[Any, int] = {}
        for index, ident in enumerate(self._order_ids(order, key, path)):
            rank.setdefault(ident, index)
        stored_rank: dict[Any, int] = {}
        for index, item in enumerate(stored):
            ident = _element_id(item, key)
            if ident is not None:
                stored_rank.setdefault(ident, index)
        named = [x for x in merged if _element_id(x, key) in rank]
        others = [x for x in merged if _element_id(x, key) not in rank]
        named.sort(key=lambda x: rank[_element_id(x, key)])
        result: list[Any] = []
        i = j = 0
        while i < len(others) and j < len(named):
            mine = stored_rank.get(_element_id(others[i], key))
            theirs = stored_rank.get(_element_id(named[j], key))
            if mine is not None and theirs is not None and mine < theirs:
                result.append(others[i])
                i += 1
            else:
                result.append(named[j])
                j += 1
        result.extend(others[i:])
        result.extend(named[j:])
        return result


def _element_id(item: Any, key: str | None) -> Any:
    """What identifies a list element: its merge key's value, or for a list of scalars the
    value itself; ``None`` for an object that lacks the merge key."""
    if key is None:
        return _identity(item)
    if isinstance(item, dict) and key in item:
        return _identity(item[key])
    return None


def _unique(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    result = []
    for item in items:
        ident = _identity(item)
        if ident not in seen:
            seen.add(ident)
            result.append(item)
    return result


def apply_strategic_merge_patch(
    doc: Any, patch: Any, kind_path_rules: KindPathRules = None
) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch and return the new document.

    ``kind_path_rules`` says which fields merge how (see the module's documentation):

    * ``None``: the rules of the document's ``kind`` (from ``doc``, else from ``patch``);
    * a kind name (``"Deployment"``): the rules of that kind in :data:`STRATEGIC_MERGE_RULES`
      (a kind without rules gets those of ``metadata`` only);
    * a mapping from field paths (tuples of field names, or dotted strings) to
      :class:`FieldRule` or ``(strategy, merge_key)`` pairs; other fields have no rule;
    * a callable taking a field path and returning such a pair.

    Raises :class:`MalformedPatch` (400) when the patch is not a JSON object or misuses a
    directive, and :class:`PatchNotApplicable` (422) when the document is not an object.
    """
    if not isinstance(patch, dict):
        raise MalformedPatch(
            f"a strategic merge patch must be a JSON object, not {_kind_of(patch)}"
        )
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PatchNotApplicable(
            f"a strategic merge patch applies to a JSON object, not to {_kind_of(doc)}"
        )
    merger = _StrategicMerge(_rule_lookup(kind_path_rules, doc, patch))
    result = merger.merge_map(copy.deepcopy(doc), patch, ())
    return {} if result is _DELETE else result
