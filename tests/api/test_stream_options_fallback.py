"""A provider that refuses `stream_options` still streams: refused once, then never sent."""

from typing import Any

import httpx
import openai

from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.sse import parse_all

REFUSAL = "1 validation error: stream_options: Extra inputs are not permitted"


def _refuse_stream_options(status: int) -> Any:
    def pick(body: Any) -> Script | None:
        if isinstance(body, dict) and "stream_options" in body:
            return Script(status=status, error_message=REFUSAL)
        return None

    return pick


def test_a_refused_stream_options_is_dropped_once_and_usage_is_estimated(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.script_for = _refuse_stream_options(400)
    for _ in range(2):
        response = httpx.post(f"{server.url}/chains/chat/stream", json=chat_input(), timeout=10)
        assert response.status_code == 200, response.text
        events = parse_all(response.content)
        assert "".join(e.json() for e in events if e.event == "data") == "Hello, world!"
        end = next(e.json() for e in events if e.event == "end")
        assert end["usage"]["approximate"] is True
    sent = [r.json for r in upstream.requests]
    # The first run's request was refused and sent again without the field; the second
    # run's never had it.
    assert ["stream_options" in body for body in sent] == [True, False, False]


def test_a_validating_server_422_on_stream_options_is_handled_the_same(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.script_for = _refuse_stream_options(422)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello, world!"


def test_another_400_is_not_mistaken_for_a_stream_options_refusal(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.default_script = Script(status=400, error_message="context too long")
    response = httpx.post(f"{server.url}/chains/chat/stream", json=chat_input(), timeout=10)
    assert response.status_code == 400
    assert len(upstream.requests) == 1
    assert "stream_options" in upstream.requests[0].json
