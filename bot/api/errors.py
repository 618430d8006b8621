"""Every error leaves the API as JSON: ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

log = structlog.get_logger("bot.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


def validation_error(exc: ValidationError) -> ApiError:
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        msg = next(e["msg"] for e in errors if e["type"] == "json_invalid")
        return ApiError(400, "invalid_json", f"request body is not valid JSON: {msg}")
    details = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
        for e in errors
    ]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return ApiError(422, "invalid_request", f"invalid request: {summary}", details)


_HTTP_CODES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "method not allowed on this endpoint"),
    413: ("payload_too_large", "request body too large"),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details)
    except ValidationError as exc:
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, err.details)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(
            ("/api/", "/desk/api/", "/desk/ws", "/healthz", "/readyz")
        ):
            raise
        code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason))
        if exc.status == 413:
            message = f"request body too large (limit {request.app[MAX_BODY_KEY]} bytes)"
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("api.unhandled_error", path=request.path, method=request.method)
        return error_response(500, "internal_error", "internal error; it has been logged")


MAX_BODY_KEY = web.AppKey("max_body_bytes", int)

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body validated as ``model``; pydantic's errors become 400/422 above."""
    raw = await request.read()
    if not raw:
        raise ApiError(400, "invalid_json", "request body is empty; expected a JSON object")
    return model.model_validate_json(raw)
