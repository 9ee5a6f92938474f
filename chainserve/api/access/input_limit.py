"""The input token limit: a run whose input is over `max_input_tokens` is refused with a 413.

Checked after the input is validated and before the run starts, so an oversized request never
reaches the model provider (which would bill it, or refuse it after a round trip with a 400
that the client sees as a 502). A run that continues a thread of a chain with memory also gets
up to `history_token_budget` tokens of stored history in front of its input: that budget is
reserved rather than the thread read and counted here, because the chain trims the history
to it anyway and reading it twice would cost every threaded run a store round trip.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from chainserve.api.errors.openai_shape import is_openai_path
from chainserve.api.protocols.openai_chat import openai_error
from chainserve.api.runs.request import PreparedRun
from chainserve.api.settings import Settings
from chainserve.chains import RegisteredChain
from chainserve.chains.history import THREAD_KEY
from chainserve.chains.tokens.count import input_text

CODE = "input_too_large"


@dataclass(frozen=True)
class InputCounts:
    input_tokens: int
    max_input_tokens: int
    history_tokens_reserved: int


class _TooLargeFields(BaseModel):
    input_tokens: int | None = Field(
        None, description="`input_too_large` only: tokens counted in the request's input."
    )
    max_input_tokens: int | None = Field(
        None, description="`input_too_large` only: the limit, CHAINSERVE_MAX_INPUT_TOKENS."
    )
    history_tokens_reserved: int | None = Field(
        None,
        description="`input_too_large` only: tokens kept for a thread's stored history, which "
        "goes in front of the input (0 without a thread).",
    )


class TooLargeDetail(_TooLargeFields):
    code: Literal["input_too_large", "body_too_large"]
    message: str
    retryable: bool


class TooLargeBody(BaseModel):
    """A 413: the input is over the token limit, or the body over the byte limit."""

    error: TooLargeDetail


class OpenAITooLargeDetail(_TooLargeFields):
    message: str
    type: Literal["invalid_request_error"]
    param: str | None
    code: Literal["input_too_large", "body_too_large"]


class OpenAITooLargeBody(BaseModel):
    """A 413 in OpenAI's error shape: the input is over the token limit, or the body too big."""

    error: OpenAITooLargeDetail


_DESCRIPTION = (
    "`input_too_large`: the input is over CHAINSERVE_MAX_INPUT_TOKENS (the body says by how "
    "much); `body_too_large`: the body is over CHAINSERVE_MAX_BODY_BYTES."
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": TooLargeBody, "description": _DESCRIPTION}
}
OPENAI_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": OpenAITooLargeBody, "description": _DESCRIPTION}
}
REFERENCED_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {
        "description": _DESCRIPTION,
        "content": {
            "application/json": {
                "schema": {"$ref": f"#/components/schemas/{TooLargeBody.__name__}"}
            }
        },
    }
}
"""For routes added after the fact (LangServe's): the schema `RESPONSES` puts in components."""


class InputTooLargeError(Exception):
    """Raised before a run starts; answered with a 413 in the route family's error shape."""

    def __init__(self, counts: InputCounts, param: str | None = None) -> None:
        self.counts, self.param = counts, param
        message = f"{param or 'The input'} is {counts.input_tokens} tokens"
        if counts.history_tokens_reserved:
            message += (
                f", plus up to {counts.history_tokens_reserved} tokens kept for the thread's "
                "history"
            )
        message += f", over this server's limit of {counts.max_input_tokens} input tokens."
        if counts.history_tokens_reserved:
            message += " Shorten it, or continue in a new thread."
        super().__init__(message)
        self.message = message


async def input_too_large_response(request: Request, exc: Exception) -> JSONResponse:
    """The 413 for `InputTooLargeError`: OpenAI's error shape under /v1, ours elsewhere."""
    assert isinstance(exc, InputTooLargeError)
    counts = asdict(exc.counts)
    if is_openai_path(request.url.path):
        body = openai_error(413, CODE, exc.message, exc.param or "messages")
        body["error"].update(counts)
    else:
        body = {"error": {"code": CODE, "message": exc.message, "retryable": False, **counts}}
    return JSONResponse(body, 413)


def history_reserve(settings: Settings, chain: RegisteredChain, config: Mapping[str, Any]) -> int:
    """Tokens of thread history this run may put in front of its input."""
    configurable = config.get("configurable") or {}
    threaded = isinstance(configurable, Mapping) and bool(configurable.get(THREAD_KEY))
    return settings.history_token_budget if chain.spec.memory and threaded else 0


async def check_input_tokens(
    settings: Settings,
    chain: RegisteredChain,
    chain_input: Any,
    model: str,
    config: Mapping[str, Any],
    param: str | None = None,
) -> None:
    """Raise `InputTooLargeError` when `chain_input` would send `model` too many tokens."""
    limit = settings.max_input_tokens
    if not limit:
        return
    reserved = history_reserve(settings, chain, config)
    text = input_text(chain_input)
    if text.most_tokens + reserved <= limit:
        return  # certainly fits: no tokenizer needed, which is almost every request
    # In a thread: a 1 MiB body takes 80-300 ms to count (tiktoken releases the GIL), and the
    # first count loads the encoding; on the event loop either would stall every open stream.
    tokens = await asyncio.to_thread(text.count, model)
    if tokens + reserved > limit:
        counts = InputCounts(
            input_tokens=tokens, max_input_tokens=limit, history_tokens_reserved=reserved
        )
        raise InputTooLargeError(counts, param)


async def check_run_input(
    settings: Settings, chain: RegisteredChain, prepared: PreparedRun
) -> None:
    """The token limit for a prepared run: its validated input, chosen model and thread."""
    await check_input_tokens(
        settings, chain, prepared.input, prepared.run.model_name, prepared.config
    )
