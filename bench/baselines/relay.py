"""Baseline "relay": forwards the upstream's response bytes unchanged, the floor for any proxy.

One httpx request per stream and `aiter_raw()` into a StreamingResponse: no JSON parsing, no
re-framing. Whatever a server in the middle costs beyond this row is its own work per chunk.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask


def create_app() -> FastAPI:
    base_url = os.environ["OPENAI_BASE_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'sk-bench')}"}
    # No pool cap: a relay in front of 1,000 streams must hold 1,000 upstream connections.
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(60.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        body: dict[str, Any] = json.loads(await request.body())
        messages = [{"role": "system", "content": "You are helpful."}, *body["input"]["messages"]]
        upstream_request = client.build_request(
            "POST",
            f"{base_url}/chat/completions",
            headers=headers,
            json={
                "model": "gpt-4o-mini",
                "messages": messages,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        upstream = await client.send(upstream_request, stream=True)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            background=BackgroundTask(upstream.aclose),
        )

    return app
