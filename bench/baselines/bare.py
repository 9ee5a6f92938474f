"""Baseline "bare": the common tutorial pattern, the OpenAI SDK straight into a StreamingResponse.

No LangChain, no run log, no framing beyond `data: <json string>`: what a hand-written endpoint
costs, so a ratio against it prices everything chainserve adds on top of the SDK.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel


class ChatInput(BaseModel):
    messages: list[dict[str, Any]]


class ChatRequest(BaseModel):
    """The same body chainserve's native route takes."""

    input: ChatInput


def create_app() -> FastAPI:
    client = AsyncOpenAI(
        base_url=os.environ["OPENAI_BASE_URL"],
        api_key=os.environ.get("OPENAI_API_KEY", "sk-bench"),
        max_retries=0,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/stream")
    async def stream(request: ChatRequest) -> StreamingResponse:
        messages: list[Any] = [{"role": "system", "content": "You are helpful."}]
        messages += request.input.messages
        # Usage requested like chainserve and LangServe do, so the upstream sends the same bytes.
        response = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )

        async def events() -> AsyncIterator[str]:
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield f"data: {json.dumps(chunk.choices[0].delta.content)}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
