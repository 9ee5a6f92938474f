"""Golden transcripts: each protocol's exact bytes for scripted upstreams, compared byte for byte.

Only the fields that must vary are normalised first: run ids (UUIDs), `created` timestamps
and timings. Regenerate after an intended change with `UPDATE_GOLDEN=1 make unit`, then
review the diff like code.
"""

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.prompts import ChatPromptTemplate
from pydantic import BaseModel

from chainserve.chains import ChainSpec, ModelConfig, build_model
from chainserve.chains.agent import calculator
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

CASES = {
    "newlines": Script(chunks=["line one\n", "line two\n\n", "\r\nend"]),
    "unicode": Script(chunks=["ünï", "cödé ", "🚀", " 中文", ' "quoted" \\ '], usage=None),
    "empty": Script(chunks=[]),
    "upstream_failure": Script(chunks=["partial", " answer", " lost"], drop_after=2),
}
MESSAGES = [{"role": "user", "content": "Say something."}]
UI_MESSAGES = [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "Say something."}]}]
OPENAI_BODY = {
    "model": "chat",
    "messages": MESSAGES,
    "stream": True,
    "stream_options": {"include_usage": True},
}
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "native": ("/chains/chat/stream", {"input": {"messages": MESSAGES}}),
    "openai": ("/v1/chat/completions", OPENAI_BODY),
    "ui": ("/chains/chat/ui", {"id": "c1", "messages": UI_MESSAGES}),
}

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CREATED = re.compile(r'"created":\d+')
_TIMING = re.compile(r'"(time_to_first_token_ms|total_ms)":[0-9.]+')


def normalise(body: str) -> str:
    body = _UUID.sub("<run-id>", body)
    body = _CREATED.sub('"created":0', body)
    return _TIMING.sub(r'"\1":0', body)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("protocol", sorted(REQUESTS))
def test_transcript_matches_golden_file(
    openai_server: LiveServer, upstream: MockUpstream, protocol: str, case: str
) -> None:
    upstream.enqueue(CASES[case])
    path, body = REQUESTS[protocol]
    response = httpx.post(f"{openai_server.url}{path}", json=body, timeout=10)
    assert response.status_code == 200
    transcript = normalise(response.content.decode("utf-8"))
    golden = GOLDEN / protocol / f"{case}.sse"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(transcript.encode("utf-8"))
    assert golden.exists(), f"missing {golden}: run with UPDATE_GOLDEN=1 once"
    assert transcript.encode("utf-8") == golden.read_bytes()


class _Question(BaseModel):
    question: str


class _Verdict(BaseModel):
    guilty: bool
    reason: str


def _shapes() -> list[ChainSpec]:
    """One chain per output shape, on the server's model (the mock upstream)."""
    prompt = ChatPromptTemplate.from_template("{question}")

    def structured(config: ModelConfig) -> Any:
        return prompt | build_model(config).with_structured_output(_Verdict)

    def tool_call(config: ModelConfig) -> Any:
        return prompt | build_model(config).bind_tools([calculator])

    return [
        ChainSpec("structured", "Structured output.", structured, _Question),
        ChainSpec("tool_call", "A tool call for the client.", tool_call, _Question),
    ]


ARGUMENTS = '{"expression": "2 + 2"}'
SHAPE_CASES: dict[str, list[Script]] = {
    "structured": [Script(chunks=['{"guilty"', ': true, "rea', 'son": "sky"}'])],
    "tool_call": [
        Script(
            chunks=[],
            tool_calls=[{"id": "call_1", "name": "calculator", "arguments": ARGUMENTS}],
            finish_reason="tool_calls",
        )
    ],
    "agent": [
        Script(
            chunks=[],
            tool_calls=[{"id": "call_1", "name": "calculator", "arguments": ARGUMENTS}],
            finish_reason="tool_calls",
        ),
        Script(chunks=["It is", " 4."]),
    ],
}
_SHAPE_INPUT = {"question": "What is 2 + 2?"}
_MOCK_ID = re.compile(r"chatcmpl-mock-\d+")


def _shape_request(protocol: str, chain: str) -> tuple[str, dict[str, Any]]:
    asked = [{"role": "user", "content": "What is 2 + 2?"}]
    native_input = {"messages": asked} if chain == "agent" else _SHAPE_INPUT
    text = [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "What is 2 + 2?"}]}]
    return {
        "native": (f"/chains/{chain}/stream", {"input": native_input}),
        "openai": ("/v1/chat/completions", {**OPENAI_BODY, "model": chain, "messages": asked}),
        "ui": (f"/chains/{chain}/ui", {"id": "c1", "messages": text}),
    }[protocol]


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
@pytest.mark.parametrize("protocol", sorted(REQUESTS))
def test_output_shape_transcript_matches_golden_file(
    start_server: ServerFactory, upstream: MockUpstream, protocol: str, case: str
) -> None:
    """Structured output, a tool call for the client and an agent's steps, as each surface
    sends them (`docs/protocol.md`, output events)."""
    server = start_server(upstream_settings(upstream), _shapes())
    upstream.enqueue(*SHAPE_CASES[case])
    path, body = _shape_request(protocol, case)
    response = httpx.post(f"{server.url}{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    transcript = _MOCK_ID.sub("chatcmpl-mock", normalise(response.content.decode("utf-8")))
    golden = GOLDEN / protocol / f"shape_{case}.sse"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_bytes(transcript.encode("utf-8"))
    assert golden.exists(), f"missing {golden}: run with UPDATE_GOLDEN=1 once"
    assert transcript.encode("utf-8") == golden.read_bytes()
