"""authentication.k8s.io/v1 TokenRequest: the body of ``serviceaccounts/{name}/token``.

The node agent asks for these to fill ``serviceAccountToken`` projected volumes.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from kcore.api.meta import K8sStruct, Time, TypedObject, normalize_times


class BoundObjectReference(K8sStruct):
    kind: str | None = None
    api_version: str | None = None
    name: str | None = None
    uid: str | None = None


class TokenRequestSpec(K8sStruct):
    audiences: list[str] = []
    expiration_seconds: int | None = None
    bound_object_ref: BoundObjectReference | None = None


class TokenRequestStatus(K8sStruct):
    token: str | None = None
    expiration_timestamp: Time | None = None

    def __post_init__(self) -> None:
        normalize_times(self, "expiration_timestamp")


class TokenRequest(TypedObject):
    API_VERSION: ClassVar[str] = "authentication.k8s.io/v1"
    KIND: ClassVar[str] = "TokenRequest"

    spec: TokenRequestSpec = msgspec.field(default_factory=TokenRequestSpec)
    status: TokenRequestStatus = msgspec.field(default_factory=TokenRequestStatus)


__all__ = ["BoundObjectReference", "TokenRequest", "TokenRequestSpec", "TokenRequestStatus"]
