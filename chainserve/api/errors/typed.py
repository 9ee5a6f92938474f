"""Turn failures into the typed errors users see: a code, a clear message, never a secret."""

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx
import httpx2
import openai
import redis.exceptions
from langchain_core.exceptions import ContextOverflowError

from chainserve.api.errors.provider_text import provider_message, retry_after_seconds
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
    """Whole seconds to wait before retrying, as the `Retry-After` header says it."""
    upstream_status: int | None = None
    """The status the model provider answered with, when it answered with one."""
    upstream_code: str | None = None
    """The provider's own error code (`context_length_exceeded`, `model_not_found`)."""

    def payload(self, run_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
        }
        if run_id is not None:
            body["run_id"] = run_id
        if self.retry_after is not None:
            # In the body too: a failure after the headers went out can only say it here.
            body["retry_after"] = int(self.retry_after)
        if self.upstream_status is not None:
            body["upstream_status"] = self.upstream_status
        if self.upstream_code:
            body["upstream_code"] = self.upstream_code
        return body

    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after else {}


_REFUSED_AS_IS = frozenset({400, 404, 413, 422})
"""Provider refusals passed on with their own status: none is retried by the OpenAI SDKs (which
retry 408, 409, 429 and 5xx), and each already says what kind of refusal it is."""


def _upstream_status_error(exc: openai.APIStatusError) -> ChainError:
    status = exc.status_code
    said = f"HTTP {status}"
    if status in (401, 403):
        # The upstream's own message may quote part of the key; never pass it on.
        return ChainError(
            502,
            "upstream_auth",
            f"The model provider rejected chainserve's credentials ({said}).",
            False,
            upstream_status=status,
        )
    if status == 429:
        return ChainError(
            429,
            "upstream_rate_limited",
            f"The model provider is rate limiting requests ({said}).",
            True,
            retry_after_seconds(exc.response.headers),
            upstream_status=status,
        )
    detail = provider_message(exc.body)
    said += f": {detail}" if detail else ""
    if 400 <= status < 500 and status not in (408, 409):
        # A refusal that will be refused again: a status the SDKs do not retry, and the
        # provider's reason (context too long, unknown model), so the user can fix it.
        return ChainError(
            status if status in _REFUSED_AS_IS else 400,
            "upstream_bad_request",
            f"The model provider refused the request ({said}).",
            False,
            upstream_status=status,
            upstream_code=exc.code,
        )
    if status == 503:
        return ChainError(
            503, "upstream_unavailable", f"The model provider is unavailable ({said}).", True,
            retry_after_seconds(exc.response.headers), upstream_status=status,
        )  # fmt: skip
    if status in (408, 504):
        return ChainError(
            504, "upstream_timeout", f"The model provider timed out ({said}).", True,
            upstream_status=status,
        )  # fmt: skip
    return ChainError(
        502, "upstream_error", f"The model provider failed ({said}).", True,
        upstream_status=status,
    )  # fmt: skip


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from: SDKs wrap the transport error twice."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def _embedding_request(exc: BaseException) -> bool:
    """Whether the failed request was for embeddings (a retrieval step), not the chat model:
    with an embeddings server of its own, "the model provider" would point at the wrong one."""
    for cause in _causes(exc):
        try:  # httpx's `request` raises when it was never set
            request = getattr(cause, "request", None)
        except RuntimeError:
            continue
        url = getattr(request, "url", None)
        if url is not None and str(getattr(url, "path", "")).endswith("/embeddings"):
            return True
    return False


def classify(exc: BaseException) -> ChainError:
    """Map an exception raised by a chain to what the client is told."""
    error = _classify(exc)
    if error.code.startswith("upstream_") and _embedding_request(exc):
        message = error.message.replace("model provider", "embeddings provider")
        return replace(error, message=message)
    return error


def _classify(exc: BaseException) -> ChainError:
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
    if isinstance(exc, ContextOverflowError):  # langchain-openai's, raised with no status
        detail = provider_message(getattr(exc, "body", None)) or "the input is too long"
        return ChainError(
            400,
            "upstream_bad_request",
            f"The model provider refused the request: {detail}",
            False,
            upstream_code="context_length_exceeded",
        )
    if isinstance(exc, openai.APIError) and type(exc) is openai.APIError and exc.body:
        # An error the provider sent inside its stream: its words, scrubbed.
        detail = provider_message(exc.body) or "no reason given"
        return ChainError(
            502,
            "upstream_error",
            f"The model provider reported an error in its stream: {detail}",
            True,
            upstream_code=exc.code,
        )
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
