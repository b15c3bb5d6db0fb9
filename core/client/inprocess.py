"""The in-process transport: calls :class:`~kcore.apiserver.objects.ObjectStore` directly.

It does, without HTTP, what the API server's routes do around the object store: parse
the selectors, build the delete answer, end watches after ``timeout_seconds``, send
bookmarks on idle watches. Bodies go through a JSON round trip, so that a caller gets from
it exactly what it would get over HTTP (and cannot share state with the store).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import msgspec

from kcore.api.registry import ResourceInfo
from kcore.apiserver.objects import ListOptions, ObjectStore, delete_answer
from kcore.apiserver.tokens import TokenIssuer, create_token_request
from kcore.client.transport import ListPage, Query, WatchEvent
from kcore.errors import BadRequest, KcoreError, NotSupported

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

BOOKMARK_INTERVAL = 60.0
"""Seconds of quiet after which a watch that allows bookmarks gets one (as over HTTP)."""


@contextlib.contextmanager
def _as_served() -> Iterator[None]:
    """Give errors the ``details`` a Status carries over HTTP (no empty entries)."""
    try:
        yield
    except KcoreError as exc:
        details = getattr(exc, "details", None)
        if details:
            exc.details = {k: v for k, v in details.items() if v}  # type: ignore[attr-defined]
        raise


def json_copy(value: Any) -> Any:
    """``value`` as it would arrive after being sent as JSON."""
    try:
        return _decode(_encode(value))
    except (TypeError, msgspec.EncodeError) as exc:
        raise BadRequest(f"the body cannot be sent as JSON: {exc}") from None


class InProcessTransport:
    """Reach the API by calling an :class:`ObjectStore` in this process."""

    def __init__(
        self,
        objects: ObjectStore,
        *,
        bookmark_interval: float = BOOKMARK_INTERVAL,
        token_issuer: TokenIssuer | None = None,
    ):
        self.objects = objects
        self.token_issuer = token_issuer
        """Signs ``serviceaccounts/<name>/token`` requests (without one they are refused)."""
        self.bookmark_interval = bookmark_interval
        self._closed = asyncio.Event()

    @staticmethod
    def _options(info: ResourceInfo, query: Query) -> ListOptions:
        return ListOptions.parse(
            info.kind,
            label_selector=query.label_selector,
            field_selector=query.field_selector,
            limit=query.limit,
            continue_token=query.continue_token,
            resource_version=query.resource_version,
        )

    async def create(
        self, info: ResourceInfo, namespace: str | None, body: Mapping[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        with _as_served():
            return await self.objects.create(info, namespace, json_copy(body), dry_run=dry_run)

    async def get(
        self, info: ResourceInfo, namespace: str | None, name: str, *, subresource: str | None
    ) -> dict[str, Any]:
        with _as_served():
            return await self.objects.get(info, namespace, name)

    async def list(self, info: ResourceInfo, namespace: str | None, query: Query) -> ListPage:
        with _as_served():
            items, revision, token = await self.objects.list(
                info, namespace, self._options(info, query)
            )
        return ListPage(items, str(revision), token)

    async def table(
        self, info: ResourceInfo, namespace: str | None, name: str | None, query: Query
    ) -> dict[str, Any]:
        from kcore.apiserver.tables import to_table

        if name is not None:
            obj = await self.get(info, namespace, name, subresource=None)
            return to_table(info.kind, [obj], resource_version=obj["metadata"]["resourceVersion"])
        page = await self.list(info, namespace, query)
        table = to_table(info.kind, page.items, resource_version=page.resource_version)
        if page.continue_token:
            table["metadata"]["continue"] = page.continue_token
        return table

    async def update(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        with _as_served():
            return await self.objects.update(
                info, namespace, name, json_copy(body), subresource=subresource, dry_run=dry_run
            )

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
    ) -> dict[str, Any]:
        patch = json_copy(patch)
        if not isinstance(patch, dict | list):
            raise BadRequest("the request body must be a JSON object")
        with _as_served():
            return await self.objects.patch(
                info, namespace, name, content_type, patch, subresource=subresource, dry_run=dry_run
            )

    async def delete(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
        *,
        dry_run: bool,
    ) -> dict[str, Any]:
        with _as_served():
            obj, gone = await self.objects.delete(
                info, namespace, name, json_copy(dict(options)), dry_run=dry_run
            )
        return delete_answer(info, obj, gone)

    async def watch(
        self, info: ResourceInfo, namespace: str | None, query: Query
    ) -> AsyncIterator[WatchEvent]:
        with _as_served():
            options = self._options(info, query)
        rv = query.resource_version
        events = self.objects.watch(info, namespace, options, send_initial=rv in (None, "", "0"))
        last_rv = rv or "0"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + query.timeout_seconds if query.timeout_seconds else None
        closed = asyncio.ensure_future(self._closed.wait())
        next_event: asyncio.Future[Any] | None = None
        try:
            while True:
                wait = self.bookmark_interval if query.allow_bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return
                    wait = remaining if wait is None else min(wait, remaining)
                if next_event is None:
                    next_event = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    {next_event, closed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if closed in done:
                    return
                if next_event not in done:
                    if query.allow_bookmarks:
                        yield (
                            "BOOKMARK",
                            {
                                "kind": info.kind,
                                "apiVersion": info.api_version,
                                "metadata": {"resourceVersion": last_rv},
                            },
                        )
                    continue
                finished, next_event = next_event, None
                try:
                    with _as_served():
                        item = finished.result()
                except StopAsyncIteration:
                    return
                last_rv = str(item.revision)
                yield item.type, item.object
        finally:
            closed.cancel()
            if next_event is not None and not next_event.done():
                next_event.cancel()
                with contextlib.suppress(BaseException):
                    await next_event
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    async def logs(
        self, info: ResourceInfo, namespace: str, name: str, params: Mapping[str, str]
    ) -> str:
        raise NotSupported(f"{info.plural}/log needs a node agent, which is not running")

    async def post(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        subresource: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        body = json_copy(body)
        with _as_served():
            if subresource == "binding" and info.kind == "Pod":
                target = body.get("target") if isinstance(body, dict) else None
                node = target.get("name") if isinstance(target, dict) else None
                if not node or not isinstance(node, str):
                    raise BadRequest("a Binding needs target.name, the node")
                await self.objects.bind(info, namespace, name, node)
                return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            if subresource == "token" and info.kind == "ServiceAccount":
                if self.token_issuer is None or namespace is None:
                    raise NotSupported("this in-process client has no token issuer")
                return await create_token_request(
                    self.objects, self.token_issuer, namespace, name, body
                )
        raise NotSupported(f"POST to {info.plural}/{subresource} is not supported")

    async def close(self) -> None:
        """End the open watches; the object store stays open (it belongs to the caller)."""
        self._closed.set()


__all__ = ["BOOKMARK_INTERVAL", "InProcessTransport", "json_copy"]
