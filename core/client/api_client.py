"""The one client interface every component uses to reach the API.

Objects are plain dicts, as the API serves them. Errors are kcore's categories
(``NotFound``, ``AlreadyExists``, ``Conflict``, ``Invalid`` with its ``causes``,
``Expired``, ``BadRequest`` ...), whichever transport carries the call::

    client = ApiClient(InProcessTransport(objects))           # in the daemon
    client = ApiClient.from_kubeconfig("admin.kubeconfig")     # anywhere else, over HTTPS
    pod = await client.get("v1", "Pod", "web", namespace="default")

For a namespaced kind, a call that names one object and no namespace uses the object's own
``metadata.namespace`` or else the client's default namespace (the kubeconfig context's,
``default`` otherwise); a list or watch with no namespace covers all namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

from kcore.api.registry import ResourceInfo, by_kind
from kcore.client.transport import PATCH_CONTENT_TYPES, ListPage, Query, Transport, WatchEvent
from kcore.errors import BadRequest, NotFound

PatchType = Literal["merge", "strategic", "json", "apply"]
SUBRESOURCES = ("status",)
"""The subresources this client reads and writes (``scale`` and friends are not here yet)."""


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise BadRequest("an object must be a mapping")
    meta = obj.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise BadRequest("metadata must be an object")
    return dict(meta)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise BadRequest("a name is required")
    if "/" in name or name in (".", ".."):
        raise BadRequest(f"invalid name {name!r}: it may not be '.', '..' or contain '/'")
    return name


def _check_rv(rv: str | None) -> str | None:
    if rv in (None, ""):
        return None
    if not isinstance(rv, str) or not rv.isdigit():
        raise BadRequest(f"invalid resource version {rv!r}")
    return rv


class ApiClient:
    """Create, read, update, patch, delete, list and watch API objects over ``transport``."""

    def __init__(self, transport: Transport, *, namespace: str = "default") -> None:
        self.transport = transport
        self.namespace = namespace

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path, *, context: str | None = None, timeout: float = 60.0
    ) -> ApiClient:
        """An HTTP client for a kubeconfig's current (or named) context: its server, its
        certificate authority, its token or client certificate, its namespace."""
        from kcore.client.http import HttpTransport
        from kcore.client.kubeconfig import load_kubeconfig

        cfg = load_kubeconfig(path, context)
        transport = HttpTransport(
            cfg.server,
            token=cfg.token,
            ca_file=cfg.ca_file,
            ca_data=cfg.ca_data,
            client_cert_file=cfg.client_cert_file,
            client_key_file=cfg.client_key_file,
            client_cert_data=cfg.client_cert_data,
            client_key_data=cfg.client_key_data,
            insecure=cfg.insecure,
            timeout=timeout,
        )
        return cls(transport, namespace=cfg.namespace)

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- names ----------------------------------------------------------------------------

    @staticmethod
    def resource(api_version: str, kind: str) -> ResourceInfo:
        """The served resource of ``api_version``/``kind``; ``NotFound`` when there is none."""
        info = by_kind(api_version, kind)
        if info is None:
            raise NotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return info

    def _object_info(self, obj: Mapping[str, Any]) -> ResourceInfo:
        if not isinstance(obj, Mapping):
            raise BadRequest("an object must be a mapping")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not api_version or not kind:
            raise BadRequest("the object needs apiVersion and kind")
        return self.resource(str(api_version), str(kind))

    def _namespace(self, info: ResourceInfo, namespace: str | None) -> str | None:
        if not info.namespaced:
            return None
        return namespace or self.namespace

    @staticmethod
    def _subresource(info: ResourceInfo, subresource: str | None) -> str | None:
        if subresource is None:
            return None
        if subresource not in SUBRESOURCES:
            raise ValueError(f"subresource {subresource!r} is not supported by this client")
        if info.subresource(subresource) is None:
            raise NotFound("the server could not find the requested resource")
        return subresource

    # -- reads ----------------------------------------------------------------------------

    async def get(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        info = self.resource(api_version, kind)
        return await self.transport.get(
            info,
            self._namespace(info, namespace),
            _check_name(name),
            subresource=self._subresource(info, subresource),
        )

    async def list_page(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListPage:
        """One page of a list: at most ``limit`` items, and a ``continue_token`` to read the
        next page at the same resourceVersion when there are more."""
        info = self.resource(api_version, kind)
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        query = Query(label_selector, field_selector, limit, continue_token)
        return await self.transport.list(info, namespace if info.namespaced else None, query)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every matching object and the resourceVersion of the list (to watch from).

        ``limit`` is a page size: the client reads page after page (one consistent snapshot)
        and returns them all. Use :meth:`list_page` to read one page."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self.list_page(
                api_version, kind, namespace, label_selector, field_selector, limit, token
            )
            items.extend(page.items)
            if not page.continue_token:
                return items, page.resource_version
            token = page.continue_token

    async def table(
        self,
        api_version: str,
        kind: str,
        name: str | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> dict[str, Any]:
        """The server's ``meta.k8s.io/v1`` Table (what ``kubectl get`` prints) of one object
        or of a list. Columns with ``priority`` above 0 are the ``-o wide`` ones."""
        info = self.resource(api_version, kind)
        if name is not None:
            return await self.transport.table(
                info, self._namespace(info, namespace), _check_name(name), Query()
            )
        query = Query(label_selector, field_selector)
        return await self.transport.table(info, namespace if info.namespaced else None, None, query)

    async def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        *,
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """``(type, object)`` for each change after ``resource_version`` (without one, or
        ``"0"``: first an ADDED for every current object). Types are ADDED, MODIFIED,
        DELETED, and BOOKMARK (only with ``allow_bookmarks``: an object whose
        ``metadata.resourceVersion`` is the newest revision the stream has passed).

        The iterator ends when the server ends the stream (``timeout_seconds``, shutdown);
        a revision that is gone raises ``Expired``: list again and watch from the list."""
        info = self.resource(api_version, kind)
        if timeout_seconds is not None and timeout_seconds < 0:
            raise ValueError("timeout_seconds must not be negative")
        query = Query(
            label_selector,
            field_selector,
            resource_version=_check_rv(resource_version),
            timeout_seconds=timeout_seconds,
            allow_bookmarks=allow_bookmarks,
        )
        events = self.transport.watch(info, namespace if info.namespaced else None, query)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                yield event

    async def logs(
        self,
        name: str,
        namespace: str | None = None,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
        timestamps: bool = False,
        previous: bool = False,
    ) -> str:
        """A pod's log (``pods/log``), as text."""
        info = self.resource("v1", "Pod")
        params: dict[str, str] = {}
        if container:
            params["container"] = container
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        if timestamps:
            params["timestamps"] = "true"
        if previous:
            params["previous"] = "true"
        return await self.transport.logs(
            info, namespace or self.namespace, _check_name(name), params
        )

    # -- writes ---------------------------------------------------------------------------

    async def create(
        self, obj: Mapping[str, Any], *, namespace: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create ``obj`` in ``namespace``, else its own, else the client's default."""
        info = self._object_info(obj)
        meta = _meta(obj)
        ns = self._namespace(info, namespace or meta.get("namespace"))
        return await self.transport.create(info, ns, obj, dry_run=dry_run)

    async def update(self, obj: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Replace ``obj``. Its ``metadata.resourceVersion`` makes it conditional: a stale
        one raises ``Conflict`` (read again, change again, write again); none means
        "whatever is current". The status is kept (write it with :meth:`update_status`)."""
        return await self._replace(obj, None, dry_run)

    async def update_status(
        self, obj: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Replace the status of ``obj`` (the ``status`` subresource): everything else of
        the stored object is kept; a stale resourceVersion raises ``Conflict``."""
        return await self._replace(obj, "status", dry_run)

    async def _replace(
        self, obj: Mapping[str, Any], subresource: str | None, dry_run: bool
    ) -> dict[str, Any]:
        info = self._object_info(obj)
        meta = _meta(obj)
        return await self.transport.update(
            info,
            self._namespace(info, meta.get("namespace")),
            _check_name(meta.get("name")),
            obj,
            subresource=self._subresource(info, subresource),
            dry_run=dry_run,
        )

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
        field_manager: str = "kcore",
        force: bool = True,
    ) -> dict[str, Any]:
        """Patch one object. ``patch_type``: ``merge`` (RFC 7386), ``strategic``
        (Kubernetes' strategic merge patch), ``json`` (RFC 6902, a list of operations) or
        ``apply`` (server-side apply: creates the object when it is missing)."""
        content_type = PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(
                f"unknown patch type {patch_type!r}: expected one of "
                f"{', '.join(PATCH_CONTENT_TYPES)}"
            )
        info = self.resource(api_version, kind)
        return await self.transport.patch(
            info,
            self._namespace(info, namespace),
            _check_name(name),
            content_type,
            patch,
            subresource=self._subresource(info, subresource),
            dry_run=dry_run,
            field_manager=field_manager,
            force=force,
        )

    async def create_token(
        self,
        service_account: str,
        token_request: Mapping[str, Any] | None = None,
        *,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """A token for ``service_account`` (the ``serviceaccounts/<name>/token``
        subresource): the answered ``TokenRequest``, ``status.token`` and
        ``status.expirationTimestamp``."""
        info = self.resource("v1", "ServiceAccount")
        body = dict(token_request or {})
        body.setdefault("apiVersion", "authentication.k8s.io/v1")
        body.setdefault("kind", "TokenRequest")
        return await self.transport.post(
            info, self._namespace(info, namespace), _check_name(service_account), "token", body
        )

    async def bind(self, name: str, node: str, *, namespace: str | None = None) -> None:
        """Bind the pod ``name`` to ``node`` (the ``pods/binding`` subresource)."""
        info = self.resource("v1", "Pod")
        ns = self._namespace(info, namespace)
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": _check_name(name), "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        await self.transport.post(info, ns, name, "binding", body)

    async def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        propagation_policy: Literal["Foreground", "Background", "Orphan"] | None = None,
        grace_period_seconds: int | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete one object. Returns what the server answers: the object (for pods,
        services and service accounts, and for any object that waits for finalizers or
        a grace period, with ``metadata.deletionTimestamp`` set), else a Success Status.
        ``preconditions``: ``{"uid": ..., "resourceVersion": ...}``."""
        info = self.resource(api_version, kind)
        options: dict[str, Any] = {}
        if propagation_policy is not None:
            if propagation_policy not in ("Foreground", "Background", "Orphan"):
                raise ValueError(f"unknown propagation policy {propagation_policy!r}")
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = int(grace_period_seconds)
        if preconditions:
            options["preconditions"] = dict(preconditions)
        return await self.transport.delete(
            info, self._namespace(info, namespace), _check_name(name), options, dry_run=dry_run
        )


__all__ = ["SUBRESOURCES", "ApiClient", "PatchType"]
