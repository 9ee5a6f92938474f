"""A client that stops reading (but never closes) cannot pin a stream, its run or its upstream."""

import asyncio
import json
import socket

import pytest

from chainserve.api.settings import Settings
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

BIG = "x" * 16_000  # a few hundred of these fill every buffer between server and client


@pytest.fixture
def settings(upstream: MockUpstream) -> Settings:
    # No output cap: these answers (16 MB) must outlast the client, not end at 4096 tokens.
    return upstream_settings(
        upstream, upstream_timeout=10.0, send_timeout_seconds=1.0, max_output_tokens=0
    )


async def _frozen_client(url: str, path: str, body: object) -> socket.socket:
    """Send a request, then read nothing: a small receive buffer so the server fills it fast."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n\r\n"
    ).encode()
    await asyncio.get_running_loop().sock_sendall(sock, head + payload)
    return sock


async def _read_to_eof(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while await loop.sock_recv(sock, 1 << 20):
        pass


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/chains/chat/stream", {"input": {"messages": [{"role": "user", "content": "hi"}]}}),
        (
            "/v1/chat/completions",
            {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
    ],
    ids=["native", "openai"],
)
async def test_a_client_that_stops_reading_is_cut_off_and_its_run_cancelled(
    start_server: ServerFactory,
    settings: Settings,
    upstream: MockUpstream,
    path: str,
    body: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(settings)
    upstream.enqueue(Script(chunks=[BIG] * 1000, delay=0.02))
    sock = await _frozen_client(server.url, path, body)
    try:
        # The upstream stream is abandoned long before its 1,000 chunks are sent.
        await upstream.wait_for_disconnect_async(0, timeout=18)
        assert not upstream.requests[0].completed
        assert upstream.requests[0].chunks_sent < 1000
        async with asyncio.timeout(10):
            await _read_to_eof(sock)  # and the server closed the connection
    finally:
        sock.close()
    assert any("read nothing for 1s" in r.getMessage() for r in caplog.records)


async def test_a_langserve_stream_to_a_client_that_stops_reading_is_closed(
    start_server: ServerFactory,
    settings: Settings,
    upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LangServe's own streams: the request is cancelled and the connection closed (the chain's
    generator is then LangServe's to close; see SECURITY.md)."""
    server = start_server(settings)
    upstream.enqueue(Script(chunks=[BIG] * 1000, delay=0.02))
    body = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
    sock = await _frozen_client(server.url, "/langserve/chat/stream", body)
    try:
        for _ in range(180):  # the buffers fill in a few seconds, then a write sticks
            if any("request cancelled" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the stuck LangServe stream was never cut off")
        async with asyncio.timeout(10):
            await _read_to_eof(sock)
    finally:
        sock.close()
