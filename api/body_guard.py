"""Pure ASGI middleware that refuses request bodies no JSON parser should be handed.

Bodies over `max_bytes` are refused with a 413 as soon as the count passes the limit: on the
declared `Content-Length` before a byte is read, and on the bytes actually received for chunked
bodies (or a `Content-Length` that lies), so nothing larger is ever buffered.

Python's `json` module raises `RecursionError` on deeply nested input (a 500 from every route,
LangServe's included) and FastAPI reports invalid UTF-8 inconsistently, so both are turned into
a clear 400 here, before any route parses the body. The body is then replayed to the app
unchanged; later `receive()` calls pass through, so disconnects still reach streaming responses.
"""

import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi_errors import send_error

BODY = "chainserve.body"
"""Where the checked body is left in the scope, for inner middleware to peek at."""

DRAIN_LIMIT = 8 * 1024 * 1024
"""Bytes of a refused body read and thrown away so the client gets to read the 413."""

# A string runs to its closing quote or, unterminated, to the end of the body (a lone final
# backslash included): every match succeeds where it starts, so the scan stays linear. Made
# to fail on an unterminated string, it restarted at every quote: a body of escaped quotes
# took quadratic time on the event loop (48 KB stalled every stream for seconds).
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.|\\\Z)*(?:"|\Z)|[\[\]{}]', re.DOTALL)


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays/objects, skipping string contents; linear, no recursion."""
    depth = deepest = 0
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _problem(body: bytes, max_depth: int) -> str | None:
    if body and json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        # json.loads would decode UTF-16/32 itself, past the checks below (RFC 8259: UTF-8).
        return "request JSON must be UTF-8"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte {exc.start})"
    if json_depth(body) > max_depth:
        return f"request JSON is nested deeper than {max_depth} levels"
    return None


class BodyGuard:
    def __init__(self, app: ASGIApp, max_depth: int, max_bytes: int) -> None:
        self.app = app
        self.max_depth = max_depth
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared > self.max_bytes:
            # Drain what is coming unless it is huge or the client waits for 100 Continue
            # (curl does for large bodies): then it never sends the body at all.
            expects = Headers(scope=scope).get("expect", "").strip().lower()
            drain = declared <= DRAIN_LIMIT and expects != "100-continue"
            await self._too_large(scope, receive, send, drain=drain)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                more = message.get("more_body", False)
                await self._too_large(scope, receive, send, drain=more)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _problem(body, self.max_depth)
        if problem:
            await send_error(scope, send, 400, "invalid_body", problem)
            return
        scope[BODY] = body
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *, drain: bool) -> None:
        # Closing a socket with unread bytes makes the kernel reset it, and the client may
        # see the reset instead of the 413: read the rest (discarded, bounded) first.
        drained = 0
        while drain and drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            drained += len(message.get("body", b""))
            drain = message.get("more_body", False)
        problem = f"request body is larger than the limit of {self.max_bytes} bytes"
        await send_error(
            scope, send, 413, "body_too_large", problem, headers=[(b"connection", b"close")]
        )


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
