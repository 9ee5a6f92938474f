"""The error responses each route declares in the OpenAPI schema, in the shapes actually sent.

Middleware refusals (api/access/body_guard.py, api/access/auth.py, api/access/limits.py) can
answer any route, so every router declares them; routes add the errors they raise themselves.
One description per status, naming every code it can carry (docs/protocol.md#errors has the
full table).
"""

from typing import Any

from pydantic import BaseModel, Field

Responses = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: see docs/protocol.md#errors.")
    message: str = Field(description="What went wrong, for people; never a secret or traceback.")
    retryable: bool = Field(description="Whether the same request may succeed later.")
    run_id: str | None = Field(None, description="The run that failed, once one had started.")


class ErrorBody(BaseModel):
    """chainserve's one error shape (a 422 also carries `details` and FastAPI's `detail`)."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="OpenAI's error type, e.g. `invalid_request_error`.")
    param: str | None = Field(description="The request parameter at fault, if one is.")
    code: str | None = Field(description="chainserve's error code, as on the other routes.")


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape, so the official SDKs raise their usual exception types."""

    error: OpenAIErrorDetail


_CAUSES: dict[int, str] = {
    400: "`invalid_body`: the body is not UTF-8 JSON that can be parsed safely (nested too "
    "deep, an integer too long, an unpaired surrogate escape); `invalid_config`: `config` sets "
    "a key that is not allow-listed; `upstream_bad_request`: the model provider refused the "
    "request (the message quotes its status and reason).",
    401: "`missing_api_key` or `invalid_api_key` (only when API keys are configured).",
    403: "`collection_read_only`: the collection is published read-only; `admin_required`: "
    "only an admin key may do this.",
    404: "`not_found`: no chain, thread, run, collection or document of that name (another "
    "key's is answered the same way); `upstream_bad_request`: the model provider answered 404 "
    "(an unknown model).",
    415: "`unsupported_document`: a file that is not Markdown, text or PDF.",
    422: "`invalid_document`: a document with no text, or that cannot be read (an encrypted "
    "or scanned PDF, text that is not UTF-8); `invalid_request`: the body does not match.",
    409: "`conflict`: the run already ended; `embedder_mismatch`: the collection was embedded "
    "with another embedding model; `published_name_taken`: another collection of that name "
    "is published.",
    410: "`gone`: the run's events after that id are no longer kept.",
    413: "`body_too_large`: the body is over CHAINSERVE_MAX_BODY_BYTES (uploads: "
    "CHAINSERVE_MAX_UPLOAD_BYTES); `upstream_bad_request`: the model provider found the "
    "request too large.",
    429: "`rate_limited` or `too_many_streams` (only when limits are configured), or "
    "`upstream_rate_limited`: the model provider is rate limiting. `Retry-After` says when.",
    502: "`upstream_auth` or `upstream_error`: the model provider refused chainserve's "
    "credentials or failed.",
    503: "`upstream_unavailable`: the model provider cannot be reached; `shutting_down`: the "
    "server is restarting (retry).",
    504: "`upstream_timeout`: the model provider did not answer in time.",
}

_OPENAI_CAUSES = {
    **_CAUSES,
    400: f"{_CAUSES[400]} Also every invalid request (`invalid_request`, `invalid_json`): the "
    "OpenAI-compatible routes answer those with a 400, as OpenAI does, never a 422.",
}

REFUSALS = (400, 401, 413, 429)
"""What the middleware may answer on any route but /health."""
RUN_FAILURES = (*REFUSALS, 404, 409, 502, 503, 504)
"""What a route that runs a chain may answer besides its own validation errors."""


def error_responses(*statuses: int, openai: bool = False) -> Responses:
    """`responses=` for a router or route: each status in chainserve's (or OpenAI's) shape."""
    model, causes = (OpenAIErrorBody, _OPENAI_CAUSES) if openai else (ErrorBody, _CAUSES)
    return {status: {"model": model, "description": causes[status]} for status in statuses}


def referenced_error_responses(*statuses: int) -> Responses:
    """`error_responses` for routes declared after they were built (too late for a `model`):
    they point at the schema the native routes' `model=ErrorBody` puts in the components."""
    schema = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
    return {
        status: {
            "description": _CAUSES[status],
            "content": {"application/json": {"schema": schema}},
        }
        for status in statuses
    }
