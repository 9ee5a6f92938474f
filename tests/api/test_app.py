"""The app factory and the documents it serves."""

import httpx
import pytest

from chainserve.api.app import create_app
from tests.conftest import offline_settings
from tests.support.server import LiveServer


def test_create_app_builds_independent_apps_from_settings() -> None:
    first = create_app(offline_settings(model="a"))
    second = create_app(
        offline_settings(allowed_models=["x"], openai_base_url="http://127.0.0.1:9/v1")
    )
    assert first.state.model_info.provider == "offline"
    assert second.state.model_info.provider == "openai"
    assert second.state.model_info.choices == ("gpt-4o-mini", "x")
    assert first.state.chains is not second.state.chains


@pytest.mark.asyncio
async def test_openapi_document_and_docs_page_build(offline_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url) as client:
        spec = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert spec.status_code == docs.status_code == 200
    paths = spec.json()["paths"]
    assert {"/chains", "/chains/{name}/stream", "/chains/{name}/invoke", "/health"} <= set(paths)
    assert "/langserve/chat/invoke" in paths
    stream = paths["/chains/{name}/stream"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in stream


@pytest.mark.asyncio
async def test_unknown_paths_and_methods_use_the_error_shape(offline_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url) as client:
        missing = await client.get("/nope")
        wrong_method = await client.delete("/chains/chat/stream")
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
