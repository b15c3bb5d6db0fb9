"""The contract between :class:`~kcore.client.ApiClient` and the ways to reach the API.

A transport works on one resource (a :class:`~kcore.api.registry.ResourceInfo`) with the
namespace already decided; :class:`~kcore.client.ApiClient` does the rest (resolving kinds,
defaulting namespaces, checking arguments), so that both transports get the same calls
and give the same answers: the same objects, the same watch events, the same errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kcore.api.registry import ResourceInfo

PATCH_CONTENT_TYPES: dict[str, str] = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
"""``ApiClient.patch``'s ``patch_type`` -> the media type the API server names it by."""

WatchEvent = tuple[str, dict[str, Any]]
"""``(type, object)``: type is ADDED, MODIFIED, DELETED or BOOKMARK."""


@dataclass(frozen=True)
class Query:
    """The options of a list or a watch, as the API server's query parameters take them."""

    label_selector: str | None = None
    field_selector: str | None = None
    limit: int | None = None
    continue_token: str | None = None
    resource_version: str | None = None
    timeout_seconds: int | None = None
    allow_bookmarks: bool = False


@dataclass(frozen=True)
class ListPage:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None = None
    """Set when ``limit`` cut the list short: pass it back to read the next page."""


class Transport(Protocol):
    """How :class:`~kcore.client.ApiClient` reaches the API. ``namespace`` is ``None`` for a
    cluster-scoped resource, and for a list or watch across all namespaces."""

    async def create(
        self, info: ResourceInfo, namespace: str | None, body: Mapping[str, Any], *, dry_run: bool
    ) -> dict[str, Any]: ...

    async def get(
        self, info: ResourceInfo, namespace: str | None, name: str, *, subresource: str | None
    ) -> dict[str, Any]: ...

    async def list(self, info: ResourceInfo, namespace: str | None, query: Query) -> ListPage: ...

    async def table(
        self, info: ResourceInfo, namespace: str | None, name: str | None, query: Query
    ) -> dict[str, Any]:
        """A ``meta.k8s.io/v1`` Table of one object (``name``) or of a list."""
        ...

    async def update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]: ...

    async def patch(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None,
        dry_run: bool,
        field_manager: str,
        force: bool,
    ) -> dict[str, Any]: ...

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        """The deleted object, or (for kinds whose delete answers so, once the object is
        gone) a ``Status`` of kind Success."""
        ...

    def watch(
        self, info: ResourceInfo, namespace: str | None, query: Query
    ) -> AsyncIterator[WatchEvent]:
        """Events until the server ends the stream (``timeout_seconds``, shutdown). An
        ``ERROR`` event is raised as its error category (``Expired`` for a 410)."""
        ...

    async def logs(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        params: Mapping[str, str],
    ) -> str: ...

    async def post(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        subresource: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``POST`` to a subresource that creates something (``token``, ``binding``)."""
        ...

    async def close(self) -> None: ...


__all__ = ["PATCH_CONTENT_TYPES", "ListPage", "Query", "Transport", "WatchEvent"]
