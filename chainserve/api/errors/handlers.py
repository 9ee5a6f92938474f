"""One error body shape for every route: `{"error": {"code", "message", "retryable", ...}}`."""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chainserve.api.access.input_limit import InputTooLargeError, input_too_large_response
from chainserve.api.errors.openai_shape import OpenAIRequestError, is_openai_path, openai_response
from chainserve.api.errors.typed import (
    STORE_ERRORS,
    UPSTREAM_ERRORS,
    ErrorCode,
    RequestError,
    classify,
)
from chainserve.api.protocols.openai_chat import openai_error
from chainserve.api.request_state import note_error

logger = logging.getLogger("chainserve.errors")

_CODES: dict[int, ErrorCode] = {
    400: "invalid_config",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    422: "invalid_request",
}


def _body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "retryable": False, **extra}}


def _loc(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    if is_openai_path(request.url.path):
        return openai_response(request, exc)
    details = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    message = f"{_loc(first['loc'])}: {first['msg']}" if first["loc"] else str(first["msg"])
    # `detail` keeps FastAPI's usual field so existing clients still find the list.
    body = _body("invalid_request", message, details=details)
    return JSONResponse({**body, "detail": details}, 422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if is_openai_path(request.url.path):
        return openai_response(request, exc)
    code = _CODES.get(exc.status_code, "invalid_request")
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return JSONResponse(_body(code, message), exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    if is_openai_path(request.url.path):
        return openai_response(request, exc)
    return JSONResponse(_body("internal_error", "internal server error"), 500)


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return JSONResponse(_body(exc.code, exc.message), exc.status)


async def _upstream_failure(request: Request, exc: Exception) -> JSONResponse:
    """A provider failure that escaped a chain run by LangServe: the typed error our own
    routes would send (a 502 `upstream_error`, not a 500). Not counted here: the run's own
    book-keeping (api/runs/callback_runs.py) counts it."""
    error = classify(exc)
    logger.warning("%s %s failed: %s", request.method, request.url.path, error.code)
    if is_openai_path(request.url.path):
        return JSONResponse(openai_error(error.status, error.code, error.message), error.status)
    return JSONResponse({"error": error.payload()}, error.status, headers=error.headers())


async def _store_failure(request: Request, exc: Exception) -> JSONResponse:
    """Redis down or silent: a retryable 503 and one warning line, not a 500 and a traceback."""
    error = classify(exc)
    logger.warning("%s %s failed: %s (%s)", request.method, request.url.path, error.code, exc)
    if is_openai_path(request.url.path):
        body = openai_error(error.status, error.code, error.message)
        return JSONResponse(body, error.status, headers=error.headers())
    return JSONResponse({"error": error.payload()}, error.status, headers=error.headers())


async def _openai_error(request: Request, exc: Exception) -> JSONResponse:
    return openai_response(request, exc)


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _counted(handler: Handler) -> Handler:
    """Leave the error's code where the request metrics count it."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        error = json.loads(bytes(response.body)).get("error") or {}
        # OpenAI's shape may carry no code (a 405, say): name it as the other routes do.
        code = error.get("code") or _CODES.get(response.status_code) or "http_error"
        note_error(request.scope, code)
        return response

    return handle


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpenAIRequestError, _counted(_openai_error))
    app.add_exception_handler(RequestError, _counted(_request_error))
    app.add_exception_handler(InputTooLargeError, _counted(input_too_large_response))
    app.add_exception_handler(RequestValidationError, _counted(_validation_error))
    app.add_exception_handler(HTTPException, _counted(_http_error))
    for upstream_error in UPSTREAM_ERRORS:
        app.add_exception_handler(upstream_error, _upstream_failure)
    for store_error in STORE_ERRORS:
        app.add_exception_handler(store_error, _counted(_store_failure))
    app.add_exception_handler(Exception, _counted(_unexpected))
