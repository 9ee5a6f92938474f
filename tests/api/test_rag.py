"""The `rag` chain over HTTP: sources before the answer, per-request retrieval knobs, every
store and model path."""

import httpx
import pytest

from tests.api.streaming import StreamResult, collect
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

DOCUMENTS = [
    {
        "id": "passwords",
        "text": "To reset your password, open Settings, choose Security and press Reset. "
        "A link arrives by email and is valid for one hour.",
        "metadata": {"title": "Password reset"},
    },
    {
        "id": "billing",
        "text": "Invoices are issued on the first day of each month. Pay by card or by bank "
        "transfer to account HX-4471.",
        "metadata": {"title": "Billing"},
    },
    {
        "id": "shipping",
        "text": "Orders ship from Rotterdam within two working days; tracking numbers are "
        "emailed when the parcel leaves the warehouse.",
        "metadata": {"title": "Shipping"},
    },
]


async def _ingest(server: LiveServer, collection: str = "default") -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        response = await client.post(
            f"/collections/{collection}/documents", json={"documents": DOCUMENTS}
        )
        assert response.status_code == 200, response.text


async def _ask(server: LiveServer, question: str, **configurable: object) -> StreamResult:
    body = {"input": {"question": question}, "config": {"configurable": configurable}}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("POST", "/chains/rag/stream", json=body) as response,
    ):
        return await collect(response)


async def test_sources_stream_before_the_answer_and_again_in_the_end_event(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())
    await _ingest(server)
    result = await _ask(server, "How can I change my password?", k=2)
    kinds = [e.event for e in result.events]
    assert kinds.index("sources") < kinds.index("data")
    [sources_event] = result.of("sources")
    sources = sources_event.json()["sources"]
    assert len(sources) == 2
    first = sources[0]
    assert (first["number"], first["doc_id"], first["title"]) == (1, "passwords", "Password reset")
    assert first["chunk_id"] == "passwords:0"
    assert first["snippet"].startswith("To reset your password")
    assert sources[0]["score"] >= sources[1]["score"]
    assert result.of("end")[0].json()["sources"] == sources


async def test_bm25_finds_an_exact_code_and_k_bounds_the_sources(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())
    await _ingest(server)
    result = await _ask(server, "HX-4471", retriever="bm25", k=1)
    [sources] = [e.json()["sources"] for e in result.of("sources")]
    assert [s["doc_id"] for s in sources] == ["billing"]


async def test_mmr_and_similarity_both_answer(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    await _ingest(server)
    for search_type in ("similarity", "mmr"):
        result = await _ask(server, "parcel tracking", search_type=search_type, k=3)
        sources = result.of("sources")[0].json()["sources"]
        assert len(sources) == 3
        assert sources[0]["doc_id"] == "shipping"


@pytest.mark.parametrize(
    "configurable",
    [{"k": 0}, {"k": 21}, {"retriever": "grep"}, {"search_type": "fuzzy"}, {"collection": "../x"}],
)
async def test_bad_retrieval_settings_are_refused_before_the_run(
    start_server: ServerFactory, configurable: dict[str, object]
) -> None:
    server = start_server(offline_settings())
    body = {"input": {"question": "q"}, "config": {"configurable": configurable}}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/chains/rag/stream", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_collections_are_chosen_per_request(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    await _ingest(server, "support")
    in_default = await _ask(server, "password")
    in_support = await _ask(server, "password", collection="support")
    assert in_default.of("sources")[0].json()["sources"] == []  # nothing ingested there
    assert in_support.of("sources")[0].json()["sources"][0]["doc_id"] == "passwords"


async def test_invoke_returns_the_sources_in_its_metadata(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    await _ingest(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/chains/rag/invoke", json={"input": {"question": "When are invoices issued?"}}
        )
    assert response.status_code == 200
    assert response.json()["metadata"]["sources"][0]["doc_id"] == "billing"


async def test_the_model_gets_the_retrieved_context_and_embeddings_come_from_the_upstream(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """With an OpenAI-compatible upstream configured, both the embeddings and the answer come
    from it, and the prompt it gets holds the retrieved chunks."""
    server = start_server(upstream_settings(upstream))
    await _ingest(server)
    upstream.enqueue(Script(chunks=["Use ", "Settings."]))
    result = await _ask(server, "How do I reset my password?", k=3)
    assert result.text == "Use Settings."
    embedded = [r for r in upstream.requests if r.path.endswith("/embeddings")]
    assert embedded[0].json["input"] == [DOCUMENTS[0]["text"]]
    assert embedded[-1].json["input"] == ["How do I reset my password?"]
    chat = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    system = chat[-1].json["messages"][0]["content"]
    for document in DOCUMENTS:
        assert document["text"] in system
    assert result.of("end")[0].json()["sources"]


async def test_the_rag_chain_runs_on_postgres_with_pgvector(
    start_server: ServerFactory, postgres_url: str
) -> None:
    server = start_server(offline_settings(database_url=postgres_url))
    await _ingest(server, "pg-rag")
    result = await _ask(server, "Where do orders ship from?", collection="pg-rag", k=1)
    assert result.of("sources")[0].json()["sources"][0]["doc_id"] == "shipping"
    keyword = await _ask(server, "HX-4471", collection="pg-rag", k=1, retriever="bm25")
    assert keyword.of("sources")[0].json()["sources"][0]["doc_id"] == "billing"
