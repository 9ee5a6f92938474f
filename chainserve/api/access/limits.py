"""Per-caller limits: requests per minute and concurrent streams, answered with 429 + Retry-After.

Pure ASGI middleware inside the auth and body guards, so the caller is known (by key id, or by
client address when no keys are configured) and an OpenAI request's `stream` flag can be read
from the already-checked body. A stream's slot is held while the app serves it, so it is
released the moment the stream ends, fails, or the client hangs up.

The counts live in this process (`api/access/limit_counts.py`), or in Redis when it is configured
(`api/access/limit_counts_redis.py`), where every worker and replica shares them. A stream's slot is
also held by the run it started until that run ends, so a run left going after its client hung
up (`on_disconnect: "continue"`) still counts against the caller's streams.
"""

import asyncio
import json
import math
import re
from collections.abc import Callable
from functools import partial

from starlette.types import ASGIApp, Receive, Scope, Send

from chainserve.api.access.batch_limits import BATCH_PATH, BATCH_SLOTS, batch_inputs
from chainserve.api.access.body_guard import BODY
from chainserve.api.access.limit_counts import RequestRate, StreamSlots
from chainserve.api.errors.asgi import send_error
from chainserve.api.request_state import HOLD_STREAM_SLOT, KEY_ID
from chainserve.api.routes.page_paths import is_page_file

# `\n?\Z`, not `$`: an encoded newline at the end of a path still reaches the route (Starlette's
# patterns end in `$`, which matches before a final newline), so it must count here too.
_STREAM_PATHS = re.compile(
    r"^/(?:chains/[^/]+/(?:stream|ui)|runs/[^/]+/stream"
    r"|langserve/[^/]+(?:/c/[^/]+)?/(?:stream|stream_log|stream_events))\n?\Z"
)
_RUN_STREAM = re.compile(r"^/runs/([^/]+)/stream\n?\Z")
_OPENAI_CHAT = re.compile(r"^/v1/chat/completions\n?\Z")
_UNLIMITED = ("/health", "/metrics")
"""Probes and scrapes: cheap, and they must not eat a key's budget or be refused by it."""
_FALSE = (None, False, 0, "", "false", "0", "no", "off", "f", "n")
"""What pydantic's lax `bool` reads as false; anything else it turns into a stream."""


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


_RELEASING: set[asyncio.Task[None]] = set()


class _SlotHold:
    """A stream slot held by the response and by the run it starts; freed when all are done."""

    def __init__(self, slots: StreamSlots, caller: str, slot: str) -> None:
        self._slots, self.caller, self._slot = slots, caller, slot
        self._holders = 1

    def share(self) -> None:
        self._holders += 1

    def drop(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            # From a task's done-callback, where nothing can be awaited. The task is kept so
            # it isn't collected half-way.
            task = asyncio.get_running_loop().create_task(
                self._slots.release(self.caller, self._slot)
            )
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)

    async def adrop(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            await self._slots.release(self.caller, self._slot)


class LimitPerCaller:
    def __init__(
        self,
        app: ASGIApp,
        rate: RequestRate | None,
        slots: StreamSlots | None,
        max_batch_inputs: int = 100,
        max_batch_concurrency: int = 4,
    ) -> None:
        self.app = app
        self.rate = rate
        self.slots = slots
        self.max_batch_inputs = max_batch_inputs
        self.max_batch_concurrency = max_batch_concurrency
        self._runs: dict[str, _SlotHold] = {}
        """The slot each running run holds, so its caller can rejoin it without another."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNLIMITED or is_page_file(scope["path"]):
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        batch = self._batch_size(scope)
        if self.rate is not None:
            if batch > self.rate.per_minute:
                message = (
                    f"a batch of {batch} inputs counts as {batch} requests, more than this "
                    f"caller may make in a minute ({self.rate.per_minute}): split it"
                )
                await send_error(scope, send, 413, "batch_too_large", message)
                return
            wait = await self.rate.take(caller, batch or 1)
            if wait is not None:
                message = f"more than {self.rate.per_minute} requests a minute from this caller"
                await _too_many(scope, send, "rate_limited", message, wait)
                return
        if batch and self.slots is not None:
            await self._serve_batch(scope, receive, send, caller, batch)
            return
        if self.slots is None or not is_stream(scope):
            await self.app(scope, receive, send)
            return
        hold = self._rejoined(scope, caller)
        if hold is None:
            slot = await self.slots.acquire(caller)
            if slot is None:
                message = f"this caller already has {self.slots.per_caller} open streams"
                await _too_many(scope, send, "too_many_streams", message, 1.0)
                return
            hold = _SlotHold(self.slots, caller, slot)
        token = HOLD_STREAM_SLOT.set(partial(self._hold_for_run, hold))
        try:
            await self.app(scope, receive, send)
        finally:
            HOLD_STREAM_SLOT.reset(token)
            await hold.adrop()

    def _batch_size(self, scope: Scope) -> int:
        """A LangServe batch's input count (0: not a batch, or one its route refuses anyway)."""
        if scope.get("method") != "POST" or not BATCH_PATH.match(scope["path"]):
            return 0
        size = batch_inputs(scope.get(BODY))
        return size if size <= self.max_batch_inputs else 0

    async def _serve_batch(
        self, scope: Scope, receive: Receive, send: Send, caller: str, size: int
    ) -> None:
        """A batch runs its inputs as that many streams would: it holds a stream slot for each
        input it runs at once (as many as are free, up to its concurrency); with none free it
        is refused as a stream would be."""
        assert self.slots is not None
        held: list[str] = []
        try:
            while len(held) < min(size, self.max_batch_concurrency):
                slot = await self.slots.acquire(caller)
                if slot is None:
                    break
                held.append(slot)
            if not held:
                message = f"this caller already has {self.slots.per_caller} open streams"
                await _too_many(scope, send, "too_many_streams", message, 1.0)
                return
            scope.setdefault("state", {})[BATCH_SLOTS] = len(held)
            await self.app(scope, receive, send)
        finally:
            for slot in held:
                await self.slots.release(caller, slot)

    def _rejoined(self, scope: Scope, caller: str) -> _SlotHold | None:
        """The slot of the run this request joins, if its own caller started it and it runs:
        a client reconnecting to its run (after a dropped connection, or on purpose with
        `on_disconnect: "continue"`) needs no second slot. Runs on other workers aren't known
        here; joining those takes a slot."""
        match = _RUN_STREAM.match(scope["path"])
        hold = self._runs.get(match.group(1)) if match else None
        if hold is None or hold.caller != caller:
            return None
        hold.share()
        return hold

    def _hold_for_run(self, hold: _SlotHold, run_id: str) -> Callable[[], None]:
        hold.share()
        self._runs[run_id] = hold

        def release() -> None:
            self._runs.pop(run_id, None)
            hold.drop()

        return release


async def _too_many(scope: Scope, send: Send, code: str, message: str, wait: float) -> None:
    retry_after = str(max(1, math.ceil(wait))).encode()
    await send_error(
        scope, send, 429, code, message, retryable=True, headers=[(b"retry-after", retry_after)]
    )
