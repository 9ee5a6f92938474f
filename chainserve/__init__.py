"""chainserve: serve LangChain chains over Server-Sent Events, LangServe and `/v1`.

What a user imports lives here, so a project's own `api/` or `chains/` package never meets
ours. The names load on first use: `import chainserve` alone starts nothing, and the
terminal client (`chainserve chat`) never pays for the server's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainserve.api.app import create_app
    from chainserve.api.mount import add_routes
    from chainserve.api.settings import Settings
    from chainserve.chains import ChainSpec, ModelConfig, build_model

__all__ = ["ChainSpec", "ModelConfig", "Settings", "add_routes", "build_model", "create_app"]

_HOMES = {
    "ChainSpec": "chainserve.chains",
    "ModelConfig": "chainserve.chains",
    "build_model": "chainserve.chains",
    "Settings": "chainserve.api.settings",
    "create_app": "chainserve.api.app",
    "add_routes": "chainserve.api.mount",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'chainserve' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
