"""The offline model with tools or a response format: deterministic tool calls with streamed
arguments, structured output, and an agent loop that ends, all with no key and no network."""

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.output_parsers import JsonOutputParser
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from chainserve.chains.agent import calculator
from chainserve.chains.models.offline import OfflineChatModel
from chainserve.chains.models.offline_tools import arguments_for, arithmetic_in, plan_turn


@tool
def current_time() -> str:
    """The current time, in UTC."""
    return "12:00"


@tool
def search_documents(query: str, limit: int = 3) -> str:
    """Search the document collection."""
    return f"found {query}"


class Joke(BaseModel):
    """A joke about a subject."""

    setup: str
    punchline: str = Field(max_length=12)
    rating: int = Field(ge=1, le=5)


def model() -> OfflineChatModel:
    return OfflineChatModel(delay=0)


async def streamed(runnable: Any, input: Any) -> AIMessageChunk:
    merged = None
    async for chunk in runnable.astream(input):
        merged = chunk if merged is None else merged + chunk
    assert isinstance(merged, AIMessageChunk)
    return merged


@pytest.mark.asyncio
async def test_arithmetic_calls_the_calculator_with_the_expression_streamed_in_pieces() -> None:
    bound = model().bind_tools([current_time, calculator])
    chunks = [chunk async for chunk in bound.astream("What is 2 + 3 * 4, please?")]
    argument_pieces = [c.tool_call_chunks[0]["args"] for c in chunks if c.tool_call_chunks]
    assert len(argument_pieces) > 1, "arguments arrive in several chunks"
    merged = await streamed(bound, "What is 2 + 3 * 4, please?")
    assert merged.content == ""
    assert merged.tool_calls == [
        {
            "name": "calculator",
            "args": {"expression": "2 + 3 * 4"},
            "id": "call_offline_1",
            "type": "tool_call",
        }
    ]
    assert merged.response_metadata["finish_reason"] == "tool_calls"
    assert merged.usage_metadata is not None


@pytest.mark.asyncio
async def test_invoke_gives_the_same_tool_call_as_the_stream() -> None:
    bound = model().bind_tools([calculator])
    invoked = await bound.ainvoke("compute 6 * 7")
    assert isinstance(invoked, AIMessage)
    merged = await streamed(bound, "compute 6 * 7")
    assert invoked.tool_calls == merged.tool_calls
    assert invoked.tool_calls[0]["args"] == {"expression": "6 * 7"}


@pytest.mark.asyncio
async def test_a_word_of_a_tools_name_in_the_message_calls_that_tool() -> None:
    bound = model().bind_tools([calculator, current_time, search_documents])
    timed = await bound.ainvoke("What time is it?")
    assert [call["name"] for call in timed.tool_calls] == ["current_time"]
    searched = await bound.ainvoke("Search the docs for 5 pipes")
    (call,) = searched.tool_calls
    assert call["name"] == "search_documents"
    assert call["args"] == {"query": "Search the docs for 5 pipes", "limit": 3}


@pytest.mark.asyncio
async def test_a_message_that_asks_for_no_tool_is_answered_in_text() -> None:
    answer = await model().bind_tools([calculator, current_time]).ainvoke("Hello there")
    assert answer.tool_calls == []
    assert "You said: “Hello there”" in answer.text


@pytest.mark.asyncio
async def test_tool_choice_none_answers_in_text_even_for_arithmetic() -> None:
    answer = await model().bind_tools([calculator], tool_choice="none").ainvoke("1 + 1")
    assert answer.tool_calls == []


@pytest.mark.asyncio
async def test_a_forced_tool_choice_calls_the_named_tool() -> None:
    bound = model().bind_tools([calculator, current_time], tool_choice="current_time")
    answer = await bound.ainvoke("What is 2 + 2?")
    assert [call["name"] for call in answer.tool_calls] == ["current_time"]


@pytest.mark.asyncio
async def test_after_tool_results_the_model_answers_in_text_quoting_them() -> None:
    history = [
        HumanMessage("What is 2 + 3 * 4?"),
        AIMessage(
            "", tool_calls=[{"name": "calculator", "args": {"expression": "2+3*4"}, "id": "c1"}]
        ),
        ToolMessage("14", tool_call_id="c1"),
    ]
    answer = await model().bind_tools([calculator]).ainvoke(history)
    assert answer.tool_calls == []
    assert "The calculator tool returned: “14”" in answer.text


@pytest.mark.asyncio
async def test_structured_output_returns_the_schema_filled_from_the_prompt() -> None:
    structured = model().with_structured_output(Joke)
    joke = await structured.ainvoke("A joke about 4 cats")
    assert joke == Joke(setup="A joke about 4 cats", punchline="A joke about", rating=4)
    parts = [part async for part in structured.astream("A joke about 4 cats")]
    assert parts[-1] == joke


@pytest.mark.asyncio
async def test_structured_output_from_a_json_schema_dict_and_include_raw() -> None:
    schema = {
        "title": "Verdict",
        "description": "A verdict.",
        "type": "object",
        "properties": {"guilty": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["guilty", "reason"],
    }
    result = await model().with_structured_output(schema, include_raw=True).ainvoke("why")
    assert result["parsed"] == {"guilty": True, "reason": "why"}
    assert result["parsing_error"] is None
    assert result["raw"].tool_calls[0]["name"] == "Verdict"


@pytest.mark.asyncio
async def test_a_bound_response_format_streams_json_text() -> None:
    chain = (
        model().bind(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "Joke", "schema": Joke.model_json_schema()},
            }
        )
        | JsonOutputParser()
    )
    snapshots = [part async for part in chain.astream("7 jokes")]
    assert len(snapshots) > 1, "partial objects while the JSON streams"
    assert snapshots[-1] == {"setup": "7 jokes", "punchline": "7 jokes", "rating": 5}


@pytest.mark.asyncio
async def test_an_agent_calls_the_tool_and_answers_with_its_result() -> None:
    agent = create_agent(model(), tools=[calculator, current_time])
    result = await agent.ainvoke({"messages": [HumanMessage("What is 2 + 3 * 4?")]})
    kinds = [message.type for message in result["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    assert result["messages"][2].content == "14"
    assert "The calculator tool returned: “14”" in result["messages"][-1].text


@pytest.mark.asyncio
async def test_an_agent_with_a_response_format_ends_with_the_structured_response() -> None:
    agent = create_agent(model(), tools=[calculator], response_format=Joke)
    result = await agent.ainvoke({"messages": [HumanMessage("What is 2 + 3?")]})
    assert isinstance(result["structured_response"], Joke)
    called = [call["name"] for m in result["messages"] for call in getattr(m, "tool_calls", [])]
    assert called == ["calculator", "Joke"]


def test_arithmetic_is_found_only_where_there_is_an_operator_between_numbers() -> None:
    assert arithmetic_in("What is (2 + 3) * 4?") == "(2 + 3) * 4"
    assert arithmetic_in("2 ** 10 and 3") == "2 ** 10"
    assert arithmetic_in("I have 3 cats and 2 dogs") is None
    assert arithmetic_in("the year 2024") is None


def test_arguments_follow_enums_refs_bounds_and_nested_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast", "slow"]},
            "where": {"$ref": "#/$defs/Place"},
            "count": {"type": "integer", "minimum": 10},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}},
            "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        },
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    assert arguments_for(schema, "Paris 3") == {
        "mode": "fast",
        "where": {"city": "Paris 3"},
        "count": 10,
        "tags": ["Pari"],
        "note": "Paris 3",
    }


def test_a_forced_turn_after_results_calls_a_tool_not_yet_called() -> None:
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in "ab"]
    history = [
        HumanMessage("go"),
        AIMessage("", tool_calls=[{"name": "a", "args": {}, "id": "1"}]),
        ToolMessage("done", tool_call_id="1"),
    ]
    turn = plan_turn(history, tools, "any")
    assert turn is not None
    assert turn.name == "b"
