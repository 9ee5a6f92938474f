"""Agents (LangGraph graphs) served over real HTTP: model tokens as they come, tool steps and
results as events, the final answer on `/v1` with the steps folded away, AI SDK steps and tool
parts on `/ui`, per-request knobs reaching the model, and a hang-up reaching the tool."""

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import SecretStr

from chainserve.chains import ChainSpec, ModelConfig, build_model
from chainserve.chains.agent import AgentInput, calculator
from tests.api.streaming import collect, hang_up_at, stream
from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import read_with_ai_sdk
from tests.support.server import LiveServer
from tests.support.terminal import run_cli

QUESTION = "What is 2 + 3 * 4?"
ASK = {"input": {"messages": [{"role": "user", "content": QUESTION}]}}
RESULT = "The calculator tool returned: “14”."


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    """The shipped `agent` example on the offline model."""
    return start_server(offline_settings(offline_delay=0.0))


def _run_id(result: Any) -> str:
    return str(result.of("metadata")[0].json()["run_id"])


@pytest.mark.asyncio
async def test_the_agent_streams_its_steps_tool_result_and_answer(server: LiveServer) -> None:
    result = await stream(server.url, "agent", ASK)
    assert result.status == 200
    names = [e.event for e in result.events if e.event != "data"]
    assert names[:2] == ["metadata", "step"]
    assert names[-1] == "end"
    steps = [e.json() for e in result.of("step")]
    assert [(s["type"], s["status"]) for s in steps] == [
        ("model", "start"), ("model", "end"), ("tool", "start"), ("tool", "end"),
        ("model", "start"), ("model", "end"),
    ]  # fmt: skip
    (call,) = [e.json() for e in result.of("tool_call")]
    assert call["name"] == "calculator"
    assert call["arguments"] == {"expression": "2 + 3 * 4"}
    assert call["step"] == 0
    (tool_result,) = [e.json() for e in result.of("tool_result")]
    assert tool_result == {
        "tool_call_id": call["id"], "name": "calculator", "content": "14",
        "status": "success", "step": 1,
    }  # fmt: skip
    # The answer streams as text, token by token; tool-call pieces stay message chunks.
    texts = [e.json() for e in result.of("data") if isinstance(e.json(), str)]
    assert RESULT in "".join(texts)
    assert len(texts) > 10
    async with httpx.AsyncClient(base_url=server.url) as client:
        record = (await client.get(f"/runs/{_run_id(result)}")).json()
    assert RESULT in record["output"]
    assert record["tool_calls"] == [call]


def test_v1_folds_the_tool_steps_away_and_streams_the_answer(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages: Any = [{"role": "user", "content": QUESTION}]
    chunks = list(client.chat.completions.create(model="agent", messages=messages, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.tool_calls for d in deltas)
    text = "".join(d.content or "" for d in deltas)
    assert RESULT in text
    assert len([d for d in deltas if d.content]) > 10
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    whole = client.chat.completions.create(model="agent", messages=messages)
    assert RESULT in (whole.choices[0].message.content or "")
    assert not whole.choices[0].message.tool_calls
    assert whole.choices[0].finish_reason == "stop"


def test_ui_shows_each_model_turn_as_a_step_with_the_tools_output(server: LiveServer) -> None:
    result = read_with_ai_sdk(server.url, "agent", QUESTION)
    assert result["invalidChunks"] == []
    assert result["errors"] == []
    parts = result["message"]["parts"]
    assert [p["type"] for p in parts].count("step-start") == 2
    (tool_part,) = [p for p in parts if p["type"] == "tool-calculator"]
    assert tool_part["state"] == "output-available"
    assert tool_part["input"] == {"expression": "2 + 3 * 4"}
    assert tool_part["output"] == "14"
    assert RESULT in result["text"]


def test_the_terminal_client_shows_tool_steps_on_stderr(server: LiveServer) -> None:
    done = run_cli("chat", "agent", QUESTION, "--url", server.url)
    assert done.returncode == 0, done.stderr
    assert '[tool call] calculator {"expression": "2 + 3 * 4"}' in done.stderr
    assert "[tool result] calculator: 14" in done.stderr
    assert RESULT in done.stdout


@pytest.mark.asyncio
async def test_a_per_request_knob_reaches_the_agents_model(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        chains = (await client.get("/chains")).json()["chains"]
    (agent,) = [c for c in chains if c["name"] == "agent"]
    assert {"max_tokens", "temperature"} <= {k["id"] for k in agent["configurable"]}
    capped = await stream(
        server.url, "agent", {**ASK, "config": {"configurable": {"max_tokens": 3}}}
    )
    final_turn = [e for e in capped.of("data") if isinstance(e.json(), str)]
    assert len(final_turn) == 3
    assert capped.of("end")[0].json()["finish_reason"] == "length"


@tool
async def slow_lookup(query: str) -> str:
    """Look something up slowly."""
    SLOW.append("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        SLOW.append("cancelled")
        raise
    return "never"


SLOW: list[str] = []


def test_hanging_up_during_a_tool_step_cancels_the_tool(start_server: ServerFactory) -> None:
    SLOW.clear()

    def build(config: ModelConfig) -> Any:
        model: Any = build_model(config)
        return create_agent(model, tools=[slow_lookup])

    spec = ChainSpec("looker", "Looks things up slowly.", build, AgentInput)
    server = start_server(offline_settings(offline_delay=0.0, example_chains=False), [spec])
    body = {"input": {"messages": [{"role": "user", "content": "slow lookup of pipes"}]}}
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        client.stream("POST", "/chains/looker/stream", json=body) as response,
    ):
        run_id = response.headers["x-run-id"]
        for line in response.iter_lines():  # hang up once the tool step has begun
            if line.startswith("data: ") and '"type":"tool"' in line and '"start"' in line:
                break
        deadline = time.monotonic() + 5
        while "started" not in SLOW and time.monotonic() < deadline:
            time.sleep(0.02)
    deadline = time.monotonic() + 5
    while "cancelled" not in SLOW and time.monotonic() < deadline:
        time.sleep(0.02)
    assert SLOW == ["started", "cancelled"]
    record = httpx.get(f"{server.url}/runs/{run_id}").json()
    assert record["status"] == "cancelled"


@pytest.mark.asyncio
async def test_a_hand_built_graph_on_a_users_model_streams_tokens(
    start_server: ServerFactory,
) -> None:
    """The tutorial graph: one node calling a model it names as a module global."""
    global TUTORIAL_MODEL
    TUTORIAL_MODEL = build_model(ModelConfig(offline_delay=0.0))

    async def chatbot(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await TUTORIAL_MODEL.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chatbot", chatbot)
    builder.add_edge(START, "chatbot")
    builder.add_edge("chatbot", END)
    server = start_server(offline_settings(example_chains=False), {"bot": builder.compile()})
    result = await stream(
        server.url, "bot", {"input": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    assert result.status == 200, result.body
    tokens = [e.json() for e in result.of("data")]
    assert len(tokens) > 5
    assert "You said: “hi”" in "".join(tokens)
    async with httpx.AsyncClient(base_url=server.url) as client:
        chains = (await client.get("/chains")).json()["chains"]
    assert {"max_tokens", "temperature"} <= {k["id"] for k in chains[0]["configurable"]}
    whole = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused").chat.completions.create(
        model="bot", messages=[{"role": "user", "content": "hi"}]
    )
    assert "You said: “hi”" in (whole.choices[0].message.content or "")
    assert json.loads(json.dumps(whole.model_dump()))["choices"][0]["finish_reason"] == "stop"


TUTORIAL_MODEL: Any = AIMessage("")


def _users_agent(upstream: MockUpstream) -> Any:
    """A `create_agent` graph closing over the user's own `ChatOpenAI`, on the mock upstream."""
    model = ChatOpenAI(
        model="gpt-4.1-mini",
        base_url=upstream.base_url,
        api_key=SecretStr("sk-user"),
        max_retries=0,
        streaming=True,
    )
    return create_agent(model, tools=[calculator])


def test_hanging_up_during_a_model_turn_hangs_up_on_the_provider(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(offline_settings(example_chains=False), {"mine": _users_agent(upstream)})
    upstream.enqueue(Script(chunks=["tok "] * 200, delay=0.05))
    run_id, closed_at = hang_up_at(server.url, "/chains/mine/stream", ASK, "tok")
    assert upstream.wait_for_disconnect(timeout=5) - closed_at < 2.0
    assert upstream.last_request.chunks_sent < 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = httpx.get(f"{server.url}/runs/{run_id}").json()
        if record["status"] != "running":
            break
        time.sleep(0.05)
    assert record["status"] == "cancelled"


@pytest.mark.asyncio
async def test_a_users_agent_on_their_own_chatopenai_runs_the_served_twin(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """A `create_agent` graph closing over the user's `ChatOpenAI`: the server's output cap
    reaches the provider, and a provider stream cut short is a typed error, not an answer
    that looks complete (the twin's checks; the user's model has neither)."""
    settings = offline_settings(example_chains=False, max_output_tokens=50)
    server = start_server(settings, {"mine": _users_agent(upstream)})
    cut = Script(chunks=["half"], finish_reason=None, send_done=False, close_delimited=True)
    upstream.enqueue(Script(chunks=["Ahoy", ", ", "matey"]), cut)
    answered = await stream(server.url, "mine", ASK)
    assert answered.text == "Ahoy, matey"
    assert answered.of("end"), answered.body
    sent = upstream.requests[0].json
    assert (sent["model"], sent["max_completion_tokens"]) == ("gpt-4.1-mini", 50)
    assert [t["function"]["name"] for t in sent["tools"]] == ["calculator"]
    broken = await stream(server.url, "mine", ASK)
    if broken.status == 200:
        (error,) = broken.of("error")
        assert "ended before the answer was complete" in error.json()["message"]
        assert not broken.of("end")
    else:
        assert broken.status == 502, broken.body


@pytest.mark.asyncio
async def test_an_agents_thread_keeps_its_whole_turns_in_the_thread_store(
    server: LiveServer,
) -> None:
    """The agent's thread lives in chainserve's thread store: a completed turn appends the
    question, the tool call, the tool's result and the answer; the next turn sees them."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        thread = (await client.post("/threads")).json()["thread_id"]
        first = await stream(server.url, "agent", {**ASK, "thread_id": thread})
        assert first.of("end"), first.body
        saved = (await client.get(f"/threads/{thread}")).json()["messages"]
        assert [m["role"] for m in saved] == ["user", "assistant", "tool", "assistant"]
        assert saved[2]["content"] == "14"
        follow_up = {"input": {"messages": [{"role": "user", "content": "thanks"}]}}
        second = await stream(server.url, "agent", {**follow_up, "thread_id": thread})
        answer = second.text
        # The offline model counts the conversation it was given: the thread's, then "thanks".
        assert "This conversation has 4 messages so far." in answer
        saved = (await client.get(f"/threads/{thread}")).json()["messages"]
        assert len(saved) == 6


def test_an_agents_structured_response_is_its_answer_on_every_surface(
    start_server: ServerFactory,
) -> None:
    """`create_agent(response_format=...)` answers with an object: native `object` events,
    `/v1` content as its JSON, `GET /runs/{id}` structured_output; never an empty 200."""
    from pydantic import BaseModel

    class Sum(BaseModel):
        expression: str
        total: int

    def build(config: ModelConfig) -> Any:
        model: Any = build_model(config)
        return create_agent(model, tools=[calculator], response_format=Sum)

    spec = ChainSpec("summer", "Sums.", build, AgentInput)
    server = start_server(offline_settings(offline_delay=0.0, example_chains=False), [spec])
    expected = {"expression": "add 2 and 2", "total": 2}
    native = asyncio.run(stream(server.url, "summer", {"input": {"messages": [
        {"role": "user", "content": "add 2 and 2"}]}}))  # fmt: skip
    assert native.of("object")[-1].json() == {"value": expected, "complete": True}
    record = httpx.get(f"{server.url}/runs/{_run_id(native)}").json()
    assert record["structured_output"] == expected
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    for streamed in (False, True):
        answer = sdk.chat.completions.create(
            model="summer", messages=[{"role": "user", "content": "add 2 and 2"}], stream=streamed
        )
        if streamed:
            content = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)  # type: ignore[union-attr]
        else:
            content = answer.choices[0].message.content or ""  # type: ignore[union-attr]
        assert json.loads(content) == expected


def test_a_users_graph_with_its_own_checkpointer_keeps_its_threads_there(
    start_server: ServerFactory,
) -> None:
    """`create_agent(..., checkpointer=...)` served with `--chains`: without a thread each
    run is a fresh one (LangGraph refuses a checkpointed run with none); with a thread made
    by POST /threads, the graph's own checkpointer carries the conversation, which the thread
    routes show and delete."""
    from langgraph.checkpoint.memory import InMemorySaver

    model: Any = build_model(ModelConfig(offline_delay=0.0))
    graph = create_agent(model, tools=[calculator], checkpointer=InMemorySaver())
    server = start_server(offline_settings(example_chains=False), {"mine": graph})
    ask = {"input": {"messages": [{"role": "user", "content": "hello"}]}}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        alone = client.post("/chains/mine/invoke", json=ask)
        assert alone.status_code == 200, alone.text
        thread = client.post("/threads").json()["thread_id"]
        for _ in range(2):
            turn = client.post("/chains/mine/invoke", json={**ask, "thread_id": thread})
            assert turn.status_code == 200, turn.text
        messages = turn.json()["output"]["messages"]
        assert [m["type"] for m in messages] == ["human", "ai", "human", "ai"]
        # The thread routes read the graph's checkpoints, and deleting the thread deletes them.
        shown = client.get(f"/threads/{thread}").json()["messages"]
        assert [(m["role"], m["content"]) for m in shown] == [
            (m["type"].replace("human", "user").replace("ai", "assistant"), m["content"])
            for m in messages
        ]
        assert client.delete(f"/threads/{thread}").status_code == 204
        assert client.get(f"/threads/{thread}").status_code == 404
    assert graph.get_state({"configurable": {"thread_id": thread}}).values == {}


@pytest.mark.asyncio
async def test_an_agent_run_asked_to_continue_outlives_a_hang_up_and_can_be_joined(
    start_server: ServerFactory,
) -> None:
    """Hang up after the tool's result; the agent goes on, and a join with Last-Event-ID gets
    the rest of its answer with no gap or duplicate."""
    from tests.support.sse import SSEParser

    server = start_server(offline_settings(offline_delay=0.02))
    first: list[Any] = []
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream(
            "POST", "/chains/agent/stream", json={**ASK, "on_disconnect": "continue"}
        ) as response,
    ):
        run_id = response.headers["x-run-id"]
        async for raw in response.aiter_raw():
            first.extend(parser.feed(raw))
            if any(e.event == "tool_result" for e in first):
                break
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream(
            "GET", f"/runs/{run_id}/stream", headers={"Last-Event-ID": first[-1].id}
        ) as rest,
    ):
        later = await collect(rest)
        record = (await client.get(f"/runs/{run_id}")).json()
    events = first + later.events
    assert [int(e.id) for e in events] == list(range(len(events)))
    assert events[-1].event == "end"
    text = "".join(e.json() for e in events if e.event == "data" and isinstance(e.json(), str))
    assert RESULT in text
    assert record["status"] == "done"
