"""meta/v1: the parts every Kubernetes object shares.

Conventions for every API type in :mod:`kcore.api`:

- Python attributes are snake_case; the wire names are Kubernetes' camelCase (the
  ``rename="camel"`` config, plus an explicit ``name=`` where Kubernetes spells an acronym
  in capitals, such as ``podIP``).
- A scalar or a nested object that the manifest may leave out defaults to ``None``, and
  ``None`` means "not given": defaulting (:mod:`kcore.api.defaults`) fills only ``None``.
  Lists and maps default to empty and are left out of the output when empty, as Go's
  ``omitempty`` does. Whatever the manifest set, even ``false`` or ``0``, is encoded again.
- Top-level kinds always encode ``apiVersion``, ``kind`` and ``metadata`` (and ``spec`` and
  ``status`` where the kind has them, as the real API server does).
- Timestamps (``Time``) are tz-aware UTC datetimes at second precision and encode as
  ``2026-01-02T03:04:05Z``; ``MicroTime`` keeps microseconds. Decoding accepts any RFC 3339
  form (fractional seconds, offsets) and normalizes it. Set timestamps with :func:`now`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Protocol, TypeVar

import msgspec

if TYPE_CHECKING:
    from kcore.errors import KcoreError

Time = Annotated[datetime, msgspec.Meta(tz=True)]
"""A timestamp at second precision, encoded as ``2026-01-02T03:04:05Z``."""

MicroTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A timestamp with microseconds (Lease and Event times)."""

Quantity = str | int | float
"""A resource quantity as written in the manifest: ``"100m"``, ``"1Gi"``, ``2`` or ``0.5``."""

IntOrString = int | str
"""A port number or a port name; a count or a percentage such as ``"25%"``."""


def now() -> datetime:
    """The current time as a ``Time``: UTC, whole seconds."""
    return datetime.now(UTC).replace(microsecond=0)


def micro_now() -> datetime:
    """The current time as a ``MicroTime``: UTC, with microseconds."""
    return datetime.now(UTC)


def to_time(value: datetime, *, micro: bool = False) -> datetime:
    """Normalize ``value`` to UTC (a naive value is taken as UTC), whole seconds unless ``micro``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.microsecond and not micro:
        value = value.replace(microsecond=0)
    return value


def normalize_times(obj: Any, *names: str, micro: tuple[str, ...] = ()) -> None:
    """Normalize the ``Time`` attributes ``names`` (and the ``MicroTime`` ones in ``micro``).

    Called from ``__post_init__``, which msgspec runs after construction and after decoding.
    """
    for name in names:
        value = getattr(obj, name)
        if value is not None and (value.microsecond or value.tzinfo is not UTC):
            setattr(obj, name, to_time(value))
    for name in micro:
        value = getattr(obj, name)
        if value is not None and value.tzinfo is not UTC:
            setattr(obj, name, to_time(value, micro=True))


class K8sStruct(
    msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True, repr_omit_defaults=True
):
    """Base of every API type: camelCase on the wire, keyword-only, defaults left out."""


class TypedStruct(K8sStruct):
    """A top-level type: ``apiVersion`` and ``kind`` are filled in and always encoded.

    The defaults are empty strings and ``__post_init__`` fills in the class's own
    ``API_VERSION`` and ``KIND``, so the values differ from the defaults and survive
    ``omit_defaults`` (msgspec would otherwise drop ``apiVersion: v1``).
    """

    API_VERSION: ClassVar[str] = ""
    KIND: ClassVar[str] = ""

    api_version: str = ""
    kind: str = ""

    def __post_init__(self) -> None:
        if not self.api_version:
            self.api_version = self.API_VERSION
        if not self.kind:
            self.kind = self.KIND


# --------------------------------------------------------------------------- object meta


class OwnerReference(K8sStruct):
    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    uid: str | None = None
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(K8sStruct):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: list[OwnerReference] = []
    finalizers: list[str] = []
    managed_fields: list[dict[str, Any]] = []
    """Passed through untouched: kcore does not track field managers."""

    def __post_init__(self) -> None:
        normalize_times(self, "creation_timestamp", "deletion_timestamp")

    def controller_ref(self) -> OwnerReference | None:
        """The owner reference with ``controller: true``, if any."""
        for ref in self.owner_references:
            if ref.controller:
                return ref
        return None


class ListMeta(K8sStruct):
    self_link: str | None = None
    resource_version: str | None = None
    continue_: str | None = msgspec.field(default=None, name="continue")
    remaining_item_count: int | None = None


class TypedObject(TypedStruct):
    """A top-level object with ``metadata``: every stored kind derives from this."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class LabelSelectorRequirement(K8sStruct):
    key: str | None = None
    operator: str | None = None
    """``In``, ``NotIn``, ``Exists`` or ``DoesNotExist``."""
    values: list[str] = []


class LabelSelector(K8sStruct):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy this selector (an empty selector matches everything)."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In":
                if not present or labels[req.key or ""] not in req.values:
                    return False
            elif req.operator == "NotIn":
                if present and labels[req.key or ""] in req.values:
                    return False
            elif req.operator == "Exists":
                if not present:
                    return False
            elif req.operator == "DoesNotExist":
                if present:
                    return False
            else:
                return False
        return True

    def to_string(self) -> str:
        """The selector in ``labelSelector`` query syntax, e.g. ``app=x,tier in (a,b)``."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            if req.operator == "In":
                parts.append(f"{req.key} in ({','.join(sorted(req.values))})")
            elif req.operator == "NotIn":
                parts.append(f"{req.key} notin ({','.join(sorted(req.values))})")
            elif req.operator == "Exists":
                parts.append(f"{req.key}")
            elif req.operator == "DoesNotExist":
                parts.append(f"!{req.key}")
        return ",".join(parts)


class ObjectReference(K8sStruct):
    """core/v1 ObjectReference: points at another object (events, endpoints, tokens)."""

    api_version: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class LocalObjectReference(K8sStruct):
    name: str | None = None


# --------------------------------------------------------------------------- conditions


class Condition(K8sStruct):
    """meta/v1 Condition, the shape newer APIs use for ``status.conditions``."""

    type: str | None = None
    status: str | None = None
    """``True``, ``False`` or ``Unknown``."""
    observed_generation: int | None = None
    last_transition_time: Time | None = None
    reason: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "last_transition_time")


class _ConditionLike(Protocol):
    type: str | None
    status: str | None
    reason: str | None
    message: str | None


C = TypeVar("C", bound=_ConditionLike)
T = TypeVar("T")


def find_condition(conditions: list[C], type_: str) -> C | None:
    """The condition of type ``type_`` in ``conditions``, or ``None``."""
    for cond in conditions:
        if cond.type == type_:
            return cond
    return None


def is_condition_true(conditions: list[Any], type_: str) -> bool:
    cond = find_condition(conditions, type_)
    return cond is not None and cond.status == "True"


def set_condition(conditions: list[C], new: C) -> bool:
    """Add or update ``new`` in ``conditions`` by type; return whether anything changed.

    As Kubernetes' helpers do, ``lastTransitionTime`` moves only when ``status`` changes:
    an update that keeps the status keeps the old transition time. A new condition without
    a transition time gets :func:`now`.
    """
    old = find_condition(conditions, new.type or "")
    has_transition = hasattr(new, "last_transition_time")
    if old is None:
        if has_transition and new.last_transition_time is None:  # type: ignore[attr-defined]
            new.last_transition_time = now()  # type: ignore[attr-defined]
        conditions.append(new)
        return True
    changed = False
    if old.status != new.status:
        old.status = new.status
        if has_transition:
            old.last_transition_time = new.last_transition_time or now()  # type: ignore[attr-defined]
        changed = True
    for attr in ("reason", "message", "observed_generation"):
        if hasattr(new, attr) and getattr(old, attr) != getattr(new, attr):
            setattr(old, attr, getattr(new, attr))
            changed = True
    for attr in ("last_probe_time", "last_heartbeat_time", "last_update_time"):
        value = getattr(new, attr, None)
        if value is not None and getattr(old, attr) != value:
            setattr(old, attr, value)
            changed = True
    return changed


# --------------------------------------------------------------------------- status


class StatusCause(K8sStruct):
    reason: str | None = None
    message: str | None = None
    field: str | None = None


class StatusDetails(K8sStruct):
    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] = []
    retry_after_seconds: int | None = None


class Status(TypedStruct):
    """The body of every API error (and of some successes, such as a deleted collection)."""

    API_VERSION: ClassVar[str] = "v1"
    KIND: ClassVar[str] = "Status"

    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    status: str | None = None
    """``Success`` or ``Failure``."""
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: int | None = None

    @classmethod
    def success(cls, message: str | None = None) -> Status:
        return cls(status="Success", message=message, code=200)

    @classmethod
    def from_error(
        cls,
        error: KcoreError,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
    ) -> Status:
        """The Status the API server answers ``error`` with (code, reason and causes)."""
        causes = [
            StatusCause(reason=c.reason, message=c.message, field=c.field or None)
            for c in getattr(error, "causes", ())
        ]
        retry = getattr(error, "retry_after", None)
        details = None
        if name or group or kind or causes or retry is not None:
            details = StatusDetails(
                name=name,
                group=group,
                kind=kind,
                causes=causes,
                retry_after_seconds=int(retry) if retry is not None else None,
            )
        return cls(
            status="Failure",
            message=str(error),
            reason=error.reason,
            details=details,
            code=error.code,
        )


class Preconditions(K8sStruct):
    uid: str | None = None
    resource_version: str | None = None


class DeleteOptions(K8sStruct):
    """The optional body of a DELETE. ``kind``/``apiVersion`` are optional here."""

    api_version: str | None = None
    kind: str | None = None
    grace_period_seconds: int | None = None
    preconditions: Preconditions | None = None
    orphan_dependents: bool | None = None
    propagation_policy: str | None = None
    """``Orphan``, ``Background`` or ``Foreground``."""
    dry_run: list[str] = []


class ObjectList(msgspec.Struct, Generic[T], rename="camel", kw_only=True, repr_omit_defaults=True):
    """A list response (``PodList``, ``DeploymentList`` ... or plain ``List``).

    Every field is always encoded; clients require ``items`` even when it is empty.
    """

    api_version: str = "v1"
    kind: str = "List"
    metadata: ListMeta = msgspec.field(default_factory=ListMeta)
    items: list[T] = []


__all__ = [
    "Condition",
    "DeleteOptions",
    "IntOrString",
    "K8sStruct",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ListMeta",
    "LocalObjectReference",
    "MicroTime",
    "ObjectList",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "Preconditions",
    "Quantity",
    "Status",
    "StatusCause",
    "StatusDetails",
    "Time",
    "TypedObject",
    "TypedStruct",
    "find_condition",
    "is_condition_true",
    "micro_now",
    "normalize_times",
    "now",
    "set_condition",
    "to_time",
]
