"""Pure ASGI middleware: every request but `/health` and the developer page's static files
needs an API key once keys are set (the page asks for a key and sends it on every call).

A key comes as `Authorization: Bearer <key>` or `X-API-Key: <key>`; a browser `EventSource`,
which cannot send headers, uses a stream token instead (`api/access/stream_tokens.py`),
accepted only on the chain or run stream it was issued for. The key id of the caller is left in
`scope["state"]` for limits and metrics. Keys are never echoed, logged or put in an error.
"""

import re
from typing import NamedTuple
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from chainserve.api.access.api_keys import ApiKeys
from chainserve.api.access.stream_tokens import StreamTokens, TokenKind
from chainserve.api.errors.asgi import send_error
from chainserve.api.request_state import IS_ADMIN, KEY_ID
from chainserve.api.routes.page_paths import is_page_file

PUBLIC_PATHS = frozenset({"/health"})
_TOKEN_STREAMS: tuple[tuple[TokenKind, re.Pattern[str]], ...] = (
    ("chain", re.compile(r"^/chains/([^/]+)/stream$")),
    ("run", re.compile(r"^/runs/([^/]+)/stream$")),
)
_CHALLENGE = b'Bearer realm="chainserve"'


def _presented_key(scope: Scope) -> str | None:
    headers = Headers(scope=scope)
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


class _Refusal(NamedTuple):
    code: str
    message: str


_NO_KEY = _Refusal(
    "missing_api_key",
    "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
)
_BAD_KEY = _Refusal("invalid_api_key", "the API key is not valid")
_BAD_TOKEN = _Refusal(
    "invalid_stream_token",
    "the stream token is not valid for this stream, or has expired; "
    "get a new one from POST /auth/stream-token",
)


def _query_token(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("token")
    return values[-1] if values else None


class RequireApiKey:
    def __init__(self, app: ASGIApp, keys: ApiKeys, tokens: StreamTokens) -> None:
        self.app = app
        self.keys = keys
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys.enabled:
            await self.app(scope, receive, send)
            return
        if scope["path"] in PUBLIC_PATHS or is_page_file(scope["path"]):
            await self.app(scope, receive, send)
            return
        caller = self._identify(scope)
        if isinstance(caller, _Refusal):
            await self._refuse(scope, send, caller)
            return
        state = scope.setdefault("state", {})
        state[KEY_ID] = caller
        state[IS_ADMIN] = caller in self.keys.admin_ids
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope) -> str | _Refusal:
        presented = _presented_key(scope)
        if presented is not None:
            return self.keys.identify(presented) or _BAD_KEY
        token = _query_token(scope) if scope.get("method") == "GET" else None
        if token is None:
            return _NO_KEY
        for kind, route in _TOKEN_STREAMS:
            match = route.match(scope["path"])
            if match:
                verified = self.tokens.verify(token, match.group(1), self.keys.ids, kind)
                return verified or _BAD_TOKEN
        return _NO_KEY

    async def _refuse(self, scope: Scope, send: Send, refusal: _Refusal) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        challenge = _CHALLENGE if refusal is _NO_KEY else _CHALLENGE + b', error="invalid_token"'
        await send_error(
            scope,
            send,
            401,
            refusal.code,
            refusal.message,
            headers=[(b"www-authenticate", challenge)],
        )
