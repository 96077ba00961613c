"""Kubernetes-style API errors: one exception type carrying a `Status` body, and its builders."""
from __future__ import annotations

from typing import Any

# HTTP code -> the `reason` kube-apiserver puts in a Status with that code.
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


class ApiError(Exception):
    """Raised anywhere below the HTTP layer; the HTTP layer turns it into a Status response."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: dict[str, Any] | None = None, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details
        self._body = body  # a ready-made Status (e.g. the schema layer's 422)
        self.headers: dict[str, str] = {}

    def status(self) -> dict[str, Any]:
        if self._body is not None:
            return self._body
        return status_body(self.code, self.message, self.reason, self.details)


def status_body(code: int, message: str, reason: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(group, plural)} "{name}" not found',
                    details={"name": name, "group": group, "kind": plural})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, f'{_qualified(group, plural)} "{name}" already exists', reason="AlreadyExists",
                    details={"name": name, "group": group, "kind": plural})


def conflict(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """A 422 for built-in checks. causes: (field, reason, message)."""
    text = "; ".join(f"{field}: {msg}" if field else msg for field, _, msg in causes)
    qualified = f"{kind}.{group}" if group else kind
    message = f'{qualified} "{name}" is invalid: {text}'
    details = {"name": name, "group": group, "kind": kind,
               "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]}
    return ApiError(422, message, details=details)


def gone(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)
