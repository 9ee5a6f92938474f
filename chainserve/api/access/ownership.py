"""Who owns what: each key id owns the threads, runs and collections it creates.

The owner is the caller's key id (`key-` + 12 hex digits), stored with the data. Without keys
there is one owner, `None`, the same "unowned" owner that data from before ownership has; with
keys that data is seen by admin keys only. Another key's data is answered exactly as data that
does not exist (the same 404), so ids cannot be probed.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope

from chainserve.api.request_state import IS_ADMIN, KEY_ID

LEGACY_OWNER = "legacy"
"""How an admin names the unowned data (from before ownership, or made without keys)."""


@dataclass(frozen=True)
class Caller:
    owner: str | None
    """The key id; None without keys (then everything is the one owner's)."""
    admin: bool
    """Sees and manages every owner's data."""

    def sees(self, owner: str | None) -> bool:
        return self.admin or owner == self.owner


def caller_of(scope: Scope) -> Caller:
    state = scope.get("state") or {}
    owner = state.get(KEY_ID)
    if owner is None:  # no keys configured: one owner, who may do everything
        return Caller(None, True)
    return Caller(str(owner), bool(state.get(IS_ADMIN)))


async def get_caller(request: Request) -> Caller:
    return caller_of(request.scope)


CallerDep = Annotated[Caller, Depends(get_caller)]
