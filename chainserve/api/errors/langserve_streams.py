"""LangServe's streams, failing as our own do: an HTTP error before the model's first output,
a typed `error` event after it, and a clean end either way.

LangServe 0.3.3 answers every stream failure with `{"status_code": 500, "message": "Internal
Server Error"}` and then re-raises, so the server cuts the connection mid-chunk: a client sees
a broken transfer, and `RemoteRunnable` an `HTTPStatusError` 500 for a provider's 429 or 400.
Here the headers are held (as `RunEventStream` holds ours) until the first `data` or `end`
event, the hold cap, or a failure; a failure held that long becomes the JSON error our routes
send with its status, a later one an error event with the real status and message (which
`RemoteRunnable` raises with), and the exception LangServe re-raises ends the body cleanly.
"""

import contextlib
import logging
from collections.abc import AsyncGenerator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainserve.api.errors.typed import ChainError, classify
from chainserve.api.request_state import note_error
from chainserve.api.runs.encoding import to_json

logger = logging.getLogger("chainserve.langserve")

LANGSERVE_ERROR = b'{"status_code": 500, "message": "Internal Server Error"}'
"""The data of every error event LangServe 0.3.3 sends."""
_OUTPUT = (b"event: data", b"event: end")


@dataclass
class StreamFailure:
    """Where the chain's failure is left for the response to describe, and the chain streams
    the request opened, to close when it ends."""

    error: ChainError | None = None
    open_streams: list[AsyncGenerator[Any]] = field(default_factory=list)

    async def close_streams(self) -> None:
        """Close what is still open. sse-starlette cancels a stream whose client left; when
        that lands in a write rather than in the chain, LangServe abandons its generator at a
        yield, and the chain (and its provider request) would run on until the garbage
        collector finds it. Closing it here hangs up on the provider as the request ends."""
        streams, self.open_streams = self.open_streams, []
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()


LANGSERVE_FAILURE: ContextVar[StreamFailure | None] = ContextVar("langserve_failure", default=None)


def opened(stream: AsyncGenerator[Any]) -> None:
    """Called where the served chain's stream starts, for `close_streams`."""
    failure = LANGSERVE_FAILURE.get()
    if failure is not None:
        failure.open_streams.append(stream)


def note_failure(exc: BaseException) -> None:
    """Called where the served chain fails, before LangServe turns it into its generic 500."""
    failure = LANGSERVE_FAILURE.get()
    if failure is not None and failure.error is None:
        failure.error = classify(exc)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@dataclass
class _HeldResponse:
    send: Send
    start: Message | None = None
    held: list[bytes] = field(default_factory=list)
    sent_start: bool = False
    failed: bool = False
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def flush(self) -> None:
        async with self.lock:
            await self._flush()

    async def _flush(self) -> None:
        if self.start is None or self.sent_start or self.failed:
            return
        self.sent_start = True
        await self.send(self.start)
        if self.held:
            body = b"".join(self.held)
            self.held = []
            await self.send({"type": "http.response.body", "body": body, "more_body": True})


class LangServeStreamErrors:
    """ASGI middleware for LangServe's stream endpoints under `prefix`."""

    def __init__(self, app: ASGIApp, *, hold_seconds: float, prefix: str = "/langserve/"):
        self.app = app
        self.hold_seconds = hold_seconds
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if not path.rsplit("/", 1)[-1].startswith("stream"):
            await self.app(scope, receive, send)
            return
        failure = StreamFailure()
        token = LANGSERVE_FAILURE.set(failure)
        response = _HeldResponse(send)
        unanswered: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                try:
                    await self.app(scope, receive, self._sender(response, failure, group))
                except Exception as exc:  # noqa: BLE001 - ended as an HTTP error or cleanly
                    if response.start is None:
                        unanswered = exc  # nothing streamed: the app's error handlers answer
                    else:
                        await self._failed(scope, response, failure, _leaf(exc))
                else:
                    await response.flush()
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await failure.close_streams()
            LANGSERVE_FAILURE.reset(token)
        if unanswered is not None:
            raise unanswered

    def _sender(
        self, response: _HeldResponse, failure: StreamFailure, group: anyio.abc.TaskGroup
    ) -> Send:
        async def hold_then_flush() -> None:
            await anyio.sleep(self.hold_seconds)
            await response.flush()

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    await response.send(message)
                    return
                response.start = message
                group.start_soon(hold_then_flush)
                return
            if message["type"] != "http.response.body" or response.start is None:
                await response.send(message)
                return
            body = message.get("body", b"")
            async with response.lock:
                if LANGSERVE_ERROR in body and failure.error is not None:
                    if not response.sent_start:
                        response.failed = True  # answered as an HTTP error once it raises
                        return
                    body = body.replace(LANGSERVE_ERROR, _error_data(failure.error))
                if not response.sent_start:
                    if response.failed:
                        return
                    response.held.append(body)
                    if any(marker in body for marker in _OUTPUT) or not message.get("more_body"):
                        await response._flush()
                    return
                await response.send({**message, "body": body})

        return send

    async def _failed(
        self, scope: Scope, response: _HeldResponse, failure: StreamFailure, exc: BaseException
    ) -> None:
        error = failure.error or classify(exc)
        logger.warning("%s failed: %s", scope.get("path"), error.code)
        note_error(scope, error.code)
        if response.failed and not response.sent_start:
            body = to_json({"error": error.payload()}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((b"retry-after", v.encode()) for v in error.headers().values()),
            ]
            await response.send(
                {"type": "http.response.start", "status": error.status, "headers": headers}
            )
            await response.send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await response.flush()
        await response.send({"type": "http.response.body", "body": b"", "more_body": False})


def _error_data(error: ChainError) -> bytes:
    """The error event's data as `RemoteRunnable` reads it (`status_code`, `message`), with
    our typed fields beside them."""
    return to_json({"status_code": error.status, **error.payload()}).encode()
