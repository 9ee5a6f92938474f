"""Liveness and identity: which model is answering, and which chains are served."""

from typing import Any

from fastapi import APIRouter

from chainserve.api.deps import ChainsDep, ModelInfoDep, SettingsDep
from chainserve.api.errors.responses import error_responses
from chainserve.api.observability.store_health import store_states
from chainserve.api.version import VERSION

# No API key or limit applies here; the body guard does (any request may carry a body).
router = APIRouter(tags=["health"], responses=error_responses(400, 413))


@router.get("/health")
async def health(model: ModelInfoDep, chains: ChainsDep, settings: SettingsDep) -> dict[str, Any]:
    """Report that the server is up, whether its stores answer, the model and the chains."""
    # Still a 200 when a store is down: the process is alive (liveness); readiness probes
    # read `status`, which is "degraded" while any store in `stores` is "unavailable".
    stores = await store_states(settings)
    return {
        "status": "degraded" if "unavailable" in stores.values() else "ok",
        "stores": stores,
        "version": VERSION,
        "model": {"provider": model.provider, "name": model.name, "choices": list(model.choices)},
        "chains": sorted(chains),
    }
