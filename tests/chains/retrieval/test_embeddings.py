"""The local e5 embedder (real model, off the event loop, one encode at a time) and the
OpenAI-compatible path against the mock upstream."""

import asyncio
import math
import socket
import threading
import time
from typing import Any

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
import tiktoken

from chainserve.chains.retrieval import embeddings as embeddings_module
from chainserve.chains.retrieval.embeddings import (
    BATCH_SIZE,
    LOCAL_DIMENSIONS,
    LOCAL_EMBEDDER_ID,
    LocalE5Embeddings,
    build_embeddings,
)
from tests.support.mock_upstream import MockUpstream, embedding_for

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class SpyModel:
    """Stands in for the e5 model: records which thread encodes, and how many at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, int, int]] = []  # kind, batch size, thread id
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def _encode(self, kind: str, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.calls.append((kind, len(texts), threading.get_ident()))
        time.sleep(self.delay)
        with self._lock:
            self.active -= 1
        return np.full((len(texts), LOCAL_DIMENSIONS), 1 / math.sqrt(384), dtype=np.float32)

    def query(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self._encode("query", texts)

    def passage(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self._encode("passage", texts)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SpyModel:
    model = SpyModel(delay=0.02)
    monkeypatch.setattr(embeddings_module, "_load", lambda: model)
    return model


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection and name lookup this process makes, refused unless loopback."""
    attempts: list[Any] = []
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise OSError(f"test blocked a connection to {address!r}")
        connect(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        if host not in LOOPBACK and host not in {b"127.0.0.1", b"localhost"}:
            raise OSError(f"test blocked a lookup of {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    def no_tiktoken(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tiktoken was used (it may download its encoding files)")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(tiktoken, "get_encoding", no_tiktoken)
    monkeypatch.setattr(tiktoken, "encoding_for_model", no_tiktoken)
    return attempts


def test_local_vectors_are_384_dimensional_unit_vectors() -> None:
    local = LocalE5Embeddings()
    passages = local.embed_documents(["The cat sat on the mat.", "Rust has no garbage collector."])
    query = local.embed_query("Where did the cat sit?")
    assert [len(v) for v in [*passages, query]] == [LOCAL_DIMENSIONS] * 3
    for vector in [*passages, query]:
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-4)
    assert local.embed_documents([]) == []
    assert local.id == LOCAL_EMBEDDER_ID
    assert local.dimensions == LOCAL_DIMENSIONS


def test_local_query_and_passage_of_the_same_text_differ() -> None:
    """e5 embeds queries and passages with different prefixes; mixing them up costs recall."""
    local = LocalE5Embeddings()
    text = "how long are deleted notes kept"
    (passage,) = local.embed_documents([text])
    query = local.embed_query(text)
    assert passage != query
    assert cosine(passage, query) > 0.8


def test_local_ranks_the_relevant_passage_first_across_languages() -> None:
    local = LocalE5Embeddings()
    passages = local.embed_documents(
        [
            "To reset your password, open Settings, choose Security and click 'Forgot password'.",
            "The weather in Lisbon is mild in winter, with frequent rain from the Atlantic.",
            "Invoices are emailed on the first day of each month to the billing contact.",
        ]
    )
    for question, expected in [
        ("I can't remember my login credentials", 0),
        ("Wie wird das Wetter in Portugal im Winter?", 1),
        ("¿Cuándo recibo la factura?", 2),
    ]:
        query = local.embed_query(question)
        scores = [cosine(query, p) for p in passages]
        assert scores.index(max(scores)) == expected, (question, scores)


@pytest.mark.asyncio
async def test_local_async_matches_sync() -> None:
    local = LocalE5Embeddings()
    texts = ["first passage", "second passage"]
    close = np.testing.assert_allclose
    close(await local.aembed_documents(texts), local.embed_documents(texts), atol=1e-6)
    close(await local.aembed_query("a question"), local.embed_query("a question"), atol=1e-6)


@pytest.mark.asyncio
async def test_async_embedding_runs_in_a_worker_thread_in_batches(spy: SpyModel) -> None:
    local = LocalE5Embeddings()
    texts = [f"passage {i}" for i in range(2 * BATCH_SIZE + 3)]
    vectors = await local.aembed_documents(texts)
    await local.aembed_query("question")
    assert len(vectors) == len(texts)
    assert [(kind, size) for kind, size, _ in spy.calls] == [
        ("passage", BATCH_SIZE),
        ("passage", BATCH_SIZE),
        ("passage", 3),
        ("query", 1),
    ]
    assert threading.get_ident() not in {thread for _, _, thread in spy.calls}


@pytest.mark.asyncio
async def test_concurrent_requests_encode_one_at_a_time(spy: SpyModel) -> None:
    """Two requests on 2 cores must queue, not run two multi-threaded encodes at once."""
    local = LocalE5Embeddings()
    texts = [f"passage {i}" for i in range(BATCH_SIZE * 2)]

    def sync_caller() -> None:
        local.embed_documents(texts)

    await asyncio.gather(
        local.aembed_documents(texts),
        local.aembed_documents(texts),
        *(local.aembed_query(f"q{i}") for i in range(4)),
        asyncio.to_thread(sync_caller),
    )
    assert len(spy.calls) == 3 * 2 + 4
    assert spy.most_active == 1


def test_model_loads_lazily_once_across_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[SpyModel] = []

    def new_model() -> SpyModel:
        time.sleep(0.05)  # widen the window in which a second thread could load it again
        loads.append(SpyModel())
        return loads[-1]

    monkeypatch.setattr(embeddings_module, "_model", None)
    monkeypatch.setattr(embeddings_module, "_new_model", new_model)
    local = LocalE5Embeddings()
    assert loads == []
    threads = [threading.Thread(target=local.embed_query, args=("q",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert len(loads[0].calls) == 4


def test_build_embeddings_is_local_without_key_or_base_url() -> None:
    embeddings, embedder = build_embeddings(None, None, "text-embedding-3-small")
    assert isinstance(embeddings, LocalE5Embeddings)
    assert embedder == LOCAL_EMBEDDER_ID


def test_build_embeddings_with_a_key_makes_no_request(upstream: MockUpstream) -> None:
    embeddings, embedder = build_embeddings("sk-test", upstream.base_url, "text-embedding-3-small")
    assert not isinstance(embeddings, LocalE5Embeddings)
    assert embedder == f"openai/text-embedding-3-small@{upstream.base_url}"
    assert upstream.requests == []


def test_openai_path_sends_raw_strings_to_base_url_only(
    upstream: MockUpstream, loopback_only: list[Any]
) -> None:
    """OpenAI-compatible servers may reject token ids, and tokenizing needs tiktoken's files."""
    embeddings, _ = build_embeddings(None, upstream.base_url, "embed-test", max_retries=0)
    texts = ["first chunk", "zweiter Abschnitt", "first chunk"]
    vectors = embeddings.embed_documents(texts)
    query = embeddings.embed_query("a question")
    assert vectors == [embedding_for(t) for t in texts]
    assert query == embedding_for("a question")
    first, second = upstream.requests
    assert (first.path, first.json["input"], first.json["model"]) == (
        "/v1/embeddings",
        texts,
        "embed-test",
    )
    assert second.json["input"] == ["a question"]
    assert first.headers["authorization"] == "Bearer not-needed"
    assert "input_type" not in first.json  # OpenAI itself refuses fields it does not know
    assert loopback_only  # the guard saw the client connect
    assert all(a[0] in LOOPBACK for a in loopback_only if isinstance(a, tuple))


@pytest.mark.asyncio
async def test_openai_path_async_uses_the_given_http_client(
    upstream: MockUpstream, loopback_only: list[Any]
) -> None:
    async with httpx2.AsyncClient() as client:
        embeddings, embedder = build_embeddings(
            "sk-test", upstream.base_url, "embed-test", http_client=client, max_retries=0
        )
        vectors = await embeddings.aembed_documents(["alpha", "beta"])
        query = await embeddings.aembed_query("gamma")
    assert vectors == [embedding_for("alpha"), embedding_for("beta")]
    assert query == embedding_for("gamma")
    assert [r.json["input"] for r in upstream.requests] == [["alpha", "beta"], ["gamma"]]
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-test"
    assert embedder == f"openai/embed-test@{upstream.base_url}"
