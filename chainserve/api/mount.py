"""`add_routes(app, chains, path=...)`: chainserve inside an existing FastAPI app.

Like LangServe's `add_routes`, one call in the host's code; unlike a bare `app.mount`, the
host's lifespan runs chainserve's too, so start-up, the SIGTERM drain, the cancel listener
and closing the pools happen as they do when chainserve serves alone (Starlette never sends
lifespan events to a mounted app).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from chainserve.api.app import create_app
from chainserve.api.settings import Settings


class _AtPrefix:
    """The mounted app sees its own paths (`/v1/models`, not `/ai/v1/models`), which is what
    its middleware match; `root_path` still says where it lives, for its docs and playground."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and root and path.startswith(root):
            scope = dict(scope)
            scope["path"] = path[len(root) :] or "/"
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(root.encode()):
                scope["raw_path"] = raw[len(root.encode()) :] or b"/"
        await self.app(scope, receive, send)


def add_routes(
    app: FastAPI,
    chains: object,
    *,
    path: str = "/chainserve",
    settings: Settings | None = None,
    examples: bool = False,
) -> FastAPI:
    """Serve `chains` (a Runnable, a ChainSpec, a list of them or a dict name → either) under
    `path` in `app`, with every chainserve route, and tie chainserve's lifespan into `app`'s.
    The examples are left out unless `examples`. Returns the chainserve app (its `state` has
    the registry, the run manager, the stores)."""
    if not path.startswith("/") or path.endswith("/") or len(path) < 2:
        raise ValueError(f"path must look like '/ai' (a leading slash, none at the end): {path!r}")
    settings = settings or Settings()
    if not examples:
        settings = settings.model_copy(update={"example_chains": False})
    served = create_app(settings, chains=chains)
    app.mount(path, _AtPrefix(served))
    host_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(host: Any) -> AsyncIterator[Any]:
        async with served.router.lifespan_context(served), host_lifespan(host) as state:
            yield state

    app.router.lifespan_context = lifespan
    return served
