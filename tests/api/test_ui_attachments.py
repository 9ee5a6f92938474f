"""useChat attachments: an image reaches the model of a chain that takes messages; anything a
chain cannot take is refused by name, never dropped while the answer goes on."""

from typing import Any

import httpx

from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream

IMAGE = "data:image/png;base64,iVBORw0KGgo="


def _ask(url: str, chain: str, *parts: dict[str, Any]) -> httpx.Response:
    message = {
        "id": "m1",
        "role": "user",
        "parts": [{"type": "text", "text": "what is it?"}, *parts],
    }
    return httpx.post(f"{url}/chains/{chain}/ui", json={"messages": [message]}, timeout=10)


def _chains_by_input(url: str) -> tuple[str, str]:
    """A chain that takes messages and one that takes a single text field."""
    chains = httpx.get(f"{url}/chains", timeout=10).json()["chains"]
    fields = {c["name"]: c["input_schema"].get("properties", {}) for c in chains}
    required = {c["name"]: c["input_schema"].get("required", []) for c in chains}
    takes_messages = next(name for name, props in fields.items() if "messages" in props)
    takes_text = next(
        name
        for name, props in fields.items()
        if "messages" not in props and len(required[name]) == 1
    )
    return takes_messages, takes_text


def test_an_image_attachment_reaches_the_model_and_other_files_are_refused_by_name(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    takes_messages, takes_text = _chains_by_input(server.url)
    image = {"type": "file", "mediaType": "image/png", "url": IMAGE}

    response = _ask(server.url, takes_messages, image)
    assert response.status_code == 200
    sent = upstream.last_request.json["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": IMAGE}} in sent

    pdf = {
        "type": "file",
        "mediaType": "application/pdf",
        "url": "data:application/pdf;base64,JVBE",
    }
    refused = _ask(server.url, takes_messages, pdf)
    assert refused.status_code == 422
    assert "messages[0].parts[1]" in refused.json()["error"]["message"]

    refused = _ask(server.url, takes_text, image)
    assert refused.status_code == 422
    assert "image_url" in refused.json()["error"]["message"]
    assert len(upstream.requests) == 1
