"""Errors of the API and their RFC 9457 ``application/problem+json`` rendering.

Tree (``ApiError`` is the root; ``status`` is the HTTP answer)::

    ApiError
    ├── Unauthorized (401)      no or unknown bearer token (permanent)
    ├── Forbidden (403)         the token's role may not do this (permanent)
    ├── NotFound (404)          no such centre/device/gateway (permanent)
    ├── Conflict (409)          exists already, or the state forbids it (permanent)
    ├── Unprocessable (422)     well-formed but invalid: a bad CSV row, an identifier (permanent)
    └── Unavailable (503)       the broker or InfluxDB did not answer in time (retryable)
        ├── BrokerUnavailable
        └── TelemetryUnavailable

Validation errors of FastAPI (422) list every field at fault in ``errors``
(``[{"field": "body.latitude", "message": ...}]``; an alert rule's condition is
located as written: ``body.condition.metric``, not pydantic's
``body.condition.threshold``); anything unexpected is a 500
problem whose detail never echoes internals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerting.rules import CONDITION_TYPES

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(ApiError):
    status = 401
    title = "Unauthorized"


class Forbidden(ApiError):
    status = 403
    title = "Forbidden"


class NotFound(ApiError):
    status = 404
    title = "Not Found"


class Conflict(ApiError):
    status = 409
    title = "Conflict"


class Unprocessable(ApiError):
    status = 422
    title = "Unprocessable Content"


class Unavailable(ApiError):
    status = 503
    title = "Service Unavailable"


class BrokerUnavailable(Unavailable):
    pass


class TelemetryUnavailable(Unavailable):
    pass


def problem(status: int, title: str, detail: str, instance: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


# A tagged union's member appears in pydantic's location ("condition", "threshold"):
# the client wrote no such field, so the tag is left out of ``field``.
_UNION_TAGS = {"condition": frozenset(CONDITION_TYPES)}
# Model validators name the field they reject: "Value error, metric: 'x' is not ..."
_NAMED = re.compile(r"^Value error, ([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (.+)$", re.DOTALL)


def located(error: Mapping[str, Any]) -> dict[str, str]:
    """``{"field", "message"}`` of one pydantic error, the field as the client wrote it."""
    loc = [str(part) for part in error.get("loc", ())]
    loc = [
        part
        for index, part in enumerate(loc)
        if not (index and part in _UNION_TAGS.get(loc[index - 1], ()))
    ]
    message = str(error.get("msg", "invalid"))
    named = _NAMED.match(message) if error.get("type") == "value_error" else None
    if named is not None:
        loc += named.group(1).split(".")
        message = named.group(2)
    return {"field": _field(loc), "message": message}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return problem(exc.status, exc.title, exc.detail, request.url.path, **exc.extra)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [located(e) for e in exc.errors()]
    fields = ", ".join(e["field"] for e in errors[:5])
    return problem(
        422, "Unprocessable Content", f"invalid: {fields}", request.url.path, errors=errors
    )


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}.get(
        exc.status_code, "Error"
    )
    return problem(exc.status_code, title, str(exc.detail), request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("event=unhandled path=%s error=%s", request.url.path, type(exc).__name__)
    return problem(500, "Internal Server Error", "unexpected error", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
