"""A stream whose client stopped reading is ended, not held open forever.

A client that neither reads nor closes (a frozen tab, a stuck proxy) fills the socket buffers;
then every write waits for room that never comes, pinning the stream, its run and its slot.
`SendWatch` gives each write `seconds` to finish. It costs one timer per stream, re-armed
lazily, and two assignments per write: a timeout around every write would cost a timer each.
"""

import asyncio
import logging
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("chainserve.stream")


class SendWatch:
    def __init__(self, send: Send, seconds: float, on_stuck: Callable[[], object]) -> None:
        self._send = send
        self.seconds = seconds
        self._on_stuck = on_stuck
        self._since: float | None = None
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(seconds, self._check)
        self.stuck = False

    async def send(self, message: Message) -> None:
        self._since = self._loop.time()
        try:
            await self._send(message)
        finally:
            self._since = None

    def _check(self) -> None:
        since = self._since
        if since is not None and self._loop.time() - since >= self.seconds:
            self.stuck = True
            self._on_stuck()
            return
        left = self.seconds if since is None else self.seconds - (self._loop.time() - since)
        self._timer = self._loop.call_later(left, self._check)

    def close(self) -> None:
        self._timer.cancel()


class CutOffStuckClients:
    """The same guarantee for routes whose streams are not ours (LangServe's): the whole
    request is cancelled, and with it the chain and its upstream call, when a write is stuck.

    Native and OpenAI-compatible streams watch their own writes (`api/runs/event_stream.py`), so
    that a stuck client follows the request's `on_disconnect` policy like any hang-up."""

    def __init__(self, app: ASGIApp, seconds: float, prefix: str) -> None:
        self.app = app
        self.seconds = seconds
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        with anyio.CancelScope() as cancel:
            watch = SendWatch(send, self.seconds, cancel.cancel)
            try:
                await self.app(scope, receive, watch.send)
            finally:
                watch.close()
        if watch.stuck:
            logger.warning(
                "%s: the client read nothing for %gs; request cancelled",
                scope["path"],
                self.seconds,
            )
