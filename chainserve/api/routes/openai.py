"""OpenAI-compatible Chat Completions: every chain is a "model" any OpenAI client can call."""

import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from chainserve.api.access.input_limit import OPENAI_RESPONSES as INPUT_LIMIT_RESPONSES
from chainserve.api.access.input_limit import check_run_input
from chainserve.api.access.ownership import CallerDep
from chainserve.api.deps import ChainsDep, ModelInfoDep, RunsDep, SettingsDep, ThreadsDep
from chainserve.api.errors.openai_shape import OpenAIRequestError
from chainserve.api.errors.responses import REFUSALS, RUN_FAILURES, error_responses
from chainserve.api.protocols.openai_chat import (
    OpenAIChatProtocol,
    completion_message,
    openai_error,
    openai_usage,
)
from chainserve.api.routes.openai_knobs import (
    CLIENT_TOOL_FIELDS,
    client_tools,
    sampling_knobs,
    with_knobs,
)
from chainserve.api.runs.calls import Failed, invoke, start_stream
from chainserve.api.runs.request import OnDisconnect, check_thread, prepare_run, with_thread
from chainserve.api.runs.stop_sequences import MAX_STOPS
from chainserve.chains import RegisteredChain
from chainserve.chains.messages import coerce_message
from chainserve.chains.models.client_tools import CLIENT_TOOLS_KEY
from chainserve.chains.registry import input_from_messages

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(*REFUSALS, openai=True))

IGNORED = frozenset(
    {
        "user", "metadata", "store", "seed", "top_p",
        "frequency_penalty", "presence_penalty", "logit_bias", "service_tier",
        "parallel_tool_calls", "prediction", "reasoning_effort", "verbosity",
        "prompt_cache_key", "safety_identifier",
    }
)  # fmt: skip
"""Accepted and ignored: sampling and bookkeeping knobs a chain has no slot for."""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body, plus chainserve's `thread_id`, `config` and `on_disconnect`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="A chain name (see GET /v1/models).")
    messages: Annotated[list[Any], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1)
    stop: str | list[str] | None = Field(
        None, description="Up to 4 sequences; the answer ends before the first."
    )
    thread_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    config: dict[str, Any] | None = None
    on_disconnect: OnDisconnect = "cancel"


def _reject_unsupported(body: ChatCompletionRequest) -> None:
    extra = body.model_extra or {}
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    if len(stops) > MAX_STOPS or not all(stops):
        message = f"stop takes a string or a list of up to {MAX_STOPS} non-empty strings"
        raise OpenAIRequestError(400, message, "stop")
    if body.n not in (None, 1):
        raise OpenAIRequestError(400, "n > 1 is not supported by chainserve", "n")
    for name in ("functions", "function_call"):
        if extra.get(name):
            raise OpenAIRequestError(
                400, f"'{name}' is not supported: send `tools` to the `model` chain", name
            )
    if extra.get("logprobs") or extra.get("top_logprobs"):
        raise OpenAIRequestError(400, "logprobs are not supported", "logprobs")
    if extra.get("audio") or extra.get("modalities") not in (None, ["text"]):
        raise OpenAIRequestError(400, "only text output is supported", "modalities")
    unknown = sorted(set(extra) - IGNORED - {*CLIENT_TOOL_FIELDS, "functions", "function_call",
                                             "logprobs", "top_logprobs", "audio",
                                             "modalities"})  # fmt: skip
    if unknown:
        raise OpenAIRequestError(
            400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0]
        )


def _chain_input(chain: RegisteredChain, messages: list[Any]) -> dict[str, Any]:
    coerced = []
    for index, message in enumerate(messages):
        try:
            coerced.append(coerce_message(message))
        except ValueError as exc:
            raise OpenAIRequestError(400, str(exc), f"messages[{index}]") from None
    try:
        return input_from_messages(chain.spec, coerced)
    except ValueError as exc:
        raise OpenAIRequestError(400, str(exc), "messages") from None


def _config(chain: RegisteredChain, body: ChatCompletionRequest, cap: int) -> dict[str, Any]:
    """The request's `config`, plus the OpenAI knobs the chain has a slot for."""
    extra = body.model_extra or {}
    limit = body.max_completion_tokens or body.max_tokens
    parameter = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    knobs = sampling_knobs(
        chain,
        temperature=body.temperature,
        max_tokens=None if limit is None else (parameter, limit),
        cap=cap,
        extra=extra,
    )
    if body.stop and "stop" in chain.configurable:  # the model stops too: no tokens wasted
        knobs["stop"] = body.stop
    asked = {name: extra[name] for name in CLIENT_TOOL_FIELDS if extra.get(name) is not None}
    tools = client_tools(chain, asked)
    if tools is not None:
        knobs[CLIENT_TOOLS_KEY] = tools
    return with_thread(with_knobs(body.config, knobs), body.thread_id)  # type: ignore[no-any-return]


def _stops(body: ChatCompletionRequest) -> list[str]:
    """The request's stop sequences, enforced on any chain's output (`runs/stop_sequences.py`)."""
    if not body.stop:
        return []
    return [body.stop] if isinstance(body.stop, str) else body.stop


def model_object(name: str) -> dict[str, Any]:
    """A chain as OpenAI describes a model."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "chainserve"}


def unknown_model(name: str) -> OpenAIRequestError:
    """OpenAI's answer for a model it does not have, which its SDKs raise as `NotFoundError`."""
    message = f"The model `{name}` does not exist; GET /v1/models lists the chains."
    return OpenAIRequestError(404, message, "model", code="model_not_found")


@router.get("/models")
async def list_models(chains: ChainsDep) -> dict[str, Any]:
    """List the chains as OpenAI models."""
    return {"object": "list", "data": [model_object(name) for name in chains]}


@router.get("/models/{model_id}", responses=error_responses(404, openai=True))
async def get_model(model_id: str, chains: ChainsDep) -> dict[str, Any]:
    """Describe one chain as an OpenAI model."""
    if model_id not in chains:
        raise unknown_model(model_id)
    return model_object(model_id)


@router.post(
    "/chat/completions",
    responses={
        **error_responses(*RUN_FAILURES, openai=True),
        **INPUT_LIMIT_RESPONSES,
        200: {
            "description": "A chat completion, or with `stream: true` its chunks as Server-Sent "
            "Events ending in `data: [DONE]`.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def create_chat_completion(
    request: Request,
    body: ChatCompletionRequest,
    chains: ChainsDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    runs: RunsDep,
    caller: CallerDep,
) -> Response:
    """Run a chain for an OpenAI Chat Completions request, streaming or not."""
    _reject_unsupported(body)
    chain = chains.get(body.model)
    if chain is None:
        raise unknown_model(body.model)
    chain_input = _chain_input(chain, body.messages)
    config = _config(chain, body, settings.max_output_tokens)
    prepared = prepare_run(chain, chain_input, config, model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    created, completion_id = int(time.time()), f"chatcmpl-{prepared.run.run_id}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        protocol = OpenAIChatProtocol(completion_id, body.model, created, include_usage)
        return await start_stream(
            runs, settings, chain, prepared, body.on_disconnect, protocol, _stops(body)
        )
    return await _complete(request, chain, prepared, body, completion_id, created)


async def _complete(
    request: Request,
    chain: RegisteredChain,
    prepared: Any,
    body: ChatCompletionRequest,
    completion_id: str,
    created: int,
) -> Response:
    run = prepared.run
    headers = {"X-Run-Id": run.run_id}
    result = await invoke(request.receive, chain, prepared, body.on_disconnect, _stops(body))
    if result is None:
        return Response(status_code=499)
    if isinstance(result, Failed):
        error = result.error
        payload = openai_error(error.status, error.code, error.message)
        return JSONResponse(payload, error.status, headers={**headers, **error.headers()})
    summary = run.summary()
    message, reason = completion_message(result.output)
    finish = reason or summary["finish_reason"] or "stop"
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": "stop" if finish == "tool_calls" and reason is None else finish,
    }
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [choice],
        "usage": openai_usage(summary["usage"]),
        "system_fingerprint": None,
    }
    return JSONResponse(completion, headers=headers)
