"""Conversation threads: create one, list them, read its messages, delete it.

A thread belongs to the key that created it: any other key (admins aside) is told it does not
exist, with the very 404 an unknown id gets.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, Field

from chainserve.api.access.ownership import Caller, CallerDep
from chainserve.api.deps import ThreadsDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.runs.encoding import to_jsonable
from chainserve.chains.history import ThreadInfo, ThreadStore

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
    return {
        "thread_id": info.thread_id,
        "created_at": info.created_at,
        "metadata": info.metadata,
        "owner": info.owner,
    }


def missing_thread(thread_id: str) -> HTTPException:
    """The one answer for a thread that is unknown or another key's: they must not differ."""
    return HTTPException(404, f"no thread {thread_id!r}; create one with POST /threads")


async def require_thread(threads: ThreadStore, thread_id: str, caller: Caller) -> ThreadInfo:
    info = await threads.get(thread_id)
    if info is None or not caller.sees(info.owner):
        raise missing_thread(thread_id)
    return info


@router.post("", status_code=201)
async def create_thread(
    threads: ThreadsDep,
    caller: CallerDep,
    body: Annotated[ThreadCreateRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Create an empty conversation thread, owned by the calling key."""
    info = await threads.create((body or ThreadCreateRequest()).metadata, owner=caller.owner)
    return _describe(info)


@router.get("")
async def list_threads(
    threads: ThreadsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """List the calling key's threads, newest first (an admin key: every key's)."""
    found = await threads.list_threads(caller.owner, everyone=caller.admin, limit=limit)
    return {"threads": [_describe(info) for info in found]}


@router.get("/{thread_id}", responses=error_responses(404))
async def get_thread(thread_id: ThreadId, threads: ThreadsDep, caller: CallerDep) -> dict[str, Any]:
    """Return a thread and its messages, oldest first."""
    info = await require_thread(threads, thread_id, caller)
    messages = await threads.messages(thread_id)
    return {**_describe(info), "messages": [_wire(m) for m in messages]}


@router.delete("/{thread_id}", status_code=204, responses=error_responses(404))
async def delete_thread(thread_id: ThreadId, threads: ThreadsDep, caller: CallerDep) -> Response:
    """Delete a thread and its messages."""
    await require_thread(threads, thread_id, caller)
    if not await threads.delete(thread_id):
        raise missing_thread(thread_id)
    return Response(status_code=204)
