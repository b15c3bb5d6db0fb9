"""kcore's error types: one root, and the categories that callers branch on.

Every error kcore raises on purpose derives from :class:`KcoreError`. Callers catch a
category (``NotFound``, ``Conflict`` ...) rather than a backend's own exception, so that a
store on sqlite and a store on etcd fail the same way. Each category carries the HTTP
status code and the Kubernetes ``Status.reason`` that the API server answers with.
"""

from __future__ import annotations

from dataclasses import dataclass


class KcoreError(Exception):
    """Root of every error kcore raises on purpose."""

    code: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or self.__class__.__name__


class NotFound(KcoreError):
    """The object or key does not exist."""

    code = 404
    reason = "NotFound"


class AlreadyExists(KcoreError):
    """A create found the key taken."""

    code = 409
    reason = "AlreadyExists"


class Conflict(KcoreError):
    """A compare-and-swap lost: the object changed since the caller read it."""

    code = 409
    reason = "Conflict"


@dataclass(frozen=True)
class FieldError:
    """One invalid field: ``field`` is a path such as ``spec.containers[0].image``."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Invalid(KcoreError):
    """Input failed validation; ``causes`` names each bad field by its path."""

    code = 422
    reason = "Invalid"

    def __init__(self, message: str = "", causes: list[FieldError] | None = None) -> None:
        self.causes = list(causes or [])
        if not message:
            message = "; ".join(str(c) for c in self.causes) or "invalid"
        super().__init__(message)


class BadRequest(KcoreError):
    """The request itself cannot be read (malformed JSON or YAML, wrong type)."""

    code = 400
    reason = "BadRequest"


class Expired(KcoreError):
    """The revision asked for has been compacted away, or a watcher fell too far behind.

    The caller must list again and watch from the list's revision.
    """

    code = 410
    reason = "Expired"


class Forbidden(KcoreError):
    """The caller may not do this (for example create in a namespace being deleted)."""

    code = 403
    reason = "Forbidden"


class NotSupported(KcoreError):
    """The backend does not implement this operation or capability."""

    code = 405
    reason = "MethodNotAllowed"


class TemporaryError(KcoreError):
    """Worth retrying, after ``retry_after`` seconds."""

    code = 503
    reason = "ServiceUnavailable"

    def __init__(self, message: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(KcoreError):
    """Retrying will not help; the input or the world must change first."""

    code = 500
    reason = "InternalError"


class PluginError(KcoreError):
    """A plugin could not be found, loaded, or fitted into its slot.

    Raised at start-up; the CLI prints the message as one line and exits non-zero.
    """

    code = 500
    reason = "InternalError"


__all__ = [
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "Expired",
    "FieldError",
    "Forbidden",
    "Invalid",
    "KcoreError",
    "NotFound",
    "NotSupported",
    "PermanentError",
    "PluginError",
    "TemporaryError",
]
