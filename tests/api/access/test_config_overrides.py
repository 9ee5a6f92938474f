"""No request can point the model at another host or key: attempts on every route family are
refused or ignored, and a real listener standing in for the attacker never sees a connection."""

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.api.streaming import chat_input
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.raw_server import raw_server
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio


class Attacker:
    def __init__(self) -> None:
        self.url = ""
        self.connections = 0


@pytest_asyncio.fixture
async def attacker() -> AsyncIterator[Attacker]:
    seen = Attacker()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1

    async with raw_server(record) as url:
        seen.url = url
        yield seen


def _overrides(url: str) -> list[dict[str, object]]:
    return [
        {"base_url": url},
        {"openai_api_base": url},
        {"api_key": "sk-attacker"},
        {"openai_api_key": "sk-attacker"},
        {"default_headers": {"x": "y"}},
        {"http_client": url},
        {"model_kwargs": {"base_url": url}},
    ]


async def test_overrides_on_every_route_family_never_reach_another_host(
    openai_server: LiveServer, upstream: MockUpstream, attacker: Attacker
) -> None:
    upstream.enqueue(*[Script(chunks=["ok"]) for _ in range(40)])
    # A control connection of our own: the listener does count what reaches it.
    _, writer = await asyncio.open_connection(*attacker.url.split("//")[1].split("/")[0].split(":"))
    writer.close()
    await writer.wait_closed()
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        for override in _overrides(attacker.url):
            config = {"configurable": override}
            attempts = [
                client.post("/chains/chat/stream", json={**chat_input("hi"), "config": config}),
                client.post("/chains/chat/invoke", json={**chat_input("hi"), "config": config}),
                client.post("/chains/chat/invoke", json={**chat_input("hi"), "config": override}),
                client.get(
                    "/chains/chat/stream", params={"message": "hi", "config": json.dumps(config)}
                ),
                client.post(
                    "/langserve/chat/invoke",
                    json={
                        "input": {"messages": [{"type": "human", "content": "hi"}]},
                        "config": config,
                    },
                ),
                client.post(
                    "/langserve/chat/stream",
                    json={
                        "input": {"messages": [{"type": "human", "content": "hi"}]},
                        "config": config,
                    },
                ),
                client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "chat",
                        "messages": [{"role": "user", "content": "hi"}],
                        **override,
                    },
                ),
            ]
            for response in await asyncio.gather(*attempts):
                assert response.status_code < 500, response.text
                assert "sk-attacker" not in response.text
        # The same client can reach the real upstream: the attacker was reachable too.
        ok = await client.post("/chains/chat/invoke", json=chat_input("hi"))
    assert ok.status_code == 200
    await asyncio.sleep(0.2)
    assert attacker.connections == 1  # the control, and nothing else
    assert all(
        r.headers.get("authorization") == "Bearer sk-test-secret-key" for r in upstream.requests
    )
