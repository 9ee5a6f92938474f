"""A LangServe batch over `CHAINSERVE_MAX_BATCH_INPUTS` is refused before any upstream call."""

import httpx
import pytest

from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


async def test_a_batch_over_the_input_cap_is_a_413_before_any_upstream_call(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, max_batch_inputs=3))
    for _ in range(10):
        upstream.enqueue(Script(chunks=["ok"]))
    body = {"inputs": [MESSAGE] * 4}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/langserve/chat/batch", json=body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "batch_too_large"
        assert not [r for r in upstream.requests if r.path.endswith("/chat/completions")]
        allowed = await client.post("/langserve/chat/batch", json={"inputs": [MESSAGE] * 3})
    assert allowed.status_code == 200
    assert len([r for r in upstream.requests if r.path.endswith("/chat/completions")]) == 3
