"""OpenAI request parameters that become a chain's knobs, shared by every /v1 route that runs
a chain (Chat Completions and Responses name them differently; a chain's slots are the same)."""

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from chainserve.api.errors.openai_shape import OpenAIRequestError
from chainserve.chains import RegisteredChain
from chainserve.chains.models.client_tools import CLIENT_TOOLS_KEY, ClientTools

KNOB_PARAMETERS = ("top_p", "seed", "stop", "frequency_penalty", "presence_penalty")
"""Sampling parameters passed to a chain that declares a knob by that name; without one they
are ignored, as the other ignored parameters are."""

CLIENT_TOOL_FIELDS = ("tools", "tool_choice", "response_format", "parallel_tool_calls")
"""What a chain built on `ClientToolsModel` (the `model` chain) passes to its model, in Chat
Completions' shapes."""


def param_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as OpenAI names a parameter: `tools[0].function.name`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def require_knob(chain: RegisteredChain, parameter: str, knob: str) -> None:
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


def sampling_knobs(
    chain: RegisteredChain,
    *,
    temperature: float | None,
    max_tokens: tuple[str, int] | None,
    cap: int,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The knobs for `temperature`, the output limit (the parameter's name and value) and the
    `KNOB_PARAMETERS` in `extra`. A limit above the server's cap is lowered to it (clients send
    generous defaults, and OpenAI itself treats the field as a ceiling), not refused."""
    knobs: dict[str, Any] = {}
    if temperature is not None:
        require_knob(chain, "temperature", "temperature")
        knobs["temperature"] = temperature
    if max_tokens is not None:
        parameter, limit = max_tokens
        require_knob(chain, parameter, "max_tokens")
        knobs["max_tokens"] = min(limit, cap) if cap else limit
    for parameter in KNOB_PARAMETERS:
        if extra.get(parameter) is not None and parameter in chain.configurable:
            knobs[parameter] = extra[parameter]
    return knobs


def client_tools(
    chain: RegisteredChain,
    asked: dict[str, Any],
    rename: Callable[[str], str] = lambda param: param,
) -> dict[str, Any] | None:
    """The request's own tools and response format (`CLIENT_TOOL_FIELDS`, Chat Completions'
    shapes), for a chain whose model takes them; any other chain brings its own tools and
    refuses them (a text `response_format` is no ask). `rename` gives a parameter the name
    the request used for it."""
    asked = dict(asked)
    if asked.get("response_format") == {"type": "text"}:
        del asked["response_format"]
    if CLIENT_TOOLS_KEY in chain.configurable:
        if not asked:
            return None
        try:
            return ClientTools.model_validate(asked).model_dump(exclude_none=True)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            where = rename(param_path(problem["loc"]))
            raise OpenAIRequestError(400, f"{where}: {problem['msg']}", where) from None
    refused = next((name for name in CLIENT_TOOL_FIELDS[:3] if name in asked), None)
    if refused is not None:
        raise OpenAIRequestError(
            400,
            f"'{rename(refused)}' is not supported by chain {chain.name!r}: it brings its own "
            "tools and output; the `model` chain takes a client's tools",
            rename(refused),
        )
    return None  # `parallel_tool_calls` alone changes nothing: ignored, as OpenAI ignores it


def with_knobs(config: dict[str, Any] | None, knobs: dict[str, Any]) -> dict[str, Any]:
    """The request's `config` with `knobs` added to its `configurable`."""
    config = dict(config or {})
    if knobs:
        config["configurable"] = {**(config.get("configurable") or {}), **knobs}
    return config
