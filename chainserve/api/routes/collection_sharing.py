"""Publishing: an admin key makes a collection readable (never writable) by every key."""

from fastapi import APIRouter

from chainserve.api.access.collection_access import OwnerParam, missing_collection, target_owner
from chainserve.api.access.ownership import Caller, CallerDep
from chainserve.api.deps import RetrievalDep
from chainserve.api.errors.responses import REFUSALS, error_responses
from chainserve.api.errors.typed import RequestError
from chainserve.api.routes.collections import CollectionName, CollectionOut, collection_out
from chainserve.chains.retrieval.types import PublishedNameTakenError

router = APIRouter(
    prefix="/collections", tags=["collections"], responses=error_responses(*REFUSALS)
)


def _require_admin(caller: Caller) -> None:
    if not caller.admin:
        raise RequestError(
            403, "admin_required", "only an admin key (CHAINSERVE_ADMIN_KEYS) may publish"
        )


async def _set(
    retrieval: RetrievalDep, caller: Caller, name: str, owner: str | None, published: bool
) -> CollectionOut:
    _require_admin(caller)
    target = target_owner(caller, name, owner)
    try:
        info = await retrieval.store.set_published(name, published, owner=target)
    except PublishedNameTakenError as exc:
        raise RequestError(409, "published_name_taken", str(exc)) from None
    if info is None:
        raise missing_collection(name)
    return collection_out(info)


@router.post("/{name}/publish", responses=error_responses(403, 404, 409))
async def publish_collection(
    name: CollectionName, retrieval: RetrievalDep, caller: CallerDep, owner: OwnerParam = None
) -> CollectionOut:
    """Make a collection readable by every key (admin keys only; `owner` picks whose)."""
    return await _set(retrieval, caller, name, owner, True)


@router.post("/{name}/unpublish", responses=error_responses(403, 404))
async def unpublish_collection(
    name: CollectionName, retrieval: RetrievalDep, caller: CallerDep, owner: OwnerParam = None
) -> CollectionOut:
    """Make a published collection its owner's alone again (admin keys only)."""
    return await _set(retrieval, caller, name, owner, False)
