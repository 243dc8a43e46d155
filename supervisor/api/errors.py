"""The only place HTTP status codes are chosen. Imports: stdlib + starlette + shared + supervisor."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from shared.spec.load import SpecInvalid, SpecMalformed, validation_error
from shared.store import StoreUnavailable
from supervisor.manager import Conflict, NotFound

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_spec": 422,
    "internal": 500,
}


class ApiError(Exception):
    def __init__(
        self, code: str, message: str, details: list[dict[str, str]] | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []
        self.status = status or STATUS[code]


def unread_body_headers(headers: Any) -> dict[str, str]:
    """`Connection: close` for an error answered to a request that carries a body:
    it may not have been read (auth, 413, 415, 404 come first), and HTTP/1.1 cannot
    reuse a connection with an unread body; without this header a keep-alive client
    sends its next request into a closing connection."""
    cl = headers.get("content-length")
    if headers.get("transfer-encoding") or (cl and cl != "0"):
        return {"connection": "close"}
    return {}


def error_response(
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return Response(
        msgspec.json.encode(body), status_code=status or STATUS[code], media_type="application/json", headers=headers
    )


def from_exception(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError("not_found", str(exc))
    if isinstance(exc, Conflict):
        return ApiError("conflict", str(exc))
    if isinstance(exc, SpecMalformed):
        return ApiError("bad_request", str(exc))
    if isinstance(exc, StoreUnavailable):  # the shared state store is down: retry later
        return ApiError("internal", str(exc), status=503)
    if isinstance(exc, msgspec.ValidationError):  # a document the spec walker let through: still the client's
        exc = SpecInvalid([validation_error(exc)])
    if isinstance(exc, SpecInvalid):
        details = [{"path": p, "message": m} for p, m in exc.errors]
        n = len(details)
        return ApiError(
            "invalid_spec",
            f"the spec has {n} error{'s' if n != 1 else ''}: "
            + "; ".join(f"{d['path']}: {d['message']}" for d in details[:5]),
            details,
        )
    return ApiError("internal", f"internal error: {exc.__class__.__name__}")


async def handle(request: Request, exc: Any) -> Response:
    e = from_exception(exc)
    return error_response(e.code, e.message, e.details, e.status, headers=unread_body_headers(request.headers))


async def http_exception(request: Request, exc: Any) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return error_response("not_found", f"no route {request.method} {request.url.path}")
    if status == 405:
        return error_response(
            "bad_request",
            f"method {request.method} not allowed on {request.url.path}",
            status=405,
            headers={"allow": _allowed(request)},
        )  # RFC 9110
    return error_response("bad_request" if status < 500 else "internal", str(getattr(exc, "detail", "")), status=status)


def _allowed(request: Request) -> str:
    """Every method some route serves on this path (one Route per method, so
    Starlette's own Allow would name only the first route's methods). The most literal
    routes win: /pipelines/x/dlq/replay is that route, not the entry named "replay"."""
    by_params: dict[int, set[str]] = {}
    for route in getattr(request.app, "routes", []):
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            params = str(getattr(route, "path", "")).count("{")
            by_params.setdefault(params, set()).update(getattr(route, "methods", None) or set())
    return ", ".join(sorted(by_params[min(by_params)])) if by_params else ""
