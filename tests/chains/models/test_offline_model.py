"""The offline model: a real streaming chat model that says what it is."""

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage

from chainserve.chains.models.offline import OFFLINE_MODEL_NAME, OfflineChatModel, compose_reply

pytestmark = pytest.mark.asyncio

PROMPT = [SystemMessage("Be brief."), HumanMessage("Tell me about SSE")]


async def test_streams_word_by_word_and_reports_usage_on_the_last_chunk() -> None:
    chunks = [c async for c in OfflineChatModel(delay=0).astream(PROMPT)]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    words = [c.content for c in chunks if c.content]
    assert len(words) > 5
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == compose_reply(PROMPT)
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == len(words)
    assert merged.usage_metadata["input_tokens"] == 6
    assert merged.response_metadata["finish_reason"] == "stop"


async def test_reply_restates_the_user_message_and_the_instruction() -> None:
    reply = compose_reply(PROMPT)
    assert "[offline model]" in reply
    assert "Tell me about SSE" in reply
    assert "Be brief." in reply
    assert "OPENAI_API_KEY" in reply


async def test_reply_is_deterministic_and_invoke_matches_stream() -> None:
    model = OfflineChatModel(delay=0)
    streamed = "".join([str(c.content) async for c in model.astream(PROMPT)])
    invoked = await model.ainvoke(PROMPT)
    assert streamed == invoked.content == compose_reply(PROMPT)
    assert invoked.usage_metadata is not None


async def test_long_turns_are_squashed_and_history_counted() -> None:
    long_text = "word " * 500
    reply = compose_reply([HumanMessage(long_text), HumanMessage("again " * 3)])
    assert "2 messages" in reply
    assert len(reply) < 600


async def test_identifies_itself_by_name() -> None:
    assert OfflineChatModel().model_name == OFFLINE_MODEL_NAME
