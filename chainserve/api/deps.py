"""FastAPI dependencies: the app's settings and chains, looked up per request.

All `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool, a thread
round trip each (about two dozen per streamed request) for a dictionary lookup.
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from chainserve.api.runs.manager import RunManager
from chainserve.api.settings import Settings
from chainserve.chains import ModelInfo, RegisteredChain
from chainserve.chains.history import ThreadStore
from chainserve.chains.retrieval.retrievers import Retrieval


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_chains(request: Request) -> dict[str, RegisteredChain]:
    chains: dict[str, RegisteredChain] = request.app.state.chains
    return chains


async def get_model_info(request: Request) -> ModelInfo:
    info: ModelInfo = request.app.state.model_info
    return info


async def get_threads(request: Request) -> ThreadStore:
    threads: ThreadStore = request.app.state.threads
    return threads


async def get_retrieval(request: Request) -> Retrieval:
    retrieval: Retrieval = request.app.state.retrieval
    return retrieval


async def get_runs(request: Request) -> RunManager:
    runs: RunManager = request.app.state.runs
    return runs


SettingsDep = Annotated[Settings, Depends(get_settings)]
RunsDep = Annotated[RunManager, Depends(get_runs)]
ThreadsDep = Annotated[ThreadStore, Depends(get_threads)]
ChainsDep = Annotated[dict[str, RegisteredChain], Depends(get_chains)]
ModelInfoDep = Annotated[ModelInfo, Depends(get_model_info)]
RetrievalDep = Annotated[Retrieval, Depends(get_retrieval)]


async def get_chain(
    chains: ChainsDep, name: Annotated[str, Path(description="Chain name.")]
) -> RegisteredChain:
    try:
        return chains[name]
    except KeyError:
        known = ", ".join(sorted(chains)) or "none"
        raise HTTPException(404, f"no chain named {name!r}; available: {known}") from None


ChainDep = Annotated[RegisteredChain, Depends(get_chain)]
