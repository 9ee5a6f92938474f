"""The SSE response that follows a run's events: held headers, ids, keepalives, hang-ups.

Deliberate divergences from FastAPI's generator-based SSE routes (`response_class=
EventSourceResponse` with `yield`), each because the chainserve contract needs it:
- It reads a run log rather than iterating the chain, so the run can outlive the
  connection (`on_disconnect: continue`) and another connection can join it.
- Headers are held until the model's first output (up to a cap, extended while the model
  request waits to be retried) so a run that fails before producing anything is a real HTTP
  error (429/502/503/504), not a 200 with an error event.
- The client's `http.disconnect` is watched from the start, including while headers are
  held and while the model is silent, so a hang-up cancels the run at once instead of at
  the next write.
- The keepalive interval comes from Settings rather than a module constant.
Framing is pluggable (`api/protocols/`): chainserve's own events, OpenAI chunks, or the
AI SDK's UI message stream, all from the same run.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable

import anyio
from fastapi.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send

from chainserve.api.errors.typed import STORE_ERRORS, classify
from chainserve.api.protocols import NativeProtocol, WireProtocol
from chainserve.api.protocols.base import KEEPALIVE
from chainserve.api.runs.disconnect import wait_for_disconnect
from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.log import TERMINAL_EVENTS, RunEvent, RunGone, RunLog
from chainserve.api.runs.send_watch import SendWatch
from chainserve.api.runs.shutdown import RETRY_AFTER_MS, Drain, shutting_down_error

logger = logging.getLogger("chainserve.stream")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

OnHangUp = Callable[[], Awaitable[object]]

OUTPUT_EVENTS = frozenset(
    {"data", "object", "tool_call_delta", "tool_call", "reasoning", "tool_result", "end", "error"}
)
"""What ends the header hold: the model's output, or the run's end. `metadata`, an agent's
`step` and a chain's own events (`rag`'s `sources`) come before the model is called, and a
failure of that call must still be an HTTP error."""
PRODUCED_EVENTS = OUTPUT_EVENTS - {"end", "error"}


def with_retry_hint(frame: bytes, milliseconds: int) -> bytes:
    """`frame` with an SSE `retry:` field inside its last event (before the blank line)."""
    retry = f"retry: {milliseconds}\n".encode()
    return frame[:-1] + retry + b"\n" if frame.endswith(b"\n\n") else frame + retry + b"\n"


class RunEventStream(EventSourceResponse):
    """Streams a run's events after `after` until its `end` or `error` event."""

    def __init__(
        self,
        log: RunLog,
        run_id: str,
        *,
        after: int = -1,
        keepalive_seconds: float,
        hold_seconds: float = 0.0,
        on_hang_up: OnHangUp | None = None,
        protocol: WireProtocol | None = None,
        send_timeout: float | None = None,
        drain: Drain | None = None,
        retrying_until: Callable[[], float] | None = None,
    ) -> None:
        self._protocol = protocol or NativeProtocol()
        headers = {**SSE_HEADERS, **self._protocol.headers, "X-Run-Id": run_id}
        super().__init__(content=iter(()), headers=headers)
        self._log = log
        self._run_id = run_id
        self._after = after
        self._keepalive = keepalive_seconds
        self._hold = hold_seconds
        self._on_hang_up = on_hang_up
        self._send_timeout = send_timeout
        self._drain = drain
        self._retrying_until = retrying_until
        """When the run's model request will next be tried (`time.monotonic()`), 0 if none."""
        self._started = False
        self._last = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch_sends: SendWatch | None = None
        relay = anyio.CancelScope()
        drained = False
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                await wait_for_disconnect(receive)
                await self._hung_up()
                group.cancel_scope.cancel()

            def drain_now() -> None:
                nonlocal drained
                drained = True
                relay.cancel()

            group.start_soon(watch)
            undo_drain = self._drain.when_expired(drain_now) if self._drain else None
            if self._send_timeout is not None:
                watch_sends = SendWatch(send, self._send_timeout, group.cancel_scope.cancel)
                send = watch_sends.send
            try:
                with relay:
                    try:
                        await self._relay(send)
                    except STORE_ERRORS as exc:
                        await self._store_lost(send, exc)
                if drained:
                    await self._last_words(send)
            finally:
                if undo_drain is not None:
                    undo_drain()
                if watch_sends is not None:
                    watch_sends.close()
            group.cancel_scope.cancel()
        if watch_sends is not None and watch_sends.stuck:
            # A client that stopped reading is treated as one that hung up.
            logger.warning(
                "run %s: the client read nothing for %gs; stream closed",
                self._run_id,
                self._send_timeout,
            )
            await self._hung_up()

    async def _last_words(self, send: Send) -> None:
        """The server is shutting down: end with a retryable error, never a cut connection."""
        error = shutting_down_error(self._run_id)
        if not self._started:
            body = to_json(self._protocol.error_body(503, error)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, RETRY_AFTER_MS // 1000)).encode()),
                (b"x-run-id", self._run_id.encode()),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        # The id of the last event delivered, not the next one's: a client that resumes with it
        # (as the retry hint invites) gets the run's next real event, none skipped.
        frame = self._protocol.frame(RunEvent(self._last, "error", to_json(error)))
        frame = with_retry_hint(frame, RETRY_AFTER_MS)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _store_lost(self, send: Send, exc: Exception) -> None:
        """Redis failed under this stream: a retryable 503 or `error` event, never a cut."""
        error = classify(exc)
        logger.warning("run %s: stream ended: %s (%s)", self._run_id, error.code, exc)
        payload = error.payload(self._run_id)
        if not self._started:
            body = to_json(self._protocol.error_body(error.status, payload)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", (error.retry_after or "1").encode()),
                (b"x-run-id", self._run_id.encode()),
            ]
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        frame = self._protocol.frame(RunEvent(self._last, "error", to_json(payload)))
        await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _hung_up(self) -> None:
        if self._on_hang_up is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self._on_hang_up()
                except STORE_ERRORS as exc:  # the run's own task still notices the hang-up
                    logger.warning("run %s: hang-up not recorded: %s", self._run_id, exc)

    async def _held(self) -> list[RunEvent]:
        """Events up to the model's first output, or whatever came within the hold cap. A
        retry the model request waits for (a 429's `Retry-After`) extends the hold, so its
        final failure is still the HTTP status the SDKs back off on."""
        deadline = time.monotonic() + self._hold
        events = await self._log.read(self._run_id, self._after, 0)
        while not any(e.event in OUTPUT_EVENTS for e in events):
            if self._retrying_until is not None:
                deadline = max(deadline, self._retrying_until() + self._hold)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            after = events[-1].seq if events else self._after
            events += await self._log.read(self._run_id, after, left)
        return events

    async def _relay(self, send: Send) -> None:
        try:
            events = await self._held()
        except RunGone:
            events = [self._lagged(self._after)]
        if await self._failed_early(events, send):
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        self._started = True
        last = self._after
        while True:
            # Everything that arrived since the last wake-up goes out in one write: under load
            # that is several events per syscall; when idle it is still one event per write.
            batch = [self._frame(event) for event in events]
            finished = bool(events) and events[-1].event in TERMINAL_EVENTS
            if batch:
                last = events[-1].seq
                await send(
                    {"type": "http.response.body", "body": b"".join(batch), "more_body": True}
                )
                self._last = last  # only once sent: the shutdown event's id says what arrived
            if finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            try:
                events = await self._log.read(self._run_id, last, self._keepalive)
            except RunGone:
                events = [self._lagged(last)]
                continue
            except KeyError:
                # Expired or trimmed under us: end the stream; a reconnect gets 404/410.
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if not events:
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                # Looking the run up notices a run whose worker died (the Redis log then
                # records it as failed), so this stream ends instead of waiting out the TTL.
                await self._log.get(self._run_id)

    def _frame(self, event: RunEvent) -> bytes:
        """An event in the protocol's framing; an error that says when to retry also sets
        the SSE reconnection time, which `EventSource` clients honour by themselves."""
        frame = self._protocol.frame(event)
        if event.event == "error" and '"retry_after"' in event.data:
            seconds = json.loads(event.data).get("retry_after")
            if isinstance(seconds, int) and frame:
                frame = with_retry_hint(frame, seconds * 1000)
        return frame

    def _lagged(self, last: int) -> RunEvent:
        """This reader fell out of the run log's window: say so instead of skipping events."""
        error = {
            "code": "lagged",
            "message": "This stream fell behind the kept window of events; "
            f"GET /runs/{self._run_id} "
            "has the whole output.",
            "retryable": False,
            "run_id": self._run_id,
        }
        return RunEvent(last + 1, "error", to_json(error))

    async def _failed_early(self, events: list[RunEvent], send: Send) -> bool:
        """A run that failed before any output is answered with its HTTP error, not a 200."""
        if self._hold <= 0:
            return False  # a join replays what happened, failures included
        if not any(e.event == "error" for e in events) or any(
            e.event in PRODUCED_EVENTS for e in events
        ):
            return False
        record = await self._log.get(self._run_id)
        if record is None or record.http_status is None or record.error is None:
            return False
        body = to_json(self._protocol.error_body(record.http_status, record.error)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-run-id", self._run_id.encode()),
        ]
        if record.retry_after:
            headers.append((b"retry-after", record.retry_after.encode()))
        await send(
            {"type": "http.response.start", "status": record.http_status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return True
