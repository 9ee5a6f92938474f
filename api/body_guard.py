"""Pure ASGI middleware that refuses request bodies no JSON parser should be handed.

Python's `json` module raises `RecursionError` on deeply nested input (a 500 from every
route, LangServe's included) and FastAPI reports invalid UTF-8 inconsistently, so both
are turned into a clear 400 here, before any route parses the body. The body is then
replayed to the app unchanged; later `receive()` calls pass through, so disconnects
still reach streaming responses.
"""

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.openai_errors import is_openai_path
from api.protocols.openai_chat import openai_error

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


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
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"request body is not valid UTF-8 (byte {exc.start})"
    if json_depth(body) > max_depth:
        return f"request JSON is nested deeper than {max_depth} levels"
    return None


class BodyGuard:
    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _problem(body, self.max_depth)
        if problem:
            await _reject(send, problem, openai=is_openai_path(scope["path"]))
            return
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reject(send: Send, message: str, *, openai: bool) -> None:
    error = (
        openai_error(400, "invalid_body", message)
        if openai
        else {"error": {"code": "invalid_body", "message": message, "retryable": False}}
    )
    payload = json.dumps(error).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
