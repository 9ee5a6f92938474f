"""The Responses API's request: its parameters checked, its input items as chat messages, its
tools and text format in the Chat Completions shapes a chain's `client_tools` knob takes."""

import json
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import tool_call
from pydantic import BaseModel, ConfigDict, Field

from chainserve.api.errors.openai_shape import OpenAIRequestError
from chainserve.api.routes.openai_knobs import client_tools, sampling_knobs, with_knobs
from chainserve.chains import RegisteredChain
from chainserve.chains.messages import coerce_message
from chainserve.chains.models.client_tools import CLIENT_TOOLS_KEY
from chainserve.chains.registry import input_from_messages
from chainserve.chains.thread_key import THREAD_KEY

IGNORED = frozenset(
    {
        "user", "service_tier", "reasoning", "truncation", "prompt_cache_key",
        "prompt_cache_retention", "safety_identifier", "stream_options", "max_tool_calls",
        "parallel_tool_calls", "top_p",
    }
)  # fmt: skip
"""Accepted and ignored: knobs a chain has no slot for (`top_p` goes to a chain that has one;
`max_tool_calls` limits OpenAI's built-in tools, which chainserve has none of)."""

HANDLED = frozenset({"tools", "tool_choice", "text", "include"})
"""Read from the request's extra fields below."""

ECHOED = ("background", "instructions", "max_output_tokens", "metadata", "parallel_tool_calls",
          "previous_response_id", "store", "temperature", "text", "tool_choice", "tools",
          "top_p", "truncation", "user", "reasoning")  # fmt: skip
"""Parameters a response repeats back, as OpenAI's do."""

TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


class ResponseRequest(BaseModel):
    """OpenAI's `POST /v1/responses` body, plus chainserve's `config`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="A chain name (see GET /v1/models).")
    input: str | list[Any]
    instructions: str | None = None
    stream: bool = False
    background: bool = False
    store: bool = True
    previous_response_id: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    config: dict[str, Any] | None = None

    def echo(self) -> dict[str, Any]:
        given = {**self.model_dump(exclude_unset=True), **(self.model_extra or {})}
        return {name: given[name] for name in ECHOED if given.get(name) is not None}


def reject_unsupported(body: ResponseRequest) -> None:
    """A 400 naming the first parameter chainserve cannot honour, as OpenAI answers."""
    extra = body.model_extra or {}
    if body.background and not body.store:
        raise OpenAIRequestError(400, "background responses need store: true", "background")
    if body.previous_response_id and not body.store:
        raise OpenAIRequestError(
            400, "store: false cannot continue a conversation: chainserve keeps one as a "
            "thread, which stores every turn", "store",
        )  # fmt: skip
    for name in ("conversation", "prompt", "top_logprobs"):
        if extra.get(name) is not None:
            raise OpenAIRequestError(400, f"'{name}' is not supported by chainserve", name)
    include = extra.get("include") or []
    # Reasoning comes back in plain text here, so there is nothing to encrypt.
    if not isinstance(include, list) or set(include) - {"reasoning.encrypted_content"}:
        raise OpenAIRequestError(400, f"include: {include!r} is not supported", "include")
    unknown = sorted(set(extra) - IGNORED - HANDLED)
    if unknown:
        raise OpenAIRequestError(
            400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0]
        )


def input_messages(body: ResponseRequest) -> list[BaseMessage]:
    """`instructions` and `input` as the chat messages of one turn."""
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) else body.input
    messages: list[BaseMessage] = [SystemMessage(body.instructions)] if body.instructions else []
    for index, item in enumerate(items):
        _add_item(messages, item, f"input[{index}]")
    if not any(not isinstance(m, SystemMessage) for m in messages):
        raise OpenAIRequestError(400, "input has no message", "input")
    return messages


def _add_item(messages: list[BaseMessage], item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise OpenAIRequestError(400, f"{where}: an input item must be an object", where)
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, list):
            content = [
                _content_part(part, f"{where}.content[{i}]") for i, part in enumerate(content)
            ]
        try:
            messages.append(coerce_message({"role": item.get("role"), "content": content}))
        except ValueError as exc:
            raise OpenAIRequestError(400, f"{where}: {exc}", where) from None
    elif kind == "function_call":
        try:
            call = tool_call(
                id=str(item["call_id"]),
                name=str(item["name"]),
                args=json.loads(item.get("arguments") or "{}"),
            )
            if not isinstance(call["args"], dict):
                raise ValueError(call["args"])
        except (KeyError, ValueError):
            message = f"{where}: a function_call needs call_id, name and a JSON object of arguments"
            raise OpenAIRequestError(400, message, where) from None
        last = messages[-1] if messages else None
        if isinstance(last, AIMessage):  # one assistant turn: its text and its calls
            last.tool_calls.append(call)
        else:
            messages.append(AIMessage(content="", tool_calls=[call]))
    elif kind == "function_call_output":
        output = item.get("output")
        if isinstance(output, list):
            output = "".join(_text_part(p, f"{where}.output")["text"] for p in output)
        if not isinstance(item.get("call_id"), str) or not isinstance(output, str):
            message = f"{where}: a function_call_output needs call_id and a text output"
            raise OpenAIRequestError(400, message, where)
        messages.append(ToolMessage(content=output, tool_call_id=item["call_id"]))
    elif kind != "reasoning":  # a model gets no reasoning from earlier turns through a chain
        message = f"{where}: input items of type {kind!r} are not supported by chainserve"
        raise OpenAIRequestError(400, message, where)


def _content_part(part: Any, where: str) -> dict[str, Any]:
    """A text part, or an image by URL (a data URL too) in Chat Completions' shape, which a
    chain that passes messages to its model sends on; a chain taking text refuses it."""
    if isinstance(part, dict) and part.get("type") == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            message = f"{where}: an input_image needs an image_url (file ids are not supported)"
            raise OpenAIRequestError(400, message, where)
        detail = part.get("detail") or "auto"
        return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    return _text_part(part, where)


def _text_part(part: Any, where: str) -> dict[str, str]:
    if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        message = f"{where}: only text and images by URL are supported, not {kind!r}"
        raise OpenAIRequestError(400, message, where)
    return {"type": "text", "text": str(part.get("text", ""))}


def chain_input(chain: RegisteredChain, messages: list[BaseMessage]) -> dict[str, Any]:
    try:
        return input_from_messages(chain.spec, messages)
    except ValueError as exc:
        raise OpenAIRequestError(400, str(exc), "input") from None


def response_config(chain: RegisteredChain, body: ResponseRequest, cap: int) -> dict[str, Any]:
    """The request's `config`, plus the knobs its OpenAI parameters ask for."""
    extra = body.model_extra or {}
    configurable = (body.config or {}).get("configurable")
    if isinstance(configurable, dict) and THREAD_KEY in configurable:
        message = "a response continues a conversation with previous_response_id, not a thread_id"
        raise OpenAIRequestError(400, message, "config")
    limit = body.max_output_tokens
    knobs = sampling_knobs(
        chain,
        temperature=body.temperature,
        max_tokens=None if limit is None else ("max_output_tokens", limit),
        cap=cap,
        extra={"top_p": extra.get("top_p")},
    )
    tools = client_tools(chain, _chat_tools(extra), _responses_param)
    if tools is not None:
        knobs[CLIENT_TOOLS_KEY] = tools
    return with_knobs(body.config, knobs)


def _chat_tools(extra: dict[str, Any]) -> dict[str, Any]:
    """`tools`, `tool_choice`, `text.format` and `parallel_tool_calls` in Chat Completions'
    shapes (a function's fields under `function`, the format as `response_format`)."""
    asked: dict[str, Any] = {}
    tools = extra.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise OpenAIRequestError(400, "tools must be a list", "tools")
        asked["tools"] = [_chat_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = extra.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise OpenAIRequestError(400, "tool_choice: only function tools", "tool_choice")
        choice = {"type": "function", "function": {"name": choice.get("name")}}
    if choice is not None:
        asked["tool_choice"] = choice
    text = extra.get("text")
    form = text.get("format") if isinstance(text, dict) else None
    if isinstance(form, dict) and form.get("type") == "json_schema":
        fields = ("name", "schema", "strict", "description")
        asked["response_format"] = {
            "type": "json_schema",
            "json_schema": {key: form[key] for key in fields if key in form},
        }
    elif isinstance(form, dict) and form.get("type") in ("json_object", "text"):
        asked["response_format"] = {"type": form["type"]}
    elif form is not None:
        raise OpenAIRequestError(400, f"text.format {form!r} is not supported", "text.format")
    if extra.get("parallel_tool_calls") is not None:
        asked["parallel_tool_calls"] = extra["parallel_tool_calls"]
    return asked


def _chat_tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        message = f"{where}: only function tools are supported by chainserve, not {kind!r}"
        raise OpenAIRequestError(400, message, where)
    return {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}


def _responses_param(param: str) -> str:
    """A Chat Completions parameter path as this request named it."""
    renames = (("response_format.json_schema", "text.format"), ("response_format", "text.format"),
               (".function", ""))  # fmt: skip
    for chat, ours in renames:
        param = param.replace(chat, ours, 1)
    return param
