"""Turning the API server's ``Status`` answers back into kcore's error categories.

The in-process transport raises what :class:`~kcore.apiserver.objects.ObjectStore` raises;
the HTTP transport reads the ``Status`` body of an error answer and raises the same
category, with the same message, ``details`` and (for ``Invalid``) ``causes``. Callers
therefore branch on ``NotFound``, ``Conflict`` ... whichever transport they use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kcore.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    FieldError,
    Invalid,
    KcoreError,
    NotFound,
    NotSupported,
    TemporaryError,
)

_BY_REASON: dict[str, type[KcoreError]] = {
    "NotFound": NotFound,
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "Invalid": Invalid,
    "BadRequest": BadRequest,
    "Expired": Expired,
    "Gone": Expired,
    "MethodNotAllowed": NotSupported,
    "ServiceUnavailable": TemporaryError,
    "ServerTimeout": TemporaryError,
    "Timeout": TemporaryError,
    "TooManyRequests": TemporaryError,
}
_BY_CODE: dict[int, type[KcoreError]] = {
    400: BadRequest,
    404: NotFound,
    405: NotSupported,
    409: Conflict,
    410: Expired,
    422: Invalid,
    429: TemporaryError,
    503: TemporaryError,
    504: TemporaryError,
}


class ConnectionFailed(TemporaryError):
    """The server could not be reached, or the connection broke mid-answer."""

    code = 503
    reason = "ServiceUnavailable"


def error_from_status(status: Mapping[str, Any] | None, code: int, text: str = "") -> KcoreError:
    """The kcore error for an HTTP error answer: ``status`` is its body when that is a
    ``Status`` object, ``code`` the HTTP status, ``text`` the raw body otherwise.

    The error keeps the body as ``error.status`` (which is how ``kcore ctl`` knows that an
    error came from the server) and the Status ``details`` (without the causes) as
    ``error.details``. A reason and code with no kcore category give a plain
    :class:`KcoreError` whose ``code`` and ``reason`` are the server's."""
    if not isinstance(status, Mapping) or status.get("kind") != "Status":
        body = text.strip().splitlines()[0] if text.strip() else ""
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": body or f"the server answered {code}",
            "reason": "",
            "code": code,
        }
    code = int(status.get("code") or code)
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "")
    details = dict(status.get("details") or {})
    raw_causes = details.pop("causes", None) or []
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code)
    if cls is Invalid:
        causes = [
            FieldError(
                str(c.get("field") or ""),
                str(c.get("message") or ""),
                str(c.get("reason") or "FieldValueInvalid"),
            )
            for c in raw_causes
            if isinstance(c, Mapping)
        ]
        error: KcoreError = Invalid(message, causes)
    elif cls is TemporaryError:
        retry = details.get("retryAfterSeconds")
        error = TemporaryError(message, retry_after=float(retry) if retry else 1.0)
    elif cls is not None:
        error = cls(message)
    else:
        error = KcoreError(message or f"the server answered {code}")
        error.code = code
        error.reason = reason or _reason_for(code)
    if cls is not None and reason and reason != error.reason and reason != "Gone":
        error.reason = reason
    error.details = details  # type: ignore[attr-defined]
    error.status = dict(status)  # type: ignore[attr-defined]
    return error


def _reason_for(code: int) -> str:
    return {
        401: "Unauthorized",
        403: "Forbidden",
        413: "RequestEntityTooLarge",
        415: "UnsupportedMediaType",
    }.get(code, "InternalError" if code >= 500 else "Unknown")


def from_server(error: BaseException) -> bool:
    """Whether ``error`` is an answer of the API server (rather than a local failure)."""
    return isinstance(error, KcoreError) and getattr(error, "status", None) is not None


__all__ = ["ConnectionFailed", "error_from_status", "from_server"]
