"""Stream tokens for browsers: `EventSource` cannot send the API key as a header."""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from chainserve.api.access.stream_tokens import StreamTokens
from chainserve.api.deps import ChainsDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.request_state import KEY_ID

router = APIRouter(prefix="/auth", tags=["auth"], responses=error_responses(*REFUSALS))


class StreamTokenRequest(BaseModel):
    chain: Annotated[str, Field(description="The chain whose GET stream route the token opens.")]


@router.post("/stream-token", responses=error_responses(404))
async def issue_stream_token(
    body: StreamTokenRequest, request: Request, chains: ChainsDep
) -> dict[str, Any]:
    """Issue a short-lived token for `GET /chains/{chain}/stream?token=...`."""
    if body.chain not in chains:
        known = ", ".join(sorted(chains)) or "none"
        raise HTTPException(404, f"no chain named {body.chain!r}; available: {known}")
    tokens: StreamTokens = request.app.state.stream_tokens
    issued = tokens.issue(body.chain, getattr(request.state, KEY_ID, None))
    return {
        "token": issued.token,
        "expires_at": issued.expires_at,
        "stream_url": f"/chains/{body.chain}/stream?token={issued.token}",
    }
