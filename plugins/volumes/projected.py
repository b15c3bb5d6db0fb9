"""``projected``: several sources in one directory, on a tmpfs of the volume's own.

``sources[]`` each hold one of ``configMap``, ``secret`` (``name``, ``items``,
``optional``), ``downwardAPI`` (``items``) and ``serviceAccountToken`` (``audience``,
``expirationSeconds`` default 3600 and at least 600, ``path``); ``defaultMode`` (0644) is
the mode of every file an item gives no mode.

Tokens come from a *token source*: ``await token_source(api, namespace, service_account,
token_request)`` returns the answered ``TokenRequest`` (``status.token``,
``status.expirationTimestamp``). The default, :func:`request_token`, calls
``api.create_token(service_account, token_request, namespace=namespace)``, the
``serviceaccounts/<name>/token`` subresource; a node agent whose API client lacks it
passes its own source. A token is reused until 80 % of its lifetime (or 24 h) has passed,
as the kubelet's token manager does, so that the ``setup`` of every pod sync is cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kcore.errors import NotSupported, TemporaryError
from kcore.plugins.volumes.atomic_writer import FileProjection, invalid
from kcore.plugins.volumes.downward_api import downward_payload
from kcore.plugins.volumes.keyed import (
    config_map_data,
    fetch,
    keyed_payload,
    pod_namespace,
    secret_data,
    volume_default_mode,
)
from kcore.plugins.volumes.volume_dir import materialize, remove
from kcore.pods.resources import memory_volume_size

DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 2**32
MAX_TOKEN_AGE = 24 * 3600
REFRESH_AT = 0.8
"""Share of a token's lifetime after which it is requested anew."""

TokenSource = Callable[[Any, str, str, dict[str, Any]], Awaitable[Mapping[str, Any]]]


async def request_token(
    api: Any, namespace: str, service_account: str, token_request: dict[str, Any]
) -> Mapping[str, Any]:
    """Create ``token_request`` for ``namespace/service_account`` through the API."""
    create = getattr(api, "create_token", None)
    if create is None:
        raise NotSupported(
            "the API client cannot create a TokenRequest (serviceaccounts/<name>/token): it "
            "has no create_token(); give ProjectedSource a token_source"
        )
    return await create(service_account, token_request, namespace=namespace)


@dataclass(frozen=True)
class _Token:
    token: str
    issued: float
    expires: float

    def fresh(self, now: float) -> bool:
        lifetime = self.expires - self.issued
        return now - self.issued < min(REFRESH_AT * lifetime, MAX_TOKEN_AGE)


class ProjectedSource:
    type_name = "projected"
    read_only = True  # API data: never writable from a container, as in Kubernetes

    def __init__(
        self,
        node_allocatable: Mapping[str, Any] | None = None,
        *,
        token_source: TokenSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node_allocatable = node_allocatable
        self.token_source: TokenSource = token_source or request_token
        self.clock = clock
        self._tokens: dict[tuple[str, ...], _Token] = {}

    async def setup(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path, api: Any
    ) -> None:
        source = volume.get("projected") or {}
        default_mode = volume_default_mode(source)
        payload: dict[str, FileProjection] = {}
        for i, projection in enumerate(source.get("sources") or []):
            payload.update(await self._project(pod, projection, default_mode, api, i))
        size = memory_volume_size(pod, None, self.node_allocatable)
        await asyncio.to_thread(materialize, Path(target), payload, tmpfs_size=size)

    async def teardown(
        self, pod: Mapping[str, Any], volume: Mapping[str, Any], target: Path
    ) -> None:
        uid = (pod.get("metadata") or {}).get("uid") or ""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        await asyncio.to_thread(remove, Path(target))

    async def _project(
        self,
        pod: Mapping[str, Any],
        projection: Mapping[str, Any],
        default_mode: int,
        api: Any,
        index: int,
    ) -> dict[str, FileProjection]:
        kinds = [k for k, v in projection.items() if v is not None]
        if len(kinds) != 1:
            raise invalid(f"sources[{index}]", "must specify exactly one volume projection")
        kind = kinds[0]
        spec = projection[kind]
        namespace = pod_namespace(pod)
        if kind in ("configMap", "secret"):
            optional = bool(spec.get("optional"))
            api_kind = "ConfigMap" if kind == "configMap" else "Secret"
            obj = await fetch(api, api_kind, namespace, spec.get("name"), optional=optional)
            data = None
            if obj is not None:
                data = config_map_data(obj) if kind == "configMap" else secret_data(obj)
            return keyed_payload(api_kind, data, spec.get("items"), default_mode, optional=optional)
        if kind == "downwardAPI":
            return downward_payload(pod, spec.get("items"), default_mode, self.node_allocatable)
        if kind == "serviceAccountToken":
            path = spec.get("path")
            if not path:
                raise invalid(f"sources[{index}].serviceAccountToken.path", "Required value")
            token = await self._token(pod, spec, api, index)
            return {str(path): FileProjection(token.encode(), default_mode)}
        raise NotSupported(f"projected volume source {kind} is not supported")

    async def _token(
        self, pod: Mapping[str, Any], spec: Mapping[str, Any], api: Any, index: int
    ) -> str:
        expiration = spec.get("expirationSeconds")
        expiration = DEFAULT_EXPIRATION_SECONDS if expiration is None else expiration
        field = f"sources[{index}].serviceAccountToken.expirationSeconds"
        if not isinstance(expiration, int) or expiration < MIN_EXPIRATION_SECONDS:
            raise invalid(field, "may not specify a duration less than 10 minutes")
        if expiration > MAX_EXPIRATION_SECONDS:
            raise invalid(field, "may not specify a duration larger than 2^32 seconds")
        meta = pod.get("metadata") or {}
        namespace = pod_namespace(pod)
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        audience = spec.get("audience") or ""
        key = (meta.get("uid") or "", namespace, account, audience, str(expiration))
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and cached.fresh(now):
            return cached.token
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": account, "namespace": namespace},
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                },
            },
        }
        answer = await self.token_source(api, namespace, account, request)
        status = answer.get("status") or {}
        token = status.get("token")
        if not token:
            raise TemporaryError(f"the TokenRequest for service account {account} got no token")
        lifetime = (answer.get("spec") or {}).get("expirationSeconds") or expiration
        expires = now + lifetime
        if status.get("expirationTimestamp"):
            expires = datetime.fromisoformat(status["expirationTimestamp"]).timestamp()
        self._tokens[key] = _Token(token, expires - lifetime, expires)
        return token


__all__ = [
    "DEFAULT_EXPIRATION_SECONDS",
    "MIN_EXPIRATION_SECONDS",
    "ProjectedSource",
    "TokenSource",
    "request_token",
]
