"""Chains whose output is not text (structured output, tool calls, parallel dicts) over real
HTTP on every surface: native SSE, `/v1` with the official SDK, `/ui` with the AI SDK's own
parser, `GET /runs/{id}` and the terminal client. Nothing a chain streams is dropped."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableParallel
from pydantic import BaseModel

from chainserve.chains import ChainSpec, ModelConfig, build_model
from chainserve.chains.agent import calculator
from tests.api.streaming import stream
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import read_with_ai_sdk
from tests.support.server import LiveServer
from tests.support.shapes import Verdict
from tests.support.terminal import run_cli

PROMPT = ChatPromptTemplate.from_template("{question}")


class Question(BaseModel):
    question: str


def _spec(name: str, build: Callable[[ModelConfig], Runnable[Any, Any]]) -> ChainSpec:
    return ChainSpec(name, f"The {name} shape.", build, Question)


SHAPES = [
    _spec("verdict", lambda config: PROMPT | build_model(config).with_structured_output(Verdict)),
    _spec("calc", lambda config: PROMPT | build_model(config).bind_tools([calculator])),
    _spec(
        "both",
        lambda config: RunnableParallel(
            first=PROMPT | build_model(config) | StrOutputParser(),
            second=PROMPT | build_model(config) | StrOutputParser(),
        ),
    ),
]
WHY = "Why is the sky blue on a clear day?"
VERDICT = {"guilty": True, "reason": WHY}
CALL = {"name": "calculator", "arguments": {"expression": "2 + 2"}}


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(example_chains=False, offline_delay=0.0), SHAPES)


def _sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.asyncio
async def test_structured_output_streams_growing_objects_and_is_kept_by_the_run(
    server: LiveServer,
) -> None:
    result = await stream(server.url, "verdict", {"input": {"question": WHY}})
    objects = [event.json() for event in result.of("object")]
    assert len(objects) > 2
    assert objects[-1] == {"value": VERDICT, "complete": True}
    assert all("complete" not in body for body in objects[:-1])
    run_id = result.of("metadata")[0].json()["run_id"]
    async with httpx.AsyncClient(base_url=server.url) as client:
        record = (await client.get(f"/runs/{run_id}")).json()
    assert record["structured_output"] == VERDICT
    assert record["status"] == "done"


@pytest.mark.asyncio
async def test_a_tool_call_streams_deltas_then_the_complete_call(server: LiveServer) -> None:
    result = await stream(server.url, "calc", {"input": {"question": "What is 2 + 2?"}})
    deltas = [event.json() for event in result.of("tool_call_delta")]
    assert "".join(d["arguments_delta"] for d in deltas) == json.dumps(CALL["arguments"])
    (call,) = [event.json() for event in result.of("tool_call")]
    assert call == {"index": 0, "id": "call_offline_1", **CALL}
    assert result.of("end")[0].json()["finish_reason"] == "tool_calls"
    run_id = result.of("metadata")[0].json()["run_id"]
    async with httpx.AsyncClient(base_url=server.url) as client:
        record = (await client.get(f"/runs/{run_id}")).json()
    assert record["tool_calls"] == [call]


def test_v1_carries_structured_output_as_json_text_streamed_or_not(server: LiveServer) -> None:
    client = _sdk(server)
    messages: Any = [{"role": "user", "content": WHY}]
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="verdict", messages=messages, stream=True)
        if chunk.choices
    ]
    assert len([p for p in pieces if p]) > 1, "the JSON text streams in pieces"
    assert json.loads("".join(pieces)) == VERDICT
    whole = client.chat.completions.create(model="verdict", messages=messages)
    assert json.loads(whole.choices[0].message.content or "") == VERDICT


def test_v1_returns_a_chains_tool_call_to_the_client_streamed_or_not(server: LiveServer) -> None:
    client = _sdk(server)
    messages: Any = [{"role": "user", "content": "What is 2 + 2?"}]
    with client.chat.completions.stream(model="calc", messages=messages) as streamed:
        final = streamed.get_final_completion()
    whole = client.chat.completions.create(model="calc", messages=messages)
    for completion in (final, whole):
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call.type == "function"
        assert call.id == "call_offline_1"
        assert call.function.name == "calculator"
        assert json.loads(call.function.arguments) == CALL["arguments"]


def test_v1_sends_a_parallel_dict_as_its_merged_json(server: LiveServer) -> None:
    client = _sdk(server)
    messages: Any = [{"role": "user", "content": "hi"}]
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="both", messages=messages, stream=True)
        if chunk.choices
    ]
    merged = json.loads("".join(pieces))
    assert set(merged) == {"first", "second"}
    assert merged["first"] == merged["second"]
    assert "You said: “hi”" in merged["first"]


def test_ui_shows_structured_output_as_one_data_part_and_tool_calls_as_tool_parts(
    server: LiveServer,
) -> None:
    verdict = read_with_ai_sdk(server.url, "verdict", WHY)
    assert verdict["invalidChunks"] == []
    assert verdict["errors"] == []
    data_parts = [p for p in verdict["message"]["parts"] if p["type"] == "data-object"]
    assert data_parts == [{"type": "data-object", "id": "output", "data": VERDICT}]
    calc = read_with_ai_sdk(server.url, "calc", "What is 2 + 2?")
    assert calc["invalidChunks"] == []
    tools = [p for p in calc["message"]["parts"] if p["type"].startswith("tool-")]
    assert [(p["type"], p["state"], p["input"]) for p in tools] == [
        ("tool-calculator", "input-available", CALL["arguments"])
    ]


def test_the_terminal_client_prints_the_object_and_notes_tool_calls(server: LiveServer) -> None:
    verdict = run_cli("chat", "verdict", WHY, "--url", server.url)
    assert verdict.returncode == 0, verdict.stderr
    assert json.loads(verdict.stdout) == VERDICT
    calc = run_cli("chat", "calc", "What is 2 + 2?", "--url", server.url)
    assert calc.returncode == 0, calc.stderr
    assert '[tool call] calculator {"expression": "2 + 2"}' in calc.stderr


def test_a_providers_streamed_tool_call_reaches_every_surface(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """The real `ChatOpenAI` path: a provider streams a tool call in pieces; native events,
    `/v1` (official SDK) and `GET /runs/{id}` carry the whole call."""
    server = start_server(upstream_settings(upstream, example_chains=False), SHAPES)
    arguments = json.dumps(CALL["arguments"])
    call = {"id": "call_up_1", "name": "calculator", "arguments": arguments}
    upstream.enqueue(*[Script(chunks=[], tool_calls=[call], finish_reason="tool_calls")] * 2)
    native = asyncio.run(stream(server.url, "calc", {"input": {"question": "2 + 2?"}}))
    deltas = [e.json()["arguments_delta"] for e in native.of("tool_call_delta")]
    assert len(deltas) > 2
    assert "".join(deltas) == arguments
    (complete,) = [e.json() for e in native.of("tool_call")]
    assert complete == {"index": 0, "id": "call_up_1", **CALL}
    assert upstream.requests[0].json["tools"][0]["function"]["name"] == "calculator"
    messages: Any = [{"role": "user", "content": "2 + 2?"}]
    with _sdk(server).chat.completions.stream(model="calc", messages=messages) as streamed:
        final = streamed.get_final_completion()
    (sdk_call,) = final.choices[0].message.tool_calls or []
    assert (sdk_call.id, sdk_call.function.name) == ("call_up_1", "calculator")
    assert json.loads(sdk_call.function.arguments) == CALL["arguments"]
    assert final.choices[0].finish_reason == "tool_calls"
    record = httpx.get(f"{server.url}/runs/{native.of('metadata')[0].json()['run_id']}").json()
    assert record["tool_calls"] == [complete]


@pytest.mark.asyncio
async def test_langserve_remote_runnable_gets_each_shape_as_langchain_made_it(
    server: LiveServer,
) -> None:
    """LangServe's routes are unchanged by the event model: `RemoteRunnable` still receives
    the chain's own output, structured output and tool-call messages included."""
    from langserve import RemoteRunnable

    verdict = RemoteRunnable(f"{server.url}/langserve/verdict/")
    assert await verdict.ainvoke({"question": WHY}) == VERDICT
    parts = [part async for part in verdict.astream({"question": WHY})]
    assert parts[-1] == VERDICT
    calc = RemoteRunnable(f"{server.url}/langserve/calc/")
    message = await calc.ainvoke({"question": "What is 2 + 2?"})
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("calculator", CALL["arguments"])
    ]
