"""useChat's `resume: true`: `GET /chains/{name}/ui/{chat_id}/stream` rejoins the chat's running
answer from its start, or answers 204 when nothing runs, over real HTTP and with the AI SDK."""

import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import node_command
from tests.support.server import LiveServer
from tests.support.sse import SSEParser

KEY, OTHER_KEY = "sk-chainserve-first-0123456789", "sk-chainserve-second-9876543210"
TOKENS = [f" t{i}" for i in range(12)]
HELD_AT = 6
"""The upstream holds after this many tokens, so the run is mid-way when the chat comes back."""


def _chat(chat_id: str) -> dict[str, Any]:
    """useChat's body, plus what its transport's `body` adds for a run that may be resumed."""
    return {
        "id": chat_id,
        "trigger": "submit-message",
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "on_disconnect": "continue",
    }


def _parts(body: bytes) -> list[Any]:
    """The UI message stream's parts; `[DONE]` kept as a string."""
    return [e.data if e.data == "[DONE]" else e.json() for e in SSEParser().feed(body)]


async def _send_then_drop(url: str, chat_id: str, key: str | None = None) -> str:
    """Post a chat message, read until the first text delta, hang up; the message id."""
    headers = {"X-API-Key": key} if key else {}
    parser, parts = SSEParser(), []
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("POST", "/chains/chat/ui", json=_chat(chat_id), headers=headers) as sent,
    ):
        assert sent.status_code == 200
        async for chunk in sent.aiter_raw():
            parts += [e.json() for e in parser.feed(chunk)]
            if any(p["type"] == "text-delta" for p in parts):
                break
    message_id: str = parts[0]["messageId"]
    return message_id


async def _resume(
    url: str, chat_id: str, key: str | None = None, release: MockUpstream | None = None
) -> httpx.Response:
    """GET the resume route; `release` lets a held upstream go on once the replay began."""
    headers = {"X-API-Key": key} if key else {}
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", f"/chains/chat/ui/{chat_id}/stream", headers=headers) as response,
    ):
        if release is not None and response.status_code == 200:
            release.release()
        await response.aread()
    return response


def _text(parts: list[Any]) -> str:
    return "".join(p["delta"] for p in parts if isinstance(p, dict) and p["type"] == "text-delta")


@pytest.mark.asyncio
async def test_resume_replays_the_chats_running_answer_from_its_start(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT))
    message_id = await _send_then_drop(openai_server.url, "chat-1")
    resumed = await _resume(openai_server.url, "chat-1", release=upstream)

    assert resumed.status_code == 200
    assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
    parts = _parts(resumed.content)
    assert parts[0]["type"] == "start"
    assert parts[0]["messageId"] == message_id == resumed.headers["x-run-id"]
    assert _text(parts) == "".join(TOKENS)
    assert [p["type"] for p in parts[-4:-1]] == ["text-end", "finish-step", "finish"]
    assert parts[-1] == "[DONE]"


@pytest.mark.asyncio
async def test_resume_is_204_when_the_chat_has_nothing_running(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        finished = await client.post("/chains/chat/ui", json=_chat("chat-done"))
    assert finished.status_code == 200
    assert (await _resume(openai_server.url, "chat-done")).status_code == 204
    assert (await _resume(openai_server.url, "never-seen")).status_code == 204


@pytest.mark.asyncio
async def test_only_the_key_that_started_a_chat_resumes_it(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Another key is answered as for a chat it never had, and its own chat of the same id
    does not take the first key's place."""
    server = start_server(upstream_settings(upstream, api_keys=f"{KEY}, {OTHER_KEY}"))
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT), Script(chunks=["theirs"]))
    mine = await _send_then_drop(server.url, "same-id", KEY)
    assert (await _resume(server.url, "same-id", OTHER_KEY)).status_code == 204
    assert (await _resume(server.url, "same-id")).status_code == 401
    await _send_then_drop(server.url, "same-id", OTHER_KEY)

    resumed = await _resume(server.url, "same-id", KEY, release=upstream)
    assert resumed.status_code == 200
    parts = _parts(resumed.content)
    assert parts[0]["messageId"] == mine
    assert _text(parts) == "".join(TOKENS)


@pytest.mark.asyncio
async def test_a_chat_started_on_one_worker_resumes_on_another_through_redis(
    start_server: ServerFactory, upstream: MockUpstream, redis_url: str
) -> None:
    settings = upstream_settings(upstream, redis_url=redis_url)
    one, other = start_server(settings), start_server(settings)
    chat_id = f"chat-{uuid.uuid4()}"  # the Redis database outlives this test
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT))
    message_id = await _send_then_drop(one.url, chat_id)
    resumed = await _resume(other.url, chat_id, release=upstream)
    assert resumed.status_code == 200
    parts = _parts(resumed.content)
    assert parts[0]["messageId"] == message_id
    assert _text(parts) == "".join(TOKENS)
    assert parts[-1] == "[DONE]"


def test_the_ai_sdk_transport_resumes_a_dropped_chat_with_the_whole_message(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    """`DefaultChatTransport.reconnectToStream`, as useChat calls it, gets the whole answer."""
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT))
    command = node_command("resume_ui_stream.mjs", openai_server.url, "chat", "chat-n", "hi")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as node:
        assert node.stdout is not None
        stages = [json.loads(node.stdout.readline()) for _ in range(2)]
        upstream.release()  # only now: the resumed stream must have followed the held run
        result = json.loads(node.stdout.readline() or "null")
        assert node.wait(timeout=30) == 0, node.stderr.read() if node.stderr else ""
    assert stages == [{"stage": "dropped"}, {"stage": "resumed"}]
    assert result["firstChunkTypes"][:3] == ["start", "start-step", "text-start"]
    assert result["errors"] == []
    assert result["text"] == "".join(TOKENS)
    assert result["resumed"]["metadata"]["usage"]["output_tokens"] == len(TOKENS)


def test_the_ai_sdk_transport_sees_no_stream_when_the_chat_has_nothing_running(
    openai_server: LiveServer,
) -> None:
    command = node_command("resume_ui_stream.mjs", openai_server.url, "chat", "idle-chat", "")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["resumed"] is None
