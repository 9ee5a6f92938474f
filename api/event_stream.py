"""The SSE response for a chain run: held headers, ids, keepalives, and cancel on hang-up.

Deliberate divergences from FastAPI's generator-based SSE routes (`response_class=
EventSourceResponse` with `yield`), each because the chainserve contract needs it:
- Headers are held until the first chunk (up to a cap) so a run that fails before
  producing anything is a real HTTP error (429/502/503/504), not a 200 with an error event.
- The client's `http.disconnect` is watched from the start, including while headers are
  held and while the model is silent, so a hang-up cancels the upstream request at once
  instead of at the next write.
- The keepalive interval comes from Settings rather than a module constant.
Wire encoding is FastAPI's own `format_sse_event`.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.types import Receive, Scope, Send

from api.disconnect import wait_for_disconnect
from api.encoding import to_json
from api.errors import ChainError, classify, log_failure
from api.runs import Run

logger = logging.getLogger("chainserve.stream")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@dataclass(frozen=True)
class _Failed:
    exc: Exception


_DONE = object()
_IDLE = object()
"""Nothing arrived within the wait: time for a keepalive (a chain may yield `None` itself)."""


class ChainEventStream(EventSourceResponse):
    """Streams one run of a chain as `metadata`, `data`*, then `end` or `error` events."""

    def __init__(
        self,
        chunks: AsyncIterator[Any],
        run: Run,
        *,
        keepalive_seconds: float,
        hold_seconds: float,
    ) -> None:
        super().__init__(content=iter(()), headers={**SSE_HEADERS, "X-Run-Id": run.run_id})
        self._chunks = chunks
        self._run = run
        self._keepalive = keepalive_seconds
        self._hold = hold_seconds
        self._next_id = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(self._produce)
            group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
            await self._relay(send)
            group.cancel_scope.cancel()
        if self._run.status == "running":
            # Only a hang-up ends the group without a verdict: the run was cancelled.
            self._run.finish("cancelled")

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        await wait_for_disconnect(receive)
        scope.cancel()

    async def _produce(self) -> None:
        """Pull chunks from the chain into the queue; a hang-up cancels this mid-`await`."""
        try:
            async for chunk in self._chunks:
                await self._queue.put(chunk)
        except Exception as exc:  # noqa: BLE001 - every chain failure becomes a typed error
            await self._queue.put(_Failed(exc))
            return
        finally:
            # Close the chain's generators now, inside this task, not whenever GC gets to them.
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await self._queue.put(_DONE)

    async def _next(self, wait: float) -> Any:
        """The next item, or `_IDLE` on timeout; `Queue.get` never loses an item when cancelled."""
        with anyio.move_on_after(wait):
            return await self._queue.get()
        return _IDLE

    async def _relay(self, send: Send) -> None:
        first = await self._next(self._hold)
        if isinstance(first, _Failed):
            await self._send_error_response(send, first.exc)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await self._send_event(send, "metadata", to_json(self._run.metadata()))
        item = first
        while not await self._emit(send, item):
            item = await self._next(self._keepalive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _emit(self, send: Send, item: Any) -> bool:
        """Send what `item` calls for; True once the stream is complete."""
        if item is _IDLE:
            await send(
                {"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True}
            )
            return False
        if isinstance(item, _Failed):
            error = self._fail(item.exc)
            await self._send_event(send, "error", to_json(error.payload(self._run.run_id)))
            return True
        if item is _DONE:
            self._run.finish("done")
            await self._send_event(send, "end", to_json(self._run.summary()))
            return True
        if not (isinstance(item, str) and item == ""):  # the usage-only chunk says nothing
            self._run.mark_chunk()
            await self._send_event(send, "data", to_json(item))
        return False

    def _fail(self, exc: Exception) -> ChainError:
        error = classify(exc)
        log_failure(exc, error, self._run.run_id)
        self._run.finish("error")
        return error

    async def _send_event(self, send: Send, event: str, data: str) -> None:
        body = format_sse_event(data_str=data, event=event, id=str(self._next_id))
        self._next_id += 1
        await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _send_error_response(self, send: Send, exc: Exception) -> None:
        error = self._fail(exc)
        body = to_json({"error": error.payload(self._run.run_id)}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-run-id", self._run.run_id.encode()),
            *((k.lower().encode(), v.encode()) for k, v in error.headers().items()),
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
