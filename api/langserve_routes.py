"""Every LangServe import lives here, so dropping LangServe touches one module."""

from typing import Any

from fastapi import FastAPI

from chains import RegisteredChain


def mount_langserve(app: FastAPI, chains: dict[str, RegisteredChain], *, playground: bool) -> None:
    """Mount each chain with LangServe's `add_routes` under `/langserve/{name}`."""
    from langserve import add_routes

    for chain in chains.values():
        kwargs: dict[str, Any] = {
            "path": f"/langserve/{chain.name}",
            "input_type": chain.spec.input_type,
            "playground_type": chain.spec.playground,
        }
        if not playground:
            kwargs["disabled_endpoints"] = ["playground"]
        add_routes(app, chain.runnable, **kwargs)
