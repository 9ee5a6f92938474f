"""The text lane streams what `astream` streams and reports the same run to callbacks, without
a message object per token; anyone who listens to tokens gets `astream` itself."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import openai
import pytest
import pytest_asyncio
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.outputs import LLMResult
from langchain_core.tracers.context import collect_runs

from chainserve.chains.models.listeners import wants_tokens
from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI
from chainserve.chains.models.upstream_client import UpstreamClient
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.raw_server import raw_server, read_request

pytestmark = pytest.mark.asyncio


class RunRecorder(AsyncCallbackHandler):
    """Listens to the model call's start and end only, as chainserve's usage collector does."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []
        self.ended: list[LLMResult] = []
        self.errors: list[tuple[BaseException, Any]] = []

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.started.append({"messages": messages, **kwargs})

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        self.ended.append(response)

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append((error, kwargs.get("response")))


class TokenRecorder(RunRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


@pytest_asyncio.fixture(params=["sdk-http", "lean-http"])
async def model(
    upstream: MockUpstream, request: pytest.FixtureRequest
) -> AsyncIterator[StreamlinedChatOpenAI]:
    http = openai.DefaultAsyncHttpxClient()
    lean = UpstreamClient() if request.param == "lean-http" else None
    yield StreamlinedChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=upstream.base_url,
        max_retries=0,
        streaming=True,
        stream_usage=True,
        http_async_client=http,
        upstream_client=lean,
    )
    await http.aclose()
    if lean is not None:
        await lean.aclose()


def _final(result: LLMResult) -> dict[str, Any]:
    """The merged message `on_llm_end` got, minus the per-run id (checked separately)."""
    message = result.generations[0][0].message
    assert message.id is not None
    assert message.id.startswith("lc_run-")
    return message.model_dump(exclude={"id"})


async def _both(
    model: StreamlinedChatOpenAI, upstream: MockUpstream, script: Script
) -> tuple[tuple[list[str], RunRecorder], tuple[list[str], RunRecorder]]:
    runs = []
    for lane in (False, True):
        recorder = RunRecorder()
        config: Any = {"callbacks": [recorder]}
        upstream.enqueue(script)
        if lane:
            texts = [t async for t in model.astream_text("hi", config)]
        else:
            texts = [m.text async for m in model.astream("hi", config)]
        runs.append((texts, recorder))
    return runs[0], runs[1]


@pytest.mark.parametrize(
    "script",
    [
        Script(chunks=["Hel", "lo\n", "ünï 🚀", "", "!"]),
        Script(chunks=["cut"], finish_reason="length"),
        Script(chunks=[]),
        Script(chunks=[f"w{i} " for i in range(150)]),
    ],
    ids=["text", "length", "empty", "long"],
)
async def test_the_lane_streams_the_same_text_and_ends_the_run_the_same(
    model: StreamlinedChatOpenAI, upstream: MockUpstream, script: Script
) -> None:
    (stock_texts, stock), (lane_texts, lane) = await _both(model, upstream, script)
    assert lane_texts == stock_texts
    assert len(lane.started) == len(stock.started) == 1
    assert lane.started[0]["invocation_params"] == stock.started[0]["invocation_params"]
    assert len(lane.ended) == len(stock.ended) == 1
    assert _final(lane.ended[0]) == _final(stock.ended[0])
    assert _final(lane.ended[0])["usage_metadata"] is not None


async def test_the_lane_skips_message_objects_for_plain_content(
    model: StreamlinedChatOpenAI, upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = 0
    convert = StreamlinedChatOpenAI._convert_chunk_to_generation_chunk

    def counting(self: Any, *args: Any) -> Any:
        nonlocal converted
        converted += 1
        return convert(self, *args)

    monkeypatch.setattr(StreamlinedChatOpenAI, "_convert_chunk_to_generation_chunk", counting)
    upstream.enqueue(Script(chunks=["a", "b", "c", "d", "e", "f"]))
    texts = [t async for t in model.astream_text("hi", {"callbacks": [RunRecorder()]})]
    assert "".join(texts) == "abcdef"
    assert converted == 2  # the finish chunk and the usage chunk; the rest is plain text


async def test_a_handler_that_wants_tokens_gets_every_token(
    model: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    recorder = TokenRecorder()
    assert wants_tokens(recorder)
    assert not wants_tokens(RunRecorder())
    upstream.enqueue(Script(chunks=["a", "b", "c"]))
    texts = [t async for t in model.astream_text("hi", {"callbacks": [recorder]})]
    assert "".join(texts) == "abc"
    assert [t for t in recorder.tokens if t] == ["a", "b", "c"]
    assert len(recorder.ended) == 1


async def test_a_broken_stream_reports_the_partial_generation_and_raises(
    model: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    recorder = RunRecorder()
    upstream.enqueue(Script(chunks=["a", "b", "c"], drop_after=2))
    seen: list[str] = []

    async def read() -> None:
        async for text in model.astream_text("hi", {"callbacks": [recorder]}):
            seen.append(text)

    with pytest.raises(openai.APIConnectionError):
        await read()
    assert "".join(seen) == "ab"
    assert recorder.ended == []
    (error, response), *_ = recorder.errors
    assert isinstance(error, openai.APIConnectionError)
    assert response.generations[0][0].message.content == "ab"


def _sse(payload: object) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def test_tool_call_chunks_reach_the_end_of_the_run_as_with_astream() -> None:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m"}

    def choice(delta: dict[str, Any], finish: str | None = None) -> bytes:
        item = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [item]})

    call = {"index": 0, "id": "call_1", "type": "function"}
    body = b"".join(
        [
            choice({"role": "assistant", "content": ""}),
            choice({"content": "Let me check."}),
            choice({"tool_calls": [{**call, "function": {"name": "weather", "arguments": ""}}]}),
            choice({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            choice({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
            choice({}, "tool_calls"),
            _sse({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5}}),
            b"data: [DONE]\n\n",
        ]
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    lean = UpstreamClient()
    try:
        async with raw_server(handler) as base_url:
            model = StreamlinedChatOpenAI(
                model="m",
                api_key="sk-test",
                base_url=base_url,
                max_retries=0,
                streaming=True,
                stream_usage=True,
                upstream_client=lean,
            )
            results = []
            for lane in (False, True):
                recorder = RunRecorder()
                config: Any = {"callbacks": [recorder]}
                if lane:
                    texts = [t async for t in model.astream_text("hi", config)]
                else:
                    texts = [m.text async for m in model.astream("hi", config)]
                results.append((texts, _final(recorder.ended[0])))
            await lean.aclose()
    finally:
        await lean.aclose()
    (stock_texts, stock), (lane_texts, lane_final) = results
    assert lane_texts == stock_texts
    assert lane_final == stock
    assert lane_final["tool_call_chunks"][0]["args"] == '{"city":"Oslo"}'
    assert lane_final["response_metadata"]["finish_reason"] == "tool_calls"


async def test_a_tracer_gets_the_full_astream_with_every_token(
    model: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["a", "b", "c"]))
    with collect_runs() as runs:
        texts = [t async for t in model.astream_text("hi")]
    assert "".join(texts) == "abc"
    (run,) = runs.traced_runs
    tokens = [e["kwargs"]["token"] for e in run.events if e["name"] == "new_token"]
    assert [t for t in tokens if t] == ["a", "b", "c"]
    assert run.outputs is not None


async def test_a_copy_with_other_settings_reports_its_own_invocation_params(
    model: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    """The lane computes invocation params once per instance; a `model_copy` recomputes them."""
    upstream.enqueue(Script(chunks=["x"]))
    assert [t async for t in model.astream_text("hi")]  # the original's cache is filled
    for temperature in (0.1, 0.9):
        copy = model.model_copy(update={"temperature": temperature})
        recorder = RunRecorder()
        upstream.enqueue(Script(chunks=["x"]))
        assert [t async for t in copy.astream_text("hi", {"callbacks": [recorder]})]
        assert recorder.started[0]["invocation_params"]["temperature"] == temperature
