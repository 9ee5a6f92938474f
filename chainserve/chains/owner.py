"""The owner a run acts for: an opaque string the server puts in the run's config.

Chains never decide who the owner is; the serving layer sets `configurable[OWNER_KEY]` after
it has checked a request's own config, which may not name this key (it is no chain's
configurable field). Stores scope what they keep and find by it; no owner is the unowned
namespace a single-owner server uses.
"""

from typing import Any

OWNER_KEY = "__chainserve_owner"
"""Leading underscores: LangChain never copies such a configurable key into trace metadata."""


def owner_of(config: Any) -> str | None:
    """The owner in a `RunnableConfig`, or None."""
    configurable = config.get("configurable") if isinstance(config, dict) else None
    owner = configurable.get(OWNER_KEY) if isinstance(configurable, dict) else None
    return owner if isinstance(owner, str) else None


def with_owner(config: dict[str, Any], owner: str | None) -> dict[str, Any]:
    """`config` acting for `owner` (unchanged for no owner)."""
    if owner is None:
        return config
    return {**config, "configurable": {**(config.get("configurable") or {}), OWNER_KEY: owner}}
