"""Native chain routes: list, stream over SSE (POST and GET), invoke."""

import enum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import PydanticUserError

from chainserve.api.access.input_limit import RESPONSES as INPUT_LIMIT_RESPONSES
from chainserve.api.access.input_limit import check_run_input
from chainserve.api.access.ownership import CallerDep
from chainserve.api.deps import ChainDep, ChainsDep, ModelInfoDep, RunsDep, SettingsDep, ThreadsDep
from chainserve.api.errors.responses import REFUSALS, RUN_FAILURES, error_responses
from chainserve.api.runs.calls import Failed, invoke, start_stream
from chainserve.api.runs.config import value_adapter
from chainserve.api.runs.encoding import to_jsonable
from chainserve.api.runs.event_stream import RunEventStream
from chainserve.api.runs.request import (
    OnDisconnect,
    RunRequest,
    check_thread,
    input_from_query,
    prepare_run,
    with_thread,
)
from chainserve.chains import RegisteredChain

router = APIRouter(prefix="/chains", tags=["chains"], responses=error_responses(*REFUSALS))

# Documented by hand: naming an EventSourceResponse subclass as `response_class` would make
# FastAPI treat the handler as a generator endpoint. Stream routes name plain `Response`
# instead, so the schema does not also offer the default JSON for their 200.
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`metadata`, `data`*, then `end` or `error` events.",
        "content": {"text/event-stream": {}},
    }
}
RUN_RESPONSES = {**error_responses(*RUN_FAILURES), **INPUT_LIMIT_RESPONSES}
STREAM_RESPONSES = {**RUN_RESPONSES, **SSE_RESPONSE}


def _options(annotation: Any) -> list[Any] | None:
    """The closed set of values a configurable key takes, if it has one."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return None


def _value_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a configurable key's value (type, bounds, pattern) for forms."""
    try:
        return value_adapter(annotation).json_schema()
    except PydanticUserError:  # a type pydantic cannot describe: say nothing rather than fail
        return {}


def _describe(chain: RegisteredChain, root: str) -> dict[str, Any]:
    configurable = [
        {
            "id": spec.id,
            "name": spec.name,
            "description": spec.description,
            "default": getattr(spec.default, "value", spec.default),
            "options": _options(spec.annotation),
            "schema": _value_schema(spec.annotation),
        }
        for spec in chain.configurable.values()
    ]
    return {
        "name": chain.name,
        "description": chain.spec.description,
        "input_schema": chain.spec.input_type.model_json_schema(),
        "configurable": configurable,
        "endpoints": {
            "stream": f"{root}/chains/{chain.name}/stream",
            "invoke": f"{root}/chains/{chain.name}/invoke",
            "langserve": f"{root}/langserve/{chain.name}/",
        },
    }


@router.get("")
async def list_chains(request: Request, chains: ChainsDep) -> dict[str, Any]:
    """List the chains with their input schemas and per-request configurable keys."""
    # The paths a client calls: under `add_routes(path=...)` or a proxy's `--root-path` too.
    root = request.scope.get("root_path", "").rstrip("/")
    return {"chains": [_describe(chain, root) for chain in chains.values()]}


@router.post("/{name}/stream", response_class=Response, responses=STREAM_RESPONSES)
async def stream_chain(
    body: RunRequest,
    chain: ChainDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    runs: RunsDep,
    caller: CallerDep,
) -> RunEventStream:
    """Stream a chain's output as Server-Sent Events."""
    config = with_thread(body.config, body.thread_id)
    prepared = prepare_run(chain, body.input, config, model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    return await start_stream(runs, settings, chain, prepared, body.on_disconnect)


@router.get(
    "/{name}/stream",
    response_class=Response,
    responses={**STREAM_RESPONSES, 204: {"description": "Sent a Last-Event-ID: rejoin the run."}},
)
async def stream_chain_from_query(
    request: Request,
    chain: ChainDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    runs: RunsDep,
    caller: CallerDep,
    on_disconnect: OnDisconnect = "cancel",
) -> Response:
    """Stream a chain for a browser `EventSource`: input from the query string."""
    if request.headers.get("last-event-id") is not None:
        # An EventSource reconnecting here would start the run over (and pay for it twice).
        # 204 tells it to stop; the client resumes with GET /runs/{run_id}/stream instead.
        return Response(status_code=204)
    raw_input, raw_config = input_from_query(chain, request.query_params, settings.max_json_depth)
    prepared = prepare_run(
        chain, raw_input, raw_config, model, where=("query",), owner=caller.owner
    )
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    return await start_stream(runs, settings, chain, prepared, on_disconnect)


@router.post("/{name}/invoke", responses=RUN_RESPONSES)
async def invoke_chain(
    request: Request,
    body: RunRequest,
    chain: ChainDep,
    settings: SettingsDep,
    model: ModelInfoDep,
    threads: ThreadsDep,
    caller: CallerDep,
) -> Response:
    """Run a chain to completion and return its whole output."""
    config = with_thread(body.config, body.thread_id)
    prepared = prepare_run(chain, body.input, config, model, owner=caller.owner)
    await check_thread(threads, prepared.config, caller)
    await check_run_input(settings, chain, prepared)
    run = prepared.run
    headers = {"X-Run-Id": run.run_id}
    result = await invoke(request.receive, chain, prepared, body.on_disconnect)
    if result is None:
        return Response(status_code=499)  # nobody is listening; the status is for access logs
    if isinstance(result, Failed):
        error = result.error
        return JSONResponse(
            {"error": error.payload(run.run_id)},
            error.status,
            headers={**headers, **error.headers()},
        )
    return JSONResponse(
        {"output": to_jsonable(result.output), "metadata": {**run.metadata(), **run.summary()}},
        headers=headers,
    )
