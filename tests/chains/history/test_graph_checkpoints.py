"""The thread routes' view of graphs that keep their own checkpoints: their messages after the
store's, read once per checkpointer, deleted with the thread, and a warning at start-up for a
checkpointer that cannot delete."""

import logging
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from chainserve.chains import ModelConfig, build_model
from chainserve.chains.agent import calculator
from chainserve.chains.agents import as_agent
from chainserve.chains.history.graph_checkpoints import with_graph_checkpoints
from chainserve.chains.history.sqlite import SQLiteThreadStore


class KeepsForever(InMemorySaver):
    """A checkpointer that cannot delete a thread: LangGraph's base class's method, which
    raises `NotImplementedError`."""

    adelete_thread = BaseCheckpointSaver.adelete_thread  # type: ignore[assignment]


def agent(checkpointer: Any) -> Any:
    model: Any = build_model(ModelConfig(offline_delay=0.0))
    return as_agent(create_agent(model, tools=[calculator], checkpointer=checkpointer))


@pytest.mark.asyncio
async def test_two_graphs_on_one_checkpointer_show_a_threads_messages_once(
    tmp_path: Path,
) -> None:
    store = SQLiteThreadStore(tmp_path / "threads.sqlite3")
    saver = InMemorySaver()
    first, second = agent(saver), agent(saver)
    view = with_graph_checkpoints(store, [("one", first), ("two", second)])
    thread = (await store.create()).thread_id
    await store.append(thread, [HumanMessage("kept by the store")])
    await first.ainvoke(
        {"messages": [{"role": "user", "content": "hi"}]},
        {"configurable": {"thread_id": thread}},
    )
    shown = [m.content for m in await view.messages(thread)]
    assert shown[0] == "kept by the store"
    assert shown[1] == "hi"
    assert len(shown) == 3
    assert await view.delete(thread)
    assert await view.messages(thread) == []
    await view.aclose()


@pytest.mark.asyncio
async def test_a_checkpointer_that_cannot_delete_is_named_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteThreadStore(tmp_path / "threads.sqlite3")
    with caplog.at_level(logging.WARNING):
        view = with_graph_checkpoints(store, [("keeper", agent(KeepsForever()))])
    assert "chain 'keeper': its checkpointer (KeepsForever) cannot delete a thread" in caplog.text
    thread = (await store.create()).thread_id
    assert await view.delete(thread)  # the store's thread goes; nothing raises
    await view.aclose()


def test_without_graphs_that_keep_checkpoints_the_store_is_used_as_it_is(tmp_path: Path) -> None:
    store = SQLiteThreadStore(tmp_path / "threads.sqlite3")
    assert with_graph_checkpoints(store, [("plain", agent(None))]) is store
