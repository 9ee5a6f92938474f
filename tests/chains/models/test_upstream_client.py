"""The lean upstream client sends what the SDK sends, retries as it does, and reads like a
careful HTTP/1.1 client: keep-alive, odd framings, back-pressure, time-outs, stale sockets."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from langchain_openai import ChatOpenAI

from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI
from chainserve.chains.models.upstream_client import HIGH_WATER, UpstreamClient, UpstreamError
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.raw_server import raw_server, read_request

pytestmark = pytest.mark.asyncio

Settings = dict[str, Any]


@pytest_asyncio.fixture
async def lean_client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def sdk_http() -> AsyncIterator[Any]:
    client = openai.DefaultAsyncHttpxClient()
    yield client
    await client.aclose()


def _settings(base_url: str, sdk_http: Any, **overrides: Any) -> Settings:
    return {
        "model": "gpt-4o-mini",
        "api_key": "sk-test",
        "base_url": base_url,
        "max_retries": 0,
        "streaming": True,
        "stream_usage": True,
        "http_async_client": sdk_http,
        **overrides,
    }


async def _text(model: ChatOpenAI, prompt: str = "hi") -> str:
    return "".join([str(chunk.content) async for chunk in model.astream(prompt)])


async def test_requests_carry_the_same_headers_and_body_as_the_sdk(
    upstream: MockUpstream, lean_client: UpstreamClient, sdk_http: Any
) -> None:
    settings = _settings(
        upstream.base_url,
        sdk_http,
        default_headers={"X-Team": "search"},
        extra_body={"top_k": 3},
        temperature=0.2,
    )
    await _text(ChatOpenAI(**settings))
    await _text(StreamlinedChatOpenAI(**settings, upstream_client=lean_client))
    stock, lean = upstream.requests
    assert lean.path == stock.path == "/v1/chat/completions"
    assert lean.json == stock.json
    assert lean.json["top_k"] == 3
    transport_only = {"accept-encoding", "connection", "content-length", "host"}
    assert set(lean.headers) - transport_only == set(stock.headers) - transport_only
    for name in ("authorization", "user-agent", "x-team", "x-stainless-retry-count"):
        assert lean.headers[name] == stock.headers[name], name
    assert lean.headers["x-stainless-async"].startswith("async:")


async def test_sequential_streams_reuse_one_upstream_connection(
    upstream: MockUpstream, lean_client: UpstreamClient, sdk_http: Any
) -> None:
    model = StreamlinedChatOpenAI(
        **_settings(upstream.base_url, sdk_http), upstream_client=lean_client
    )
    assert [await _text(model) for _ in range(3)] == ["Hello, world!"] * 3
    assert len({r.connection_id for r in upstream.requests}) == 1


async def test_a_retryable_status_is_retried_as_the_sdk_would(
    upstream: MockUpstream, lean_client: UpstreamClient, sdk_http: Any
) -> None:
    model = StreamlinedChatOpenAI(
        **_settings(upstream.base_url, sdk_http, max_retries=2), upstream_client=lean_client
    )
    upstream.enqueue(
        Script(status=503, headers={"retry-after-ms": "10"}),
        Script(status=429, headers={"retry-after-ms": "10"}),
        Script(chunks=["ok"]),
    )
    assert await _text(model) == "ok"
    counts = [r.headers["x-stainless-retry-count"] for r in upstream.requests]
    assert counts == ["0", "1", "2"]


async def test_a_final_status_error_is_the_sdk_exception_with_its_body(
    upstream: MockUpstream, lean_client: UpstreamClient, sdk_http: Any
) -> None:
    model = StreamlinedChatOpenAI(
        **_settings(upstream.base_url, sdk_http, max_retries=2), upstream_client=lean_client
    )
    upstream.enqueue(Script(status=401, error_message="bad key sk-test"))
    with pytest.raises(openai.AuthenticationError) as caught:
        await _text(model)
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict)
    assert len(upstream.requests) == 1  # 401 is not retried


async def test_a_silent_provider_hits_the_read_timeout(
    upstream: MockUpstream, lean_client: UpstreamClient, sdk_http: Any
) -> None:
    model = StreamlinedChatOpenAI(
        **_settings(upstream.base_url, sdk_http, timeout=0.3), upstream_client=lean_client
    )
    upstream.enqueue(Script(first_delay=3.0))
    with pytest.raises(openai.APITimeoutError):
        await _text(model)


async def test_proxy_settings_keep_requests_on_the_sdk_client(
    monkeypatch: pytest.MonkeyPatch, upstream: MockUpstream, lean_client: UpstreamClient
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = openai.DefaultAsyncHttpxClient()
    try:
        model = StreamlinedChatOpenAI(
            **_settings(upstream.base_url, proxied), upstream_client=lean_client
        )
        assert model._wire_url() is None
    finally:
        await proxied.aclose()


# Raw servers for what the mock upstream never does.

SSE_BODY = (
    b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"raw"},'
    b'"finish_reason":null}]}\n\n'
    b"data: [DONE]\n\n"
)


async def test_a_close_delimited_body_streams_to_its_end(
    lean_client: UpstreamClient, sdk_http: Any
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
        for line in SSE_BODY.split(b"\n\n")[:-1]:
            writer.write(line + b"\n\n")
            await writer.drain()
        writer.close()

    async with raw_server(handler) as base_url:
        model = StreamlinedChatOpenAI(**_settings(base_url, sdk_http), upstream_client=lean_client)
        assert await _text(model) == "raw"


async def test_a_kept_alive_connection_the_provider_dropped_is_replaced(
    lean_client: UpstreamClient, sdk_http: Any
) -> None:
    """The provider answers one request per connection but never says `Connection: close`;
    the next request finds the socket dead and goes out on a fresh one, unnoticed."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if await read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(SSE_BODY))
            writer.write(SSE_BODY)
            await writer.drain()
        await read_request(reader)  # the next request: hang up without a word

    async with raw_server(handler) as base_url:
        model = StreamlinedChatOpenAI(**_settings(base_url, sdk_http), upstream_client=lean_client)
        assert [await _text(model) for _ in range(3)] == ["raw"] * 3
    assert connections == 3


async def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything(
    lean_client: UpstreamClient,
) -> None:
    size = 8 * HIGH_WATER

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(size // len(block)):
                writer.write(block)
                await writer.drain()

    async with raw_server(handler) as base_url:
        response = await lean_client.request(
            base_url + "/chat/completions", [], b"{}", connect_timeout=5, read_timeout=5
        )
        await asyncio.sleep(0.5)  # the server writes as fast as the socket lets it
        conn = response._conn
        assert conn.paused
        assert conn.buffered < 2 * HIGH_WATER
        total = 0
        while block := await response.read():
            total += len(block)
        assert total == size
        response.close()


async def test_closing_mid_body_hangs_up_and_a_closed_client_refuses_work(
    lean_client: UpstreamClient,
) -> None:
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        if not await reader.read(1):
            hung_up.set()

    async with raw_server(handler) as base_url:
        url = base_url + "/chat/completions"
        response = await lean_client.request(url, [], b"{}", connect_timeout=5, read_timeout=5)
        assert await response.read() == b"hello"
        response.close()
        await asyncio.wait_for(hung_up.wait(), 2)
        await lean_client.aclose()
        with pytest.raises(UpstreamError, match="closed"):
            await lean_client.request(url, [], b"{}", connect_timeout=5, read_timeout=5)
