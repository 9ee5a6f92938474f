"""The output cap holds on the stream itself: a provider that ignores `max_tokens` is cut off
at the cap on every path through `StreamlinedChatOpenAI`, and the offline model keeps to it."""

import logging
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from langchain_core.messages import AIMessageChunk, BaseMessageChunk

from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.models.offline import OfflineChatModel
from chainserve.chains.models.output_cap import OutputBudget, delta_text, trimmed_chunk
from chainserve.chains.models.streamlined_openai import StreamlinedChatOpenAI
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.tokens import encodings
from chainserve.chains.tokens.encodings import encoding_for_model
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

ENDLESS = Script(chunks=[" word"] * 2000, delay=0.001, finish_reason=None, send_done=False)
"""A provider that never stops on its own (it ignores max_tokens and sends no finish)."""


async def _tokens(text: str) -> int:
    return len(encoding_for_model("gpt-4o-mini").encode_ordinary(text))


async def test_a_short_answer_never_loads_or_runs_a_tokenizer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(model: str) -> Any:
        raise AssertionError("a tokenizer was loaded for an answer shorter than the cap")

    monkeypatch.setattr("chainserve.chains.models.output_cap.encoding_for_model", refuse)
    budget = OutputBudget(50, "gpt-4o-mini")
    for _ in range(10):
        assert await budget.overdraft(" word") is None  # 50 bytes: within 50 tokens


async def test_the_budget_counts_tokens_not_chunks_and_keeps_what_fits() -> None:
    budget = OutputBudget(10, "gpt-4o-mini")
    assert await budget.overdraft(" one two three") is None
    assert await budget.overdraft(" four five six") is None
    fits = await budget.overdraft(" seven eight nine ten eleven twelve")
    assert fits == " seven eight nine ten"  # 6 tokens so far, room for 4 more
    assert budget.tokens > 10


async def test_a_cut_inside_a_character_leaves_no_half_character() -> None:
    budget = OutputBudget(1, "gpt-4o-mini")
    assert encodings.encoding_for_model("gpt-4o-mini").encode_ordinary("🚀")[1:]  # 2+ tokens
    assert await budget.overdraft("🚀") == ""


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        ({"content": "a"}, "a"),
        ({"role": "assistant", "content": ""}, ""),
        ({"reasoning_content": "think"}, "think"),
        ({"content": "a", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}, "af{}"),
        ({"content": None, "tool_calls": [{"index": 0}]}, ""),
    ],
)
async def test_every_kind_of_generated_text_counts(delta: dict[str, Any], text: str) -> None:
    assert delta_text({"choices": [{"index": 0, "delta": delta}]}) == text


async def test_only_plain_content_is_trimmed_never_a_tool_call() -> None:
    content = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "abc def"}}]}
    assert trimmed_chunk(content, "abc")["choices"][0]["delta"]["content"] == "abc"  # type: ignore[index]
    call = {"function": {"name": "f", "arguments": '{"a": 1'}}
    tool = {"choices": [{"index": 0, "delta": {"content": "x", "tool_calls": [call]}}]}
    assert trimmed_chunk(tool, "x") is None


@pytest_asyncio.fixture(params=["sdk-http", "lean-http", "parent-path"])
async def capped(
    upstream: MockUpstream, request: pytest.FixtureRequest
) -> AsyncIterator[StreamlinedChatOpenAI]:
    """Our model with a cap of 20 through each of its three stream paths: the SDK's HTTP
    client, our lean client, and `ChatOpenAI`'s own stream (taken here because response
    headers are asked for, as for structured output or the Responses API)."""
    client = openai.DefaultAsyncHttpxClient()
    lean = UpstreamClient() if request.param == "lean-http" else None
    model = StreamlinedChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        base_url=upstream.base_url,
        max_retries=0,
        streaming=True,
        stream_usage=True,
        http_async_client=client,
        upstream_client=lean,
        max_tokens=20,
        output_cap=20,
        include_response_headers=request.param == "parent-path",
    )
    yield model
    await client.aclose()
    if lean is not None:
        await lean.aclose()


async def _answer(model: Any, upstream: MockUpstream, script: Script) -> list[BaseMessageChunk]:
    upstream.enqueue(script)
    return [chunk async for chunk in model.astream("hi")]


def _finish_reason(chunks: list[BaseMessageChunk]) -> Any:
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    return merged.response_metadata.get("finish_reason")


async def test_a_provider_past_the_cap_is_cut_there_and_hung_up_on(
    capped: StreamlinedChatOpenAI, upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chainserve.models"):
        chunks = await _answer(capped, upstream, ENDLESS)
    text = "".join(str(c.content) for c in chunks)
    assert await _tokens(text) == 20
    assert _finish_reason(chunks) == "length"
    await upstream.wait_for_disconnect_async()
    assert upstream.requests[-1].chunks_sent < 2000
    assert upstream.requests[-1].json["max_completion_tokens"] == 20
    assert ["max_tokens=20" in r.getMessage() for r in caplog.records] == [True]


async def test_chunks_of_many_tokens_are_cut_inside_the_chunk(
    capped: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    chunks = await _answer(capped, upstream, Script(chunks=[" word" * 15] * 10))
    text = "".join(str(c.content) for c in chunks)
    assert text == " word" * 20
    assert _finish_reason(chunks) == "length"


async def test_a_provider_that_keeps_to_the_cap_is_not_cut(
    capped: StreamlinedChatOpenAI, upstream: MockUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29}
    script = Script(chunks=[" word"] * 20, finish_reason="length", usage=usage)
    with caplog.at_level(logging.WARNING, logger="chainserve.models"):
        chunks = await _answer(capped, upstream, script)
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert isinstance(merged, AIMessageChunk)
    assert merged.content == " word" * 20
    assert merged.usage_metadata is not None  # the provider's own figures arrived
    assert merged.usage_metadata["output_tokens"] == 20
    assert not caplog.records


async def test_a_binding_cannot_ask_for_more_than_the_cap(
    capped: StreamlinedChatOpenAI, upstream: MockUpstream
) -> None:
    chunks = await _answer(capped.bind(max_tokens=500), upstream, ENDLESS)
    assert upstream.requests[-1].json["max_completion_tokens"] == 20
    assert await _tokens("".join(str(c.content) for c in chunks)) == 20


async def test_a_smaller_request_wins_over_the_cap(upstream: MockUpstream) -> None:
    config = ModelConfig(api_key="sk-test", base_url=upstream.base_url, max_output_tokens=20)
    model = build_model(config).with_config(configurable={"max_tokens": 5})
    chunks = await _answer(model, upstream, ENDLESS)
    assert upstream.requests[-1].json["max_completion_tokens"] == 5
    assert await _tokens("".join(str(c.content) for c in chunks)) == 5


async def test_the_offline_model_keeps_to_its_cap() -> None:
    model = OfflineChatModel(delay=0, max_tokens=3)
    chunks = [chunk async for chunk in model.astream("one two three four five")]
    assert "".join(str(c.content) for c in chunks) == "[offline model] You"
    assert _finish_reason(chunks) == "length"
    whole = await model.ainvoke("one two three four five")
    assert (whole.content, whole.response_metadata["finish_reason"]) == (
        "[offline model] You",
        "length",
    )
    assert (await OfflineChatModel(delay=0).ainvoke("hi")).response_metadata[
        "finish_reason"
    ] == "stop"
