"""Stream tokens for browsers: `EventSource` cannot send the API key as a header."""

from typing import Annotated, Any, Self

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from chainserve.api.access.ownership import CallerDep
from chainserve.api.access.stream_tokens import IssuedToken, StreamTokens
from chainserve.api.deps import ChainsDep, RunsDep, SettingsDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.request_state import KEY_ID
from chainserve.api.routes.runs import owned_run

router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(*REFUSALS))


class StreamTokenRequest(BaseModel):
    chain: Annotated[
        str | None, Field(description="The chain whose GET stream route the token opens.")
    ] = None
    run_id: Annotated[
        str | None,
        Field(
            pattern=r"^[A-Za-z0-9-]{1,64}$",
            description="The run whose `GET /runs/{run_id}/stream` the token opens (and resumes).",
        ),
    ] = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.chain is None) == (self.run_id is None):
            raise ValueError("name either `chain` or `run_id`")
        return self


def _answer(issued: IssuedToken, stream_path: str) -> dict[str, Any]:
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "stream_url": f"{stream_path}?token={issued.token}",
    }


@router.post("/stream-token", responses=error_responses(404))
async def issue_stream_token(
    body: StreamTokenRequest,
    request: Request,
    chains: ChainsDep,
    runs: RunsDep,
    caller: CallerDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Issue a short-lived token for a chain's or a run's GET stream (`?token=...`)."""
    tokens: StreamTokens = request.app.state.stream_tokens
    key_id = getattr(request.state, KEY_ID, None)
    if body.run_id is not None:
        # Only for a run this key may read: the token acts as the key, and must not let it
        # reach further than the key itself does.
        record = await owned_run(runs, body.run_id, caller)
        # A browser's EventSource reconnects with the same URL whenever the connection drops,
        # however late: the token lives as long as the run is kept, and opens only its stream.
        ttl = max(tokens.ttl_seconds, int(settings.run_ttl_seconds))
        issued = tokens.issue(record.run_id, key_id, kind="run", ttl_seconds=ttl)
        return _answer(issued, f"/runs/{record.run_id}/stream")
    assert body.chain is not None  # the validator lets exactly one through
    if body.chain not in chains:
        known = ", ".join(sorted(chains)) or "none"
        raise HTTPException(404, f"no chain named {body.chain!r}; available: {known}")
    return _answer(tokens.issue(body.chain, key_id), f"/chains/{body.chain}/stream")
