"""Conversation threads: create one, read its messages, delete it."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Response
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field

from api.deps import ThreadsDep
from api.encoding import to_jsonable
from api.error_responses import REFUSALS, error_responses
from chains.history import ThreadInfo, ThreadStore

router = APIRouter(prefix="/threads", tags=["threads"], responses=error_responses(*REFUSALS))

ThreadId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Thread id.")]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


class ThreadCreateRequest(BaseModel):
    metadata: dict[str, Any] = Field(default_factory=dict, description="Your own labels.")


def _wire(message: BaseMessage) -> dict[str, Any]:
    """A stored message in both wire styles, so either kind of client can replay it."""
    item: dict[str, Any] = {
        "role": _ROLES.get(message.type, message.type),
        "type": message.type,
        "content": to_jsonable(message.content),
    }
    if message.id:
        item["id"] = message.id
    return item


def _describe(info: ThreadInfo) -> dict[str, Any]:
    return {"thread_id": info.thread_id, "created_at": info.created_at, "metadata": info.metadata}


async def require_thread(threads: ThreadStore, thread_id: str) -> ThreadInfo:
    info = await threads.get(thread_id)
    if info is None:
        raise HTTPException(404, f"no thread {thread_id!r}; create one with POST /threads")
    return info


@router.post("", status_code=201)
async def create_thread(
    threads: ThreadsDep, body: Annotated[ThreadCreateRequest | None, Body()] = None
) -> dict[str, Any]:
    """Create an empty conversation thread."""
    info = await threads.create((body or ThreadCreateRequest()).metadata)
    return _describe(info)


@router.get("/{thread_id}", responses=error_responses(404))
async def get_thread(thread_id: ThreadId, threads: ThreadsDep) -> dict[str, Any]:
    """Return a thread and its messages, oldest first."""
    info = await require_thread(threads, thread_id)
    messages = await threads.messages(thread_id)
    return {**_describe(info), "messages": [_wire(m) for m in messages]}


@router.delete("/{thread_id}", status_code=204, responses=error_responses(404))
async def delete_thread(thread_id: ThreadId, threads: ThreadsDep) -> Response:
    """Delete a thread and its messages."""
    if not await threads.delete(thread_id):
        raise HTTPException(404, f"no thread {thread_id!r}")
    return Response(status_code=204)
