"""OpenAI-compatible Chat Completions: every chain is a "model" any OpenAI client can call."""

import time
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
from chainserve.api.runs.calls import Failed, invoke, start_stream
from chainserve.api.runs.request import OnDisconnect, check_thread, prepare_run, with_thread
from chainserve.chains import RegisteredChain
from chainserve.chains.messages import coerce_message
from chainserve.chains.models.client_tools import CLIENT_TOOLS_KEY, ClientTools
from chainserve.chains.registry import input_from_messages

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(*REFUSALS, openai=True))

IGNORED = frozenset(
    {
        "user", "metadata", "store", "seed", "top_p",
        "frequency_penalty", "presence_penalty", "stop", "logit_bias", "service_tier",
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
    thread_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    config: dict[str, Any] | None = None
    on_disconnect: OnDisconnect = "cancel"


CLIENT_TOOL_FIELDS = ("tools", "tool_choice", "response_format", "parallel_tool_calls")
"""What a chain built on `ClientToolsModel` (the `model` chain) passes to its model."""


def _reject_unsupported(body: ChatCompletionRequest) -> None:
    extra = body.model_extra or {}
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


def _client_tools(chain: RegisteredChain, body: ChatCompletionRequest) -> dict[str, Any] | None:
    """The request's own tools and response format, for a chain whose model takes them; any
    other chain brings its own tools and refuses them (a text `response_format` is no ask)."""
    extra = body.model_extra or {}
    asked = {name: extra[name] for name in CLIENT_TOOL_FIELDS if extra.get(name) is not None}
    if asked.get("response_format") == {"type": "text"}:
        del asked["response_format"]
    if CLIENT_TOOLS_KEY in chain.configurable:
        if not asked:
            return None
        try:
            return ClientTools.model_validate(asked).model_dump(exclude_none=True)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            where = _param(problem["loc"])
            raise OpenAIRequestError(400, f"{where}: {problem['msg']}", where) from None
    refused = next((name for name in CLIENT_TOOL_FIELDS[:3] if name in asked), None)
    if refused is not None:
        raise OpenAIRequestError(
            400,
            f"'{refused}' is not supported by chain {chain.name!r}: it brings its own tools and "
            "output; the `model` chain takes a client's tools",
            refused,
        )
    return None  # `parallel_tool_calls` alone changes nothing: ignored, as OpenAI ignores it


def _param(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as OpenAI names a parameter: `tools[0].function.name`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


KNOB_PARAMETERS = ("top_p", "seed", "stop", "frequency_penalty", "presence_penalty")
"""Sampling parameters passed to a chain that declares a knob by that name; without one they
are ignored, as the other `IGNORED` parameters are."""


def _knob(chain: RegisteredChain, parameter: str, knob: str) -> None:
    """A parameter that changes the answer is refused by a chain without the knob for it:
    ignoring it would answer 200 with something the client did not ask for."""
    if knob not in chain.configurable:
        accepts = ", ".join(sorted(chain.configurable)) or "none"
        raise OpenAIRequestError(
            400,
            f"chain {chain.name!r} has no {knob!r} knob, so `{parameter}` cannot be honoured; "
            f"its knobs: {accepts}",
            parameter,
            code="unsupported_parameter",
        )


def _config(chain: RegisteredChain, body: ChatCompletionRequest, cap: int) -> dict[str, Any]:
    """The request's `config`, plus the OpenAI knobs the chain has a slot for. `max_tokens`
    above the server's cap is lowered to it (clients send generous defaults, and OpenAI
    itself treats the field as a ceiling), not refused."""
    config = dict(body.config or {})
    knobs: dict[str, Any] = {}
    if body.temperature is not None:
        _knob(chain, "temperature", "temperature")
        knobs["temperature"] = body.temperature
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None:
        _knob(chain, "max_completion_tokens" if body.max_completion_tokens else "max_tokens",
              "max_tokens")  # fmt: skip
        knobs["max_tokens"] = min(limit, cap) if cap else limit
    extra = body.model_extra or {}
    for parameter in KNOB_PARAMETERS:
        if extra.get(parameter) is not None and parameter in chain.configurable:
            knobs[parameter] = extra[parameter]
    client_tools = _client_tools(chain, body)
    if client_tools is not None:
        knobs[CLIENT_TOOLS_KEY] = client_tools
    if knobs:
        config["configurable"] = {**(config.get("configurable") or {}), **knobs}
    return with_thread(config, body.thread_id)  # type: ignore[no-any-return]


@router.get("/models")
async def list_models(chains: ChainsDep) -> dict[str, Any]:
    """List the chains as OpenAI models."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "chainserve"} for name in chains
    ]
    return {"object": "list", "data": data}


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
        message = f"The model `{body.model}` does not exist; GET /v1/models lists the chains."
        raise OpenAIRequestError(404, message, "model", code="model_not_found")
    chain_input = _chain_input(chain, body.messages)
    config = _config(chain, body, settings.max_output_tokens)
    prepared = prepare_run(chain, chain_input, config, model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    created, completion_id = int(time.time()), f"chatcmpl-{prepared.run.run_id}"
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        protocol = OpenAIChatProtocol(completion_id, body.model, created, include_usage)
        return await start_stream(runs, settings, chain, prepared, body.on_disconnect, protocol)
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
    result = await invoke(request.receive, chain, prepared, body.on_disconnect)
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
