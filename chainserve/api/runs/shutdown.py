"""Graceful shutdown: on SIGTERM, open streams get a grace period, then a retryable last event.

uvicorn stops accepting connections when SIGTERM arrives and waits for open responses; after
its `timeout_graceful_shutdown` it cancels them, which cuts a stream off mid-sentence with no
end event. Here a `Drain` starts with the signal; streams keep going for `grace` seconds, then
each one still open sends an `error` event (`shutting_down`, retryable) and an SSE `retry:`
hint, and ends cleanly, before uvicorn's own timeout (set longer by the CLI) would cut it.
"""

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

logger = logging.getLogger("chainserve")

RETRY_AFTER_MS = 1000
"""The `retry:` hint: how soon a client should reconnect (to another instance, or this one
once it is back)."""


class Drain:
    def __init__(self, grace_seconds: float) -> None:
        self.grace_seconds = grace_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = False
        self.expired = False
        self._callbacks: set[Callable[[], object]] = set()

    def attach(self) -> None:
        """Called in the app's lifespan: from here on, SIGTERM starts the drain first."""
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only (an embedded or test server)
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.begin()
            if callable(previous):
                previous(signum, frame)  # uvicorn's own handler: stop accepting, then wait

        signal.signal(signal.SIGTERM, on_sigterm)

    def begin(self) -> None:
        """Start the grace period; safe from a signal handler or another thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.started or self._loop is None:
            return
        self.started = True
        logger.info("shutting down: open streams have %gs to finish", self.grace_seconds)
        self._loop.call_later(self.grace_seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        for callback in list(self._callbacks):
            callback()

    def when_expired(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` when the grace period ends (at once if it has); returns the undo.

        A set of callbacks rather than a waiting task per stream: an open stream costs one
        set entry here, not another task."""
        if self.expired:
            callback()
            return lambda: None
        self._callbacks.add(callback)
        return lambda: self._callbacks.discard(callback)


def shutting_down_error(run_id: str) -> dict[str, Any]:
    return {
        "code": "shutting_down",
        "message": "The server is restarting and ended this stream; send the request again.",
        "retryable": True,
        "run_id": run_id,
    }
