"""The native SSE event contract, over real HTTP against ChatOpenAI and a mock upstream."""

import asyncio

import httpx
import pytest

from tests.api.streaming import chat_input, stream
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio


async def test_stream_sends_metadata_data_then_end_with_increasing_ids(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo", " there"]))
    result = await stream(openai_server.url, "chat", chat_input())

    assert result.status == 200
    kinds = [e.event for e in result.events]
    assert kinds == ["metadata", "data", "data", "data", "end"]
    assert [int(e.id or -1) for e in result.events] == list(range(len(kinds)))
    metadata = result.events[0].json()
    assert metadata["run_id"] == result.headers["x-run-id"]
    assert metadata["chain"] == "chat"
    assert metadata["model"] == {"provider": "openai", "name": "gpt-4o-mini"}
    assert result.text == "Hello there"
    end = result.events[-1].json()
    assert end["run_id"] == metadata["run_id"]
    assert end["finish_reason"] == "stop"
    assert end["usage"]["output_tokens"] == 3
    assert end["usage"]["total_tokens"] == end["usage"]["input_tokens"] + 3
    assert end["timings"]["time_to_first_token_ms"] <= end["timings"]["total_ms"]


async def test_stream_headers_disable_caching_buffering_and_compression(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    result = await stream(
        openai_server.url, "chat", chat_input(), headers={"Accept-Encoding": "gzip, br"}
    )
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["cache-control"] == "no-cache"
    assert result.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in result.headers


async def test_newline_quote_and_unicode_tokens_arrive_intact(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    pieces = ["line one\nline two", "\n\n", ' "quoted" \\ ', "ünïcödé 🚀", "\r\nend\r"]
    upstream.enqueue(Script(chunks=pieces))
    result = await stream(openai_server.url, "chat", chat_input())
    assert [e.json() for e in result.of("data")] == pieces


async def test_empty_completion_still_sends_metadata_and_end(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=[]))
    result = await stream(openai_server.url, "chat", chat_input())
    assert result.status == 200
    assert [e.event for e in result.events] == ["metadata", "end"]
    assert result.events[-1].json()["timings"]["time_to_first_token_ms"] is None


async def test_first_token_reaches_client_before_upstream_sends_the_second(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    """Nothing between the upstream and the client buffers: the upstream holds token two
    until the client has token one, so any buffering would deadlock this test."""
    upstream.enqueue(Script(chunks=["first", " second", " third"], hold_after=1))
    parser = SSEParser()
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client,
        client.stream("POST", "/chains/chat/stream", json=chat_input()) as response,
    ):
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                if event.event == "data":
                    seen.append(event.json())
                    if len(seen) == 1:
                        assert upstream.last_request.chunks_sent == 1
                        upstream.release()
    assert seen == ["first", " second", " third"]


async def test_keepalive_comments_flow_while_the_model_is_silent(
    start_server: object, openai_settings: object, upstream: MockUpstream
) -> None:
    """Past the header-hold cap, headers and metadata go out and keepalives follow."""
    settings = openai_settings.model_copy(  # type: ignore[attr-defined]
        update={"first_chunk_hold_seconds": 0.1, "keepalive_seconds": 0.1}
    )
    server = start_server(settings)  # type: ignore[operator]
    upstream.enqueue(Script(chunks=["late"], first_delay=0.8))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 200
    assert [e.event for e in result.events] == ["metadata", "data", "end"]
    assert result.comments.count("keepalive") >= 2


async def test_get_stream_maps_query_parameters_to_input_for_event_source(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        explain = await client.get("/chains/explain/stream", params={"topic": "backpressure"})
        chat = await client.get(
            "/chains/chat/stream",
            params={"message": "hi there", "config": '{"configurable": {"model": "gpt-4o"}}'},
        )
    assert explain.status_code == chat.status_code == 200
    explain_request, chat_request = upstream.wait_for_requests(2)
    assert "Explain backpressure." in str(explain_request.json)
    assert chat_request.json is not None
    assert chat_request.json["messages"][-1] == {"role": "user", "content": "hi there"}
    assert chat_request.json["model"] == "gpt-4o"
    assert SSEParser().feed(chat.content)[-1].event == "end"


async def test_offline_model_streams_a_reply_derived_from_the_prompt(
    offline_server: LiveServer,
) -> None:
    result = await stream(offline_server.url, "chat", chat_input("what is SSE?"))
    metadata = result.events[0].json()
    assert metadata["model"] == {"provider": "offline", "name": "chainserve-offline"}
    assert len(result.of("data")) > 10  # word by word
    assert "what is SSE?" in result.text
    assert "You are a helpful assistant" in result.text
    assert result.events[-1].json()["usage"]["output_tokens"] > 0


async def test_health_names_the_model_in_use(offline_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url) as client:
        health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["model"]["provider"] == "offline"
    assert health["chains"] == sorted(offline_server.app.state.chains)


async def test_invoke_returns_whole_output_with_usage(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hello", " world"]))
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        response = await client.post("/chains/explain/invoke", json={"input": {"topic": "x"}})
    body = response.json()
    assert response.status_code == 200
    assert body["output"] == "Hello world"
    assert body["metadata"]["run_id"] == response.headers["x-run-id"]
    assert body["metadata"]["usage"]["output_tokens"] == 2


async def test_concurrent_streams_do_not_mix(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(*(Script(chunks=[f"s{i}-a", f" s{i}-b"], delay=0.02) for i in range(5)))
    results = await asyncio.gather(
        *(stream(openai_server.url, "chat", chat_input()) for _ in range(5))
    )
    texts = sorted(r.text for r in results)
    assert texts == sorted(f"s{i}-a s{i}-b" for i in range(5))
    assert len({r.headers["x-run-id"] for r in results}) == 5
