"""OpenAI's Responses API on chainserve, driven by the official `openai` SDK's own parsers and
by LangChain's `ChatOpenAI(use_responses_api=True)`."""

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableGenerator
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from chainserve.chains import ChainSpec, ModelConfig, build_model
from chainserve.chains.agent import calculator
from tests.api.owners import ALICE, BOB, keyed_settings
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import run_node_script
from tests.support.server import LiveServer
from tests.support.shapes import Verdict

LIFECYCLE = ("response.created", "response.in_progress")
TEXT_ITEM = (
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
)
TEXT_DONE = (
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
)


def _client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def _wait_for(check: Callable[[], bool]) -> None:
    """Poll until `check()` holds (a generous deadline, only so a bug cannot hang the suite)."""
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def test_streamed_response_sends_typed_events_numbered_in_order(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo\n", "ünï 🚀"]))
    with _client(openai_server) as client:
        events = list(client.responses.create(model="chat", input="hi", stream=True))
    kinds = [event.type for event in events]
    assert tuple(kinds[:5]) == LIFECYCLE + TEXT_ITEM
    assert tuple(kinds[-4:]) == TEXT_DONE
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo\n", "ünï 🚀"]
    completed = events[-1]
    assert completed.type == "response.completed"
    response = completed.response
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "chat"
    assert response.output_text == "Hello\nünï 🚀"
    assert response.usage is not None
    assert response.usage.output_tokens == 3
    assert response.usage.total_tokens == response.usage.input_tokens + 3
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1] == {"role": "user", "content": "hi"}, "no message ids upstream"


def test_stream_helper_gives_the_final_response(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["a", "b"]))
    with (
        _client(openai_server) as client,
        client.responses.stream(
            model="chat", input=[{"role": "user", "content": [{"type": "input_text", "text": "x"}]}]
        ) as stream,
    ):
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text == "ab"
    assert final.status == "completed"


def test_non_streaming_response_is_the_response_object_and_can_be_retrieved(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hello", " there"]))
    with _client(openai_server) as client:
        response = client.responses.create(
            model="chat", input="hi", instructions="Be brief.", temperature=0.2, metadata={"k": "v"}
        )
        again = client.responses.retrieve(response.id)
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello there"
    assert response.instructions == "Be brief."
    assert response.temperature == 0.2
    assert response.metadata == {"k": "v"}
    (item,) = response.output
    assert item.type == "message"
    assert again.output == response.output
    assert again.usage == response.usage
    assert again.created_at == response.created_at
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["temperature"] == 0.2
    assert sent["messages"][1:] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    run_id = uuid.UUID(hex=response.id.removeprefix("resp_"))
    run = httpx.get(f"{openai_server.url}/runs/{run_id}").json()
    assert run["output"] == "Hello there", "a response is a run"


def test_previous_response_id_continues_the_conversation(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hi Ada"]), Script(chunks=["Ada"]), Script(chunks=["x"]))
    with _client(openai_server) as client:
        first = client.responses.create(model="chat", input="I am Ada")
        second = client.responses.create(
            model="chat", input="Who am I?", previous_response_id=first.id, stream=True
        )
        events = list(second)
        sent = upstream.last_request.json
        assert sent is not None
        assert [m["content"] for m in sent["messages"][1:]] == ["I am Ada", "Hi Ada", "Who am I?"]
        latest = events[-1].response.id
        with pytest.raises(openai.BadRequestError) as branching:
            client.responses.create(model="chat", input="again", previous_response_id=first.id)
        third = client.responses.create(model="chat", input="And?", previous_response_id=latest)
    assert branching.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert latest in str(branching.value), "names the response to continue from"
    assert third.previous_response_id == latest
    assert third.output_text == "x"


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"model": "explain", "previous_response_id": "from-setup"}, 400, "previous_response_id"),
        ({"previous_response_id": "resp_" + "0" * 32}, 404, "previous_response_id"),
        ({"previous_response_id": "from-setup", "store": False}, 400, "store"),
        ({"background": True, "store": False}, 400, "background"),
    ],
)
def test_a_conversation_that_cannot_be_continued_is_refused(
    offline_server: LiveServer, kwargs: dict[str, Any], status: int, param: str
) -> None:
    kwargs = dict(kwargs)
    with _client(offline_server) as client:
        if kwargs.get("previous_response_id") == "from-setup":
            kwargs["previous_response_id"] = client.responses.create(model="chat", input="a").id
        with pytest.raises(openai.APIStatusError) as info:
            client.responses.create(**{"model": "chat", "input": "b", **kwargs})
    assert info.value.status_code == status
    assert info.value.body["param"] == param  # type: ignore[index]


def test_a_response_not_stored_cannot_be_retrieved(offline_server: LiveServer) -> None:
    with _client(offline_server) as client:
        response = client.responses.create(model="chat", input="hi", store=False)
        assert response.output_text
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response.id)
    threads = httpx.get(f"{offline_server.url}/threads").json()["threads"]
    assert threads == [], "nothing kept for a conversation"


def test_background_response_is_retrieved_resumed_and_completes(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], hold_after=2))
    with _client(openai_server) as client:
        started = client.responses.create(model="chat", input="hi", background=True)
        assert started.status in ("queued", "in_progress")
        _wait_for(lambda: client.responses.retrieve(started.id).output_text == "one two")
        assert client.responses.retrieve(started.id).status == "in_progress"
        upstream.release()
        resumed = client.responses.retrieve(started.id, stream=True, starting_after=4)
        rest = list(resumed)
        done = client.responses.retrieve(started.id)
    assert rest[0].sequence_number == 5
    assert rest[-1].type == "response.completed"
    deltas = [e.delta for e in rest if e.type == "response.output_text.delta"]
    assert "".join(deltas) == " two three", "the events after 4, none twice, none missing"
    assert done.status == "completed"
    assert done.output_text == "one two three"
    assert done.output == rest[-1].response.output


def test_cancelling_a_background_response_keeps_its_output_so_far(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], hold_after=1))
    with _client(openai_server) as client:
        started = client.responses.create(model="chat", input="hi", background=True, stream=True)
        first = [next(started) for _ in range(5)]
        cancelled = client.responses.cancel(first[0].response.id)
        rest = list(started)
        again = client.responses.cancel(cancelled.id)
        retrieved = client.responses.retrieve(cancelled.id)
    assert first[-1].type == "response.output_text.delta"
    assert cancelled.status == again.status == retrieved.status == "cancelled"
    assert retrieved.output_text == "one"
    assert [e.type for e in rest][-2:] == ["error", "response.failed"]
    assert rest[-1].response.status == "cancelled"
    upstream.wait_for_disconnect()


def test_closing_a_stream_cancels_the_response(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["tok"] * 100, delay=0.05))
    with _client(openai_server) as client:
        stream = client.responses.create(model="chat", input="hi", stream=True)
        response_id = next(iter(stream)).response.id
        stream.close()
        upstream.wait_for_disconnect()
        _wait_for(lambda: client.responses.retrieve(response_id).status == "cancelled")


def test_output_cut_at_the_token_cap_is_an_incomplete_response(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_output_tokens=50))
    upstream.enqueue(Script(chunks=["a", "b"], finish_reason="length"))
    with _client(server) as client:
        events = list(
            client.responses.create(model="chat", input="hi", stream=True, max_output_tokens=4096)
        )
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["max_completion_tokens"] == 50, "lowered to the server's cap"
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert events[-1].response.output_text == "ab"


def test_failure_before_output_is_an_http_error(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(status=429, headers={"retry-after": "2"}), Script(status=503))
    with _client(openai_server) as client:
        with pytest.raises(openai.RateLimitError):
            client.responses.create(model="chat", input="hi", stream=True)
        with pytest.raises(openai.InternalServerError) as info:
            client.responses.create(model="chat", input="hi")
    assert info.value.status_code == 503
    assert "sk-test" not in str(info.value.body)


def test_failure_mid_stream_ends_with_an_error_and_a_failed_response(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], drop_after=2))
    with _client(openai_server) as client:
        events = list(client.responses.create(model="chat", input="hi", stream=True))
    error, failed = events[-2:]
    assert error.type == "error"
    assert error.code == "upstream_error"
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.output_text == "one two", "the output so far"


@pytest.mark.parametrize(
    ("kwargs", "status", "param"),
    [
        ({"model": "nope"}, 404, "model"),
        ({"temperature": 3}, 400, "temperature"),
        ({"extra_body": {"surprise": 1}}, 400, "surprise"),
        ({"include": ["message.output_text.logprobs"]}, 400, "include"),
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0]"),
        ({"tools": [{"type": "function", "name": "f"}]}, 400, "tools"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400,
         "input[0].content[0]"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, 400, "input[0]"),
        ({"extra_body": {"config": {"configurable": {"thread_id": "t"}}}}, 400, "config"),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_shaped_errors_naming_the_parameter(
    openai_server: LiveServer, upstream: MockUpstream, kwargs: dict[str, Any], status: int,
    param: str,
) -> None:  # fmt: skip
    request: dict[str, Any] = {"model": "chat", "input": "hi", **kwargs}
    with _client(openai_server) as client, pytest.raises(openai.APIStatusError) as info:
        client.responses.create(**request)
    assert info.value.status_code == status
    assert isinstance(info.value.body, dict)
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert info.value.body["param"] == param
    assert upstream.requests == []


def test_models_can_be_retrieved_one_by_one(openai_server: LiveServer) -> None:
    with _client(openai_server) as client:
        for name in openai_server.app.state.chains:
            assert client.models.retrieve(name).id == name
        with pytest.raises(openai.NotFoundError) as info:
            client.models.retrieve("no-such-chain")
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_another_keys_response_is_as_unknown_as_a_missing_one(
    start_server: ServerFactory,
) -> None:
    server = start_server(keyed_settings())
    with _client(server, ALICE) as alice, _client(server, BOB) as bob:
        response = alice.responses.create(model="chat", input="hi")
        for call in (
            lambda: bob.responses.retrieve(response.id),
            lambda: bob.responses.cancel(response.id),
            lambda: bob.responses.create(model="chat", input="x", previous_response_id=response.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
        assert alice.responses.retrieve(response.id).output_text == response.output_text


PROMPT = ChatPromptTemplate.from_template("{question}")


class Question(BaseModel):
    question: str


async def _think(_: AsyncIterator[Any]) -> AsyncIterator[AIMessageChunk]:
    yield AIMessageChunk(content="", additional_kwargs={"reasoning_content": "Hmm, "})
    yield AIMessageChunk(content="", additional_kwargs={"reasoning_content": "two."})
    yield AIMessageChunk(content="Two")


def _spec(name: str, build: Callable[[ModelConfig], Runnable[Any, Any]]) -> ChainSpec:
    return ChainSpec(name, f"The {name} shape.", build, Question)


SHAPES = [
    _spec("verdict", lambda config: PROMPT | build_model(config).with_structured_output(Verdict)),
    _spec("calc", lambda config: PROMPT | build_model(config).bind_tools([calculator])),
    _spec("thinker", lambda config: RunnableGenerator(_think)),
]


@pytest.fixture
def shapes_server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(example_chains=False), SHAPES)


def test_a_chains_tool_call_is_a_function_call_item(shapes_server: LiveServer) -> None:
    with _client(shapes_server) as client:
        events = list(client.responses.create(model="calc", input="What is 2 + 2?", stream=True))
        whole = client.responses.create(model="calc", input="What is 2 + 2?")
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    for response in (events[-1].response, whole):
        calls = [item for item in response.output if item.type == "function_call"]
        (call,) = calls
        assert call.call_id == "call_offline_1"
        assert call.name == "calculator"
        assert json.loads(call.arguments) == {"expression": "2 + 2"}


def test_structured_output_is_json_output_text(shapes_server: LiveServer) -> None:
    question = "Why is the sky blue?"
    with _client(shapes_server) as client:
        events = list(client.responses.create(model="verdict", input=question, stream=True))
        whole = client.responses.create(model="verdict", input=question)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1, "the JSON text streams in pieces"
    assert json.loads("".join(deltas)) == {"guilty": True, "reason": question}
    assert json.loads(whole.output_text) == {"guilty": True, "reason": question}


def test_reasoning_is_a_reasoning_item_before_the_answer(shapes_server: LiveServer) -> None:
    with _client(shapes_server) as client:
        events = list(client.responses.create(model="thinker", input="1 + 1?", stream=True))
        whole = client.responses.create(model="thinker", input="1 + 1?")
    deltas = [e.delta for e in events if e.type == "response.reasoning_text.delta"]
    assert deltas == ["Hmm, ", "two."]
    for response in (events[-1].response, whole):
        reasoning, message = response.output
        assert reasoning.type == "reasoning"
        assert [part.text for part in reasoning.content or []] == ["Hmm, two."]
        assert message.type == "message"
        assert response.output_text == "Two"


def test_the_model_chain_runs_a_clients_function_tools(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object"}}
    call = {"id": "call_9", "name": "weather", "arguments": '{"city": "Oslo"}'}
    upstream.enqueue(Script(chunks=[], tool_calls=[call]), Script(chunks=["Sunny"]))
    with _client(openai_server) as client:
        asked = client.responses.create(model="model", input="Weather?", tools=[tool])
        (made,) = asked.output
        assert made.type == "function_call"
        answer = client.responses.create(
            model="model",
            input=[
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": made.call_id, "name": made.name,
                 "arguments": made.arguments},
                {"type": "function_call_output", "call_id": made.call_id, "output": "sun"},
            ],
            tools=[tool],
        )  # fmt: skip
    assert answer.output_text == "Sunny"
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["tools"][0]["function"]["name"] == "weather"
    assert sent["messages"][-2]["tool_calls"][0]["id"] == "call_9"
    assert sent["messages"][-1] == {"role": "tool", "content": "sun", "tool_call_id": "call_9"}


@pytest.mark.asyncio
async def test_langchain_chat_openai_streams_and_invokes_over_the_responses_api(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["a", "b"]), Script(chunks=["c"]))
    llm = ChatOpenAI(
        model="chat", use_responses_api=True, base_url=f"{openai_server.url}/v1", api_key="x"
    )
    chunks = [chunk async for chunk in llm.astream("hi")]
    reply = await llm.ainvoke("hi")
    assert "".join(chunk.text for chunk in chunks) == "ab"
    assert reply.text == "c"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == 1


def test_the_node_openai_sdk_reads_a_streamed_and_a_whole_response(
    offline_server: LiveServer,
) -> None:
    result = run_node_script(
        "responses_api.mjs", f"{offline_server.url}/v1", "chat", package="openai"
    )
    assert result["streamed"] == result["whole"] == result["helped"]
    assert result["streamed"].startswith("[offline model]")
    assert result["types"][0] == "response.created"
    assert result["types"][-1] == "response.completed"


def test_an_input_image_reaches_the_model_of_a_chain_that_takes_messages(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    content = [{"type": "input_text", "text": "what is this?"},
               {"type": "input_image", "image_url": image}]  # fmt: skip
    with _client(openai_server) as client:
        client.responses.create(model="chat", input=[{"role": "user", "content": content}])
    sent = upstream.last_request.json["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": image, "detail": "auto"}} in sent
