"""Liveness and identity: which model is answering, and which chains are served."""

from typing import Any

from fastapi import APIRouter

from api.deps import ChainsDep, ModelInfoDep
from api.error_responses import error_responses
from api.version import VERSION

# No API key or limit applies here; the body guard does (any request may carry a body).
router = APIRouter(tags=["health"], responses=error_responses(400, 413))


@router.get("/health")
async def health(model: ModelInfoDep, chains: ChainsDep) -> dict[str, Any]:
    """Report that the server is up, the model in use and the chains served."""
    return {
        "status": "ok",
        "version": VERSION,
        "model": {"provider": model.provider, "name": model.name, "choices": list(model.choices)},
        "chains": sorted(chains),
    }
