"""Send a Chat Completions request through `UpstreamClient` with the `openai` SDK's semantics.

What the SDK gives a request, and where it comes from here:
- headers (auth, `User-Agent`, `X-Stainless-*`, the model's `default_headers`, the retry count):
  the SDK's own `_build_headers`, called per attempt;
- retries (408, 409, 429, 5xx and connection failures, `x-should-retry`, `Retry-After`,
  exponential backoff with jitter): the SDK's own `_should_retry` and
  `_calculate_retry_timeout`, bounded by the client's `max_retries`;
- errors: status errors built by the SDK's `_make_status_error_from_response` (so a 429 is an
  `openai.RateLimitError` with its body and headers), failures as `APIConnectionError`, time-outs
  as `APITimeoutError`;
- time-outs: the client's connect and read time-outs.
What it skips is the per-request cost: the recursive `async_maybe_transform` of the params
(a no-op for Chat Completions, which has no aliased fields), httpx request and response
objects, and the per-read layers of httpx2/httpcore2/h11.
"""

import asyncio
import logging
import weakref
from typing import Any

import httpx2
import openai
from openai._models import FinalRequestOptions

from chainserve.chains.models.retry_notice import announce_retry
from chainserve.chains.models.upstream_client import (
    UpstreamClient,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeoutError,
)

logger = logging.getLogger("chainserve.upstream")

_OPTIONS = FinalRequestOptions(method="post", url="/chat/completions")

_first_try_headers: "weakref.WeakKeyDictionary[openai.AsyncOpenAI, list[tuple[bytes, bytes]]]" = (
    weakref.WeakKeyDictionary()
)
"""Per client: the headers of a first attempt. Only clients with a static key take this
path, so they are the same for every request (about 30 µs each to rebuild)."""


def _headers(client: openai.AsyncOpenAI, retries_taken: int) -> list[tuple[bytes, bytes]]:
    if retries_taken:
        return client._build_headers(_OPTIONS, retries_taken=retries_taken).raw
    headers = _first_try_headers.get(client)
    if headers is None:
        headers = _first_try_headers[client] = client._build_headers(_OPTIONS).raw
    return headers


class WireStream:
    """An open, successful (2xx) streamed response; errors surface as the SDK's exceptions."""

    def __init__(self, response: UpstreamResponse, url: str) -> None:
        self._response = response
        self._url = url

    def request(self) -> httpx2.Request:
        """A stand-in request for exceptions that carry one (built only on error paths)."""
        return httpx2.Request("POST", self._url)

    async def read(self, deadline: float | None) -> bytes:
        try:
            return await self._response.read(deadline)
        except UpstreamTimeoutError:
            raise openai.APITimeoutError(request=self.request()) from None
        except UpstreamError as exc:
            raise openai.APIConnectionError(message=str(exc), request=self.request()) from exc

    def close(self) -> None:
        self._response.close()


def _timeouts(client: openai.AsyncOpenAI) -> tuple[float | None, float | None]:
    timeout: Any = client.timeout
    if isinstance(timeout, httpx2.Timeout):
        return timeout.connect, timeout.read
    return timeout, timeout


async def open_stream(
    client: openai.AsyncOpenAI, upstream: UpstreamClient, url: str, body: bytes
) -> WireStream:
    """POST `body` to `url`, retrying as the SDK would, until a 2xx head or a final error."""
    connect_timeout, read_timeout = _timeouts(client)
    max_retries = client.max_retries
    for retries_taken in range(max_retries + 1):
        remaining = max_retries - retries_taken
        try:
            response = await upstream.request(
                url,
                _headers(client, retries_taken),
                body,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        except UpstreamError as exc:
            if remaining > 0:
                await back_off(client, remaining, None, exc)
                continue
            request = httpx2.Request("POST", url)
            if isinstance(exc, UpstreamTimeoutError):
                raise openai.APITimeoutError(request=request) from exc
            raise openai.APIConnectionError(message=str(exc), request=request) from exc
        if 200 <= response.status < 300:
            return WireStream(response, url)
        try:
            content = await response.read_all()
        except UpstreamError:
            content = b""
        finally:
            response.close()
        failed = httpx2.Response(
            response.status,
            headers=response.headers,
            content=content,
            request=httpx2.Request("POST", url),
        )
        if remaining > 0 and client._should_retry(failed):
            await back_off(client, remaining, failed.headers, f"HTTP {response.status}")
            continue
        raise client._make_status_error_from_response(failed)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def back_off(
    client: openai.AsyncOpenAI, remaining: int, headers: httpx2.Headers | None, why: object
) -> None:
    delay = client._calculate_retry_timeout(remaining, _OPTIONS, headers)
    logger.info("retrying the model request in %.2fs (%s)", delay, why)
    announce_retry(delay)
    await asyncio.sleep(delay)
