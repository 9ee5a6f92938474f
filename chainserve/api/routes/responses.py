"""OpenAI's Responses API: create a response (streamed, awaited or in the background), retrieve
it, stream it again from any event, cancel it. Every response is a run of a chain."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from chainserve.api.access.input_limit import OPENAI_RESPONSES as INPUT_LIMIT_RESPONSES
from chainserve.api.access.input_limit import check_input_tokens
from chainserve.api.access.ownership import Caller, CallerDep
from chainserve.api.deps import ChainsDep, ModelInfoDep, RunsDep, SettingsDep, ThreadsDep
from chainserve.api.errors.openai_shape import OpenAIRequestError
from chainserve.api.errors.responses import REFUSALS, RUN_FAILURES, error_responses
from chainserve.api.protocols.openai_chat import openai_error
from chainserve.api.protocols.openai_responses import (
    OpenAIResponsesProtocol,
    current_response,
    from_record,
    response_head,
    response_id_of,
    run_id_of,
    unstored_response_id,
)
from chainserve.api.protocols.response_events import ResponseFold
from chainserve.api.routes.openai import unknown_model
from chainserve.api.routes.responses_request import (
    ResponseRequest,
    chain_input,
    input_messages,
    reject_unsupported,
    response_config,
)
from chainserve.api.routes.responses_threads import (
    mark_turn,
    previous_thread,
    start_thread,
    starts_thread,
)
from chainserve.api.runs.calls import join_stream, start_stream
from chainserve.api.runs.disconnect import cancel_on_disconnect
from chainserve.api.runs.log import TERMINAL_EVENTS, RunGone, RunLog, RunRecord
from chainserve.api.runs.manager import CANCEL_WAIT_SECONDS, RunManager
from chainserve.api.runs.request import (
    OnDisconnect,
    PreparedRun,
    check_thread,
    prepare_run,
    with_thread,
)
from chainserve.api.settings import Settings
from chainserve.chains import ModelInfo, RegisteredChain
from chainserve.chains.history import ThreadStore

router = APIRouter(prefix="/v1", tags=["openai"], responses=error_responses(*REFUSALS, openai=True))

STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The `response` object, or with `stream: true` its typed events as "
        "Server-Sent Events.",
        "content": {"text/event-stream": {}},
    }
}


@router.post(
    "/responses",
    responses={**error_responses(*RUN_FAILURES, openai=True), **INPUT_LIMIT_RESPONSES, **STREAMED},
)
async def create_response(
    request: Request,
    body: ResponseRequest,
    chains: ChainsDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    runs: RunsDep,
    caller: CallerDep,
) -> Response:
    """Run a chain for an OpenAI Responses request: streamed, awaited or in the background."""
    reject_unsupported(body)
    chain = chains.get(body.model)
    if chain is None:
        raise unknown_model(body.model)
    prepared, head = await _prepare(chain, body, settings, model, threads, runs, caller)
    run = prepared.run
    if body.stream:
        fold = ResponseFold(head)  # `head` is the fold's own: the time set below reaches it
        on_disconnect: OnDisconnect = "continue" if body.background else "cancel"
        protocol = OpenAIResponsesProtocol(fold)
        stream = await start_stream(runs, settings, chain, prepared, on_disconnect, protocol)
        head["created_at"] = int((await _started(runs.log, run.run_id)).created_at)
        return stream
    await runs.start(run, chain.runnable.astream(prepared.input, prepared.config))
    record = await _started(runs.log, run.run_id)
    head["created_at"] = int(record.created_at)
    if body.background:
        response = await current_response(runs.log, record, head)
        return JSONResponse(response, headers={"X-Run-Id": run.run_id})
    return await _await_response(request, runs, run.run_id, head, settings.keepalive_seconds)


async def _prepare(
    chain: RegisteredChain,
    body: ResponseRequest,
    settings: Settings,
    model: ModelInfo,
    threads: ThreadStore,
    runs: RunManager,
    caller: Caller,
) -> tuple[PreparedRun, dict[str, Any]]:
    """The checked run, in its conversation's thread, and the response's head."""
    messages = input_messages(body)
    given = chain_input(chain, messages)
    config = response_config(chain, body, settings.max_output_tokens)
    thread_id = await previous_thread(runs.log, threads, caller, chain, body)
    prepared = prepare_run(chain, given, with_thread(config, thread_id), model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_input_tokens(
        settings, chain, prepared.input, prepared.run.model_name, prepared.config, param="input"
    )
    if starts_thread(chain, body):  # only once the request is known to be good
        thread_id = await start_thread(threads, caller)
        config = with_thread(config, thread_id)
        prepared = prepare_run(chain, given, config, model, owner=caller.owner)
    response_id = response_id_of(prepared.run.run_id) if body.store else unstored_response_id()
    if thread_id is not None:
        mark_turn(messages, response_id)
    return prepared, response_head(response_id, 0, body.model, body.echo())


async def _await_response(
    request: Request, runs: RunManager, run_id: str, head: dict[str, Any], wait: float
) -> Response:
    """The response once its run has ended; its HTTP error when it failed, as OpenAI answers."""
    headers = {"X-Run-Id": run_id}
    fold = ResponseFold(head)
    follow = partial(_await_run, runs.log, run_id, fold, wait)
    finished = await cancel_on_disconnect(request.receive, follow)
    if finished is None:
        await runs.cancel(run_id)
        return Response(status_code=499)
    response = fold.response() if fold.ended else from_record(ResponseFold(head), finished)
    if response["status"] == "failed":
        status = finished.http_status or 500
        error = openai_error(status, response["error"]["code"], response["error"]["message"])
        retry = {"Retry-After": finished.retry_after} if finished.retry_after else {}
        return JSONResponse(error, status, headers={**headers, **retry})
    return JSONResponse(response, headers=headers)


async def _started(log: RunLog, run_id: str) -> RunRecord:
    """A run just started: its record holds the time every read of the response shows."""
    record = await log.get(run_id)
    assert record is not None  # just created
    return record


async def _await_run(log: RunLog, run_id: str, fold: ResponseFold, wait: float) -> RunRecord:
    """Fold the run's events until it ends; its final record. A fold that fell out of the
    kept window of events stops folding (the record then has the output) but still waits."""
    after, folding = -1, True
    while True:
        try:
            events = await log.read(run_id, after, wait)
        except RunGone:
            folding = False
            record = await log.get(run_id)
            after = record.last_seq - 1 if record is not None else after
            continue
        for event in events:
            if folding:
                fold.feed(event)
            after = event.seq
        if events and events[-1].event in TERMINAL_EVENTS:
            break
    record = await log.get(run_id)
    if record is None:
        raise KeyError(run_id)
    return record


async def _owned(runs: RunManager, response_id: str, caller: Caller) -> RunRecord:
    """The response's run, if it is the caller's: another key's is as unknown as a missing one."""
    run_id = run_id_of(response_id)
    record = await runs.log.get(run_id) if run_id else None
    if record is None or not caller.sees(record.owner):
        message = f"Response with id '{response_id}' not found."
        raise OpenAIRequestError(404, message, "response_id", code="not_found")
    return record


def _head(response_id: str, record: RunRecord) -> dict[str, Any]:
    return response_head(response_id, record.created_at, record.chain)


@router.get(
    "/responses/{response_id}",
    responses={**error_responses(404, 410, openai=True), **STREAMED},
)
async def get_response(
    response_id: str,
    runs: RunsDep,
    settings: SettingsDep,
    caller: CallerDep,
    stream: bool = False,
    starting_after: Annotated[int, Query(ge=-1)] = -1,
) -> Response:
    """Retrieve a response as it stands, or stream its events after `starting_after`."""
    record = await _owned(runs, response_id, caller)
    head = _head(response_id, record)
    if not stream:
        return JSONResponse(await current_response(runs.log, record, head))
    try:
        await runs.log.read(record.run_id, -1, 0)
    except RunGone:
        message = f"the events of '{response_id}' are no longer kept; retrieve it without stream"
        raise OpenAIRequestError(410, message, "stream", code="gone") from None
    # From its first event, whatever `starting_after` says: sequence numbers are the fold's.
    protocol = OpenAIResponsesProtocol(ResponseFold(head), starting_after)
    return join_stream(runs, settings, record.run_id, protocol=protocol)


@router.post(
    "/responses/{response_id}/cancel", responses=error_responses(404, 409, 504, openai=True)
)
async def cancel_response(response_id: str, runs: RunsDep, caller: CallerDep) -> Any:
    """Cancel a response still in progress; its output so far is kept."""
    record = await _owned(runs, response_id, caller)
    if record.status == "running":
        record = await runs.cancel(record.run_id) or record
        if record.status == "running":
            message = (
                f"'{response_id}' did not stop within {CANCEL_WAIT_SECONDS:g}s; it may still "
                "stop (retrieve it), or cancel it again"
            )
            raise OpenAIRequestError(504, message, code="cancel_timeout")
    elif record.status != "cancelled":  # cancelling again answers as the first cancel did
        message = f"'{response_id}' already ended ({record.status}); only one in progress stops"
        raise OpenAIRequestError(409, message, code="conflict")
    return await current_response(runs.log, record, _head(response_id, record))
