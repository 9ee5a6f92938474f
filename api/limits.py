"""Per-caller limits: requests per minute and concurrent streams, answered with 429 + Retry-After.

Pure ASGI middleware inside the auth and body guards, so the caller is known (by key id, or by
client address when no keys are configured) and an OpenAI request's `stream` flag can be read
from the already-checked body. A stream's slot is held exactly as long as the app is serving
it, so it is released the moment the stream ends, fails, or the client hangs up.

The counts live in this process: with several workers each enforces the limits on its own.
"""

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from api.asgi_errors import send_error
from api.auth import KEY_ID
from api.body_guard import BODY

# `\n?\Z`, not `$`: an encoded newline at the end of a path still reaches the route (Starlette's
# patterns end in `$`, which matches before a final newline), so it must count here too.
_STREAM_PATHS = re.compile(
    r"^/(?:chains/[^/]+/(?:stream|ui)|runs/[^/]+/stream"
    r"|langserve/[^/]+(?:/c/[^/]+)?/(?:stream|stream_log|stream_events))\n?\Z"
)
_OPENAI_CHAT = re.compile(r"^/v1/chat/completions\n?\Z")
_FALSE = (None, False, 0, "", "false", "0", "no", "off", "f", "n")
"""What pydantic's lax `bool` reads as false; anything else it turns into a stream."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RequestRate:
    """A token bucket per caller: `per_minute` requests a minute, bursts up to as many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str) -> float | None:
        """None if `caller` may go ahead (and it is counted), else seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those.
        for caller, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self._rate >= self.per_minute:
                del self._buckets[caller]


class StreamSlots:
    """At most `per_caller` open streams per caller."""

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._open: dict[str, int] = {}

    def acquire(self, caller: str) -> bool:
        count = self._open.get(caller, 0)
        if count >= self.per_caller:
            return False
        self._open[caller] = count + 1
        return True

    def release(self, caller: str) -> None:
        count = self._open.get(caller, 0) - 1
        if count > 0:
            self._open[caller] = count
        else:
            self._open.pop(caller, None)

    def open(self, caller: str) -> int:
        return self._open.get(caller, 0)


def caller_of(scope: Scope) -> str:
    """The key id when keys are on, else the client address (all callers behind one proxy
    share it: set keys for per-client limits there)."""
    kid = scope.get("state", {}).get(KEY_ID)
    if kid:
        return str(kid)
    client = scope.get("client")
    return f"addr-{client[0]}" if client else "addr-unknown"


def is_stream(scope: Scope) -> bool:
    path = scope["path"]
    if _STREAM_PATHS.match(path):
        return True
    if _OPENAI_CHAT.match(path) and scope.get("method") == "POST":
        try:
            body = json.loads(scope.get(BODY) or b"{}")
        except (ValueError, RecursionError):
            return False
        if not isinstance(body, dict):
            return False
        stream = body.get("stream")
        flag = stream.strip().lower() if isinstance(stream, str) else stream
        return flag not in _FALSE
    return False


class LimitPerCaller:
    def __init__(self, app: ASGIApp, rate: RequestRate | None, slots: StreamSlots | None) -> None:
        self.app = app
        self.rate = rate
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        if self.rate is not None:
            wait = self.rate.take(caller)
            if wait is not None:
                message = f"more than {self.rate.per_minute} requests a minute from this caller"
                await _too_many(scope, send, "rate_limited", message, wait)
                return
        if self.slots is None or not is_stream(scope):
            await self.app(scope, receive, send)
            return
        if not self.slots.acquire(caller):
            message = f"this caller already has {self.slots.per_caller} open streams"
            await _too_many(scope, send, "too_many_streams", message, 1.0)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release(caller)


async def _too_many(scope: Scope, send: Send, code: str, message: str, wait: float) -> None:
    retry_after = str(max(1, math.ceil(wait))).encode()
    await send_error(
        scope, send, 429, code, message, retryable=True, headers=[(b"retry-after", retry_after)]
    )
