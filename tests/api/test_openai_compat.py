"""The OpenAI-compatible API, driven by the official `openai` SDK (sync and async)."""

import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

USER = [{"role": "user", "content": "hi"}]


def _client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def _aclient(server: LiveServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_models_lists_the_chains(openai_server: LiveServer) -> None:
    with _client(openai_server) as client:
        served = sorted(openai_server.app.state.chains)
        assert sorted(m.id for m in client.models.list()) == served


def test_non_streaming_completion_has_content_finish_reason_and_usage(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hello", " there"]))
    with _client(openai_server) as client:
        completion = client.chat.completions.create(model="chat", messages=USER, temperature=0.2)
    assert completion.object == "chat.completion"
    assert completion.model == "chat"
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["temperature"] == 0.2
    assert sent["messages"][-1] == {"role": "user", "content": "hi"}


def test_streaming_sends_role_first_then_deltas_finish_and_usage(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo\n", "ünï 🚀"]))
    with _client(openai_server) as client:
        stream = client.chat.completions.create(
            model="chat", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello\nünï 🚀"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1


def test_streaming_without_include_usage_has_no_usage_chunk(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    with _client(openai_server) as client:
        chunks = list(client.chat.completions.create(model="chat", messages=USER, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_async_client_streams_and_completes(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["a", "b"]), Script(chunks=["c"]))
    async with _aclient(openai_server) as client:
        stream = await client.chat.completions.create(model="chat", messages=USER, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        completion = await client.chat.completions.create(
            model="explain", messages=[{"role": "user", "content": "queues"}]
        )
    assert text == "ab"
    assert completion.choices[0].message.content == "c"
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1]["content"] == "Explain queues."


def test_single_field_chain_takes_the_last_user_message(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    messages: Any = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": [{"type": "text", "text": "closures"}]},
    ]
    with _client(openai_server) as client:
        client.chat.completions.create(model="explain", messages=messages)
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1]["content"] == "Explain closures."


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "nope"}, "model"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": []}, "messages"),
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"extra_body": {"surprise": 1}}, "surprise"),
        ({"extra_body": {"config": {"configurable": {"base_url": "http://x.invalid"}}}}, None),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    openai_server: LiveServer, upstream: MockUpstream, kwargs: dict[str, Any], param: str | None
) -> None:
    request: dict[str, Any] = {"model": "chat", "messages": USER, **kwargs}
    with _client(openai_server) as client, pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(**request)
    error = info.value
    assert error.status_code in (400, 404)
    assert isinstance(error.body, dict)
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.body["param"] == param
    assert upstream.requests == []


def test_ignored_parameters_are_accepted(openai_server: LiveServer, upstream: MockUpstream) -> None:
    with _client(openai_server) as client:
        completion = client.chat.completions.create(
            model="chat", messages=USER, max_tokens=5, top_p=0.5, user="u", seed=1, stop=["x"]
        )
    assert completion.choices[0].message.content


@pytest.mark.parametrize(
    ("script", "exception", "status"),
    [
        (Script(status=429, headers={"retry-after": "2"}), openai.RateLimitError, 429),
        (Script(status=401), openai.APIStatusError, 502),
        (Script(status=503), openai.APIStatusError, 503),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_failure_before_output_is_an_http_error_in_openai_shape(
    openai_server: LiveServer,
    upstream: MockUpstream,
    script: Script,
    exception: type[Exception],
    status: int,
    stream: bool,
) -> None:
    upstream.enqueue(script)
    with _client(openai_server) as client, pytest.raises(exception) as info:
        client.chat.completions.create(model="chat", messages=USER, stream=stream)
    assert isinstance(info.value, openai.APIStatusError)
    assert info.value.status_code == status
    assert "sk-test" not in str(info.value.body)


def test_failure_mid_stream_arrives_as_an_error_chunk(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], drop_after=2))
    pieces: list[str] = []

    def read_all(client: openai.OpenAI) -> None:
        for chunk in client.chat.completions.create(model="chat", messages=USER, stream=True):
            pieces.append(chunk.choices[0].delta.content or "")

    with _client(openai_server) as client, pytest.raises(openai.APIError) as info:
        read_all(client)
    assert "".join(pieces) == "one two"
    assert "connection to the model provider broke" in str(info.value)


def test_closing_the_stream_cancels_the_upstream(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["tok"] * 100, delay=0.1))
    with _client(openai_server) as client:
        stream = client.chat.completions.create(model="chat", messages=USER, stream=True)
        next(iter(stream))
        stream.close()
        closed_at = time.monotonic()
    assert upstream.wait_for_disconnect(timeout=5) - closed_at < 1.0


def test_thread_id_extension_gives_openai_clients_memory(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    thread_id = httpx.post(f"{openai_server.url}/threads").json()["thread_id"]
    upstream.enqueue(Script(chunks=["Hi Ada"]), Script(chunks=["Ada"]))
    with _client(openai_server) as client:
        for text in ("I am Ada", "Who am I?"):
            client.chat.completions.create(
                model="chat",
                messages=[{"role": "user", "content": text}],
                extra_body={"thread_id": thread_id},
            )
    sent = upstream.last_request.json
    assert sent is not None
    assert [m["content"] for m in sent["messages"][1:]] == ["I am Ada", "Hi Ada", "Who am I?"]


def test_streamed_completion_is_a_run_you_can_look_up(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    with _client(openai_server) as client:
        chunks = list(client.chat.completions.create(model="chat", messages=USER, stream=True))
    run_id = chunks[0].id.removeprefix("chatcmpl-")
    run = httpx.get(f"{openai_server.url}/runs/{run_id}").json()
    assert run["status"] == "done"
    assert run["output"] == "Hello, world!"
