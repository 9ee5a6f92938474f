"""Baseline "langgraph (tutorial)": an agent served the way LangGraph's docs stream one, its
`astream(stream_mode="messages")` tokens framed by hand into a `StreamingResponse`.

The agent (`build_agent`) is the one chainserve's agent row loads with `--chains`
(`bench/agent_chain.py`), so their ratio compares the serving, not the agents.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from langchain.agents import create_agent
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from bench.baselines.user_model import user_chat_model
from chainserve.chains.agent import calculator, current_time


class ChatInput(BaseModel):
    messages: list[dict[str, Any]]


class ChatRequest(BaseModel):
    """The same body chainserve's native route takes."""

    input: ChatInput


def build_agent() -> Runnable[Any, Any]:
    """A user's agent: their own `ChatOpenAI`, two tools; the bench upstream never calls them,
    so the whole stream is the agent's final answer."""
    model = user_chat_model()
    return create_agent(model, tools=[calculator, current_time], system_prompt="You are helpful.")


def create_app() -> FastAPI:
    agent = build_agent()
    app = FastAPI()

    @app.post("/stream")
    async def stream(request: ChatRequest) -> StreamingResponse:
        async def tokens() -> AsyncIterator[str]:
            state = {"messages": request.input.messages}
            async for chunk, _ in agent.astream(state, stream_mode="messages"):
                if isinstance(chunk.content, str) and chunk.content:
                    yield f"data: {json.dumps(chunk.content)}\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return app
