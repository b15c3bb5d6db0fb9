"""API objects over the store slot: the semantics of create, get, list, update, patch,
delete and watch, independent of HTTP.

Objects are stored as JSON under ``/registry/<group>/<resource>/[<namespace>/]<name>``
(``core`` for the core group), without ``metadata.resourceVersion``: that is the store
revision of the key, filled in on every read. Every write decodes the object into its typed
model, defaults and validates it, so the store only ever holds valid, defaulted objects.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import inspect
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from kcore import api
from kcore.api.meta import now
from kcore.api.registry import ResourceInfo
from kcore.apiserver.crd import CustomResourceDefinitions
from kcore.apiserver.services import Allocation, ServiceAllocator
from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    FieldError,
    Forbidden,
    Invalid,
    KcoreError,
    NotFound,
)
from kcore.interfaces import AdmissionCheck, AdmissionRequest
from kcore.patch import apply_json_patch, apply_merge_patch, apply_strategic_merge_patch
from kcore.pods.tolerations import DEFAULT_TOLERATION_SECONDS, with_default_tolerations
from kcore.selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
)
from kcore.store import EventType, KeyValue, Store

log = structlog.get_logger("kcore.apiserver")

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode

GENERATE_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
# Kinds whose delete answers the object itself instead of a Status (ReturnDeletedObject).
RETURNS_DELETED_OBJECT = {"Pod", "Service", "ServiceAccount"}
# The finalizers of garbage collection (metav1.FinalizerOrphanDependents / DeleteDependents)
# and of namespace deletion (spec.finalizers, removed through namespaces/<name>/finalize).
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
NAMESPACE_FINALIZER = "kubernetes"
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
"""Namespaces that may not be deleted (the NamespaceLifecycle admission plugin's)."""
# Kinds whose DELETE without a propagation policy orphans dependents: batch/v1 Job (and v1
# ReplicationController) keep their legacy default; kubectl always sends Background.
ORPHAN_BY_DEFAULT = {("batch/v1", "Job"), ("v1", "ReplicationController")}
SYSTEM_METADATA = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def with_details(error: KcoreError, info: ResourceInfo, name: str | None) -> KcoreError:
    """Attach the ``Status.details`` (name, group, kind) that the API reports."""
    error.details = {"name": name, "group": info.group or None, "kind": info.plural}  # type: ignore[attr-defined]
    return error


def not_found(info: ResourceInfo, name: str) -> NotFound:
    label = f"{info.plural}.{info.group}" if info.group else info.plural
    return with_details(NotFound(f'{label} "{name}" not found'), info, name)  # type: ignore[return-value]


def conflict(info: ResourceInfo, name: str, why: str | None = None) -> Conflict:
    label = f"{info.plural}.{info.group}" if info.group else info.plural
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    err = Conflict(f'Operation cannot be fulfilled on {label} "{name}": {why}')
    return with_details(err, info, name)  # type: ignore[return-value]


def forbidden(info: ResourceInfo, name: str, why: str) -> Forbidden:
    label = f"{info.plural}.{info.group}" if info.group else info.plural
    message = f'{label} "{name}" is forbidden: {why}' if name else f"{label} is forbidden: {why}"
    return with_details(Forbidden(message), info, name)  # type: ignore[return-value]


def namespace_terminating(info: ResourceInfo, namespace: str, name: str) -> Forbidden:
    """The 403 of a create in a namespace being deleted, with the ``NamespaceTerminating``
    cause clients look for."""
    err = forbidden(
        info,
        name,
        f"unable to create new content in namespace {namespace} because it is being terminated",
    )
    err.causes = [  # type: ignore[attr-defined]
        FieldError(
            "metadata.namespace",
            f"namespace {namespace} is being terminated",
            NAMESPACE_TERMINATING_CAUSE,
        )
    ]
    return err


@dataclass(frozen=True)
class ListOptions:
    label_selector: LabelSelector | None = None
    field_selector: FieldSelector | None = None
    limit: int | None = None
    continue_token: str | None = None
    resource_version: str | None = None
    exact: bool = False
    """``resourceVersionMatch=Exact``: list at that revision (otherwise "not older than",
    served from the newest state)."""

    @classmethod
    def parse(
        cls,
        kind: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        exact: bool = False,
    ) -> ListOptions:
        """Options from the query's strings, as a list or watch request carries them:
        selectors parsed (fields checked against what ``kind`` supports), limit bounded."""
        if limit is not None and not 0 <= limit < 2**63:
            raise BadRequest(f"limit must be a non-negative 64-bit integer, got {limit}")
        return cls(
            label_selector=parse_label_selector(label_selector) if label_selector else None,
            field_selector=(
                parse_field_selector(field_selector).check_supported(kind)
                if field_selector
                else None
            ),
            limit=limit,
            continue_token=continue_token or None,
            resource_version=resource_version,
            exact=exact,
        )

    def matches(self, kind: str, obj: Mapping[str, Any]) -> bool:
        if self.label_selector is not None and not self.label_selector.matches(
            (obj.get("metadata") or {}).get("labels")
        ):
            return False
        return self.field_selector is None or self.field_selector.matches(obj, kind)


@dataclass(frozen=True)
class WatchItem:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK."""
    object: dict[str, Any]
    revision: int


def delete_answer(info: ResourceInfo, obj: dict[str, Any], gone: bool) -> dict[str, Any]:
    """What a DELETE answers: the object while it waits (finalizers, a grace period) and for
    the kinds Kubernetes returns it for; otherwise a Success ``Status``."""
    if not gone or info.kind in RETURNS_DELETED_OBJECT:
        return obj
    details = {"name": obj["metadata"]["name"]}
    if info.group:
        details["group"] = info.group
    details["kind"] = info.plural
    details["uid"] = obj["metadata"].get("uid")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def encode_continue(revision: int, key: str) -> str:
    raw = _json_encode({"rv": revision, "start": key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = _json_decode(base64.urlsafe_b64decode(padded))
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise BadRequest(f"invalid continue token {token!r}") from None


class ObjectStore:
    """Kubernetes object semantics on top of a :class:`kcore.store.Store`."""

    def __init__(
        self,
        store: Store,
        *,
        services: ServiceAllocator | None = None,
        toleration_seconds: float = DEFAULT_TOLERATION_SECONDS,
        admission_checks: Iterable[AdmissionCheck] | None = None,
    ) -> None:
        self.store = store
        self.admission_checks: list[AdmissionCheck] = list(admission_checks or ())
        """The plugins' admission checks, run in this order on every write."""
        self.toleration_seconds = toleration_seconds
        """The ``tolerationSeconds`` of the not-ready/unreachable tolerations new pods get
        (DefaultTolerationSeconds admission)."""
        self.services = services if services is not None else ServiceAllocator(store)
        """Cluster IPs and node ports of Services (default ranges unless given)."""
        self.crds = CustomResourceDefinitions(self)
        """The CustomResourceDefinitions of this store and the resources they add."""

    # -- keys and encoding ---------------------------------------------------------------

    @staticmethod
    def prefix(info: ResourceInfo, namespace: str | None) -> str:
        base = f"/registry/{info.group or 'core'}/{info.plural}/"
        if info.namespaced and namespace:
            base += f"{namespace}/"
        return base

    def key(self, info: ResourceInfo, namespace: str | None, name: str) -> str:
        return self.prefix(info, namespace if info.namespaced else None) + name

    @staticmethod
    def _decode(kv: KeyValue) -> dict[str, Any]:
        obj = _json_decode(kv.value)
        obj["metadata"]["resourceVersion"] = str(kv.revision)
        return obj

    @staticmethod
    def _encode(obj: Mapping[str, Any]) -> bytes:
        meta = obj.get("metadata") or {}
        if "resourceVersion" in meta:
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        return _json_encode(obj)

    # -- the typed round trip -------------------------------------------------------------

    def _normalize(
        self, info: ResourceInfo, body: Mapping[str, Any], *, strict: bool, old: Any = None
    ) -> dict[str, Any]:
        """Decode into the typed model, default and validate; return the plain dict."""
        if self.crds.handles(info):  # definitions, and custom objects held to their schema
            return self.crds.normalize(info, body, strict=strict, old=old)
        obj = api.decode(dict(body), into=info.type, strict=strict)
        api.apply_defaults(obj)
        api.validate(obj, require_namespace=info.namespaced)
        if old is not None:
            api.validate_update(obj, api.decode(old, into=info.type))
        return api.to_dict(obj)

    @staticmethod
    def _check_identity(info: ResourceInfo, body: Mapping[str, Any]) -> None:
        if not isinstance(body, Mapping):
            raise BadRequest("the body must be a JSON object")
        kind = body.get("kind")
        version = body.get("apiVersion")
        if kind not in (None, "", info.kind) or version not in (None, "", info.api_version):
            raise BadRequest(
                f"the body is {version or '?'}/{kind or '?'}, "
                f"but the request is for {info.api_version} {info.kind}"
            )

    @staticmethod
    def _check_namespace(info: ResourceInfo, namespace: str | None, meta: dict[str, Any]) -> None:
        if not info.namespaced:
            meta.pop("namespace", None)
            return
        given = meta.get("namespace")
        if given and given != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent "
                "on the request"
            )
        meta["namespace"] = namespace

    async def _require_namespace(
        self, info: ResourceInfo, namespace: str | None, name: str = ""
    ) -> None:
        """The namespace must exist and not be terminating (the NamespaceLifecycle
        admission plugin's rules for a create)."""
        if not info.namespaced:
            return
        from kcore.api.registry import by_resource

        ns_info = by_resource("", "v1", "namespaces")
        assert ns_info is not None
        try:
            kv = await self.store.get(self.key(ns_info, None, namespace or ""))
        except NotFound:
            raise not_found(ns_info, namespace or "") from None
        ns = self._decode(kv)
        if (ns.get("metadata") or {}).get("deletionTimestamp") or (ns.get("status") or {}).get(
            "phase"
        ) == "Terminating":
            raise namespace_terminating(info, namespace or "", name)

    # -- admission -----------------------------------------------------------------------

    async def _admit(
        self,
        info: ResourceInfo,
        operation: str,
        namespace: str | None,
        name: str,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        *,
        user: str | None,
        subresource: str | None,
        dry_run: bool,
        check_update: bool = True,
    ) -> dict[str, Any] | None:
        """Run the admission checks on a write, in order, as Kubernetes' mutating and
        validating admission: each check sees what the one before left. A changed object is
        validated again (an invalid one is a 422). A check's ``KcoreError`` refuses the
        write; any other exception is a 500 that names the check. A DELETE has no new object:
        what a check returns for it is ignored."""
        for check in self.admission_checks:
            check_name = getattr(check, "name", None) or type(check).__name__
            request = AdmissionRequest(
                operation=operation,
                group=info.group,
                version=info.version,
                resource=info.plural,
                namespace=namespace if info.namespaced else None,
                name=name,
                obj=copy.deepcopy(obj),
                old=copy.deepcopy(old),
                user=user,
                subresource=subresource,
                dry_run=dry_run,
            )
            try:
                answer = check.admit(request)
                if inspect.isawaitable(answer):
                    answer = await answer
            except KcoreError:
                raise
            except Exception as exc:
                log.exception("admission check failed", check=check_name, operation=operation)
                raise KcoreError(
                    f"admission check {check_name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            if answer is None or obj is None:
                continue
            if not isinstance(answer, Mapping):
                raise KcoreError(
                    f"admission check {check_name} failed: it returned a "
                    f"{type(answer).__name__}, not an object or None"
                )
            obj = self._mutated(
                info, check_name, obj, answer, old, subresource, check_update=check_update
            )
        return obj

    def _mutated(
        self,
        info: ResourceInfo,
        check_name: str,
        before: dict[str, Any],
        answer: Mapping[str, Any],
        old: dict[str, Any] | None,
        subresource: str | None,
        *,
        check_update: bool,
    ) -> dict[str, Any]:
        """The object an admission check returned, held to what the write may change (as
        the first version was) and validated again."""
        changed = copy.deepcopy(dict(answer))
        meta = changed.get("metadata")
        if not isinstance(meta, dict):
            why = f"removed by admission check {check_name}"
            raise Invalid(
                f"metadata: Required value: {why}",
                [FieldError("metadata", why, "FieldValueRequired")],
            )
        _check_meta_types(meta)
        for field in ("name", "namespace"):
            if meta.get(field) != before["metadata"].get(field):
                why = f"may not be changed by admission check {check_name}"
                raise Invalid(
                    f"metadata.{field}: Forbidden: {why}",
                    [FieldError(f"metadata.{field}", why, "FieldValueForbidden")],
                )
        if old is not None:
            changed = self._merge_for_update(info, old, changed, subresource)
        else:  # what the server set on the new object stays
            for field in SYSTEM_METADATA:
                if field in before["metadata"]:
                    meta[field] = before["metadata"][field]
                else:
                    meta.pop(field, None)
        changed["apiVersion"], changed["kind"] = info.api_version, info.kind
        obj = self._normalize(
            info,
            changed,
            strict=False,
            old=_without_rv(old) if old is not None and check_update else None,
        )
        if old is None and info.group == "" and info.kind == "Pod":
            pod = api.decode(obj, into=info.type)
            obj.setdefault("status", {})["qosClass"] = api.qos_class(pod.spec)
        return obj

    # -- reads ---------------------------------------------------------------------------

    async def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            kv = await self.store.get(self.key(info, namespace, name))
        except NotFound:
            raise not_found(info, name) from None
        return self._decode(kv)

    async def list(
        self, info: ResourceInfo, namespace: str | None, options: ListOptions = ListOptions()
    ) -> tuple[list[dict[str, Any]], int, str | None]:
        """Return ``(items, revision, continue token or None)``."""
        prefix = self.prefix(info, namespace)
        revision: int | None = None
        start_after: str | None = None
        if options.continue_token:
            revision, start_after = decode_continue(options.continue_token)
        elif options.exact:
            revision = parse_resource_version(options.resource_version)
        name = _exact(options, "metadata.name")
        if name is not None and start_after is None:
            # kubectl delete and describe narrow by name: read one key, not the whole prefix.
            items: list[dict[str, Any]] = []
            if not info.namespaced or namespace is not None:
                # The revision before the read: a change between the two then reaches a
                # watch from it (kubectl delete waits so) instead of falling in the gap.
                current = await self.store.current_revision()
                try:
                    kv = await self.store.get(self.key(info, namespace, name))
                    obj = self._decode(kv)
                    if options.matches(info.kind, obj):
                        items.append(obj)
                except NotFound:
                    pass
                return items, current, None
        items = []
        limit = options.limit if options.limit and 0 < options.limit < 2**31 else None
        try:
            while True:
                page = await self.store.list(
                    prefix,
                    revision=revision,
                    limit=(limit - len(items)) if limit else None,
                    start_after=start_after,
                )
                revision = page.revision
                for kv in page.items:
                    obj = self._decode(kv)
                    if options.matches(info.kind, obj):
                        items.append(obj)
                if not page.more:
                    return items, revision, None
                start_after = page.items[-1].key
                if limit and len(items) >= limit:
                    return items, revision, encode_continue(revision, start_after)
        except Expired:
            raise Expired(
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter."
                if options.continue_token
                else f"too old resource version: {revision}"
            ) from None

    # -- writes ----------------------------------------------------------------------------

    async def create(
        self,
        info: ResourceInfo,
        namespace: str | None,
        body: Mapping[str, Any],
        *,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
    ) -> dict[str, Any]:
        self._check_identity(info, body)
        body = copy.deepcopy(dict(body))
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        _check_meta_types(meta)
        self._check_namespace(info, namespace, meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(GENERATE_NAME_CHARS) for _ in range(5)
            )
        for field in ("resourceVersion", "uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _timestamp()
        meta["generation"] = 1
        body["apiVersion"], body["kind"] = info.api_version, info.kind
        if info.group == "" and info.kind == "Pod":
            status = body.setdefault("status", {}) or {}
            body["status"] = {"phase": "Pending", "qosClass": status.get("qosClass")}
        if _is_namespace(info):
            _prepare_namespace_create(body)
        obj = self._normalize(info, body, strict=strict)
        if info.group == "" and info.kind == "Pod":
            pod = api.decode(obj, into=info.type)
            obj.setdefault("status", {})["qosClass"] = api.qos_class(pod.spec)
            # DefaultTolerationSeconds admission.
            spec = obj.setdefault("spec", {})
            spec["tolerations"] = with_default_tolerations(
                spec.get("tolerations") or (), self.toleration_seconds
            )
            if namespace is not None:
                await self._admit_service_account(obj, namespace)
        if info.group == "batch" and info.kind == "Job":
            job = api.decode(obj, into=info.type)
            api.generate_job_selector(job)
            obj = api.to_dict(job)
        name = obj["metadata"]["name"]
        await self._require_namespace(info, namespace, name)
        obj = await self._admit(
            info,
            "CREATE",
            namespace,
            name,
            obj,
            None,
            user=user,
            subresource=None,
            dry_run=dry_run,
        )
        assert obj is not None
        key = self.key(info, namespace, name)
        allocation = None
        if _is_service(info):
            # An existing Service is AlreadyExists, without allocating for it first.
            with contextlib.suppress(NotFound):
                await self.store.get(key)
                raise self._exists(info, name)
            allocation = await self.services.allocate(obj, dry_run=dry_run)
        if dry_run:
            try:
                await self.store.get(key)
            except NotFound:
                return obj
            raise self._exists(info, name)
        try:
            kv = await self.store.create(key, self._encode(obj))
        except AlreadyExists:
            await _revert(allocation)
            raise self._exists(info, name) from None
        except BaseException:
            await _revert(allocation)
            raise
        obj["metadata"]["resourceVersion"] = str(kv.revision)
        self.crds.observe(info, obj)
        return obj

    async def _admit_service_account(self, pod: dict[str, Any], namespace: str) -> None:
        from kcore.api.registry import by_resource
        from kcore.apiserver.service_account_admission import mount_service_account_token

        sa_info = by_resource("", "v1", "serviceaccounts")
        name = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        account = None
        if sa_info is not None:
            try:
                account = await self.get(sa_info, namespace, name)
            except NotFound:
                account = None
        mount_service_account_token(pod, account)

    @staticmethod
    def _exists(info: ResourceInfo, name: str) -> AlreadyExists:
        label = f"{info.plural}.{info.group}" if info.group else info.plural
        return with_details(AlreadyExists(f'{label} "{name}" already exists'), info, name)  # type: ignore[return-value]

    async def update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
    ) -> dict[str, Any]:
        """PUT: replace the object; a stale ``metadata.resourceVersion`` is a Conflict and an
        empty one means "whatever is current". ``subresource="finalize"`` (namespaces only)
        changes nothing but ``spec.finalizers``."""
        if subresource == "finalize" and not _is_namespace(info):
            raise NotFound("the server could not find the requested resource")
        self._check_identity(info, body)
        meta = body.get("metadata") or {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        _check_meta_types(meta)
        if meta.get("name") not in (None, name):
            raise BadRequest(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        expected = (
            parse_resource_version(meta["resourceVersion"]) if meta.get("resourceVersion") else None
        )

        def change(old: dict[str, Any]) -> dict[str, Any]:
            return copy.deepcopy(dict(body))

        return await self._update(
            info,
            namespace,
            name,
            change,
            expected=expected,
            subresource=subresource,
            strict=strict,
            dry_run=dry_run,
            user=user,
        )

    async def patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        user: str | None = None,
    ) -> dict[str, Any]:
        kind = PATCH_TYPES[patch_type]
        if kind == "apply":
            if not isinstance(patch, Mapping):
                raise BadRequest("an apply patch must be an object")
            try:
                await self.get(info, namespace, name)
            except NotFound:
                body = dict(patch)
                meta = body.setdefault("metadata", {})
                if not isinstance(meta, dict):
                    raise BadRequest("metadata must be an object") from None
                meta.setdefault("name", name)
                return await self.create(
                    info, namespace, body, strict=strict, dry_run=dry_run, user=user
                )
        kind = self.crds.patch_kind(info, kind)

        def change(old: dict[str, Any]) -> dict[str, Any]:
            if kind == "json":
                new = apply_json_patch(old, patch)
            elif kind == "merge":
                new = apply_merge_patch(old, patch)
            else:
                if not isinstance(patch, Mapping):
                    raise BadRequest("a strategic merge patch must be an object")
                new = apply_strategic_merge_patch(old, patch, info.kind)
            if not isinstance(new, dict):
                raise BadRequest("the patch does not give an object")
            return new

        return await self._update(
            info,
            namespace,
            name,
            change,
            expected=None,
            subresource=subresource,
            strict=strict,
            dry_run=dry_run,
            patch_may_set_rv=True,
            user=user,
        )

    async def _update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        change: Any,
        *,
        expected: int | None,
        subresource: str | None,
        strict: bool,
        dry_run: bool,
        patch_may_set_rv: bool = False,
        check_update: bool = True,
        user: str | None = None,
    ) -> dict[str, Any]:
        key = self.key(info, namespace, name)
        for _attempt in range(20):
            try:
                kv = await self.store.get(key)
            except NotFound:
                raise not_found(info, name) from None
            if expected is not None and expected != kv.revision:
                raise conflict(info, name)
            old = self._decode(kv)
            new = change(copy.deepcopy(old))
            new_meta = new.get("metadata")
            if not isinstance(new_meta, dict):
                raise BadRequest("metadata must be an object")
            _check_meta_types(new_meta)
            if patch_may_set_rv:
                rv = new_meta.get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise conflict(info, name)
            new = self._merge_for_update(info, old, new, subresource)
            self._check_namespace(info, namespace, new["metadata"])
            if _is_service(info) and subresource is None:
                self.services.prepare_update(new, old)
            obj = self._normalize(
                info, new, strict=strict, old=_without_rv(old) if check_update else None
            )
            obj = await self._admit(
                info,
                "UPDATE",
                namespace,
                name,
                obj,
                old,
                user=user,
                subresource=subresource,
                dry_run=dry_run,
                check_update=check_update,
            )
            assert obj is not None
            if _same(obj, old):
                return old
            if _spec_changed(old, obj):
                obj["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
            allocation = None
            if _is_service(info) and subresource is None:
                allocation = await self.services.allocate(obj, old, dry_run=dry_run)
            if dry_run:
                obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                return obj
            if _finalized_by_update(info, old, obj):
                # The last finalizer is gone: the deletion completes now.
                try:
                    gone = await self.store.delete(key, expected_revision=kv.revision)
                except Conflict:
                    await _revert(allocation)
                    if expected is not None:
                        raise conflict(info, name) from None
                    continue
                if allocation is not None:
                    await allocation.revert()
                    await self.services.release(old)
                obj["metadata"]["resourceVersion"] = str(gone.revision)
                self.crds.observe(info, obj, gone=True)
                return obj
            try:
                stored = await self.store.update(
                    key, self._encode(obj), expected_revision=kv.revision
                )
            except Conflict:
                await _revert(allocation)
                if expected is not None:
                    raise conflict(info, name) from None
                continue
            except NotFound:
                await _revert(allocation)
                raise not_found(info, name) from None
            except BaseException:
                await _revert(allocation)
                raise
            if allocation is not None:
                await allocation.commit()
            obj["metadata"]["resourceVersion"] = str(stored.revision)
            self.crds.observe(info, obj)
            return obj
        raise conflict(info, name, "too many concurrent writers; try again")

    async def bind(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        node: str,
        *,
        user: str | None = None,
    ) -> dict[str, Any]:
        """``pods/binding``: set ``spec.nodeName`` once (the only way it may change)."""

        def change(old: dict[str, Any]) -> dict[str, Any]:
            if (old.get("spec") or {}).get("nodeName"):
                raise conflict(info, name, f"pod {name} is already assigned to node")
            old.setdefault("spec", {})["nodeName"] = node
            # as the Kubernetes API server's binding: the pod is now scheduled
            status = old.setdefault("status", {})
            conditions = [
                c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"
            ]
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            conditions.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": stamp,
                }
            )
            status["conditions"] = conditions
            return old

        return await self._update(
            info,
            namespace,
            name,
            change,
            expected=None,
            subresource="binding",
            strict=False,
            dry_run=False,
            check_update=False,
            user=user,
        )

    @staticmethod
    def _merge_for_update(
        info: ResourceInfo, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """Keep what the caller may not change: identity and system metadata always; the
        status on a main-resource write and everything but the status on a status write."""
        has_status = info.subresource("status") is not None
        if (
            info.group == "certificates.k8s.io"
            and info.kind == "CertificateSigningRequest"
            and subresource in ("approval", "status")
        ):
            from kcore.api.certificates_v1 import merge_subresource

            return merge_subresource(old, new, subresource)
        if subresource == "binding":  # the binding sets the node and the scheduled condition
            return new
        if subresource == "finalize":  # namespaces/<name>/finalize: spec.finalizers only
            spec = new.get("spec")
            finalizers = spec.get("finalizers") if isinstance(spec, dict) else None
            merged = copy.deepcopy(old)
            merged.setdefault("spec", {})["finalizers"] = finalizers or []
            merged["metadata"]["resourceVersion"] = (new.get("metadata") or {}).get(
                "resourceVersion", old["metadata"]["resourceVersion"]
            )
            return merged
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status")
            meta = new.get("metadata") or {}
            # A status write may still carry labels, annotations and the like? Kubernetes
            # keeps the old metadata except for what the status strategy allows: nothing.
            merged["metadata"]["resourceVersion"] = meta.get(
                "resourceVersion", old["metadata"]["resourceVersion"]
            )
            return merged
        merged = new
        merged["apiVersion"], merged["kind"] = info.api_version, info.kind
        meta = merged["metadata"]
        for field in SYSTEM_METADATA:
            if old["metadata"].get(field) is not None:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        meta["name"] = old["metadata"]["name"]
        if _is_namespace(info):
            # Only namespaces/<name>/finalize changes a namespace's spec.finalizers.
            spec = merged.get("spec")
            if not isinstance(spec, dict):
                spec = merged["spec"] = {}
            spec["finalizers"] = list((old.get("spec") or {}).get("finalizers") or [])
        if (
            info.group == "certificates.k8s.io" and info.kind == "CertificateSigningRequest"
        ):  # the request is fixed once made
            merged["spec"] = copy.deepcopy(old.get("spec"))
        if has_status:
            if "status" in old:
                merged["status"] = old["status"]
            else:
                merged.pop("status", None)
        return merged

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
        user: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Delete, honouring preconditions, grace periods and finalizers. Returns the
        object and whether it is gone now (``False``: it waits for finalizers or for its
        node agent to stop its containers)."""
        options = _check_delete_options(options or {})
        key = self.key(info, namespace, name)
        pre = options.get("preconditions") or {}
        for _attempt in range(20):
            try:
                kv = await self.store.get(key)
            except NotFound:
                raise not_found(info, name) from None
            obj = self._decode(kv)
            meta = obj["metadata"]
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise conflict(
                    info,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(
                    info,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            if _is_namespace(info) and name in IMMORTAL_NAMESPACES:
                raise forbidden(info, name, "this namespace may not be deleted")
            await self._admit(
                info,
                "DELETE",
                namespace,
                name,
                None,
                obj,
                user=user,
                subresource=None,
                dry_run=dry_run,
            )
            old_finalizers = list(meta.get("finalizers") or [])
            finalizers = _gc_finalizers(info, old_finalizers, options)
            finalizers = self.crds.deletion_finalizers(info, obj, finalizers)
            deleting = bool(meta.get("deletionTimestamp"))
            grace = _grace_period(info, obj, options)
            current = meta.get("deletionGracePeriodSeconds")
            if deleting and current is not None:
                grace = min(grace, int(current))  # a second delete may only shorten the grace
            pending = finalizers + (
                list((obj.get("spec") or {}).get("finalizers") or []) if _is_namespace(info) else []
            )
            # A namespace's first DELETE always makes it Terminating (its controller empties
            # it); only a later one, once it is finalized, removes it.
            if not pending and grace == 0 and (deleting or not _is_namespace(info)):
                if dry_run:
                    return obj, True
                try:
                    gone = await self.store.delete(key, expected_revision=kv.revision)
                except Conflict:
                    continue
                except NotFound:
                    raise not_found(info, name) from None
                if _is_service(info):
                    await self.services.release(obj)
                obj["metadata"]["resourceVersion"] = str(gone.revision)
                self.crds.observe(info, obj, gone=True)
                return obj, True
            if deleting and finalizers == old_finalizers and (current is None or grace == current):
                return obj, False
            if not deleting:
                meta["deletionTimestamp"] = _timestamp()
                if meta.get("generation"):
                    meta["generation"] = int(meta["generation"]) + 1
            if _is_namespace(info):
                # The namespace waits for its controller to empty it and call /finalize.
                obj["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
            else:
                meta["deletionGracePeriodSeconds"] = grace
            if finalizers:
                meta["finalizers"] = finalizers
            else:
                meta.pop("finalizers", None)
            if dry_run:
                return obj, False
            try:
                stored = await self.store.update(
                    key, self._encode(obj), expected_revision=kv.revision
                )
            except Conflict:
                continue
            obj["metadata"]["resourceVersion"] = str(stored.revision)
            self.crds.observe(info, obj)
            return obj, False
        raise conflict(info, name, "too many concurrent writers; try again")

    # -- watch ---------------------------------------------------------------------------

    async def watch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        options: ListOptions,
        *,
        send_initial: bool,
    ) -> AsyncIterator[WatchItem]:
        """Events after ``options.resource_version``; with ``send_initial`` (no or "0"
        resourceVersion) first a synthetic ADDED per current object. Events are filtered by
        the selectors the Kubernetes way: an object that starts matching arrives as ADDED,
        one that stops matching as DELETED."""
        prefix = self.prefix(info, namespace)
        if send_initial:
            items, revision, _ = await self.list(
                info, namespace, ListOptions(options.label_selector, options.field_selector)
            )
            for obj in items:
                yield WatchItem("ADDED", obj, int(obj["metadata"]["resourceVersion"]))
        else:
            revision = parse_resource_version(options.resource_version)
        events = self.store.watch(prefix, after_revision=revision)
        try:
            async for event in events:
                obj = _json_decode(event.kv.value)
                obj["metadata"]["resourceVersion"] = str(event.kv.revision)
                matches = options.matches(info.kind, obj)
                prev_matches = False
                if event.prev is not None:
                    prev_matches = options.matches(info.kind, _json_decode(event.prev.value))
                if event.type is EventType.DELETED:
                    kind = "DELETED" if matches else None
                elif event.type is EventType.ADDED:
                    kind = "ADDED" if matches else None
                elif matches:
                    kind = "MODIFIED" if prev_matches else "ADDED"
                else:
                    kind = "DELETED" if prev_matches else None
                if kind is not None:
                    yield WatchItem(kind, obj, event.kv.revision)
        finally:
            await events.aclose()  # type: ignore[attr-defined]


def _exact(options: ListOptions, field: str) -> str | None:
    if options.field_selector is None:
        return None
    return options.field_selector.requires_exact_match(field)


def parse_resource_version(value: Any) -> int:
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"invalid resource version {value!r}: must be a string")
    try:
        rv = int(value or "0")
        if rv < 0:
            raise ValueError
        return rv
    except ValueError:
        raise BadRequest(f"invalid resource version {value!r}") from None


def _check_meta_types(meta: Mapping[str, Any]) -> None:
    """The metadata fields the server reads before the typed model sees the object."""
    for field in ("name", "generateName", "namespace", "resourceVersion", "uid"):
        value = meta.get(field)
        if value is not None and not isinstance(value, str):
            raise Invalid(
                f"metadata.{field}: Invalid value: must be a string",
                [FieldError(f"metadata.{field}", "must be a string", "FieldValueInvalid")],
            )


def _check_delete_options(options: Any) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise BadRequest("DeleteOptions must be an object")
    pre = options.get("preconditions")
    if pre is not None and (
        not isinstance(pre, Mapping)
        or not all(isinstance(pre.get(k), str | None) for k in ("uid", "resourceVersion"))
    ):
        raise BadRequest("DeleteOptions.preconditions must be an object of strings")
    grace = options.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise BadRequest("DeleteOptions.gracePeriodSeconds must be an integer")
    policy = options.get("propagationPolicy")
    if policy not in (None, "Foreground", "Background", "Orphan"):
        raise BadRequest(
            f"DeleteOptions.propagationPolicy {policy!r} is not one of Foreground, "
            "Background, Orphan"
        )
    orphan = options.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise BadRequest("DeleteOptions.orphanDependents must be a boolean")
    if orphan is not None and policy is not None:
        raise Invalid(
            f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
            f'"{policy}": orphanDependents and deletionPropagation cannot be both set',
            [
                FieldError(
                    "propagationPolicy",
                    "orphanDependents and deletionPropagation cannot be both set",
                )
            ],
        )
    return dict(options)


def _is_namespace(info: ResourceInfo) -> bool:
    return info.kind == "Namespace" and info.group == ""


def _is_service(info: ResourceInfo) -> bool:
    return info.kind == "Service" and info.group == ""


async def _revert(allocation: Allocation | None) -> None:
    """Free what a Service write allocated when the write did not happen."""
    if allocation is not None:
        await allocation.revert()


def _pending_finalizers(info: ResourceInfo, obj: Mapping[str, Any]) -> list[str]:
    """What still holds a deleted object: its finalizers, and a namespace's
    ``spec.finalizers``."""
    pending = list((obj.get("metadata") or {}).get("finalizers") or [])
    if _is_namespace(info):
        pending += (obj.get("spec") or {}).get("finalizers") or []
    return pending


def _finalized_by_update(
    info: ResourceInfo, old: Mapping[str, Any], new: Mapping[str, Any]
) -> bool:
    """Whether an update removed the last finalizer of an object whose deletion only waited
    for its finalizers (not for a grace period: a terminating pod still goes through its
    node agent's final delete)."""
    old_meta = old.get("metadata") or {}
    return bool(
        (new.get("metadata") or {}).get("deletionTimestamp")
        and not _pending_finalizers(info, new)
        and _pending_finalizers(info, old)
        and not old_meta.get("deletionGracePeriodSeconds")
    )


def _prepare_namespace_create(body: dict[str, Any]) -> None:
    """A new namespace is Active and carries the ``kubernetes`` finalizer (added on create
    only, not by defaulting: the namespace controller removes it through ``/finalize``)."""
    spec = body.get("spec")
    if spec is None:
        spec = body["spec"] = {}
    if not isinstance(spec, dict):
        raise BadRequest("spec must be an object")
    finalizers = spec.get("finalizers")
    if finalizers is None:
        finalizers = []
    if not isinstance(finalizers, list):
        raise BadRequest("spec.finalizers must be a list")
    if NAMESPACE_FINALIZER not in finalizers:
        spec["finalizers"] = [*finalizers, NAMESPACE_FINALIZER]
    body["status"] = {"phase": "Active"}


def _timestamp() -> str:
    return now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    out["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return out


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    return _without_rv(new) == _without_rv(old)


def _spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    ignore = {"metadata", "status", "apiVersion", "kind"}
    keys = (set(old) | set(new)) - ignore
    return any(old.get(k) != new.get(k) for k in keys)


def _gc_finalizers(
    info: ResourceInfo, finalizers: list[str], options: Mapping[str, Any]
) -> list[str]:
    """``finalizers`` with ``orphan`` / ``foregroundDeletion`` set as the delete asks, as
    Kubernetes' ``deletionFinalizersForGarbageCollection``: an explicit ``orphanDependents``
    or ``propagationPolicy`` wins, then a finalizer the object already has, then the kind's
    default (Orphan for batch/v1 Job, else Background)."""
    orphan_option = options.get("orphanDependents")
    policy = options.get("propagationPolicy")
    if orphan_option is not None:
        orphan, foreground = bool(orphan_option), False
    elif policy is not None:
        orphan, foreground = policy == "Orphan", policy == "Foreground"
    else:
        given = next((f for f in finalizers if f in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)), None)
        if given is not None:
            orphan, foreground = given == ORPHAN_FINALIZER, given == FOREGROUND_FINALIZER
        else:
            orphan, foreground = (info.api_version, info.kind) in ORPHAN_BY_DEFAULT, False
    kept = [f for f in finalizers if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if orphan:
        kept.append(ORPHAN_FINALIZER)
    if foreground:
        kept.append(FOREGROUND_FINALIZER)
    if set(kept) == set(finalizers):
        return list(finalizers)
    return kept


def _grace_period(info: ResourceInfo, obj: dict[str, Any], options: Mapping[str, Any]) -> int:
    """Only pods bound to a node wait: their node agent stops the containers first."""
    if info.kind != "Pod":
        return 0
    given = options.get("gracePeriodSeconds")
    spec = obj.get("spec") or {}
    if not spec.get("nodeName"):
        return 0
    phase = (obj.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return 0
    if given is not None:
        return max(int(given), 0)
    grace = spec.get("terminationGracePeriodSeconds")
    return 30 if grace is None else max(int(grace), 0)
