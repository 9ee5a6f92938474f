"""Liveness and identity: which model is answering, and which chains are served."""

from typing import Any

from fastapi import APIRouter

from api.deps import ChainsDep, ModelInfoDep
from api.version import VERSION

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(model: ModelInfoDep, chains: ChainsDep) -> dict[str, Any]:
    """Report that the server is up, the model in use and the chains served."""
    return {
        "status": "ok",
        "version": VERSION,
        "model": {"provider": model.provider, "name": model.name, "choices": list(model.choices)},
        "chains": sorted(chains),
    }
