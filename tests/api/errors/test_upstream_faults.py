"""Providers that misbehave: streams cut short, bodies that are not event streams, enormous
lines. Each is the provider's fault, typed and retryable, on every surface, never a 200 `done`."""

import asyncio
import json
import logging
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest

from tests.api.streaming import StreamResult, chat_input, stream
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import read_with_ai_sdk
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio

CUT_SHORT = {
    "close-delimited": Script(
        chunks=["The answer", " is"], finish_reason=None, send_done=False, close_delimited=True
    ),
    "chunked": Script(chunks=["The answer", " is"], finish_reason=None, send_done=False),
}
UNREADABLE = {
    "html": b"<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>",
    "random bytes": bytes(range(256)) * 8,
    "garbage data": b"data: <<<garbage>>>\n\n",
}


@pytest.fixture(params=[True, False], ids=["lean", "sdk"])
def server(
    request: pytest.FixtureRequest, start_server: ServerFactory, upstream: MockUpstream
) -> LiveServer:
    return start_server(upstream_settings(upstream, lean_upstream=request.param))


async def _get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def _error(result: StreamResult) -> dict[str, Any]:
    assert result.events[-1].event == "error", result.events
    error: dict[str, Any] = result.events[-1].json()
    return error


@pytest.mark.parametrize("script", CUT_SHORT.values(), ids=CUT_SHORT.keys())
async def test_a_stream_cut_short_is_a_retryable_error_and_leaves_the_thread_unchanged(
    server: LiveServer, upstream: MockUpstream, script: Script
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        thread = (await client.post("/threads", json={})).json()["thread_id"]
    upstream.enqueue(script)
    body = {**chat_input(), "config": {"configurable": {"thread_id": thread}}}
    result = await stream(server.url, "chat", body)
    assert result.status == 200
    assert result.text == "The answer is"  # what arrived is shown, then the failure
    error = _error(result)
    assert error["code"] == "upstream_incomplete"
    assert error["retryable"] is True
    assert not result.of("end")
    run = await _get(server.url, f"/runs/{result.headers['x-run-id']}")
    assert run["status"] == "error"
    assert run["error"]["code"] == "upstream_incomplete"
    messages = (await _get(server.url, f"/threads/{thread}"))["messages"]
    assert all(m["role"] != "assistant" for m in messages), messages


async def test_a_stream_with_a_finish_reason_but_no_done_is_complete(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Fine"], send_done=False, close_delimited=True))
    result = await stream(server.url, "chat", chat_input())
    assert result.text == "Fine"
    assert result.events[-1].event == "end"
    assert result.events[-1].json()["finish_reason"] == "stop"


async def test_a_stream_cut_short_is_an_error_on_v1_and_never_a_stop(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(CUT_SHORT["chunked"])
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    texts: list[str] = []
    reasons: list[str | None] = []

    async def read() -> None:
        async for chunk in await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
                reasons.append(choice.finish_reason)

    with pytest.raises(openai.APIError) as caught:
        await read()
    await client.close()
    assert "".join(texts) == "The answer is"
    assert not any(reasons), reasons
    assert "ended before the answer was complete" in str(caught.value)


async def test_a_stream_cut_short_is_an_error_part_on_ui_and_never_a_finish(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(CUT_SHORT["close-delimited"])
    body = {"messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chains/chat/ui", json=body)
    events = SSEParser().feed(response.content)
    parts = [e.json() for e in events if e.data != "[DONE]"]
    kinds = [p["type"] for p in parts]
    assert "error" in kinds, parts
    assert not any(p.get("finishReason") == "stop" for p in parts), parts


@pytest.mark.parametrize("raw", UNREADABLE.values(), ids=UNREADABLE.keys())
@pytest.mark.parametrize("route", ["stream", "invoke"])
async def test_an_unreadable_200_is_a_retryable_502_logged_in_one_line(
    server: LiveServer,
    upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
    route: str,
) -> None:
    upstream.enqueue(Script(raw_body=raw))
    with caplog.at_level(logging.WARNING, logger="chainserve"):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.post(f"/chains/chat/{route}", json=chat_input())
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["retryable"] is True
    failures = [r for r in caplog.records if r.name.startswith("chainserve") and "failed" in r.msg]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
    assert failures[0].exc_info is None


async def test_garbage_after_the_first_token_ends_the_stream_with_an_error_event(
    server: LiveServer, upstream: MockUpstream
) -> None:
    result = await _stream_with_garbage(server, upstream)
    assert result.text == "ok"
    assert _error(result)["code"] == "upstream_error"


async def _stream_with_garbage(server: LiveServer, upstream: MockUpstream) -> StreamResult:
    """A provider that sends one good chunk, then a line that is not JSON."""
    good = b'{"id":"x","object":"chat.completion.chunk","created":0,"model":"m",'
    good += b'"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}'
    upstream.enqueue(
        Script(
            raw_body=b"data: " + good + b"\n\ndata: <<<garbage>>>\n\n",
            headers={"content-type": "text/event-stream"},
        )
    )
    return await stream(server.url, "chat", chat_input())


async def test_an_event_over_the_size_limit_fails_its_run_while_other_streams_flow(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    limit = 64 * 1024
    server = start_server(upstream_settings(upstream, max_upstream_event_bytes=limit))
    huge = Script(
        raw_body=b"data: " + b"x" * (limit * 8),
        headers={"content-type": "text/event-stream"},
        close_delimited=True,
    )
    normal = Script(chunks=["still", " flowing"], delay=0.05)

    def pick(body: Any) -> Script:
        text = str(body.get("messages"))
        return huge if "huge" in text else replace(normal)

    upstream.script_for = pick
    big, small = await asyncio.gather(
        stream(server.url, "chat", chat_input("huge")),
        stream(server.url, "chat", chat_input("small")),
    )
    assert big.status == 502, big.body
    error = big.json()["error"]
    assert error["code"] == "upstream_error"
    assert f"{limit}-byte limit" in error["message"]
    assert small.text == "still flowing"
    assert small.events[-1].event == "end"


async def test_a_stream_cut_short_before_any_text_is_a_502(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(replace(CUT_SHORT["chunked"], chunks=[]))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 502, result.events
    error = result.json()["error"]
    assert (error["code"], error["retryable"]) == ("upstream_incomplete", True)


@pytest.mark.parametrize("script", CUT_SHORT.values(), ids=CUT_SHORT.keys())
async def test_a_stream_cut_short_fails_a_langserve_invoke(
    server: LiveServer, upstream: MockUpstream, script: Script
) -> None:
    upstream.enqueue(script)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        body = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
        response = await client.post("/langserve/chat/invoke", json=body)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_incomplete"


@pytest.mark.parametrize("raw", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_200_is_a_502_to_the_openai_sdk_and_the_ai_sdk(
    server: LiveServer, upstream: MockUpstream, raw: bytes
) -> None:
    upstream.enqueue(Script(raw_body=raw, headers={"content-type": "text/html"}))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        async for _ in await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            pass
    await client.close()
    assert caught.value.status_code == 502
    upstream.enqueue(Script(raw_body=raw, headers={"content-type": "text/html"}))
    result = await asyncio.to_thread(read_with_ai_sdk, server.url, "chat", "hi")
    assert result["status"] == 502
    assert json.loads(result["body"])["error"]["code"] == "upstream_error"
