"""The Vercel AI SDK endpoint, read by the AI SDK's own parser (from the npm registry)."""

import json
from pathlib import Path

import httpx
from langchain_core.messages import AIMessageChunk

from chainserve.api.protocols.ui_message import UIMessageProtocol
from chainserve.api.runs.encoding import to_json
from chainserve.api.runs.log import RunEvent
from chainserve.chains.output_events import OutputEvents
from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.node import read_with_ai_sdk
from tests.support.server import LiveServer


def test_use_chat_assembles_the_streamed_answer(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo\n", "ünï 🚀"]))
    result = read_with_ai_sdk(openai_server.url, "chat", "hi there")
    assert result["status"] == 200
    assert result["protocolHeader"] == "v1"
    assert result["invalidChunks"] == []
    assert result["errors"] == []
    assert result["chunkTypes"] == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-delta",
        "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert result["text"] == "Hello\nünï 🚀"
    metadata = result["message"]["metadata"]
    assert metadata["runId"] == result["message"]["id"]
    assert metadata["usage"]["output_tokens"] == 3
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1] == {"role": "user", "content": "hi there"}


def test_single_field_chain_takes_the_last_user_text(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    result = read_with_ai_sdk(openai_server.url, "explain", "monads")
    assert result["text"] == "Hello, world!"
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1]["content"] == "Explain monads."


def test_mid_stream_failure_is_an_error_part(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one", " two", " three"], drop_after=2))
    result = read_with_ai_sdk(openai_server.url, "chat", "hi")
    assert result["chunkTypes"][-1] == "error"
    assert "text-end" in result["chunkTypes"]
    assert result["errors"] == ["The connection to the model provider broke."]
    assert result["text"] == "one two"


def test_failure_before_output_is_an_http_error(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(status=503))
    result = read_with_ai_sdk(openai_server.url, "chat", "hi")
    assert result["status"] == 503
    assert json.loads(result["body"])["error"]["code"] == "upstream_unavailable"


def test_thread_id_in_the_body_gives_use_chat_memory(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    thread_id = httpx.post(f"{openai_server.url}/threads").json()["thread_id"]
    extra = json.dumps({"thread_id": thread_id})
    read_with_ai_sdk(openai_server.url, "chat", "first", extra)
    read_with_ai_sdk(openai_server.url, "chat", "second", extra)
    sent = upstream.last_request.json
    assert sent is not None
    assert [m["content"] for m in sent["messages"][1:]] == ["first", "Hello, world!", "second"]


def test_bad_use_chat_bodies_are_422(openai_server: LiveServer) -> None:
    bodies = [
        {"messages": []},
        {"messages": [{"role": "wizard", "parts": []}]},
        {"messages": [{"role": "user", "parts": [{"type": "file", "url": "x"}]}]},
    ]
    for body in bodies:
        response = httpx.post(f"{openai_server.url}/chains/chat/ui", json=body)
        assert response.status_code == 422, body


def _frames(protocol: UIMessageProtocol, events: list[tuple[str, object]]) -> bytes:
    return b"".join(
        protocol.frame(RunEvent(seq, kind, json.dumps(data)))
        for seq, (kind, data) in enumerate(events)
    )


def test_reasoning_and_tool_call_chunks_become_their_parts(tmp_path: Path) -> None:
    """Message-chunk outputs (a chain ending in a chat model) keep reasoning and tool calls:
    the run log holds each raw chunk and then its output events, as the run manager writes
    them."""
    metadata = {"run_id": "r1", "chain": "agent", "model": {"provider": "openai", "name": "m"}}
    chunks = [
        AIMessageChunk("", additional_kwargs={"reasoning_content": "Thinking"}),
        AIMessageChunk("Let me look.", tool_call_chunks=[
            {"index": 0, "id": "call_1", "name": "search", "args": '{"q": '},
        ]),
        AIMessageChunk("", tool_call_chunks=[{"index": 0, "args": '"sse"}'}],
                       response_metadata={"finish_reason": "tool_calls"}),
    ]  # fmt: skip
    outputs = OutputEvents()
    logged: list[tuple[str, object]] = [("metadata", metadata)]
    for chunk in chunks:
        logged += [("data", json.loads(to_json(chunk))), *outputs.feed(chunk)]
    logged += [*outputs.finish(), ("end", {"finish_reason": "tool_calls", "usage": None})]
    transcript = _frames(UIMessageProtocol(), logged)
    path = tmp_path / "stream.txt"
    path.write_bytes(transcript)
    result = read_with_ai_sdk("--file", str(path))
    assert result["invalidChunks"] == []
    assert result["errors"] == []
    parts = {part["type"]: part for part in result["message"]["parts"]}
    assert parts["reasoning"]["text"] == "Thinking"
    assert parts["text"]["text"] == "Let me look."
    tool = next(p for p in result["message"]["parts"] if p["type"].startswith("tool-"))
    assert tool["toolCallId"] == "call_1"
    assert tool["input"] == {"q": "sse"}
    assert result["chunkTypes"][-1] == "finish"


def test_a_cancelled_run_ends_with_an_abort_part(tmp_path: Path) -> None:
    metadata = {"run_id": "r1", "chain": "chat", "model": {"provider": "offline", "name": "x"}}
    cancelled = {"code": "cancelled", "message": "The run was cancelled.", "retryable": False}
    transcript = _frames(
        UIMessageProtocol(), [("metadata", metadata), ("data", "partial"), ("error", cancelled)]
    )
    path = tmp_path / "stream.txt"
    path.write_bytes(transcript)
    result = read_with_ai_sdk("--file", str(path))
    assert result["chunkTypes"][-2:] == ["text-end", "abort"]
    assert result["text"] == "partial"
    assert result["errors"] == []


def test_rag_sources_become_source_document_parts(start_server: ServerFactory) -> None:
    """useChat shows the chunks a retrieval chain used as the AI SDK's source-document parts."""
    server = start_server(offline_settings())
    documents = [
        {"id": "ports", "text": "Harbor listens on port 7070 by default.", "metadata": {}},
        {"id": "tls", "text": "Harbor serves TLS with certificates from /etc/harbor."},
    ]
    ingested = httpx.post(
        f"{server.url}/collections/default/documents", json={"documents": documents}, timeout=60
    )
    assert ingested.status_code == 200
    result = read_with_ai_sdk(server.url, "rag", "Which port does Harbor use?")
    assert result["invalidChunks"] == []
    assert result["errors"] == []
    assert result["chunkTypes"][2:4] == ["source-document", "source-document"]
    sources = [p for p in result["message"]["parts"] if p["type"] == "source-document"]
    assert {s["sourceId"] for s in sources} == {"ports:0", "tls:0"}
    assert {s["title"] for s in sources} == {"ports", "tls"}  # no title given: the id
    assert [s["providerMetadata"]["chainserve"]["number"] for s in sources] == [1, 2]
