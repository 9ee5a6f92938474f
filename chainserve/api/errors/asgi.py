"""JSON error responses sent from pure ASGI middleware, before any route runs.

The same bodies the routes send: `{"error": {code, message, retryable}}`, or OpenAI's shape on
the OpenAI-compatible routes so the official SDKs raise their usual exception types.
"""

import json
from collections.abc import Sequence

from starlette.types import Scope, Send

from chainserve.api.errors.openai_shape import is_openai_path
from chainserve.api.protocols.openai_chat import openai_error
from chainserve.api.request_state import note_error


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    retryable: bool = False,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    note_error(scope, code)
    if is_openai_path(scope.get("path", "")):
        error = openai_error(status, code, message)
    else:
        error = {"error": {"code": code, "message": message, "retryable": retryable}}
    payload = json.dumps(error).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
