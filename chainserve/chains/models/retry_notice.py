"""Tell whoever runs a chain that its model request is waiting to be retried.

A server holds a stream's headers until the model's first output, so that a failure before it
is a real HTTP status (a 429 the SDKs back off on). A provider's `Retry-After` can outlast that
hold; knowing that a retry is pending (and until when) lets the server keep holding instead of
answering 200 and reporting the final 429 inside the stream.

A context variable, because the retry happens deep inside a chain (a model call in a
sequence, an agent's node) where no argument reaches, and each run is its own task.
"""

import time
from collections.abc import Callable
from contextvars import ContextVar

RetryListener = Callable[[float], None]
"""Called with the `time.monotonic()` at which the model request will be sent again."""

RETRY_LISTENER: ContextVar[RetryListener | None] = ContextVar("retry_listener", default=None)


def announce_retry(delay: float) -> None:
    """The model request will be retried after `delay` seconds."""
    listener = RETRY_LISTENER.get()
    if listener is not None:
        listener(time.monotonic() + delay)
