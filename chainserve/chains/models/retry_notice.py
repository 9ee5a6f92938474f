"""Tell whoever runs a chain that its model request is waiting to be retried.

A server holds a stream's headers until the model's first output, so that a failure before it
is a real HTTP status (a 429 the SDKs back off on). A provider's `Retry-After` can outlast that
hold; knowing that a retry is pending (and until when) lets the server keep holding instead of
answering 200 and reporting the final 429 inside the stream.

A context variable, because the retry happens deep inside a chain (a model call in a
sequence, an agent's node) where no argument reaches, and each run is its own task.
"""

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import anyio

logger = logging.getLogger("chainserve.upstream")

RetryListener = Callable[[float], None]
"""Called with the `time.monotonic()` at which the model request will be sent again."""

RETRY_LISTENER: ContextVar[RetryListener | None] = ContextVar("retry_listener", default=None)


def announce_retry(delay: float) -> None:
    """The model request will be retried after `delay` seconds."""
    listener = RETRY_LISTENER.get()
    if listener is not None:
        listener(time.monotonic() + delay)


def announce_sdk_retries(client: Any) -> None:
    """Make an `openai` client's own retries (the SDK's HTTP stack: proxies, structured output)
    announce their wait, as `upstream_openai.back_off` does for the lean client's. Patched on
    the instance, once; the wait is computed and slept exactly as the SDK does."""
    if getattr(client, "_chainserve_announces_retries", False):
        return

    async def sleep_for_retry(
        *, retries_taken: int, max_retries: int, options: Any, response: Any
    ) -> None:
        headers = response.headers if response is not None else None
        delay = client._calculate_retry_timeout(max_retries - retries_taken, options, headers)
        logger.info("retrying the model request in %.2fs (retry %d of %d)", delay,
                    retries_taken + 1, max_retries)  # fmt: skip
        announce_retry(delay)
        await anyio.sleep(delay)

    client._sleep_for_retry = sleep_for_retry
    client._chainserve_announces_retries = True
