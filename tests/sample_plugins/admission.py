"""Admission checks for tests, in the order the API server runs them:

- ``sample-label`` (mutating) labels every pod it sees written ``sample.kcore.dev/admitted:
  "true"`` and, on a create, notes the writer in the ``sample.kcore.dev/created-by``
  annotation; it records every request in ``seen``;
- ``sample-image`` (validating) refuses pods with a container image ``forbidden`` and the
  deletion of pods labelled ``sample.kcore.dev/protected: "true"`` (403 Forbidden);
- ``sample-misbehave`` does what a pod's ``sample.kcore.dev/misbehave`` annotation asks:
  ``crash`` raises an ordinary exception, ``invalid`` returns the pod with an invalid label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kcore
from kcore import hookimpl

ADMITTED = "sample.kcore.dev/admitted"
CREATED_BY = "sample.kcore.dev/created-by"
PROTECTED = "sample.kcore.dev/protected"
MISBEHAVE = "sample.kcore.dev/misbehave"


def _is_pod(request: kcore.AdmissionRequest) -> bool:
    return request.group == "" and request.resource == "pods"


def _metadata(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("metadata") or {})


class AddLabel:
    name = "sample-label"

    def __init__(self) -> None:
        self.seen: list[kcore.AdmissionRequest] = []

    async def admit(self, request: kcore.AdmissionRequest) -> Mapping[str, Any] | None:
        self.seen.append(request)
        if not _is_pod(request) or request.obj is None or request.subresource is not None:
            return None
        pod = dict(request.obj)  # the request's own copy: free to change
        meta = pod["metadata"] = _metadata(pod)
        meta["labels"] = {**(meta.get("labels") or {}), ADMITTED: "true"}
        if request.operation == "CREATE" and request.user:
            meta["annotations"] = {**(meta.get("annotations") or {}), CREATED_BY: request.user}
        return pod


class RefuseImage:
    name = "sample-image"

    async def admit(self, request: kcore.AdmissionRequest) -> Mapping[str, Any] | None:
        if not _is_pod(request):
            return None
        if request.operation == "DELETE":
            if (_metadata(request.old).get("labels") or {}).get(PROTECTED) == "true":
                raise kcore.Forbidden(
                    f'pods "{request.name}" is forbidden: the pod is protected ({self.name})'
                )
            return None
        spec = (request.obj or {}).get("spec") or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if container.get("image") == "forbidden":
                raise kcore.Forbidden(
                    f'pods "{request.name}" is forbidden: image "forbidden" is not allowed '
                    f"({self.name})"
                )
        return None


class Misbehave:
    name = "sample-misbehave"

    async def admit(self, request: kcore.AdmissionRequest) -> Mapping[str, Any] | None:
        if not _is_pod(request) or request.obj is None:
            return None
        how = (_metadata(request.obj).get("annotations") or {}).get(MISBEHAVE)
        if how == "crash":
            raise RuntimeError("crashed on purpose")
        if how == "invalid":
            pod = dict(request.obj)
            meta = pod["metadata"] = _metadata(pod)
            meta["labels"] = {**(meta.get("labels") or {}), ADMITTED: "not a label value!"}
            return pod
        return None


def checks() -> list[Any]:
    """New instances of the three checks, in their order."""
    return [AddLabel(), RefuseImage(), Misbehave()]


@hookimpl
def kcore_admission_checks(settings):
    return checks()
