"""Which owner's collection a `/collections/{name}` request means, and who may touch it.

A key reads and writes its own collection of a name; reading falls back to a published one of
that name (a key's own wins). An admin key may name any owner with `?owner=` (a key id, or
`legacy` for collections from before owners). Anything else is answered as a collection that
does not exist.
"""

from typing import Annotated

from fastapi import Query

from chainserve.api.access.ownership import LEGACY_OWNER, Caller
from chainserve.api.errors.typed import RequestError
from chainserve.chains.retrieval.store_rules import readable
from chainserve.chains.retrieval.types import ChunkStore, CollectionInfo

OwnerParam = Annotated[
    str | None,
    Query(
        pattern=r"^(key-[0-9a-f]{12}|legacy)$",
        description="Admin keys only: whose collection (a key id, or `legacy` for collections "
        "from before owners). Default: the caller's own.",
    ),
]


def missing_collection(name: str) -> RequestError:
    """The one answer for a collection that is unknown or another key's."""
    return RequestError(404, "not_found", f"no collection named {name!r}")


def target_owner(caller: Caller, name: str, owner: str | None) -> str | None:
    """The owner whose collection `name` the request acts on."""
    if owner is None:
        return caller.owner
    chosen = None if owner == LEGACY_OWNER else owner
    if not caller.admin and chosen != caller.owner:
        raise missing_collection(name)
    return chosen


async def readable_collection(
    store: ChunkStore, caller: Caller, name: str, owner: str | None
) -> CollectionInfo:
    """The collection a read of `name` finds: the named owner's, or the caller's own, else a
    published one."""
    if owner is not None:
        found = await store.collection(name, owner=target_owner(caller, name, owner))
    else:
        found = await readable(store, name, caller.owner)
    if found is None:
        raise missing_collection(name)
    return found


async def refuse_missing_write(store: ChunkStore, name: str, owner: str | None) -> RequestError:
    """Why a write or delete found no collection of `owner`'s: 403 if the name is a published
    collection (which everyone may know of), else the usual 404."""
    published = await store.published(name)
    if published is not None and published.owner != owner:
        return RequestError(
            403,
            "collection_read_only",
            f"collection {name!r} is published read-only: an admin key changes it with "
            f"?owner={published.owner or LEGACY_OWNER}",
        )
    return missing_collection(name)
