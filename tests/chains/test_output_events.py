"""The output event model over real chains on the offline model: text stays text, structured
output becomes growing snapshots ending complete, tool calls stream then complete, parallel
dicts merge."""

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import JsonOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableParallel

from chainserve.chains.agent import calculator
from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.output_events import OutputEvent, OutputEvents
from tests.support.shapes import Verdict

pytestmark = pytest.mark.asyncio

PROMPT = ChatPromptTemplate.from_template("{question}")


def model() -> Runnable[Any, Any]:
    return build_model(ModelConfig(offline_delay=0))


async def events_of(chain: Runnable[Any, Any], question: str) -> tuple[list[OutputEvent], Any]:
    events = OutputEvents()
    seen: list[OutputEvent] = []
    async for chunk in chain.astream({"question": question}):
        seen.extend(events.feed(chunk))
    seen.extend(events.finish())
    return seen, events


async def test_a_text_chain_makes_no_events() -> None:
    seen, events = await events_of(PROMPT | model() | StrOutputParser(), "hi")
    assert seen == []
    assert events.tool_calls() == []


async def test_structured_output_streams_snapshots_and_ends_with_the_complete_object() -> None:
    seen, _ = await events_of(PROMPT | model().with_structured_output(Verdict), "why")
    assert {name for name, _ in seen} == {"object"}
    *partial, (_, last) = seen
    assert last == {"value": Verdict(guilty=True, reason="why"), "complete": True}
    assert partial, "snapshots before the end"
    assert all("complete" not in body for _, body in partial)


async def test_json_snapshots_replace_the_value_instead_of_adding_up() -> None:
    schema = {"type": "json_schema", "json_schema": {"schema": Verdict.model_json_schema()}}
    chain = PROMPT | model().bind(response_format=schema) | JsonOutputParser()
    seen, _ = await events_of(chain, "because")
    values = [body["value"] for _, body in seen]
    assert len(values) > 2
    assert values[-1] == {"guilty": True, "reason": "because"}


async def test_parallel_branches_merge_into_one_growing_dict() -> None:
    branch = PROMPT | model() | StrOutputParser()
    seen, events = await events_of(RunnableParallel(first=branch, second=branch), "hi")
    final = seen[-1][1]
    assert final["complete"] is True
    expected = await branch.ainvoke({"question": "hi"})
    assert final["value"] == {"first": expected, "second": expected}
    assert events.value == final["value"]


async def test_a_tool_call_streams_its_arguments_then_completes_once() -> None:
    seen, events = await events_of(PROMPT | model().bind_tools([calculator]), "What is 2 + 2?")
    deltas = [body for name, body in seen if name == "tool_call_delta"]
    assert len(deltas) > 1
    assert "".join(d["arguments_delta"] for d in deltas) == '{"expression": "2 + 2"}'
    assert {(d["id"], d["name"], d["index"]) for d in deltas} == {
        ("call_offline_1", "calculator", 0)
    }
    complete = [body for name, body in seen if name == "tool_call"]
    assert complete == [
        {
            "index": 0,
            "id": "call_offline_1",
            "name": "calculator",
            "arguments": {"expression": "2 + 2"},
        }
    ]
    assert events.tool_calls() == complete


async def test_a_tool_call_with_broken_json_arguments_is_reported_as_invalid() -> None:
    events = OutputEvents()
    events.feed(
        AIMessageChunk(
            "", tool_call_chunks=[{"name": "f", "args": '{"a": ', "id": "1", "index": 0}]
        )
    )
    ((_, body),) = events.finish()
    assert body == {"index": 0, "id": "1", "name": "f", "arguments": '{"a": ', "invalid": True}


async def test_a_whole_message_with_tool_calls_makes_complete_calls() -> None:
    message = AIMessage("", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c9"}])
    assert OutputEvents().feed(message) == [
        ("tool_call", {"index": 0, "id": "c9", "name": "f", "arguments": {"x": 1}})
    ]


async def test_reasoning_text_becomes_reasoning_events() -> None:
    events = OutputEvents()
    chunk = AIMessageChunk("", additional_kwargs={"reasoning_content": "thinking"})
    assert events.feed(chunk) == [("reasoning", {"delta": "thinking"})]
    blocks = AIMessageChunk([{"type": "reasoning", "reasoning": "more"}])
    assert events.feed(blocks) == [("reasoning", {"delta": "more"})]
