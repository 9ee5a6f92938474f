"""Runs: look one up, join its stream (resuming after `Last-Event-ID`), or cancel it."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse

from chainserve.api.access.ownership import Caller, CallerDep
from chainserve.api.deps import RunsDep, SettingsDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.errors.typed import ChainError
from chainserve.api.routes.chains import SSE_RESPONSE
from chainserve.api.runs.calls import join_stream
from chainserve.api.runs.log import RunGone, RunRecord
from chainserve.api.runs.manager import CANCEL_WAIT_SECONDS, RunManager

router = APIRouter(prefix="/runs", tags=["runs"], responses=error_responses(*REFUSALS))

RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$", description="Run id (X-Run-Id).")]


async def owned_run(runs: RunManager, run_id: str, caller: Caller) -> RunRecord:
    """The run, if it is the caller's: another key's run is as unknown as a missing one."""
    record = await runs.log.get(run_id)
    if record is None or not caller.sees(record.owner):
        raise HTTPException(404, f"no run {run_id!r} (unknown, or expired from the run log)")
    return record


def _resume_point(header: str | None, query: int | None) -> int:
    """The last event the client has; the header wins, as a reconnecting EventSource sends it."""
    if header is None or header.strip() == "":
        return -1 if query is None else query
    try:
        return int(header)
    except ValueError:
        raise HTTPException(
            400, f"Last-Event-ID must be an event id from this run, not {header!r}"
        ) from None


@router.get("/{run_id}", responses=error_responses(404))
async def get_run(run_id: RunId, runs: RunsDep, caller: CallerDep) -> dict[str, Any]:
    """Report a run's status, output so far, usage and timings."""
    return (await owned_run(runs, run_id, caller)).public()


@router.get(
    "/{run_id}/stream",
    response_class=Response,
    responses={
        **SSE_RESPONSE,
        204: {"description": "Nothing left."},
        **error_responses(400, 404, 410, 503),
    },
)
async def join_run(
    run_id: RunId,
    runs: RunsDep,
    settings: SettingsDep,
    caller: CallerDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[int | None, Query(ge=-1)] = None,
) -> Response:
    """Replay a run's events after Last-Event-ID, then follow it live to the end."""
    after = _resume_point(last_event_id_header, last_event_id)
    record = await owned_run(runs, run_id, caller)
    if record.status != "running" and after >= record.last_seq:
        return Response(status_code=204)
    try:
        await runs.log.read(run_id, after, 0)
    except RunGone:
        raise HTTPException(
            410, f"events after {after} of run {run_id!r} are no longer kept; GET /runs/{run_id}"
        ) from None
    return join_stream(runs, settings, run_id, after=after)


@router.post("/{run_id}/cancel", responses=error_responses(404, 409, 504))
async def cancel_run(run_id: RunId, runs: RunsDep, caller: CallerDep) -> Any:
    """Cancel a running run (on whichever worker runs it); partial output and usage are kept."""
    record = await owned_run(runs, run_id, caller)
    if record.status != "running":
        raise HTTPException(409, f"run {run_id!r} already ended ({record.status})")
    stopped = await runs.cancel(run_id) or record
    if stopped.status == "running":
        # A 200 says the run stopped: one that did not (yet) must not be told it did.
        error = ChainError(
            504,
            "cancel_timeout",
            f"run {run_id!r} did not stop within {CANCEL_WAIT_SECONDS:g}s; it may still stop "
            f"(GET /runs/{run_id}), or cancel it again",
            retryable=True,
        )
        return JSONResponse({"error": error.payload(run_id)}, 504)
    return stopped.public()
