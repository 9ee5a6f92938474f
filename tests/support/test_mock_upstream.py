"""Checks the mock upstream with the real openai SDK and ChatOpenAI, so other tests can trust it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageParam

from .mock_upstream import (
    EMBEDDING_DIMENSIONS,
    MockUpstream,
    RecordedRequest,
    Script,
    embedding_for,
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "say hello to the world"}]


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def sdk(mock: MockUpstream, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=mock.base_url, api_key="sk-test", max_retries=0, timeout=timeout
    )


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """Owned by the test's loop: ChatOpenAI's default client is cached process-wide per base_url."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def chat(mock: MockUpstream, http: httpx.AsyncClient, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        http_async_client=http,
        model="gpt-test",
        base_url=mock.base_url,
        api_key="sk-test",
        stream_usage=True,
        max_retries=0,
        **kwargs,
    )


async def collect(stream: AsyncIterator[Any], into: list[Any]) -> None:
    async for item in stream:
        into.append(item)


@pytest.mark.asyncio
async def test_raw_stream_is_openai_sse_with_role_first_and_done_last(mock: MockUpstream) -> None:
    body = {"model": "gpt-raw", "messages": USER, "stream": True}
    url = f"{mock.base_url}/chat/completions"
    async with httpx.AsyncClient() as client, client.stream("POST", url, json=body) as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = [line async for line in r.aiter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert {e["model"] for e in events} == {"gpt-raw"}
    assert [e["choices"][0]["delta"] for e in events] == [
        {"role": "assistant", "content": ""},
        *({"content": c} for c in ["Hello", ",", " world", "!"]),
        {},
    ]
    assert [e["choices"][0]["finish_reason"] for e in events][-2:] == [None, "stop"]
    assert "usage" not in events[-1]
    assert mock.last_request.completed
    assert mock.last_request.chunks_sent == 4


@pytest.mark.asyncio
async def test_sdk_stream_in_order_and_include_usage_adds_usage_chunk(mock: MockUpstream) -> None:
    mock.enqueue(Script(chunks=["a", "b", "c"], finish_reason="length"))
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(
            model="m", messages=USER, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:4]] == ["a", "b", "c"]
    assert chunks[4].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 3, 8)


@pytest.mark.asyncio
async def test_non_streaming_returns_joined_content_and_usage(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    mock.enqueue(Script(usage={"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}))
    async with sdk(mock) as client:
        completion = await client.chat.completions.create(model="m", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 13
    message = await chat(mock, http).ainvoke([HumanMessage("hi there")])
    assert message.content == "Hello, world!"
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 4


@pytest.mark.asyncio
async def test_error_status_reaches_sdk_as_typed_exception_with_headers(mock: MockUpstream) -> None:
    mock.enqueue(
        Script(status=429, headers={"retry-after": "7"}),
        Script(status=500, error_message="boom"),
    )
    async with sdk(mock) as client:
        with pytest.raises(openai.RateLimitError) as rate_limited:
            await client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.InternalServerError, match="boom"):
            await client.chat.completions.create(model="m", messages=USER)
    assert rate_limited.value.status_code == 429
    assert rate_limited.value.response.headers["retry-after"] == "7"
    assert rate_limited.value.code == "rate_limit_exceeded"
    assert [r.completed for r in mock.requests] == [True, True]


@pytest.mark.asyncio
async def test_first_delay_stalls_before_headers(mock: MockUpstream) -> None:
    mock.enqueue(Script(first_delay=0.3))
    started = time.monotonic()
    async with sdk(mock) as client:
        await client.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_drop_after_breaks_sdk_and_chatopenai_streams(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    mock.enqueue(Script(drop_after=2), Script(drop_after=1))
    received: list[Any] = []
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        with pytest.raises(openai.APIConnectionError):
            await collect(stream, received)
    assert [c.choices[0].delta.content for c in received] == ["", "Hello", ","]
    with pytest.raises(openai.APIConnectionError):
        await collect(chat(mock, http).astream("hi"), [])
    outcomes = [(r.chunks_sent, r.completed, r.disconnected_at) for r in mock.requests]
    assert outcomes == [(2, False, None), (1, False, None)]


@pytest.mark.asyncio
async def test_hold_after_holds_until_release(mock: MockUpstream) -> None:
    mock.enqueue(Script(hold_after=1))
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        chunks = stream.__aiter__()
        assert [(await anext(chunks)).choices[0].delta.content for _ in range(2)] == ["", "Hello"]
        pending = asyncio.ensure_future(anext(chunks))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done
        assert mock.last_request.chunks_sent == 1
        mock.release()
        assert (await pending).choices[0].delta.content == ","
        assert [c.choices[0].delta.content async for c in chunks] == [" world", "!", None]
    assert mock.last_request.completed


@pytest.mark.asyncio
async def test_release_before_hold_is_kept_and_reset_clears_state(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    mock.release()
    mock.enqueue(Script(hold_after=0, chunks=["x"]), Script(chunks=["queued"]))
    llm = chat(mock, http)
    assert (await llm.ainvoke("a")).content == "x"
    mock.default_script = Script(chunks=["custom"])
    mock.reset()
    assert mock.requests == []
    assert (await llm.ainvoke("b")).content == "Hello, world!"


@pytest.mark.asyncio
async def test_sdk_closing_stream_early_is_recorded_as_disconnect(mock: MockUpstream) -> None:
    mock.enqueue(Script(delay=5.0))
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        async for chunk in stream:
            if chunk.choices[0].delta.content == "Hello":
                break
        closed_at = time.monotonic()
        await stream.close()
        disconnected_at = await mock.wait_for_disconnect_async(timeout=1.0)
    assert 0 <= disconnected_at - closed_at < 1.0
    assert not mock.last_request.completed
    assert mock.last_request.chunks_sent == 1


@pytest.mark.asyncio
async def test_client_timeout_during_first_delay_is_a_disconnect(mock: MockUpstream) -> None:
    mock.enqueue(Script(first_delay=10.0))
    async with sdk(mock, timeout=0.2) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=USER)
    disconnected_at = mock.wait_for_disconnect(timeout=1.0)
    assert disconnected_at - mock.last_request.received_at < 1.0
    assert not mock.last_request.completed


@pytest.mark.asyncio
async def test_chatopenai_stream_closed_while_held_is_a_disconnect(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    mock.enqueue(Script(hold_after=1))
    stream = chat(mock, http).astream("hi")
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for chunk in stream:
            if chunk.content == "Hello":
                break
    await mock.wait_for_disconnect_async(timeout=1.0)
    assert mock.last_request.chunks_sent == 1
    assert not mock.last_request.completed


@pytest.mark.asyncio
async def test_requests_record_json_body_and_headers(
    mock: MockUpstream, http: httpx.AsyncClient
) -> None:
    chunks = [
        c async for c in chat(mock, http, temperature=0.3).astream([HumanMessage("what is up")])
    ]
    assert "".join(str(c.content) for c in chunks) == "Hello, world!"
    (request,) = mock.wait_for_requests(1)
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.json["model"] == "gpt-test"
    assert request.json["messages"] == [{"role": "user", "content": "what is up"}]
    assert request.json["temperature"] == 0.3
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}


@pytest.mark.asyncio
async def test_chatopenai_stream_usage_lands_on_the_last_data_chunk(mock: MockUpstream) -> None:
    # The plain construction the app would use, relying on langchain's cached default client.
    llm = ChatOpenAI(base_url=mock.base_url, api_key="sk-test", stream_usage=True, max_retries=0)
    chunks: list[AIMessageChunk] = [c async for c in llm.astream("one two three")]
    # langchain-core closes every stream with an empty chunk_position="last" marker chunk.
    *data, marker = chunks
    assert marker.chunk_position == "last"
    assert data[-1].usage_metadata is not None
    assert data[-1].usage_metadata["input_tokens"] == 3
    assert data[-1].usage_metadata["output_tokens"] == 4
    assert [c.usage_metadata for c in data[:-1]] == [None] * (len(data) - 1)


@pytest.mark.asyncio
async def test_each_sse_message_arrives_before_the_next_is_sent(mock: MockUpstream) -> None:
    mock.enqueue(Script(delay=0.1, chunks=["a", "b", "c"]))
    seen: list[tuple[str | None, int]] = []
    async with sdk(mock) as client:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        async for chunk in stream:
            seen.append((chunk.choices[0].delta.content, mock.last_request.chunks_sent))
    assert seen[1:4] == [("a", 1), ("b", 2), ("c", 3)]


def test_sync_keep_alive_models_and_404(mock: MockUpstream) -> None:
    with httpx.Client(base_url=mock.base_url) as client:
        models = client.get("/models").json()
        missing = client.post("/moderations", json={})
        completion = client.post("/chat/completions", json={"model": "m", "messages": USER})
    assert models["data"][0]["object"] == "model"
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert completion.json()["choices"][0]["message"]["content"] == "Hello, world!"
    requests = mock.wait_for_requests(3)
    assert len({r.connection_id for r in requests}) == 1
    assert [r.json for r in requests[:2]] == [None, {}]
    with pytest.raises(AssertionError, match="no 4 request"):
        mock.wait_for_requests(4, timeout=0.05)


def test_stop_does_not_hang_on_a_held_stream() -> None:
    threads_before = set(threading.enumerate())
    upstream = MockUpstream().__enter__()
    upstream.enqueue(Script(hold_after=0))
    errors: list[Exception] = []

    def consume() -> None:
        body = {"model": "m", "messages": USER, "stream": True}
        with httpx.Client(base_url=upstream.base_url) as client:
            try:
                with client.stream("POST", "/chat/completions", json=body) as response:
                    response.read()
            except httpx.HTTPError as exc:
                errors.append(exc)

    worker = threading.Thread(target=consume)
    worker.start()
    upstream.wait_for_requests(1)
    started = time.monotonic()
    upstream.__exit__(None, None, None)
    assert time.monotonic() - started < 1.0
    worker.join(2.0)
    assert not worker.is_alive()
    assert [type(e) for e in errors] == [httpx.RemoteProtocolError]
    assert set(threading.enumerate()) <= threads_before


async def _open_connections_become(
    mock: MockUpstream, expected: dict[int, RecordedRequest | None]
) -> None:
    """The mock updates its books just after its last write: poll briefly, don't race it."""
    for _ in range(100):
        if mock.open_connections() == expected:
            return
        await asyncio.sleep(0.01)
    assert mock.open_connections() == expected


@pytest.mark.asyncio
async def test_open_connections_tell_in_flight_from_idle_keep_alive(mock: MockUpstream) -> None:
    mock.enqueue(Script(chunks=["a"]), Script(hold_after=0))
    body = {"model": "m", "messages": USER, "stream": True}
    async with httpx.AsyncClient(base_url=mock.base_url, timeout=5) as client:
        await client.post("/chat/completions", json=body)
        first = mock.last_request
        await _open_connections_become(mock, {first.connection_id: None})  # kept alive, idle
        async with client.stream("POST", "/chat/completions", json=body) as response:
            await anext(response.aiter_raw())
            held = mock.last_request
            assert held.connection_id == first.connection_id
            assert mock.open_connections() == {held.connection_id: held}
        await mock.wait_for_disconnect_async(timeout=1.0)  # closed mid-body: not reusable
    await _open_connections_become(mock, {})


@pytest.mark.asyncio
async def test_close_idle_closes_kept_alive_connections_but_not_busy_ones(
    mock: MockUpstream,
) -> None:
    mock.enqueue(Script(chunks=["a"]), Script(hold_after=0))
    body = {"model": "m", "messages": USER, "stream": True}
    async with (
        httpx.AsyncClient(base_url=mock.base_url, timeout=5) as idle,
        httpx.AsyncClient(base_url=mock.base_url, timeout=5) as busy,
    ):
        await idle.post("/chat/completions", json=body)
        async with busy.stream("POST", "/chat/completions", json=body) as response:
            chunks = response.aiter_raw()
            await anext(chunks)
            held = mock.last_request
            await _open_connections_become(
                mock, {mock.requests[0].connection_id: None, held.connection_id: held}
            )
            mock.close_idle()
            await _open_connections_become(mock, {held.connection_id: held})
            mock.release()
            assert b"[DONE]" in b"".join([chunk async for chunk in chunks])


def test_script_for_picks_a_script_from_the_body_before_the_queue(mock: MockUpstream) -> None:
    mock.enqueue(Script(chunks=["queued"]))
    mock.script_for = lambda body: Script(chunks=["picked"]) if "pick" in str(body) else None
    with httpx.Client(base_url=mock.base_url) as client:

        def ask(text: str) -> str:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            reply = client.post("/chat/completions", json=body).json()
            return str(reply["choices"][0]["message"]["content"])

        assert [ask("pick me"), ask("other"), ask("other")] == ["picked", "queued", "Hello, world!"]
    mock.reset()
    assert mock.script_for is None


@pytest.mark.asyncio
async def test_embeddings_are_deterministic_unit_vectors_in_both_formats(
    mock: MockUpstream,
) -> None:
    """The SDK asks for base64 by default; raw clients get floats; both decode to the same."""
    texts = ["alpha", "beta", "alpha"]
    async with sdk(mock) as client:
        via_sdk = await client.embeddings.create(model="embed-m", input=texts)
    async with httpx.AsyncClient(base_url=mock.base_url) as client:
        raw = (await client.post("/embeddings", json={"model": "e", "input": "alpha"})).json()
    vectors = [item.embedding for item in via_sdk.data]
    assert vectors == [embedding_for(t) for t in texts]
    assert vectors[0] == vectors[2] != vectors[1]
    assert len(vectors[0]) == EMBEDDING_DIMENSIONS
    assert math.isclose(math.fsum(v * v for v in vectors[0]), 1.0, rel_tol=1e-6)
    assert [item.index for item in via_sdk.data] == [0, 1, 2]
    assert via_sdk.model == "embed-m"
    assert raw["data"][0]["embedding"] == embedding_for("alpha")
    assert mock.requests[0].json["input"] == texts
    assert mock.requests[0].json["encoding_format"] == "base64"
    assert all(r.completed for r in mock.requests)


def test_embedding_dimensions_follow_the_request_then_the_mock_setting(
    mock: MockUpstream,
) -> None:
    with httpx.Client(base_url=mock.base_url) as client:

        def embed(**extra: Any) -> list[float]:
            body = {"model": "e", "input": ["x"], **extra}
            (item,) = client.post("/embeddings", json=body).json()["data"]
            return list(item["embedding"])

        assert len(embed(dimensions=3)) == 3
        mock.embedding_dimensions = 5
        assert embed() == embedding_for("x", 5)
        mock.reset()
        assert len(embed()) == EMBEDDING_DIMENSIONS
        assert len(embed(input=[1, 2, 3])) == EMBEDDING_DIMENSIONS  # token ids: one input


@pytest.mark.asyncio
async def test_embedding_scripts_fail_embeddings_but_not_chat(mock: MockUpstream) -> None:
    mock.enqueue_embeddings(Script(status=429, headers={"retry-after": "3"}))
    async with sdk(mock) as client:
        reply = await client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.embeddings.create(model="e", input=["a"])
        with pytest.raises(openai.BadRequestError, match="'input' is required"):
            await client.embeddings.create(model="e", input=[])
        again = await client.embeddings.create(model="e", input=["a"])
    assert reply.choices[0].message.content == "Hello, world!"
    assert limited.value.response.headers["retry-after"] == "3"
    assert again.data[0].embedding == embedding_for("a")
    assert [r.path for r in mock.requests] == ["/v1/chat/completions", *["/v1/embeddings"] * 3]
