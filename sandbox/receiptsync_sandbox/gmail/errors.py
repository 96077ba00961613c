"""Google's JSON error shape, raised anywhere in a call and turned into the response body."""
from __future__ import annotations

from typing import Any

# HTTP status -> Google's canonical status name.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
}


class ApiError(Exception):
    def __init__(self, code: int, message: str, reason: str, *, domain: str = "global",
                 headers: dict[str, str] | None = None, extra: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        detail = {"message": self.message, "domain": self.domain, "reason": self.reason, **self.extra}
        return {"error": {"code": self.code, "message": self.message, "errors": [detail],
                          "status": STATUS_NAMES.get(self.code, "UNKNOWN")}}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, message, "invalidArgument")


def not_found(message: str = "Requested entity was not found.") -> ApiError:
    return ApiError(404, message, "notFound")


def unauthenticated() -> ApiError:
    return ApiError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
        "authError",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
        extra={"location": "Authorization", "locationType": "header"},
    )


def delegation_denied(user_id: str) -> ApiError:
    return ApiError(403, f"Delegation denied for {user_id}", "forbidden")


def backend_error(code: int) -> ApiError:
    message = "Backend Error" if code == 500 else "The service is currently unavailable."
    return ApiError(code, message, "backendError")


def rate_limited(status: int, retry_after_s: int, retry_at_rfc3339: str) -> ApiError:
    reason = "rateLimitExceeded" if status == 429 else "userRateLimitExceeded"
    return ApiError(status, f"User-rate limit exceeded.  Retry after {retry_at_rfc3339}", reason,
                    domain="usageLimits", headers={"Retry-After": str(retry_after_s)})
