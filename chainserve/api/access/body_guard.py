"""Pure ASGI middleware that refuses request bodies no JSON parser should be handed.

Bodies over `max_bytes` are refused with a 413 as soon as the count passes the limit: on the
declared `Content-Length` before a byte is read, and on the bytes actually received for chunked
bodies (or a `Content-Length` that lies), so nothing larger is ever buffered.

Python's `json` module raises `RecursionError` on deeply nested input and `ValueError` on an
integer longer than `sys.get_int_max_str_digits()` (a 500 from LangServe's routes either way),
FastAPI reports invalid UTF-8 inconsistently, and a lone UTF-16 surrogate escape (`"\\ud800"`)
parses into a string no response can encode (a 500, or a stream cut off mid-way). All of these
are turned into a clear 400 here, before any route parses the body. The body is then replayed
to the app unchanged; later `receive()` calls pass through, so disconnects still reach
streaming responses.
"""

import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainserve.api.access.json_scan import json_problem
from chainserve.api.errors.asgi import send_error

BODY = "chainserve.body"
"""Where the checked body is left in the scope, for inner middleware to peek at."""

_UPLOAD_PATH = re.compile(r"^/collections/[^/]+/documents\n?\Z")
DRAIN_LIMIT = 8 * 1024 * 1024
"""Bytes of a refused body read and thrown away so the client gets to read the 413."""


class BodyGuard:
    def __init__(
        self, app: ASGIApp, max_depth: int, max_bytes: int, max_upload_bytes: int | None = None
    ) -> None:
        self.app = app
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        upload = _is_upload(scope)
        limit = self.max_upload_bytes if upload else self.max_bytes
        declared = _declared_length(scope)
        if declared > limit:
            # Drain what is coming unless it is huge or the client waits for 100 Continue
            # (curl does for large bodies): then it never sends the body at all.
            expects = Headers(scope=scope).get("expect", "").strip().lower()
            drain = declared <= DRAIN_LIMIT and expects != "100-continue"
            await self._too_large(scope, receive, send, limit, drain=drain)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                more = message.get("more_body", False)
                await self._too_large(scope, receive, send, limit, drain=more)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # A file upload is parsed by the route (multipart), not as JSON.
        problem = None if upload and _is_form(scope) else json_problem(body, self.max_depth)
        if problem:
            await send_error(scope, send, 400, "invalid_body", problem)
            return
        scope[BODY] = body
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, limit: int, *, drain: bool
    ) -> None:
        # Closing a socket with unread bytes makes the kernel reset it, and the client may
        # see the reset instead of the 413: read the rest (discarded, bounded) first.
        drained = 0
        while drain and drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            drain = message.get("more_body", False)
        problem = f"request body is larger than the limit of {limit} bytes"
        await send_error(
            scope, send, 413, "body_too_large", problem, headers=[(b"connection", b"close")]
        )


def _is_upload(scope: Scope) -> bool:
    """Document ingestion: files (a PDF, a manual) are allowed to be bigger than requests."""
    return scope["method"] == "POST" and bool(_UPLOAD_PATH.match(scope["path"]))


def _is_form(scope: Scope) -> bool:
    content_type = Headers(scope=scope).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


def _has_body(scope: Scope) -> bool:
    """Any method may carry a body (LangServe reads one on a GET route): check them all."""
    if scope["method"] in ("POST", "PUT", "PATCH"):
        return True
    return _declared_length(scope) > 0 or "transfer-encoding" in Headers(scope=scope)


def _declared_length(scope: Scope) -> int:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0  # malformed: the server's parser refuses those before we see them


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
