"""A provider's refusal reaches the client as a refusal: its status (one the SDKs do not
retry), its reason (scrubbed), on every route; and a failure before the model's first output
is an HTTP error even when something (rag's `sources`, a retry's wait) came first."""

import json
from typing import Any

import httpx
import openai
import pytest

from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.sse import parse_all

CONTEXT_TOO_LONG = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9100 tokens. (key used: sk-proj-abcdefghijklmnop)"
)


def _routes(url: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each surface a chat run can be asked for, as (path, body)."""
    messages = [{"role": "user", "content": "hello"}]
    return {
        "native stream": (f"{url}/chains/chat/stream", chat_input()),
        "native invoke": (f"{url}/chains/chat/invoke", chat_input()),
        "v1 stream": (
            f"{url}/v1/chat/completions",
            {"model": "chat", "messages": messages, "stream": True},
        ),
        "v1": (f"{url}/v1/chat/completions", {"model": "chat", "messages": messages}),
        "ui": (
            f"{url}/chains/chat/ui",
            {"messages": [{"role": "user", "parts": [{"type": "text", "text": "hello"}]}]},
        ),
        "langserve stream": (f"{url}/langserve/chat/stream", {"input": {"messages": messages}}),
        "langserve invoke": (f"{url}/langserve/chat/invoke", {"input": {"messages": messages}}),
    }


@pytest.mark.parametrize(
    ("provider_status", "status"),
    [(400, 400), (404, 404), (413, 413), (422, 422), (405, 400)],
)
def test_a_provider_refusal_keeps_its_status_and_reason_on_every_route(
    start_server: ServerFactory, upstream: MockUpstream, provider_status: int, status: int
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.default_script = Script(status=provider_status, error_message=CONTEXT_TOO_LONG)
    for route, (url, body) in _routes(server.url).items():
        response = httpx.post(url, json=body, timeout=10)
        text = response.text
        assert "sk-proj" not in text, route
        if route.startswith("langserve"):
            # LangServe's own error shape: the status, with the reason in its detail.
            assert response.status_code == status, (route, text)
            continue
        assert response.status_code == status, (route, text)
        error = response.json()["error"]
        assert f"HTTP {provider_status}" in error["message"], route
        assert "maximum context length is 8192 tokens" in error["message"], route
        if "code" in error and route.startswith("native"):
            assert error["code"] == "upstream_bad_request"
            assert error["retryable"] is False
            assert error["upstream_status"] == provider_status


def _read_all(client: openai.OpenAI, streamed: bool) -> None:
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=streamed
    )
    for _ in answer if streamed else ():  # a stream's error could arrive while reading
        pass


def test_the_official_sdk_gets_the_matching_exception_and_does_not_retry(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=2) as client:
        cases = [(404, openai.NotFoundError), (400, openai.BadRequestError),
                 (422, openai.UnprocessableEntityError)]  # fmt: skip
        for provider_status, exception in cases:
            upstream.reset()
            upstream.default_script = Script(
                status=provider_status, error_message="The model `gpt-9` does not exist"
            )
            for streamed in (False, True):
                with pytest.raises(exception) as raised:
                    _read_all(client, streamed)
                assert "The model `gpt-9` does not exist" in str(raised.value)
            # One provider call per request: neither chainserve nor the SDK tried again.
            assert len(upstream.requests) == 2


def test_an_html_error_page_is_not_passed_on_but_its_status_is(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    page = "<html><head><title>Not Found</title></head><body><h1>nginx</h1></body></html>"
    upstream.default_script = Script(status=404, error_message=page)
    response = httpx.post(f"{server.url}/chains/chat/invoke", json=chat_input(), timeout=10)
    assert response.status_code == 404
    error = response.json()["error"]
    assert "HTTP 404" in error["message"]
    assert "<" not in error["message"]


def test_an_error_the_provider_sends_inside_its_stream_is_quoted(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    event = {"error": {"message": "The server had an error (token sk-live-zzzzzzzzzzzz)"}}
    upstream.default_script = Script(
        raw_body=f"data: {json.dumps(event)}\n\n".encode(),
        headers={"content-type": "text/event-stream"},
    )
    response = httpx.post(f"{server.url}/chains/chat/invoke", json=chat_input(), timeout=10)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "The server had an error" in error["message"]
    assert "sk-live" not in response.text


@pytest.mark.asyncio
async def test_rag_is_an_http_429_when_the_model_is_rate_limited_after_its_sources(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.default_script = Script(status=429, headers={"retry-after": "3"})
    result = await stream(server.url, "rag", {"input": {"question": "what is SSE?"}})
    assert result.status == 429, result.events
    assert result.headers["retry-after"] == "3"
    assert result.json()["error"]["code"] == "upstream_rate_limited"
    messages = [{"role": "user", "content": "what is SSE?"}]
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    with client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="rag", messages=messages, stream=True)


@pytest.mark.asyncio
async def test_a_429_whose_retry_outlasts_the_hold_is_still_an_http_429(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    # The provider asks for a 1 s wait; the headers are held only 0.2 s of silence, but a
    # pending retry extends the hold, so the final 429 is still the response's status.
    settings = upstream_settings(upstream, upstream_max_retries=1, first_chunk_hold_seconds=0.2)
    server = start_server(settings)
    upstream.enqueue(*[Script(status=429, headers={"retry-after": "1"})] * 2)
    result = await stream(server.url, "chat", chat_input())
    assert len(upstream.requests) == 2
    assert result.status == 429, result.events
    assert result.headers["retry-after"] == "1"


@pytest.mark.asyncio
async def test_a_429_after_the_headers_carries_its_retry_time_in_the_event_and_retry_field(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    settings = upstream_settings(upstream, first_chunk_hold_seconds=0)  # headers at once
    server = start_server(settings)
    upstream.enqueue(Script(status=429, headers={"retry-after": "4"}))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 200
    error = result.of("error")[0]
    assert error.json()["code"] == "upstream_rate_limited"
    assert error.json()["retry_after"] == 4
    assert error.retry == 4000

    upstream.enqueue(Script(status=429, headers={"retry-after": "4"}))
    messages = [{"role": "user", "content": "hi"}]
    body = {"model": "chat", "messages": messages, "stream": True}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{server.url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    errors = [e for e in parse_all(response.content) if "error" in e.data]
    assert errors[0].json()["error"]["retry_after"] == 4
    assert errors[0].retry == 4000


@pytest.mark.asyncio
async def test_a_429_retried_by_the_sdks_own_client_also_holds_the_headers(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Without the lean client (`CHAINSERVE_LEAN_UPSTREAM=false`: the SDK's HTTP stack, as
    behind a proxy) the SDK retries by itself; its wait extends the hold the same way."""
    settings = upstream_settings(
        upstream, upstream_max_retries=1, first_chunk_hold_seconds=0.2, lean_upstream=False
    )
    server = start_server(settings)
    upstream.enqueue(*[Script(status=429, headers={"retry-after": "1"})] * 2)
    result = await stream(server.url, "chat", chat_input())
    assert len(upstream.requests) == 2
    assert result.status == 429, result.events
