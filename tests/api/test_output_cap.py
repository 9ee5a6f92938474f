"""`CHAINSERVE_MAX_OUTPUT_TOKENS` on the wire: asked of the provider, lowered by a request,
never raised by one, and enforced on the stream with `finish_reason: "length"` on every surface."""

from typing import Any

import httpx
import openai
import pytest

from chainserve.chains.tokens.encodings import encoding_for_model
from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

pytestmark = pytest.mark.asyncio

CAP = 12
ENDLESS = Script(chunks=[" word"] * 3000, delay=0.001, finish_reason=None, send_done=False)
"""A provider that ignores max_tokens and would go on for seconds."""


@pytest.fixture(params=[True, False], ids=["lean", "sdk"])
def server(
    request: pytest.FixtureRequest, start_server: ServerFactory, upstream: MockUpstream
) -> LiveServer:
    settings = upstream_settings(upstream, lean_upstream=request.param, max_output_tokens=CAP)
    return start_server(settings)


def _tokens(text: str) -> int:
    return len(encoding_for_model("gpt-4o-mini").encode_ordinary(text))


async def test_a_provider_past_the_cap_ends_with_length_and_the_answer_is_kept(
    server: LiveServer, upstream: MockUpstream
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        thread = (await client.post("/threads", json={})).json()["thread_id"]
        upstream.enqueue(ENDLESS)
        body = {**chat_input(), "config": {"configurable": {"thread_id": thread}}}
        result = await stream(server.url, "chat", body)
        assert result.status == 200
        assert result.text == " word" * CAP
        (end,) = result.of("end")
        assert end.json()["finish_reason"] == "length"
        assert end.json()["usage"]["approximate"] is True  # the provider's figures never came
        await upstream.wait_for_disconnect_async()
        assert upstream.requests[-1].chunks_sent < 3000
        assert upstream.requests[-1].json["max_completion_tokens"] == CAP
        run = (await client.get(f"/runs/{result.headers['x-run-id']}")).json()
        assert (run["status"], run["finish_reason"]) == ("done", "length")
        messages = (await client.get(f"/threads/{thread}")).json()["messages"]
    assert messages[-1] == {**messages[-1], "role": "assistant", "content": " word" * CAP}


async def test_a_request_may_ask_for_less_but_not_for_more(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(ENDLESS)
    less = {**chat_input(), "config": {"configurable": {"max_tokens": 3}}}
    result = await stream(server.url, "chat", less)
    assert result.text == " word" * 3
    assert result.of("end")[0].json()["finish_reason"] == "length"
    assert upstream.requests[-1].json["max_completion_tokens"] == 3

    more = {**chat_input(), "config": {"configurable": {"max_tokens": CAP + 1}}}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chains/chat/invoke", json=more)
    assert response.status_code == 422, response.text
    assert "max_tokens" in response.json()["error"]["message"]
    assert len(upstream.requests) == 1  # refused before any upstream call


@pytest.mark.parametrize(("asked", "sent"), [(1000, CAP), (4, 4)])
async def test_openai_max_tokens_is_honoured_within_the_cap(
    server: LiveServer, upstream: MockUpstream, asked: int, sent: int
) -> None:
    upstream.enqueue(ENDLESS)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    texts: list[str] = []
    reasons: list[Any] = []
    async for chunk in await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=asked
    ):
        for choice in chunk.choices:
            texts.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    await client.close()
    assert upstream.requests[-1].json["max_completion_tokens"] == sent
    assert _tokens("".join(texts)) == sent
    assert [r for r in reasons if r] == ["length"]


async def test_openai_non_streamed_answer_cut_at_the_cap_says_length(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(ENDLESS)
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5
        )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == " word" * 5


async def test_the_ui_stream_finishes_with_length(
    server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(ENDLESS)
    body = {"messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chains/chat/ui", json=body)
    parts = [e.json() for e in SSEParser().feed(response.content) if e.data != "[DONE]"]
    text = "".join(p["delta"] for p in parts if p["type"] == "text-delta")
    assert text == " word" * CAP
    assert [p["finishReason"] for p in parts if p["type"] == "finish"] == ["length"]


async def test_the_offline_model_keeps_to_the_cap(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(max_output_tokens=4))
    result = await stream(server.url, "chat", chat_input("tell me everything"))
    assert result.text == "[offline model] You said:"
    assert result.of("end")[0].json()["finish_reason"] == "length"
