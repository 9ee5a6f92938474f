"""`previous_response_id` on chainserve threads: a conversation of responses is one thread.

The first stored response of a chain with memory starts a thread; each follow-up continues the
thread of the response it names. The messages of each turn carry the response's id
(`resp_..._0`, `_1`, ...), which is how a follow-up knows its previous response is still the
latest turn of the thread: a thread is one line of turns, so branching from an earlier
response would show the model the turns after it, and is refused instead.
"""

from langchain_core.messages import BaseMessage

from chainserve.api.access.ownership import Caller
from chainserve.api.errors.openai_shape import OpenAIRequestError
from chainserve.api.protocols.openai_responses import PREFIX, run_id_of
from chainserve.api.routes.responses_request import ResponseRequest
from chainserve.api.runs.log import RunLog
from chainserve.chains import RegisteredChain
from chainserve.chains.history import ThreadStore
from chainserve.chains.thread_key import THREAD_KEY

PARAM = "previous_response_id"


def mark_turn(messages: list[BaseMessage], response_id: str) -> None:
    """Tag a turn's messages with its response (message ids never reach the model)."""
    for index, message in enumerate(messages):
        message.id = f"{response_id}_{index}"


def _turn_of(message: BaseMessage) -> str | None:
    mark = message.id or ""
    return (
        mark.rsplit("_", 1)[0] if mark.startswith(PREFIX) and "_" in mark[len(PREFIX) :] else None
    )


def _refuse(message: str) -> OpenAIRequestError:
    return OpenAIRequestError(400, message, PARAM)


def starts_thread(chain: RegisteredChain, body: ResponseRequest) -> bool:
    """Whether this response begins a conversation: a stored one, on a chain with memory."""
    return body.previous_response_id is None and body.store and THREAD_KEY in chain.configurable


async def start_thread(threads: ThreadStore, caller: Caller) -> str:
    info = await threads.create({"source": "responses"}, owner=caller.owner)
    return info.thread_id


async def previous_thread(
    log: RunLog,
    threads: ThreadStore,
    caller: Caller,
    chain: RegisteredChain,
    body: ResponseRequest,
) -> str | None:
    """The thread of the response this one continues (None: it continues none)."""
    previous = body.previous_response_id
    if previous is None:
        return None
    if THREAD_KEY not in chain.configurable:
        raise _refuse(
            f"chain {chain.name!r} keeps no conversation, so it cannot continue one; send the "
            "whole conversation as input, or use a chain with memory"
        )
    run_id = run_id_of(previous)
    record = await log.get(run_id) if run_id else None
    if record is None or not caller.sees(record.owner):
        message = f"Previous response with id '{previous}' not found."
        raise OpenAIRequestError(404, message, PARAM, code="previous_response_not_found")
    if record.status != "done":
        state = "is still in progress" if record.status == "running" else "did not complete"
        raise _refuse(f"previous response '{previous}' {state}; its turn is not kept")
    info = await threads.get(record.thread_id) if record.thread_id else None
    if info is None or not caller.sees(info.owner):
        raise _refuse(f"the conversation of '{previous}' is no longer kept (its thread is gone)")
    turns = [turn for turn in map(_turn_of, await threads.messages(info.thread_id)) if turn]
    if previous not in turns:
        raise _refuse(f"'{previous}' is not a turn of a conversation kept by /v1/responses")
    if turns[-1] != previous:
        raise _refuse(
            f"'{previous}' is not the latest response of its conversation; chainserve keeps a "
            f"conversation as one thread, so continue from its latest response, '{turns[-1]}'"
        )
    return info.thread_id
