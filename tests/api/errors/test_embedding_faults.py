"""An embeddings provider that answers 200 with something unreadable (an HTML page, a body cut
short, JSON without vectors) is the provider's fault: a retryable 502 `upstream_error` logged
in one line, on ingest and on a `rag` question, never a 500 with a traceback."""

import logging

import httpx
import pytest

from tests.conftest import ServerFactory, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

JSON = {"content-type": "application/json"}
UNREADABLE = {
    "html": Script(
        raw_body=b"<html><h1>502 Bad Gateway</h1></html>", headers={"content-type": "text/html"}
    ),
    "cut short": Script(raw_body=b'{"object": "list", "data": [{"object": "emb', headers=JSON),
    "no vectors": Script(raw_body=b'{"object": "list", "data": []}', headers=JSON),
}
DOCS = {"documents": [{"id": "a", "text": "Alpha is the first letter."}]}


@pytest.fixture
def server(start_server: ServerFactory, upstream: MockUpstream) -> LiveServer:
    return start_server(upstream_settings(upstream))


def _assert_provider_fault(response: httpx.Response, caplog: pytest.LogCaptureFixture) -> None:
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["code"], error["retryable"]) == ("upstream_error", True)
    assert "embeddings provider" in error["message"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("script", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_embeddings_answer_on_ingest_is_a_retryable_502(
    server: LiveServer,
    upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    script: Script,
) -> None:
    upstream.enqueue_embeddings(script)
    with caplog.at_level(logging.WARNING, logger="chainserve"):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.post("/collections/docs/documents", json=DOCS)
    _assert_provider_fault(response, caplog)


@pytest.mark.parametrize("script", UNREADABLE.values(), ids=UNREADABLE.keys())
async def test_an_unreadable_embeddings_answer_to_a_question_is_a_retryable_502(
    server: LiveServer,
    upstream: MockUpstream,
    caplog: pytest.LogCaptureFixture,
    script: Script,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        ingested = await client.post("/collections/default/documents", json=DOCS)
        assert ingested.status_code in (200, 201), ingested.text
        upstream.enqueue_embeddings(script)
        with caplog.at_level(logging.WARNING, logger="chainserve"):
            response = await client.post(
                "/chains/rag/invoke", json={"input": {"question": "What is alpha?"}}
            )
    _assert_provider_fault(response, caplog)
    assert not [r for r in upstream.requests if r.path.endswith("/chat/completions")]
