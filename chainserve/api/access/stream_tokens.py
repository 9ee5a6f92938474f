"""Short-lived signed tokens that let a browser `EventSource` open one chain's or run's stream.

`EventSource` cannot send an `Authorization` header, so the page asks for a token with its key
(`POST /auth/stream-token`) and puts the token in the stream URL. A token names one chain (for
`GET /chains/{chain}/stream`) or one run (for `GET /runs/{run_id}/stream`, which a reconnecting
`EventSource` asks again with `Last-Event-ID`), the key it was issued to (by id) and an expiry,
signed with HMAC-SHA256: it cannot be forged or moved to another chain or run, it dies with its
key, and a leaked one (from a log or browser history) is only good for that one stream until it
expires a minute or so later.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["chain", "run"]
"""What a token opens: a chain's GET stream, or a run's stream (and its resumes)."""

# One signing domain per kind, so a token of one kind never verifies as the other however its
# payload reads. The chain domain is the one tokens had before run tokens existed: those still
# verify.
_DOMAINS: dict[TokenKind, bytes] = {
    "chain": b"chainserve-stream-token.v1.",
    "run": b"chainserve-run-stream-token.v1.",
}


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    def __init__(
        self, secret: bytes, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._secret = secret
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def _sign(self, kind: TokenKind, payload: str) -> str:
        message = _DOMAINS[kind] + payload.encode()
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def _seal(self, key_id: str) -> str:
        # The key id is a hash of the key: in a token, where anyone holding it can read it, it
        # would let a weak key be guessed offline. Sealed with the secret, it can't.
        return _b64(hmac.new(self._secret, key_id.encode(), hashlib.sha256).digest()[:12])

    def issue(
        self,
        name: str,
        key_id: str | None,
        kind: TokenKind = "chain",
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        """A token for the stream of the chain or run `name`, acting as `key_id`, good for
        `ttl_seconds` (by default the configured lifetime)."""
        expires_at = int(self._clock()) + (ttl_seconds or self.ttl_seconds)
        sealed = self._seal(key_id) if key_id is not None else None
        body = {kind: name, "kid": sealed, "exp": expires_at}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return IssuedToken(f"{payload}.{self._sign(kind, payload)}", expires_at)

    def verify(
        self, token: str, name: str, key_ids: Collection[str], kind: TokenKind = "chain"
    ) -> str | None:
        """The key id the token was issued to, if it is genuine, unexpired, of `kind` for
        `name`, and its key is still configured; else None."""
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(kind, payload).encode()):
            return None
        try:
            body = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get(kind) != name:
            return None
        expires_at, kid = body.get("exp"), body.get("kid")
        if not isinstance(expires_at, int) or expires_at < self._clock():
            return None
        if not isinstance(kid, str):
            return None
        return next((k for k in key_ids if hmac.compare_digest(self._seal(k), kid)), None)
