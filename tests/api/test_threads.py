"""Conversation threads over HTTP: created, extended by chat runs, read back, deleted."""

from typing import Any

import httpx
import pytest
from langserve import RemoteRunnable

from chainserve.api.settings import Settings
from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio


async def _new_thread(server: LiveServer) -> str:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/threads", json={"metadata": {"user": "ada"}})
    assert response.status_code == 201
    body = response.json()
    assert body["metadata"] == {"user": "ada"}
    return str(body["thread_id"])


async def _thread(server: LiveServer, thread_id: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await client.get(f"/threads/{thread_id}")


def _sent_messages(upstream: MockUpstream, index: int = -1) -> list[dict[str, Any]]:
    body = upstream.requests[index].json
    assert body is not None
    return list(body["messages"])


async def test_second_turn_sees_the_first_and_the_thread_records_both(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    thread_id = await _new_thread(openai_server)
    upstream.enqueue(Script(chunks=["Nice", " to meet you"]), Script(chunks=["Ada"]))
    first = await stream(
        openai_server.url, "chat", {**chat_input("I am Ada"), "thread_id": thread_id}
    )
    second = await stream(
        openai_server.url,
        "chat",
        {
            **chat_input("Who am I?"),
            "config": {"configurable": {"thread_id": thread_id}},
        },
    )
    assert first.events[-1].event == second.events[-1].event == "end"
    assert [(m["role"], m["content"]) for m in _sent_messages(upstream)[1:]] == [
        ("user", "I am Ada"),
        ("assistant", "Nice to meet you"),
        ("user", "Who am I?"),
    ]
    stored = (await _thread(openai_server, thread_id)).json()["messages"]
    assert [(m["role"], m["type"], m["content"]) for m in stored] == [
        ("user", "human", "I am Ada"),
        ("assistant", "ai", "Nice to meet you"),
        ("user", "human", "Who am I?"),
        ("assistant", "ai", "Ada"),
    ]


async def test_invoke_get_stream_and_langserve_all_extend_a_thread(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    thread_id = await _new_thread(openai_server)
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        invoked = await client.post(
            "/chains/chat/invoke", json={**chat_input("one"), "thread_id": thread_id}
        )
        assert invoked.status_code == 200
        streamed = await client.get(
            "/chains/chat/stream", params={"message": "two", "thread_id": thread_id}
        )
        assert streamed.status_code == 200
    remote = RemoteRunnable(f"{openai_server.url}/langserve/chat/")
    config: Any = {"configurable": {"thread_id": thread_id}}
    await remote.ainvoke({"messages": [{"role": "user", "content": "three"}]}, config=config)
    stored = (await _thread(openai_server, thread_id)).json()["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["one", "two", "three"]
    assert len(_sent_messages(upstream)) == 1 + 5  # system + two turns + the new message


async def test_unknown_thread_is_404_before_the_model_is_called(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    body = {**chat_input(), "thread_id": "doesnotexist"}
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        native = await client.post("/chains/chat/stream", json=body)
        langserve = await client.post(
            "/langserve/chat/invoke",
            json={"input": body["input"], "config": {"configurable": {"thread_id": "nope"}}},
        )
    assert native.status_code == langserve.status_code == 404
    assert "POST /threads" in native.json()["error"]["message"]
    assert upstream.requests == []


async def test_thread_on_a_chain_without_memory_is_400(openai_server: LiveServer) -> None:
    thread_id = await _new_thread(openai_server)
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.post(
            "/chains/explain/invoke", json={"input": {"topic": "x"}, "thread_id": thread_id}
        )
    assert response.status_code == 400
    assert "thread_id" in response.json()["error"]["message"]


async def test_conflicting_thread_ids_are_422(openai_server: LiveServer) -> None:
    body = {**chat_input(), "thread_id": "a", "config": {"configurable": {"thread_id": "b"}}}
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.post("/chains/chat/invoke", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["body", "thread_id"]


async def test_failed_run_leaves_the_thread_unchanged(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    thread_id = await _new_thread(openai_server)
    upstream.enqueue(Script(status=500))
    result = await stream(openai_server.url, "chat", {**chat_input(), "thread_id": thread_id})
    assert result.status == 502
    assert (await _thread(openai_server, thread_id)).json()["messages"] == []


async def test_delete_removes_the_thread(openai_server: LiveServer) -> None:
    thread_id = await _new_thread(openai_server)
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        assert (await client.delete(f"/threads/{thread_id}")).status_code == 204
        assert (await client.get(f"/threads/{thread_id}")).status_code == 404
        assert (await client.delete(f"/threads/{thread_id}")).status_code == 404
        assert (await client.get("/threads/not%20valid!")).status_code == 422


async def test_threads_survive_a_restart(
    start_server: ServerFactory, openai_settings: Settings, upstream: MockUpstream
) -> None:
    first = start_server(openai_settings)
    thread_id = await _new_thread(first)
    await stream(first.url, "chat", {**chat_input("remember me"), "thread_id": thread_id})
    first.__exit__(None, None, None)

    second = start_server(openai_settings)
    stored = (await _thread(second, thread_id)).json()["messages"]
    assert stored[0]["content"] == "remember me"


async def test_history_is_trimmed_to_the_token_budget(
    start_server: ServerFactory, openai_settings: Settings, upstream: MockUpstream
) -> None:
    server = start_server(openai_settings.model_copy(update={"history_token_budget": 60}))
    thread_id = await _new_thread(server)
    for turn in range(6):
        upstream.enqueue(Script(chunks=[f"answer {turn} " + "filler " * 10]))
        await stream(server.url, "chat", {**chat_input(f"question {turn}"), "thread_id": thread_id})
    sent = _sent_messages(upstream)
    assert sent[0]["role"] == "system"
    assert sent[1]["role"] == "user"  # trimming starts the history on a user turn
    assert sent[-1]["content"] == "question 5"
    assert 3 <= len(sent) < 1 + 2 * 5 + 1  # some, not all, of the five earlier turns
    assert "question 4" in [m["content"] for m in sent]
