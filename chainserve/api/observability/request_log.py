"""A request id on every request and log line, and one log line per request.

The id comes from the caller's `X-Request-Id` when it is a sane token (so a proxy's or client's
id carries through), else a fresh one; it is echoed in the response and put in a context
variable, so every log line written while serving the request, the run's included (its task
copies the context), names it.
"""

import contextvars
import logging
import re
import time
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainserve.api.observability.log_redaction import redact
from chainserve.api.request_state import KEY_ID

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "chainserve_request_id", default=None
)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
logger = logging.getLogger("chainserve.requests")


def _incoming_id(scope: Scope) -> str | None:
    text = Headers(scope=scope).get("x-request-id", "").strip()
    return text if _SANE_ID.match(text) else None


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.monotonic()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope["path"]
            if scope.get("query_string"):
                path += "?" + redact(scope["query_string"].decode("latin-1"))
            logger.info(
                "%s %s %s",
                scope["method"],
                path,
                status or "-",
                extra={
                    "http_method": scope["method"],
                    "path": path,
                    "status": status or None,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "key_id": scope.get("state", {}).get(KEY_ID),
                    "client": (scope.get("client") or ("", 0))[0] or None,
                },
            )
            REQUEST_ID.reset(token)


class WithRequestId(logging.Filter):
    """Puts the current request's id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True
