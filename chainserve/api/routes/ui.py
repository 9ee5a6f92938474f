"""The Vercel AI SDK endpoint: `useChat` posts UI messages, gets a UI message stream back,
and, with `resume: true`, rejoins the chat's running answer after a reload or a dropped
connection (`GET .../ui/{chat_id}/stream`)."""

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Response
from fastapi.exceptions import RequestValidationError
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, ConfigDict, Field

from chainserve.api.access.input_limit import check_run_input
from chainserve.api.access.ownership import Caller, CallerDep
from chainserve.api.deps import ChainDep, ModelInfoDep, RunsDep, SettingsDep, ThreadsDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.protocols.ui_message import UIMessageProtocol
from chainserve.api.routes.chains import SSE_RESPONSE, STREAM_RESPONSES
from chainserve.api.runs.calls import join_stream, start_stream
from chainserve.api.runs.event_stream import RunEventStream
from chainserve.api.runs.request import OnDisconnect, check_thread, prepare_run, with_thread
from chainserve.chains.messages import coerce_message
from chainserve.chains.registry import input_from_messages

router = APIRouter(prefix="/chains", tags=["ai-sdk"], responses=error_responses(*REFUSALS))


class UIMessage(BaseModel):
    """One `UIMessage` as useChat sends it; its text and image parts reach the chain."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[dict[str, Any]] = Field(default_factory=list)


class UIChatRequest(BaseModel):
    """useChat's request body, plus chainserve's `thread_id`, `config` and `on_disconnect`."""

    model_config = ConfigDict(extra="allow")  # useChat adds `trigger`, `messageId`, body extras

    id: str = Field("", description="The chat id useChat generated.")
    messages: Annotated[list[UIMessage], Field(min_length=1)]
    thread_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    config: dict[str, Any] | None = None
    on_disconnect: OnDisconnect = "cancel"


def _chat_key(caller: Caller, chain: str, chat_id: str) -> str:
    """Where a chat's latest run is noted: per key, so another key's chat of the same id is
    neither found nor overwritten; hashed, because the id is whatever the client sent."""
    named = json.dumps([caller.owner, chain, chat_id]).encode()
    return f"ui-chat:{hashlib.sha256(named).hexdigest()}"


def _user_content(message: UIMessage, index: int) -> str | list[dict[str, Any]]:
    """A user message's text, and its image attachments (`file` parts with an `image/*`
    media type) as Chat Completions image parts, which a chain taking messages passes to its
    model. Any other attachment is refused by name: dropping it would answer as if it had
    never been sent."""
    content: list[dict[str, Any]] = []
    for position, part in enumerate(message.parts):
        kind = part.get("type")
        if kind == "text":
            content.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "file":
            media = str(part.get("mediaType", ""))
            if not media.startswith("image/") or not isinstance(part.get("url"), str):
                raise ValueError(
                    f"messages[{index}].parts[{position}]: a {media or 'file'!s} attachment "
                    "cannot reach a chain; images (image/*) can"
                )
            content.append({"type": "image_url", "image_url": {"url": part["url"]}})
    if all(part["type"] == "text" for part in content):
        return "".join(part["text"] for part in content)
    return content


def _as_langchain(messages: list[UIMessage]) -> list[BaseMessage]:
    """The chat so far: user turns with their text and images, other turns with their text
    (an earlier answer's reasoning and tool parts are the UI's to show, not the model's)."""
    converted = []
    for index, message in enumerate(messages):
        content: str | list[dict[str, Any]]
        if message.role == "user":
            content = _user_content(message, index)
        else:
            content = "".join(
                str(p.get("text", "")) for p in message.parts if p.get("type") == "text"
            )
        if content:
            converted.append(coerce_message({"role": message.role, "content": content}))
    return converted


@router.post("/{name}/ui", response_class=Response, responses=STREAM_RESPONSES)
async def stream_ui_messages(
    body: UIChatRequest,
    chain: ChainDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    runs: RunsDep,
    caller: CallerDep,
) -> RunEventStream:
    """Stream a chain to the Vercel AI SDK's useChat (UI message stream protocol v1)."""
    try:
        chain_input = input_from_messages(chain.spec, _as_langchain(body.messages))
    except ValueError as exc:
        error = {"type": "value_error", "loc": ("body", "messages"), "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from None
    config = with_thread(body.config, body.thread_id)
    prepared = prepare_run(chain, chain_input, config, model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    if body.id:
        # Before the run starts: a run must never be left going with no response to end it.
        await runs.log.remember_latest(_chat_key(caller, chain.name, body.id), prepared.run.run_id)
    return await start_stream(
        runs, settings, chain, prepared, body.on_disconnect, UIMessageProtocol()
    )


@router.get(
    "/{name}/ui/{chat_id}/stream",
    response_class=Response,
    responses={
        **SSE_RESPONSE,
        204: {"description": "The chat has no running answer."},
        **error_responses(404, 503),
    },
)
async def resume_ui_messages(
    chat_id: Annotated[str, Path(description="The chat id useChat sent with its messages.")],
    chain: ChainDep,
    settings: SettingsDep,
    runs: RunsDep,
    caller: CallerDep,
) -> Response:
    """Rejoin a chat's running answer from its start, for useChat's `resume: true`."""
    run_id = await runs.log.latest(_chat_key(caller, chain.name, chat_id))
    record = await runs.log.get(run_id) if run_id is not None else None
    if record is None or record.status != "running" or not caller.sees(record.owner):
        # 204 is how the AI SDK's transport learns there is nothing to resume; an answer that
        # already ended was the client's to keep (or is in the thread, or `GET /runs/{id}`).
        return Response(status_code=204)
    # From the first event: the AI SDK replays a resumed stream into a fresh message.
    return join_stream(runs, settings, record.run_id, protocol=UIMessageProtocol())
