"""The lean ChatOpenAI stream gives exactly what ChatOpenAI gives, for less CPU."""

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessageChunk, BaseMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_openai import ChatOpenAI

from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI, sse_events
from chainserve.chains.models.upstream_client import UpstreamClient
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio


async def _blocks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _events(*parts: bytes) -> list[tuple[bytes, bytes]]:
    return [event async for event in sse_events(_blocks(*parts))]


async def test_sse_events_handle_split_lines_crlf_multiline_data_and_names() -> None:
    events = await _events(
        b'data: {"a"',
        b": 1}\r\n\r\n",
        b": comment\n\nevent: error\ndata: x\ndata: y\n\n",
        b"data: [DONE]\n\ndata: cut off",
    )  # the last event never ends: the spec drops it
    assert events == [(b"", b'{"a": 1}'), (b"error", b"x\ny"), (b"", b"[DONE]")]


async def _stream(
    model: ChatOpenAI, upstream: MockUpstream, script: Script
) -> list[BaseMessageChunk]:
    upstream.enqueue(script)
    return [chunk async for chunk in model.astream("hi")]


def _merged(chunks: list[BaseMessageChunk]) -> Any:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    return merged


Models = tuple[ChatOpenAI, ChatOpenAI]


@pytest_asyncio.fixture(params=["sdk-http", "lean-http"])
async def models(upstream: MockUpstream, request: pytest.FixtureRequest) -> AsyncIterator[Models]:
    """Stock ChatOpenAI and ours, same settings, sharing one connection pool; ours sends its
    requests through the SDK's httpx client or through our lean `UpstreamClient`."""
    client = openai.DefaultAsyncHttpxClient()
    lean_client = UpstreamClient() if request.param == "lean-http" else None
    settings: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "api_key": "sk-test",
        "base_url": upstream.base_url,
        "max_retries": 0,
        "streaming": True,
        "stream_usage": True,
        "http_async_client": client,
    }
    lean = StreamlinedChatOpenAI(**settings, upstream_client=lean_client)
    assert (lean._wire_url() is not None) == (lean_client is not None)
    yield ChatOpenAI(**settings), lean
    await client.aclose()
    if lean_client is not None:
        await lean_client.aclose()


async def test_same_chunks_usage_and_finish_reason_as_chat_openai(
    upstream: MockUpstream, models: Models
) -> None:
    stock, lean = models
    script = Script(chunks=["Hel", "lo\n", "ünï 🚀", ""], finish_reason="length")
    expected, actual = await _stream(stock, upstream, script), await _stream(lean, upstream, script)
    assert [c.content for c in actual] == [c.content for c in expected]
    assert all(isinstance(c, AIMessageChunk) for c in actual)
    want, got = _merged(expected), _merged(actual)
    assert got.content == want.content == "Hello\nünï 🚀"
    assert got.usage_metadata == want.usage_metadata
    assert (
        got.response_metadata["finish_reason"]
        == want.response_metadata["finish_reason"]
        == "length"
    )
    assert got.response_metadata["model_name"] == want.response_metadata["model_name"]


class _TokenCounter(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.ended = 0

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ended += 1


async def test_callbacks_see_every_token_as_with_chat_openai(
    upstream: MockUpstream, models: Models
) -> None:
    stock, lean = models
    counters = []
    for model in (stock, lean):
        counter = _TokenCounter()
        upstream.enqueue(Script(chunks=["a", "b", "c"]))
        async for _ in model.astream("hi", config={"callbacks": [counter]}):
            pass
        counters.append(counter)
    assert counters[0].tokens == counters[1].tokens
    assert counters[1].ended == 1


async def test_an_error_inside_the_stream_raises_like_the_sdk(
    upstream: MockUpstream, models: Models
) -> None:
    _, lean = models
    with pytest.raises(openai.APIConnectionError):
        await _stream(lean, upstream, Script(chunks=["a", "b"], drop_after=1))


async def test_http_errors_keep_the_sdk_exceptions(upstream: MockUpstream, models: Models) -> None:
    _, lean = models
    with pytest.raises(openai.RateLimitError):
        await _stream(lean, upstream, Script(status=429, headers={"retry-after": "1"}))


async def test_structured_output_requests_take_the_parent_path(
    upstream: MockUpstream, models: Models
) -> None:
    _, lean = models
    bound = lean.bind(response_format={"type": "json_object"})
    upstream.enqueue(Script(chunks=['{"a"', ": 1}"]))
    text = "".join([str(c.content) async for c in bound.astream("hi")])
    assert text == '{"a": 1}'


async def test_chunk_timeout_fires_on_a_silent_stream_even_across_tasks(
    upstream: MockUpstream, models: Models
) -> None:
    """LangChain pulls each chunk in a new task; the deadline must still fire."""
    _, lean = models
    silent = lean.model_copy(update={"stream_chunk_timeout": 0.3})
    chain = silent | StrOutputParser()
    upstream.enqueue(Script(chunks=["first", "never"], hold_after=1))
    seen: list[str] = []

    async def read_all() -> None:
        async for text in chain.astream("hi"):
            seen.append(text)

    with pytest.raises(TimeoutError, match="no streamed chunk"):
        await read_all()
    assert "first" in seen


@pytest.mark.parametrize("close_delimited", [True, False], ids=["close-delimited", "chunked"])
async def test_a_cut_off_stream_on_the_parents_path_is_an_error_too(
    upstream: MockUpstream, close_delimited: bool
) -> None:
    """Structured output and response headers take `ChatOpenAI`'s own stream; an answer cut
    short there is just as incomplete, and one with a finish reason but no [DONE] is whole."""
    from chainserve.chains.models.upstream_sse import UpstreamIncompleteError

    client = openai.DefaultAsyncHttpxClient()
    model = StreamlinedChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=upstream.base_url,
        max_retries=0,
        streaming=True,
        http_async_client=client,
        include_response_headers=True,
    )
    cut = Script(
        chunks=["The answer", " is"],
        finish_reason=None,
        send_done=False,
        close_delimited=close_delimited,
    )
    with pytest.raises(UpstreamIncompleteError):
        await _stream(model, upstream, cut)
    whole = Script(chunks=["Fine"], send_done=False, close_delimited=close_delimited)
    assert _merged(await _stream(model, upstream, whole)).content == "Fine"
    await client.aclose()
