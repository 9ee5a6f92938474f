"""Errors on the OpenAI-compatible routes, in OpenAI's shape and with OpenAI's status codes."""

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chainserve.api.protocols.openai_chat import openai_error

PREFIX = "/v1/"


class OpenAIRequestError(Exception):
    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def is_openai_path(path: str) -> bool:
    return path.startswith(PREFIX)


def _param(loc: Any) -> str | None:
    """`("body", "messages", 0, "role")` becomes `messages[0].role`, as OpenAI names params."""
    parts = [p for p in loc if p not in ("body", "query")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or None


def openai_response(request: Request, exc: Exception) -> JSONResponse:
    """The OpenAI-shaped answer to any error raised while serving a /v1 route."""
    if isinstance(exc, OpenAIRequestError):
        return JSONResponse(openai_error(exc.status, exc.code, exc.message, exc.param), exc.status)
    if isinstance(exc, RequestValidationError):
        first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
        if first.get("type") == "json_invalid":
            message = "We could not parse the JSON body of your request."
            return JSONResponse(openai_error(400, "invalid_json", message), 400)
        param = _param(first.get("loc", ()))
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        return JSONResponse(openai_error(400, "invalid_request", message, param), 400)
    if isinstance(exc, HTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        code = "not_found" if exc.status_code == 404 else None
        return JSONResponse(openai_error(exc.status_code, code, message), exc.status_code)
    return JSONResponse(openai_error(500, "internal_error", "internal server error"), 500)
