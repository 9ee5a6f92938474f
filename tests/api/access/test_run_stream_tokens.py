"""Run stream tokens over real HTTP with keys on: a browser resumes a run it has no key for."""

import httpx
import pytest

from tests.api.streaming import chat_input, collect
from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import Event, SSEParser

pytestmark = pytest.mark.asyncio

KEY, OTHER_KEY = "sk-chainserve-first-0123456789", "sk-chainserve-second-9876543210"
TOKENS = [f" t{i}" for i in range(12)]
HELD_AT = 6
"""The upstream holds after this many tokens, so the run is mid-way while a client comes back."""


@pytest.fixture
def keyed_server(start_server: ServerFactory, upstream: MockUpstream) -> LiveServer:
    return start_server(upstream_settings(upstream, api_keys=f"{KEY}, {OTHER_KEY}"))


async def _start_run(server: LiveServer, key: str = KEY) -> str:
    """Start a chat run that outlives its request (as a page that reloads leaves one)."""
    body = {**chat_input(), "on_disconnect": "continue"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        client.stream(
            "POST", "/chains/chat/stream", json=body, headers={"X-API-Key": key}
        ) as response,
    ):
        assert response.status_code == 200
        return response.headers["x-run-id"]


async def _token_for(server: LiveServer, key: str, **target: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post("/auth/stream-token", json=target, headers={"X-API-Key": key})


async def _read_some(client: httpx.AsyncClient, url: str, keep: int) -> list[Event]:
    """Open `url` with no key (as `EventSource` does), keep `keep` events, drop the connection."""
    events: list[Event] = []
    parser = SSEParser()
    async with client.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
            if len(events) >= keep:
                break
    return events[:keep]


async def test_a_run_token_url_resumes_after_a_dropped_connection_with_no_gap_or_duplicate(
    keyed_server: LiveServer, upstream: MockUpstream
) -> None:
    """What `EventSource` does on a network change: the same URL again, plus Last-Event-ID."""
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT))
    run_id = await _start_run(keyed_server)
    issued = await _token_for(keyed_server, KEY, run_id=run_id)
    assert issued.status_code == 200, issued.text
    url = issued.json()["stream_url"]
    assert url == f"/runs/{run_id}/stream?token={issued.json()['token']}"

    async with httpx.AsyncClient(base_url=keyed_server.url, timeout=10) as client:
        first = await _read_some(client, url, keep=4)
        upstream.release()
        last_seen = {"Last-Event-ID": first[-1].id or ""}
        async with client.stream("GET", url, headers=last_seen) as response:
            rest = await collect(response)
        assert rest.status == 200
        finished = {"Last-Event-ID": rest.events[-1].id or ""}
        caught_up = await client.get(url, headers=finished)

    events = first + rest.events
    assert [int(e.id or -1) for e in events] == list(range(len(events)))
    assert "".join(e.json() for e in events if e.event == "data") == "".join(TOKENS)
    assert events[-1].event == "end"
    assert caught_up.status_code == 204  # what stops an EventSource from reconnecting


async def _finished_run(server: LiveServer, key: str = KEY) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            "/chains/chat/stream", json=chat_input(), headers={"X-API-Key": key}
        )
    assert response.status_code == 200
    return response.headers["x-run-id"]


async def test_a_run_token_opens_its_runs_stream_and_nothing_else(
    keyed_server: LiveServer,
) -> None:
    run_id, other_run = await _finished_run(keyed_server), await _finished_run(keyed_server)
    run_token = (await _token_for(keyed_server, KEY, run_id=run_id)).json()["token"]
    chain_token = (await _token_for(keyed_server, KEY, chain="chat")).json()["token"]
    refused: list[tuple[str, str]] = [
        ("GET", f"/runs/{other_run}/stream?token={run_token}"),  # another run
        ("GET", f"/chains/chat/stream?message=hi&token={run_token}"),  # a chain
        ("GET", f"/runs/{run_id}?token={run_token}"),  # not the stream route
        ("POST", f"/runs/{run_id}/cancel?token={run_token}"),
        ("GET", f"/runs/{run_id}/stream?token={chain_token}"),  # a chain token
    ]
    async with httpx.AsyncClient(base_url=keyed_server.url, timeout=10) as client:
        opened = await client.get(f"/runs/{run_id}/stream?token={run_token}")
        answers = {
            path: (await client.request(method, path)).status_code for method, path in refused
        }
    assert opened.status_code == 200
    assert "event: end" in opened.text
    assert answers == {path: 401 for _, path in refused}


async def test_a_run_token_is_refused_for_another_keys_run_as_for_an_unknown_one(
    keyed_server: LiveServer,
) -> None:
    run_id = await _finished_run(keyed_server)
    theirs = await _token_for(keyed_server, OTHER_KEY, run_id=run_id)
    unknown = await _token_for(keyed_server, OTHER_KEY, run_id="no-such-run")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text == unknown.text.replace("no-such-run", run_id)


@pytest.mark.parametrize(
    "target", [{}, {"chain": "chat", "run_id": "some-run"}], ids=["neither", "both"]
)
async def test_a_token_names_exactly_one_chain_or_run(
    keyed_server: LiveServer, target: dict[str, str]
) -> None:
    response = await _token_for(keyed_server, KEY, **target)
    assert response.status_code == 422


async def test_a_run_token_lives_as_long_as_the_run_is_kept_a_chain_token_a_minute(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """EventSource reconnects with the same URL however late the connection drops."""
    settings = upstream_settings(
        upstream, api_keys=KEY, stream_token_ttl_seconds=60, run_ttl_seconds=1800
    )
    server = start_server(settings)
    run_id = await _start_run(server)
    run_token = (await _token_for(server, KEY, run_id=run_id)).json()
    chain_token = (await _token_for(server, KEY, chain="chat")).json()
    assert 1700 < run_token["expires_at"] - chain_token["expires_at"] + 60 <= 1801
