"""The HTTP face of the API: routes, discovery, content negotiation, watch streams and
``Status`` errors, on aiohttp. The semantics live in :mod:`kcore.apiserver.objects`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiohttp import web

import kcore
from kcore import api
from kcore.api.registry import ResourceInfo, by_resource
from kcore.apiserver import bootstrap_auth, streaming
from kcore.apiserver.crd import is_custom
from kcore.apiserver.objects import (
    PATCH_TYPES,
    ListOptions,
    ObjectStore,
    delete_answer,
    parse_resource_version,
)
from kcore.apiserver.tokens import (
    InvalidToken,
    TokenIssuer,
    UserInfo,
    authenticate_service_account,
    create_token_request,
)
from kcore.errors import BadRequest, Expired, KcoreError, NotFound

log = structlog.get_logger("kcore.apiserver")

MAX_BODY = 3 * 1024 * 1024
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
# `GET /openapi/v2` answered with the protobuf of Document{swagger: "2.0"}: kubectl then
# skips client-side validation (see shared/reference/k8s-api.md, OpenAPI).
OPENAPI_V2_PROTOBUF = bytes.fromhex("0a03322e30")
ANONYMOUS_PATHS = {"/healthz", "/livez", "/readyz", "/version"}
ADMIN_USER = UserInfo("kcore-admin", groups=("system:masters", "system:authenticated"))
#: ``request[USER]``: the :class:`UserInfo` of an authenticated caller. A typed key where
#: aiohttp has them (3.14 and later), the plain string ``"user"`` before.
USER: Any = web.RequestKey("user", UserInfo) if hasattr(web, "RequestKey") else "user"


class MethodNotAllowed(KcoreError):
    code = 405
    reason = "MethodNotAllowed"


class UnsupportedMediaType(KcoreError):
    code = 415
    reason = "UnsupportedMediaType"


class RequestEntityTooLarge(KcoreError):
    code = 413
    reason = "RequestEntityTooLarge"


class Unauthorized(KcoreError):
    code = 401
    reason = "Unauthorized"


def status_body(error: KcoreError) -> dict[str, Any]:
    details = dict(getattr(error, "details", None) or {})
    causes = [
        {k: v for k, v in (("reason", c.reason), ("message", c.message), ("field", c.field)) if v}
        for c in getattr(error, "causes", ())
    ]
    if causes:
        details["causes"] = causes
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": str(error),
        "reason": error.reason,
        "code": error.code,
    }
    details = {k: v for k, v in details.items() if v}
    if details:
        body["details"] = details
    return body


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def error_response(error: KcoreError) -> web.Response:
    return json_response(status_body(error), status=error.code)


@dataclass(frozen=True)
class Target:
    """What a resource path names."""

    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None


class APIServer:
    """Builds the aiohttp application for one :class:`ObjectStore`.

    With a ``token``, every request but the anonymous paths must carry it or a
    ServiceAccount token of ``token_issuer`` (without one, the server makes an issuer with
    a key of its own on first use, so its tokens die with it); ``request[USER]`` is then
    the :class:`UserInfo` of the caller.

    ``pods/log``, ``pods/exec`` and ``pods/attach`` are served by ``pod_streams`` (the node
    agent's, set when it starts, possibly after the server); without one they are a 405.
    """

    def __init__(
        self,
        objects: ObjectStore,
        *,
        token: str | None = None,
        token_issuer: TokenIssuer | None = None,
        server_address: str = "",
        watch_timeout: tuple[int, int] = (1800, 3600),
        pod_streams: streaming.PodStreams | None = None,
    ) -> None:
        self.objects = objects
        self.pod_streams = pod_streams
        self.token = token
        self._token_issuer = token_issuer
        self.server_address = server_address
        self.watch_timeout = watch_timeout
        self.stopping = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._middleware])
        r = app.router
        r.add_get("/version", self.version)
        for path in ("/healthz", "/livez", "/readyz"):
            r.add_get(path, self.health)
        r.add_get("/api", self.core_versions)
        r.add_get("/apis", self.group_list)
        r.add_get("/apis/{group}", self.api_group)
        r.add_get("/openapi/v2", self.openapi_v2)
        r.add_route("*", "/api/{version}", self.resource_list_or_path)
        r.add_route("*", "/api/{version}/{tail:.*}", self.resource_path)
        r.add_route("*", "/apis/{group}/{version}", self.resource_list_or_path)
        r.add_route("*", "/apis/{group}/{version}/{tail:.*}", self.resource_path)
        app.on_shutdown.append(self._on_shutdown)
        app.on_startup.append(self._start_crds)
        app.on_cleanup.append(self._stop_crds)
        return app

    async def _start_crds(self, app: web.Application) -> None:
        """Serve the stored CustomResourceDefinitions, and follow them."""
        await self.objects.crds.load()
        self.objects.crds.start()

    async def _stop_crds(self, app: web.Application) -> None:
        await self.objects.crds.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        self.stopping.set()

    @property
    def token_issuer(self) -> TokenIssuer:
        if self._token_issuer is None:
            self._token_issuer = TokenIssuer.ephemeral()
        return self._token_issuer

    # -- middleware: authentication and errors --------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if self.token is not None and request.path not in ANONYMOUS_PATHS:
                request[USER] = user = await self._authenticate(request)
                bootstrap_auth.authorize(user, request.method, request.path, request.query)
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                return error_response(NotFound("the server could not find the requested resource"))
            if exc.status == 405:
                return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
            if exc.status == 413:
                return error_response(
                    RequestEntityTooLarge(f"the request body is larger than {MAX_BODY} bytes")
                )
            raise
        except KcoreError as exc:
            return error_response(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("request failed", path=request.path, method=request.method)
            return error_response(KcoreError(f"internal error: {type(exc).__name__}"))

    async def _authenticate(self, request: web.Request) -> UserInfo:
        """The admin token, a bootstrap token, or a ServiceAccount token this server issued
        and whose ServiceAccount (and bound object) still exists; else a client certificate
        the cluster CA signed; else, for ``kube-public/cluster-info`` only, anonymous."""
        assert self.token is not None
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            if hmac.compare_digest(value.encode(), self.token.encode()):
                return ADMIN_USER
            if bootstrap_auth.is_bootstrap_token(value):
                try:
                    return await bootstrap_auth.authenticate_bootstrap_token(self.objects, value)
                except InvalidToken as exc:
                    log.info("rejected a bootstrap token", path=request.path, why=str(exc))
                    raise Unauthorized("Unauthorized") from None
            if self._token_issuer is not None:
                try:
                    return await authenticate_service_account(
                        self.objects, self._token_issuer, value
                    )
                except InvalidToken as exc:
                    log.info("rejected a bearer token", path=request.path, why=str(exc))
            raise Unauthorized("Unauthorized")
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        user = bootstrap_auth.user_from_peercert(peer)
        if user is not None:
            return user
        if bootstrap_auth.anonymous_allowed(request.method, request.path):
            return bootstrap_auth.ANONYMOUS_USER
        raise Unauthorized("Unauthorized")

    # -- discovery ----------------------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "major": "1",
                "minor": "30",
                "gitVersion": f"v1.30.0-kcore.{kcore.__version__}",
                "gitCommit": "kcore",
                "gitTreeState": "clean",
                "buildDate": "2026-11-27T00:00:00Z",
                "goVersion": "python",
                "compiler": "cpython",
                "platform": "linux/amd64",
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def core_versions(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {
                        "clientCIDR": "0.0.0.0/0",
                        "serverAddress": self.server_address or request.host,
                    }
                ],
            }
        )

    async def group_list(self, request: web.Request) -> web.Response:
        groups = [_api_group(g, versions) for g, versions in self.objects.crds.groups()]
        return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def api_group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        for name, versions in self.objects.crds.groups():
            if name == group:
                return json_response(
                    {"kind": "APIGroup", "apiVersion": "v1", **_api_group(name, versions)}
                )
        raise NotFound("the server could not find the requested resource")

    async def openapi_v2(self, request: web.Request) -> web.Response:
        return web.Response(
            body=OPENAPI_V2_PROTOBUF,
            content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        )

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = []
        for info in self.objects.crds.resources_in(group, version):
            resources.append(
                {
                    "name": info.plural,
                    "singularName": info.singular,
                    "namespaced": info.namespaced,
                    "kind": info.kind,
                    "verbs": list(info.verbs),
                    **({"shortNames": list(info.short_names)} if info.short_names else {}),
                    **({"categories": list(info.categories)} if info.categories else {}),
                }
            )
            for sub in info.subresources:
                entry = {
                    "name": f"{info.plural}/{sub.name}",
                    "singularName": "",
                    "namespaced": info.namespaced,
                    "kind": sub.kind,
                    "verbs": list(sub.verbs),
                }
                if sub.group is not None:
                    entry["group"], entry["version"] = sub.group, sub.version
                resources.append(entry)
        gv = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }

    async def resource_list_or_path(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        if not self.objects.crds.resources_in(group, version):
            raise NotFound("the server could not find the requested resource")
        if request.method != "GET":
            raise MethodNotAllowed(f"{request.method} is not allowed on a group version")
        return json_response(self._resource_list(group, version))

    # -- resources ------------------------------------------------------------------------------

    def _target(self, request: web.Request) -> Target:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        parts = [p for p in request.match_info["tail"].split("/") if p != ""]
        namespace: str | None = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            ns_info = by_resource(group, version, "namespaces")
            if not (
                len(parts) == 3
                and ns_info is not None
                and (ns_info.subresource(parts[2]) or parts[2] == "finalize")
            ):
                namespace, parts = parts[1], parts[2:]
        if not parts or len(parts) > 3:
            raise NotFound("the server could not find the requested resource")
        info = self.objects.crds.resource(group, version, parts[0])
        if info is None:
            raise NotFound("the server could not find the requested resource")
        if namespace is not None and not info.namespaced:
            raise NotFound("the server could not find the requested resource")
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        if sub is not None and info.subresource(sub) is None and not _is_finalize(info, sub):
            raise NotFound("the server could not find the requested resource")
        return Target(info, namespace, name, sub)

    async def resource_path(self, request: web.Request) -> web.StreamResponse:
        t = self._target(request)
        method = request.method
        q = request.query
        dry_run = q.get("dryRun") == "All"
        strict = q.get("fieldValidation") == "Strict"
        if t.name is None:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    return await self._watch(request, t)
                return await self._list(request, t)
            if method == "POST":
                if t.info.namespaced and t.namespace is None:
                    raise MethodNotAllowed("create needs a namespace in the path")
                body = await self._body(request)
                if t.info.kind == "CertificateSigningRequest" and USER in request:
                    body = _with_requester(body, request[USER])
                obj = await self.objects.create(
                    t.info, t.namespace, body, strict=strict, dry_run=dry_run, user=_user(request)
                )
                return self._object_response(request, t.info, obj, 201)
            if method == "DELETE":
                return await self._delete_collection(request, t, dry_run)
            raise MethodNotAllowed(f"{method} is not allowed on a collection")
        if t.info.namespaced and t.namespace is None:
            raise NotFound("the server could not find the requested resource")
        if t.subresource == "scale":
            return await self._scale(request, t, dry_run)
        if t.subresource == "finalize" and method != "PUT":
            raise MethodNotAllowed(f"{method} is not allowed on {t.info.plural}/finalize")
        if t.subresource == "token":
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {t.info.plural}/token")
            assert t.namespace is not None
            body = await self._body(request)
            answer = await create_token_request(
                self.objects, self.token_issuer, t.namespace, t.name, body
            )
            return json_response(answer, 201)
        if t.subresource in ("log", "exec", "attach") and self.pod_streams is not None:
            return await self._pod_stream(request, t, self.pod_streams)
        if t.subresource in ("log", "exec", "attach", "binding", "portforward", "proxy"):
            if t.subresource == "binding" and method == "POST":
                return await self._binding(request, t)
            raise MethodNotAllowed(
                f"{t.info.plural}/{t.subresource} needs a node agent, which is not running"
            )
        if method == "GET":
            obj = await self.objects.get(t.info, t.namespace, t.name)
            return self._object_response(request, t.info, obj)
        if method == "PUT":
            body = await self._body(request)
            obj = await self.objects.update(
                t.info,
                t.namespace,
                t.name,
                body,
                subresource=t.subresource,
                strict=strict,
                dry_run=dry_run,
                user=_user(request),
            )
            return self._object_response(request, t.info, obj)
        if method == "PATCH":
            patch_type = _media_type(request)
            if patch_type not in PATCH_TYPES:
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: {', '.join(PATCH_TYPES)}"
                )
            patch = await self._body(request, allow_list=True)
            obj = await self.objects.patch(
                t.info,
                t.namespace,
                t.name,
                patch_type,
                patch,
                subresource=t.subresource,
                strict=strict,
                dry_run=dry_run,
                user=_user(request),
            )
            return self._object_response(request, t.info, obj)
        if method == "DELETE":
            if t.subresource:
                raise MethodNotAllowed("delete is not allowed on a subresource")
            options = await self._body(request, optional=True) or {}
            if "gracePeriodSeconds" in q:
                options["gracePeriodSeconds"] = _int(q["gracePeriodSeconds"], "gracePeriodSeconds")
            if "propagationPolicy" in q:
                options["propagationPolicy"] = q["propagationPolicy"]
            obj, gone = await self.objects.delete(
                t.info, t.namespace, t.name, options, dry_run=dry_run, user=_user(request)
            )
            answer = delete_answer(t.info, obj, gone)
            if answer is obj:
                return self._object_response(request, t.info, obj)
            return json_response(answer)
        raise MethodNotAllowed(f"{method} is not allowed")

    async def _body(
        self, request: web.Request, *, optional: bool = False, allow_list: bool = False
    ) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise RequestEntityTooLarge(f"the request body is larger than {MAX_BODY} bytes")
        raw = await request.read()
        if not raw.strip():
            if optional:
                return None
            raise BadRequest("the request body is empty")
        media = _media_type(request)
        if media in ("application/yaml", "application/apply-patch+yaml") or media.endswith("+yaml"):
            body = api.codec.load_yaml(raw, allow_aliases=False)
        elif media in ("", "application/json", "*/*") or media in PATCH_TYPES:
            try:
                body = _decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"malformed JSON: {exc}") from None
            except RecursionError:
                raise BadRequest("the JSON body is nested too deeply") from None
        else:
            raise UnsupportedMediaType(f"the body of the request was in an unknown format: {media}")
        _check_depth(body)
        if isinstance(body, list) and allow_list:
            return body
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _object_response(
        self, request: web.Request, info: ResourceInfo, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        obj = self.objects.crds.served_as(info, obj)
        if _wants_table(request):
            return json_response(
                self._table(info, [obj], obj["metadata"]["resourceVersion"]), status
            )
        return json_response(obj, status)

    def _table(self, info: ResourceInfo, items: list[dict[str, Any]], rv: str) -> dict[str, Any]:
        from kcore.apiserver.tables import to_table

        if is_custom(info):  # its definition's printer columns
            return self.objects.crds.table(info, items, rv)
        return to_table(info.kind, items, resource_version=rv)

    def _list_options(self, request: web.Request, info: ResourceInfo) -> ListOptions:
        q = request.query
        return ListOptions.parse(
            info.kind,
            label_selector=q.get("labelSelector"),
            field_selector=q.get("fieldSelector"),
            limit=_int(q["limit"], "limit") if q.get("limit") else None,
            continue_token=q.get("continue"),
            resource_version=q.get("resourceVersion"),
            exact=q.get("resourceVersionMatch") == "Exact",
        )

    async def _list(self, request: web.Request, t: Target) -> web.Response:
        options = self._list_options(request, t.info)
        items, revision, token = await self.objects.list(t.info, t.namespace, options)
        items = [self.objects.crds.served_as(t.info, obj) for obj in items]
        if _wants_table(request):
            table = self._table(t.info, items, str(revision))
            if token:
                table["metadata"]["continue"] = token
            return json_response(table)
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if token:
            meta["continue"] = token
        return json_response(
            {
                "kind": t.info.list_kind,
                "apiVersion": t.info.api_version,
                "metadata": meta,
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        options = self._list_options(request, t.info)
        rv = options.resource_version
        send_initial = rv in (None, "", "0")
        if not send_initial:
            parse_resource_version(rv)  # a bad one is a 400 before the stream starts
        timeout = (
            _int(request.query["timeoutSeconds"], "timeoutSeconds")
            if request.query.get("timeoutSeconds")
            else random.randint(*self.watch_timeout)
        )
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        table = _wants_table(request)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        events = self.objects.watch(t.info, t.namespace, options, send_initial=send_initial)
        last_rv = rv or "0"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            next_event = asyncio.ensure_future(anext(events))
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait(
                    {next_event, stop},
                    timeout=min(remaining, 60.0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stop in done:
                    break
                if next_event not in done:
                    if bookmarks:
                        await self._send(
                            resp,
                            "BOOKMARK",
                            {
                                "kind": t.info.kind,
                                "apiVersion": t.info.api_version,
                                "metadata": {"resourceVersion": last_rv},
                            },
                        )
                    continue
                try:
                    item = next_event.result()
                except StopAsyncIteration:
                    break
                except Expired as exc:
                    await self._send(resp, "ERROR", status_body(exc))
                    break
                last_rv = str(item.revision)
                obj = self.objects.crds.served_as(t.info, item.object)
                if table:
                    obj = self._table(t.info, [obj], last_rv)
                await self._send(resp, item.type, obj)
                next_event = asyncio.ensure_future(anext(events))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stop.cancel()
            if not next_event.done():
                next_event.cancel()
                with contextlib.suppress(BaseException):
                    await next_event
            with contextlib.suppress(Exception):
                await events.aclose()
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, kind: str, obj: Mapping[str, Any]) -> None:
        await resp.write(_encode({"type": kind, "object": obj}) + b"\n")

    async def _delete_collection(
        self, request: web.Request, t: Target, dry_run: bool
    ) -> web.Response:
        options = self._list_options(request, t.info)
        items, _, _ = await self.objects.list(t.info, t.namespace, options)
        body = await self._body(request, optional=True) or {}
        for obj in items:
            meta = obj["metadata"]
            try:
                await self.objects.delete(
                    t.info,
                    meta.get("namespace"),
                    meta["name"],
                    body,
                    dry_run=dry_run,
                    user=_user(request),
                )
            except NotFound:
                pass
        return json_response(
            {
                "kind": t.info.list_kind,
                "apiVersion": t.info.api_version,
                "metadata": {},
                "items": items,
            }
        )

    async def _scale(self, request: web.Request, t: Target, dry_run: bool) -> web.Response:
        obj = await self.objects.get(t.info, t.namespace, t.name)
        if request.method == "GET":
            return json_response(self._scale_of(t.info, obj))
        if request.method == "PUT":
            scale = await self._body(request)
        elif request.method == "PATCH":
            patch_type = _media_type(request)
            if patch_type not in PATCH_TYPES or PATCH_TYPES[patch_type] == "apply":
                raise UnsupportedMediaType(f"unsupported patch type {patch_type!r} for scale")
            from kcore.patch import apply_json_patch, apply_merge_patch

            patch = await self._body(request, allow_list=True)
            current = self._scale_of(t.info, obj)
            if PATCH_TYPES[patch_type] == "json":
                scale = apply_json_patch(current, patch)
            else:
                scale = apply_merge_patch(current, patch)
            if isinstance(scale, dict) and not _patch_names_rv(patch):
                # the resourceVersion of the server's own read is no precondition: only one
                # the client's patch sets is (else a concurrent status write would be a 409)
                (scale.get("metadata") or {}).pop("resourceVersion", None)
        else:
            raise MethodNotAllowed(f"{request.method} is not allowed on scale")
        if not isinstance(scale, dict):
            raise BadRequest("a Scale must be an object")
        spec, scale_meta = scale.get("spec") or {}, scale.get("metadata") or {}
        if not isinstance(spec, dict) or not isinstance(scale_meta, dict):
            raise BadRequest("a Scale's spec and metadata must be objects")
        replicas = spec.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            from kcore.errors import FieldError, Invalid

            raise Invalid(
                f'Scale.autoscaling "{t.name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas!r}: must be greater than or equal to 0",
                [FieldError("spec.replicas", "must be greater than or equal to 0")],
            )
        rv = scale_meta.get("resourceVersion")
        if rv is not None and not isinstance(rv, str):
            raise BadRequest("metadata.resourceVersion must be a string")
        pointer = self.objects.crds.replicas_pointer(t.info) if is_custom(t.info) else None
        ops = [{"op": "add", "path": pointer or "/spec/replicas", "value": replicas}]
        if rv:
            ops.insert(0, {"op": "add", "path": "/metadata/resourceVersion", "value": rv})
        updated = await self.objects.patch(
            t.info,
            t.namespace,
            t.name,
            "application/json-patch+json",
            ops,
            subresource="scale",
            dry_run=dry_run,
            user=_user(request),
        )
        return json_response(self._scale_of(t.info, updated))

    def _scale_of(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        if is_custom(info):  # the paths of its definition's subresources.scale
            return self.objects.crds.scale_of(info, obj)
        return _scale_of(obj)

    async def _pod_stream(
        self, request: web.Request, t: Target, streams: streaming.PodStreams
    ) -> web.StreamResponse:
        """``pods/log``, ``pods/exec``, ``pods/attach``: the checks Kubernetes' API server
        makes (options, pod, container, node), then the provider's stream."""
        assert t.name is not None
        q = request.query
        if t.subresource == "log":
            if request.method != "GET":
                raise MethodNotAllowed(f"{request.method} is not allowed on pods/log")
            options = streaming.log_options(q, t.name)
            pod = await self.objects.get(t.info, t.namespace, t.name)
            container = streaming.select_container(pod, q.get("container"))
            if not streaming.node_of(pod):
                return await streaming.serve_empty_log(request)
            chunks = await streaming.open_logs(streams, pod, container, options)
            return await streaming.serve_log(request, chunks, stopping=self.stopping)
        if request.method not in ("GET", "POST"):
            raise MethodNotAllowed(f"{request.method} is not allowed on pods/{t.subresource}")
        is_exec = t.subresource == "exec"
        stream_options = streaming.stream_options(q, exec_=is_exec)
        pod = await self.objects.get(t.info, t.namespace, t.name)
        container = streaming.select_container(pod, q.get("container"))
        streaming.require_node(pod)
        if is_exec:
            start = functools.partial(
                streams.exec,
                pod,
                container,
                stream_options.command,
                stdin=stream_options.stdin,
                tty=stream_options.tty,
            )
        else:
            start = functools.partial(
                streams.attach, pod, container, stdin=stream_options.stdin, tty=stream_options.tty
            )
        return await streaming.serve_session(
            request, t.subresource or "", stream_options, start, stopping=self.stopping
        )

    async def _binding(self, request: web.Request, t: Target) -> web.Response:
        body = await self._body(request)
        target = body.get("target")
        node = target.get("name") if isinstance(target, dict) else None
        if not node or not isinstance(node, str):
            raise BadRequest("a binding needs target.name")
        await self.objects.bind(t.info, t.namespace, t.name, node, user=_user(request))
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            201,
        )


def _user(request: web.Request) -> str | None:
    """The name of the authenticated caller, for admission checks (None without
    authentication)."""
    return request[USER].name if USER in request else None


def _with_requester(body: dict[str, Any], user: UserInfo) -> dict[str, Any]:
    """A CertificateSigningRequest records who asked for it, whatever the body says."""
    from kcore.api.certificates_v1 import with_requester

    return with_requester(
        body, username=user.name, uid=user.uid, groups=user.groups, extra=user.extra
    )


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    """A group's APIGroup entry; the first version is the preferred one."""
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def _patch_names_rv(patch: Any) -> bool:
    """Whether a merge or JSON patch sets ``metadata.resourceVersion`` itself."""
    if isinstance(patch, dict):
        meta = patch.get("metadata")
        return isinstance(meta, dict) and "resourceVersion" in meta
    if isinstance(patch, list):
        return any(
            isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in patch
        )
    return False


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector")
    from kcore.selectors import from_label_selector_object

    text = from_label_selector_object(selector).to_text() if selector is not None else ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": text},
    }


MAX_DEPTH = 100


def _check_depth(body: Any) -> None:
    """Refuse bodies nested deeper than any Kubernetes object is (real ones stay below 20),
    before recursive code (copies, patches, the typed model) meets them."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"the request body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _is_finalize(info: ResourceInfo, sub: str) -> bool:
    """``namespaces/<name>/finalize`` (PUT): how the namespace controller removes the
    ``kubernetes`` finalizer once the namespace is empty."""
    return sub == "finalize" and info.kind == "Namespace" and info.group == ""


def _media_type(request: web.Request) -> str:
    raw = request.headers.get("Content-Type", "")
    return raw.split(";")[0].strip().lower()


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")[1:]}
        if "as=Table" in params:
            return True
        if part.strip().split(";")[0] == "application/json":
            return False
    return False


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None


__all__ = ["USER", "APIServer", "status_body"]
