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
