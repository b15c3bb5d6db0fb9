"""The HTTP transport: the API server's REST paths over one aiohttp session.

One session (keep-alive connections) per transport, TLS trusting the cluster's CA, a bearer
token on every request. Error answers are ``Status`` bodies, turned back into kcore's error
categories by :func:`kcore.client.errors.error_from_status`; a connection that cannot be made
or breaks is :class:`~kcore.client.errors.ConnectionFailed` (a ``TemporaryError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from kcore.api.registry import ResourceInfo
from kcore.client.errors import ConnectionFailed, error_from_status
from kcore.client.transport import ListPage, Query, WatchEvent
from kcore.errors import BadRequest, KcoreError

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
WATCH_IDLE_LIMIT = 150.0
"""Seconds without a byte after which a watch that gets bookmarks counts as broken (the
server sends one every 60 seconds of quiet)."""


def _ssl_context(
    *,
    ca_file: str | None,
    ca_data: str | None,
    cert_file: str | None,
    key_file: str | None,
    cert_data: str | None,
    key_data: str | None,
    insecure: bool,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file, cadata=ca_data)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_data and key_data:
        # ssl loads a key pair only from files: write them, private, just for the load.
        with tempfile.TemporaryDirectory(prefix="kcore-client-") as tmp:
            cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            for p, text in ((cert, cert_data), (key, key_data)):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
            ctx.load_cert_chain(str(cert), str(key))
    elif cert_file and key_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


class HttpTransport:
    """Reach the API server at ``base_url`` (``https://host:port``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        ca_data: str | None = None,
        client_cert_file: str | None = None,
        client_key_file: str | None = None,
        client_cert_data: str | None = None,
        client_key_data: str | None = None,
        insecure: bool = False,
        timeout: float = 60.0,
        field_manager: str = "kcore",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if self.base_url.startswith("https:"):
            try:
                self._ssl = _ssl_context(
                    ca_file=ca_file,
                    ca_data=ca_data,
                    cert_file=client_cert_file,
                    key_file=client_key_file,
                    cert_data=client_cert_data,
                    key_data=client_key_data,
                    insecure=insecure,
                )
            except (ssl.SSLError, OSError) as exc:
                raise BadRequest(f"cannot set up TLS for {self.base_url}: {exc}") from None
        self._session: aiohttp.ClientSession | None = None

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": "kcore-client"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl or True, limit=0),
                headers=headers,
            )
        return self._session

    def _url(
        self, info: ResourceInfo, namespace: str | None, name: str | None, sub: str | None = None
    ) -> str:
        path = info.path(namespace, name)
        return f"{self.base_url}{path}/{sub}" if sub else f"{self.base_url}{path}"

    @staticmethod
    def _params(query: Query) -> dict[str, str]:
        params: dict[str, str] = {}
        if query.label_selector:
            params["labelSelector"] = query.label_selector
        if query.field_selector:
            params["fieldSelector"] = query.field_selector
        if query.limit:
            params["limit"] = str(query.limit)
        if query.continue_token:
            params["continue"] = query.continue_token
        if query.resource_version:
            params["resourceVersion"] = query.resource_version
        return params

    @staticmethod
    def _body(value: Any) -> bytes:
        try:
            return _encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise BadRequest(f"the body cannot be sent as JSON: {exc}") from None

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        text: bool = False,
    ) -> Any:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = self._body(body)
            headers["Content-Type"] = content_type
        session = self._session_for_loop()
        try:
            async with session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionFailed(_connection_message(self.base_url, exc)) from None
        if status >= 400:
            raise _error(status, raw)
        if text:
            return raw.decode("utf-8", "replace")
        try:
            return _decode(raw)
        except msgspec.DecodeError:
            raise KcoreError(f"the server answered {status} with a body that is not JSON") from None

    # -- the transport contract -----------------------------------------------------------

    async def create(
        self, info: ResourceInfo, namespace: str | None, body: Mapping[str, Any], *, dry_run: bool
    ) -> dict[str, Any]:
        params = {"dryRun": "All"} if dry_run else None
        return await self._request(
            "POST", self._url(info, namespace, None), params=params, body=body
        )

    async def get(
        self, info: ResourceInfo, namespace: str | None, name: str, *, subresource: str | None
    ) -> dict[str, Any]:
        return await self._request("GET", self._url(info, namespace, name, subresource))

    async def list(self, info: ResourceInfo, namespace: str | None, query: Query) -> ListPage:
        body = await self._request(
            "GET", self._url(info, namespace, None), params=self._params(query)
        )
        meta = body.get("metadata") or {}
        return ListPage(
            list(body.get("items") or []),
            str(meta.get("resourceVersion") or ""),
            meta.get("continue") or None,
        )

    async def table(
        self, info: ResourceInfo, namespace: str | None, name: str | None, query: Query
    ) -> dict[str, Any]:
        params = None if name is not None else self._params(query)
        return await self._request(
            "GET", self._url(info, namespace, name), params=params, accept=TABLE_ACCEPT
        )

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
        params = {"dryRun": "All"} if dry_run else None
        return await self._request(
            "PUT", self._url(info, namespace, name, subresource), params=params, body=body
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
        params: dict[str, str] = {}
        if dry_run:
            params["dryRun"] = "All"
        if content_type == "application/apply-patch+yaml":
            params["fieldManager"] = field_manager
            params["force"] = "true" if force else "false"
        return await self._request(
            "PATCH",
            self._url(info, namespace, name, subresource),
            params=params,
            body=patch,
            content_type=content_type,
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
        params = {"dryRun": "All"} if dry_run else None
        body = {"kind": "DeleteOptions", "apiVersion": "v1", **options} if options else None
        return await self._request(
            "DELETE", self._url(info, namespace, name), params=params, body=body
        )

    async def watch(
        self, info: ResourceInfo, namespace: str | None, query: Query
    ) -> AsyncIterator[WatchEvent]:
        params = self._params(query)
        params["watch"] = "true"
        if query.timeout_seconds:
            params["timeoutSeconds"] = str(query.timeout_seconds)
        if query.allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        idle: float | None = None
        if query.allow_bookmarks:
            idle = WATCH_IDLE_LIMIT
        elif query.timeout_seconds:
            idle = query.timeout_seconds + 30.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=idle)
        session = self._session_for_loop()
        try:
            async with session.get(
                self._url(info, namespace, None),
                params=params,
                headers={"Accept": "application/json"},
                timeout=timeout,
            ) as resp:
                if resp.status >= 400:
                    raise _error(resp.status, await resp.read())
                buffer = bytearray()
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    while (end := buffer.find(b"\n")) >= 0:
                        line = bytes(buffer[:end])
                        del buffer[: end + 1]
                        if line.strip():
                            yield _watch_event(line)
                if bytes(buffer).strip():
                    yield _watch_event(bytes(buffer))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionFailed(_connection_message(self.base_url, exc)) from None

    async def logs(
        self, info: ResourceInfo, namespace: str, name: str, params: Mapping[str, str]
    ) -> str:
        return await self._request(
            "GET",
            self._url(info, namespace, name, "log"),
            params=params,
            accept="text/plain, */*",
            text=True,
        )

    async def post(
        self,
        info: ResourceInfo,
        namespace: str | None,
        name: str,
        subresource: str,
        body: Mapping[str, Any],
    ) -> dict[str, Any]:
        return await self._request("POST", self._url(info, namespace, name, subresource), body=body)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
            # Give TLS connections a moment to shut down cleanly (aiohttp's advice).
            with contextlib.suppress(Exception):
                await asyncio.sleep(0.01)
        self._session = None


def _error(status: int, raw: bytes) -> KcoreError:
    try:
        body = _decode(raw) if raw else None
    except msgspec.DecodeError:
        body = None
    return error_from_status(body, status, raw.decode("utf-8", "replace"))


def _watch_event(line: bytes) -> WatchEvent:
    try:
        event = _decode(line)
        kind, obj = event["type"], event["object"]
    except (msgspec.DecodeError, KeyError, TypeError):
        raise ConnectionFailed(f"malformed watch event: {line[:200]!r}") from None
    if kind == "ERROR":
        raise error_from_status(obj, int((obj or {}).get("code") or 500))
    return kind, obj


def _connection_message(base_url: str, exc: BaseException) -> str:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        detail = "timed out"
    return f"the connection to the server {base_url} failed: {detail}"


__all__ = ["TABLE_ACCEPT", "HttpTransport"]
