"""Client helpers for the wire tests: POST a run and collect its SSE events."""

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.sse import Event, SSEParser


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    body: bytes = b""

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.event == kind]

    @property
    def text(self) -> str:
        return "".join(e.json() for e in self.of("data"))

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def stream(base_url: str, chain: str, payload: Any, **kwargs: Any) -> StreamResult:
    """POST to `/chains/{chain}/stream` and read the whole response."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream("POST", f"/chains/{chain}/stream", json=payload, **kwargs) as response,
    ):
        return await collect(response)


async def collect(response: httpx.Response) -> StreamResult:
    result = StreamResult(response.status_code, response.headers)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        result.body = await response.aread()
        return result
    parser = SSEParser()
    async for chunk in response.aiter_raw():
        result.events.extend(parser.feed(chunk))
    result.comments = parser.comments
    return result


def chat_input(text: str = "hello") -> dict[str, Any]:
    return {"input": {"messages": [{"role": "user", "content": text}]}}


async def read_then_hang_up(url: str, body: dict[str, Any], keep: int) -> list[Event]:
    """Start a chat run, keep its first `keep` events, then drop the connection."""
    events: list[Event] = []
    parser = SSEParser()
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("POST", "/chains/chat/stream", json=body) as response,
    ):
        async for chunk in response.aiter_raw():
            events.extend(parser.feed(chunk))
            if len(events) >= keep:
                break
    return events[:keep]


def hang_up_at(url: str, path: str, body: dict[str, Any], marker: str) -> tuple[str, float]:
    """POST a stream, hang up at the first `data` line holding `marker`; the run's id and
    the monotonic time of the hang-up."""
    with (
        httpx.Client(base_url=url, timeout=10) as client,
        client.stream("POST", path, json=body) as response,
    ):
        assert response.status_code == 200
        run_id = response.headers["x-run-id"]
        for line in response.iter_lines():
            if line.startswith("data: ") and marker in line:
                break
    return run_id, time.monotonic()
