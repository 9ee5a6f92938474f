"""Clients that bring their own tools: LangChain's `ChatOpenAI` pointed at chainserve, with
`bind_tools` and `with_structured_output`, runs its tool loop against the `model` chain; any
other chain still refuses `tools` with a 400."""

from typing import Any

import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

from chainserve.chains.agent import calculator
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.shapes import Verdict


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(offline_delay=0.0))


def _client(server: LiveServer, **fields: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="model",
        base_url=f"{server.url}/v1",
        api_key="unused",
        max_retries=0,
        http_async_client=openai.DefaultAsyncHttpxClient(),
        **fields,
    )


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
def test_chat_openai_runs_its_own_tool_loop_against_chainserve(
    server: LiveServer, streaming: bool
) -> None:
    model = _client(server, streaming=streaming).bind_tools([calculator])
    asked = model.invoke("What is 2 + 3 * 4?")
    (call,) = asked.tool_calls
    assert call["name"] == "calculator"
    assert call["args"] == {"expression": "2 + 3 * 4"}
    result = ToolMessage(calculator.invoke(call["args"]), tool_call_id=call["id"])
    answer = model.invoke([HumanMessage("What is 2 + 3 * 4?"), asked, result])
    assert answer.tool_calls == []
    assert "The calculator tool returned: “14”" in answer.text


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_against_chainserve_returns_the_object(
    server: LiveServer, method: str
) -> None:
    structured = _client(server).with_structured_output(Verdict, method=method)  # type: ignore[arg-type]
    verdict = structured.invoke("Why is the sky blue?")
    assert verdict == Verdict(guilty=True, reason="Why is the sky blue?")


def test_the_callers_tools_reach_the_provider_with_the_callers_choice(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    call = {"id": "call_9", "name": "calculator", "arguments": '{"expression": "1+1"}'}
    upstream.enqueue(Script(chunks=[], tool_calls=[call], finish_reason="tool_calls"))
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    tools: Any = [
        {"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}
    ]
    done = sdk.chat.completions.create(
        model="model",
        messages=[{"role": "user", "content": "1+1"}],
        tools=tools,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.2,
    )
    (returned,) = done.choices[0].message.tool_calls or []
    assert (returned.id, returned.function.name) == ("call_9", "calculator")
    sent = upstream.requests[-1].json
    assert sent["tools"] == tools
    assert sent["tool_choice"] == "required"
    assert sent["parallel_tool_calls"] is False
    assert sent["temperature"] == 0.2


def test_a_chain_that_brings_its_own_tools_refuses_the_callers(server: LiveServer) -> None:
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    tools: Any = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
    assert refused.value.body["param"] == "tools"  # type: ignore[index]
    assert "model" in refused.value.body["message"]  # type: ignore[index]


@pytest.mark.parametrize(
    "tools",
    [
        pytest.param([{"type": "function"}], id="no-function"),
        pytest.param([{"type": "retrieval", "function": {"name": "f"}}], id="not-a-function"),
        pytest.param([{"type": "function", "function": {"name": "bad name!"}}], id="bad-name"),
        pytest.param([{"type": "function", "function": {"name": "f"}}] * 129, id="too-many"),
    ],
)
def test_malformed_client_tools_are_refused_before_the_model_is_called(
    server: LiveServer, tools: Any
) -> None:
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model="model", messages=[{"role": "user", "content": "hi"}], tools=tools
        )
    assert refused.value.body["param"].startswith("tools")  # type: ignore[index]
    assert refused.value.body["message"].startswith(refused.value.body["param"])  # type: ignore[index]
