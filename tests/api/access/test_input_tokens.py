"""The input token limit: a 413 with the count and the limit, before any upstream call."""

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from chainserve.chains.messages import coerce_message
from chainserve.chains.tokens.count import count_input_tokens
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

MODEL = "gpt-4o-mini"  # the default model: o200k_base
TEXT = "Tell me everything about server-sent events and how proxies buffer them."
BIG = "hello " * 40_000  # 40,000 tokens: over the 32,000 default, well under the body limit


def _chat_tokens(*contents: str) -> int:
    messages = [coerce_message({"role": "user", "content": c}) for c in contents]
    return count_input_tokens({"messages": messages}, MODEL)


async def _send(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        return await client.request(method, path, **kwargs)


def _serve(start: ServerFactory, upstream: MockUpstream, **overrides: object) -> LiveServer:
    return start(upstream_settings(upstream, **overrides))


# Each native route with the chat chain and one user message saying TEXT.
NATIVE: dict[str, Callable[[str], tuple[str, str, dict[str, Any]]]] = {
    "stream": lambda text: (
        "POST",
        "/chains/chat/stream",
        {"json": {"input": {"messages": [{"role": "user", "content": text}]}}},
    ),
    "invoke": lambda text: (
        "POST",
        "/chains/chat/invoke",
        {"json": {"input": {"messages": [{"role": "user", "content": text}]}}},
    ),
    "stream_get": lambda text: ("GET", "/chains/chat/stream", {"params": {"message": text}}),
    "ui": lambda text: (
        "POST",
        "/chains/chat/ui",
        {"json": {"messages": [{"role": "user", "parts": [{"type": "text", "text": text}]}]}},
    ),
}


def _assert_too_large(error: dict[str, Any], tokens: int, limit: int, reserved: int = 0) -> None:
    assert error["code"] == "input_too_large"
    assert error["input_tokens"] == tokens
    assert error["max_input_tokens"] == limit
    assert error["history_tokens_reserved"] == reserved
    assert f"{tokens} tokens" in error["message"]
    assert f"limit of {limit}" in error["message"]


@pytest.mark.parametrize("route", sorted(NATIVE))
async def test_native_routes_answer_413_with_count_and_limit_and_never_call_upstream(
    start_server: ServerFactory, upstream: MockUpstream, route: str
) -> None:
    tokens = _chat_tokens(TEXT)
    server = _serve(start_server, upstream, max_input_tokens=tokens - 1)
    method, path, kwargs = NATIVE[route](TEXT)
    response = await _send(server, method, path, **kwargs)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    _assert_too_large(error, tokens, tokens - 1)
    assert error["retryable"] is False
    assert upstream.requests == []


@pytest.mark.parametrize("route", sorted(NATIVE))
async def test_input_exactly_at_the_limit_is_served(
    start_server: ServerFactory, upstream: MockUpstream, route: str
) -> None:
    server = _serve(start_server, upstream, max_input_tokens=_chat_tokens(TEXT))
    method, path, kwargs = NATIVE[route](TEXT)
    response = await _send(server, method, path, **kwargs)
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 1
    assert upstream.last_request.json["messages"][-1]["content"] == TEXT


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_route_answers_413_in_openai_shape(
    start_server: ServerFactory, upstream: MockUpstream, stream: bool
) -> None:
    """Multi-part text content is counted; the SDK raises its status error with our fields."""
    cut = TEXT.index(" about")  # split where tiktoken splits anyway: the count is TEXT's
    content = [{"type": "text", "text": TEXT[:cut]}, {"type": "text", "text": TEXT[cut:]}]
    tokens = _chat_tokens(TEXT)
    server = _serve(start_server, upstream, max_input_tokens=tokens - 1)
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": content}], stream=stream
            )
    assert caught.value.status_code == 413
    error = caught.value.body
    assert isinstance(error, dict)
    _assert_too_large(error, tokens, tokens - 1)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert upstream.requests == []


async def test_openai_route_counts_only_what_the_chain_sends(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """`explain` gets only the last user message: an earlier long turn does not count."""
    limit = count_input_tokens({"topic": "SSE"}, MODEL)
    server = _serve(start_server, upstream, max_input_tokens=limit)
    messages = [
        {"role": "user", "content": TEXT * 20},
        {"role": "assistant", "content": TEXT * 20},
        {"role": "user", "content": "SSE"},
    ]
    response = await _send(
        server, "POST", "/v1/chat/completions", json={"model": "explain", "messages": messages}
    )
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 1


LANGSERVE_INPUT = {"messages": [{"role": "user", "content": TEXT}]}


@pytest.mark.parametrize("endpoint", ["invoke", "stream", "stream_log", "stream_events"])
async def test_langserve_endpoints_answer_413(
    start_server: ServerFactory, upstream: MockUpstream, endpoint: str
) -> None:
    tokens = _chat_tokens(TEXT)
    server = _serve(start_server, upstream, max_input_tokens=tokens - 1)
    response = await _send(
        server, "POST", f"/langserve/chat/{endpoint}", json={"input": LANGSERVE_INPUT}
    )
    assert response.status_code == 413, response.text
    _assert_too_large(response.json()["error"], tokens, tokens - 1)
    assert upstream.requests == []


async def test_langserve_batch_names_the_input_over_the_limit(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    short = {"messages": [{"role": "user", "content": "hi"}]}
    tokens = _chat_tokens(TEXT)
    server = _serve(start_server, upstream, max_input_tokens=tokens - 1)
    response = await _send(
        server, "POST", "/langserve/chat/batch", json={"inputs": [short, LANGSERVE_INPUT]}
    )
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    _assert_too_large(error, tokens, tokens - 1)
    assert error["message"].startswith("inputs[1] is")
    assert upstream.requests == []


async def test_langserve_input_at_the_limit_is_served(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = _serve(start_server, upstream, max_input_tokens=_chat_tokens(TEXT))
    response = await _send(
        server, "POST", "/langserve/chat/invoke", json={"input": LANGSERVE_INPUT}
    )
    assert response.status_code == 200, response.text
    assert len(upstream.requests) == 1


async def test_a_threaded_run_reserves_the_history_budget(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Thread history (trimmed to its budget) goes in front of the input: the limit covers both."""
    budget, tokens = 50, _chat_tokens(TEXT)
    server = _serve(
        start_server, upstream, max_input_tokens=tokens + budget - 1, history_token_budget=budget
    )
    thread_id = (await _send(server, "POST", "/threads")).json()["thread_id"]
    body = {"input": {"messages": [{"role": "user", "content": TEXT}]}, "thread_id": thread_id}
    refused = await _send(server, "POST", "/chains/chat/invoke", json=body)
    assert refused.status_code == 413, refused.text
    _assert_too_large(refused.json()["error"], tokens, tokens + budget - 1, reserved=budget)
    assert "thread" in refused.json()["error"]["message"]
    unthreaded = await _send(server, "POST", "/chains/chat/invoke", json={"input": body["input"]})
    assert unthreaded.status_code == 200, unthreaded.text
    assert len(upstream.requests) == 1


async def test_the_default_limit_refuses_a_huge_input(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = _serve(start_server, upstream)
    body = {"input": {"messages": [{"role": "user", "content": BIG}]}}
    response = await _send(server, "POST", "/chains/chat/invoke", json=body)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["max_input_tokens"] == 32_000
    assert error["input_tokens"] == _chat_tokens(BIG)
    assert upstream.requests == []


async def test_zero_disables_the_limit(start_server: ServerFactory, upstream: MockUpstream) -> None:
    server = _serve(start_server, upstream, max_input_tokens=0)
    body = {"input": {"messages": [{"role": "user", "content": BIG}]}}
    response = await _send(server, "POST", "/chains/chat/invoke", json=body)
    assert response.status_code == 200, response.text
    assert upstream.last_request.json["messages"][-1]["content"] == BIG


async def test_openapi_documents_the_413_on_every_route_family(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = _serve(start_server, upstream)
    paths = (await _send(server, "GET", "/openapi.json")).json()["paths"]
    for path, method in [
        ("/chains/{name}/stream", "post"),
        ("/chains/{name}/stream", "get"),
        ("/chains/{name}/invoke", "post"),
        ("/chains/{name}/ui", "post"),
        ("/v1/chat/completions", "post"),
        ("/langserve/chat/invoke", "post"),
        ("/langserve/chat/batch", "post"),
        ("/langserve/explain/stream_events", "post"),
    ]:
        response = paths[path][method]["responses"]["413"]
        assert "input_too_large" in response["description"], (method, path)


async def test_token_dense_history_never_takes_a_threaded_run_over_the_limit(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """History is trimmed with the tokenizer the limit counts with, not by characters (which
    undercounts this script 16 times), so the budget the limit reserves for it holds."""
    limit, budget = 4000, 1000
    server = _serve(start_server, upstream, max_input_tokens=limit, history_token_budget=budget)
    dense = {"messages": [{"role": "user", "content": "\U00013000" * 740}]}  # ~3k tokens
    upstream.enqueue(*(Script(chunks=["ok"]) for _ in range(6)))
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        thread = (await client.post("/threads", json={})).json()["thread_id"]
        for _ in range(6):
            sent = await client.post(
                "/chains/chat/invoke", json={"input": dense, "thread_id": thread}
            )
            assert sent.status_code == 200
    for request in upstream.requests:
        messages = [coerce_message(m) for m in request.json["messages"]]
        assert count_input_tokens(messages, "gpt-4o") <= limit
