"""`stop` and image parts on /v1: honoured or refused by name, never accepted and ignored."""

import httpx
import openai
import pytest

from chainserve.api.runs.stop_sequences import cut_at_stop, stop_at
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

CHUNKS = ["The", " answer", " is", " 4", "2.", " Done", " here"]


async def _chunks(items: list[str]):  # type: ignore[no-untyped-def]
    for item in items:
        yield item


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("stops", "text"),
    [
        (["42"], "The answer is "),  # spans two chunks
        ([" is 4"], "The answer"),
        (["Done", "is"], "The answer "),  # the earliest of several
        (["nowhere"], "".join(CHUNKS)),
        (["here!"], "".join(CHUNKS)),  # a prefix held at the end is released
    ],
)
async def test_a_stream_ends_before_the_first_stop_sequence(stops: list[str], text: str) -> None:
    out = [chunk async for chunk in stop_at(_chunks(CHUNKS), stops)]
    assert "".join(out) == text
    assert cut_at_stop("".join(CHUNKS), stops)[0] == text


def test_stop_is_honoured_on_a_chain_without_a_stop_knob_and_the_provider_is_hung_up_on(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.default_script = Script(chunks=CHUNKS + [" more"] * 200, delay=0.01)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    with client:
        chunks = list(
            client.chat.completions.create(
                model="chat", messages=messages, stream=True, stop=["42"]
            )
        )
        upstream.default_script = Script(chunks=CHUNKS)
        whole = client.chat.completions.create(model="chat", messages=messages, stop="Done")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "The answer is "
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    upstream.wait_for_disconnect(index=0)  # hung up on at the stop, not read to the end
    assert upstream.requests[0].chunks_sent < len(CHUNKS) + 200
    assert whole.choices[0].message.content == "The answer is 42. "


def test_more_than_four_stop_sequences_are_refused(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    for stop in (list("abcde"), ["a", ""]):
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stop": stop}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "stop"
        assert "up to 4 non-empty strings" in error["message"]


def test_an_image_part_reaches_a_chain_that_takes_messages_and_is_refused_by_one_that_cannot(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    content = [{"type": "text", "text": "what is this?"}, image]
    chains = httpx.get(f"{server.url}/chains", timeout=10).json()["chains"]
    takes_messages = [
        c["name"] for c in chains if "messages" in c["input_schema"].get("properties", {})
    ]
    takes_text = [
        c["name"]
        for c in chains
        if "messages" not in c["input_schema"].get("properties", {})
        and len(c["input_schema"].get("required", [])) == 1
    ]
    assert takes_messages
    assert takes_text
    body = {"model": takes_messages[0], "messages": [{"role": "user", "content": content}]}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    assert image in upstream.last_request.json["messages"][-1]["content"]

    body = {"model": takes_text[0], "messages": [{"role": "user", "content": content}]}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 400
    assert "messages[0].content[1]" in response.json()["error"]["message"]
    assert "image_url" in response.json()["error"]["message"]
