"""Turn failures into the typed errors users see: a code, a clear message, never a secret."""

import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import httpx2
import openai
import redis.exceptions

from chainserve.chains.models.upstream_client import UpstreamConnectError
from chainserve.chains.models.upstream_sse import UpstreamIncompleteError, UpstreamUnreadableError
from chainserve.chains.retrieval.types import EmbedderMismatchError

logger = logging.getLogger("chainserve.errors")

# The OpenAI SDK moved to httpx2; a custom client may still be classic httpx; streamed
# completions use our own client (chains/models/upstream_client.py). Know all three.
_CONNECT_ERRORS = (httpx.ConnectError, httpx2.ConnectError, UpstreamConnectError)
_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException)
_TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)
UPSTREAM_ERRORS = (openai.APIError, UpstreamConnectError, *_TRANSPORT_ERRORS)
"""What a chain raises when the model provider fails: `classify` names each."""
STORE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
"""What a store client raises when Redis is down or does not answer in time."""
STORE_UNAVAILABLE_RETRY_AFTER = "2"

ErrorCode = Literal[
    "invalid_request",
    "invalid_config",
    "invalid_body",
    "not_found",
    "method_not_allowed",
    "conflict",
    "embedder_mismatch",
    "collection_read_only",
    "admin_required",
    "published_name_taken",
    "gone",
    "upstream_auth",
    "upstream_bad_request",
    "upstream_rate_limited",
    "upstream_unavailable",
    "upstream_timeout",
    "upstream_incomplete",
    "upstream_error",
    "store_unavailable",
    "internal_error",
    "worker_lost",
    "cancel_timeout",
    "run_timeout",
    "batch_too_large",
]


class RequestError(Exception):
    """A request chainserve refuses, with the status and typed code to answer it with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class ChainError:
    """A failure as the client sees it, with the HTTP status to use before streaming began."""

    status: int
    code: ErrorCode
    message: str
    retryable: bool
    retry_after: str | None = None

    def payload(self, run_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if run_id is not None:
            body["run_id"] = run_id
        return body

    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after else {}


def _upstream_status_error(exc: openai.APIStatusError) -> ChainError:
    status = exc.status_code
    if status in (401, 403):
        # The upstream's own message may quote part of the key; never pass it on.
        return ChainError(
            502, "upstream_auth", "The model provider rejected chainserve's credentials.", False
        )
    if status == 429:
        retry_after = exc.response.headers.get("retry-after")
        return ChainError(
            429,
            "upstream_rate_limited",
            "The model provider is rate limiting requests.",
            True,
            retry_after,
        )
    if status in (400, 404, 409, 413, 422):
        return ChainError(
            502,
            "upstream_bad_request",
            f"The model provider refused the request (HTTP {status}).",
            False,
        )
    if status == 503:
        return ChainError(503, "upstream_unavailable", "The model provider is unavailable.", True)
    if status == 504:
        return ChainError(504, "upstream_timeout", "The model provider timed out.", True)
    return ChainError(502, "upstream_error", f"The model provider failed (HTTP {status}).", True)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from: SDKs wrap the transport error twice."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def classify(exc: BaseException) -> ChainError:
    """Map an exception raised by a chain to what the client is told."""
    if any(isinstance(cause, STORE_ERRORS) for cause in _causes(exc)):
        return ChainError(
            503,
            "store_unavailable",
            "chainserve's data store is unavailable; try again shortly.",
            True,
            STORE_UNAVAILABLE_RETRY_AFTER,
        )
    if isinstance(exc, EmbedderMismatchError):
        return ChainError(409, "embedder_mismatch", str(exc), False)
    if isinstance(exc, openai.APIStatusError):
        return _upstream_status_error(exc)
    if isinstance(exc, UpstreamIncompleteError):
        return ChainError(
            502,
            "upstream_incomplete",
            "The model provider's stream ended before the answer was complete.",
            True,
        )
    if isinstance(exc, UpstreamUnreadableError):
        return ChainError(502, "upstream_error", str(exc), True)
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, *_TIMEOUTS)):
        return ChainError(
            504, "upstream_timeout", "The model provider did not answer in time.", True
        )
    if any(isinstance(cause, _CONNECT_ERRORS) for cause in _causes(exc)):
        return ChainError(503, "upstream_unavailable", "Could not reach the model provider.", True)
    if isinstance(exc, (openai.APIError, *_TRANSPORT_ERRORS)):
        return ChainError(
            502, "upstream_error", "The connection to the model provider broke.", True
        )
    return ChainError(500, "internal_error", "The chain failed unexpectedly.", False)


def log_failure(exc: BaseException, error: ChainError, run_id: str) -> None:
    """Upstream trouble is routine and logged briefly; anything else gets a traceback."""
    if error.code == "internal_error":
        logger.error("run %s failed", run_id, exc_info=exc)
    else:
        logger.warning("run %s failed: %s (%s)", run_id, error.code, type(exc).__name__)
