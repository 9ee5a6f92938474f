"""BM25 keyword search over a chunk store: ranking, Unicode words, and freshness after writes."""

import math
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chainserve.chains.retrieval.bm25 import BM25Index, tokenize
from chainserve.chains.retrieval.sqlite_store import SQLiteChunkStore
from chainserve.chains.retrieval.types import Chunk

pytestmark = pytest.mark.asyncio

EMBEDDER = "test/embedder"


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteChunkStore]:
    store = SQLiteChunkStore(tmp_path / "chunks.sqlite3")
    yield store
    await store.aclose()


async def put(store: SQLiteChunkStore, doc_id: str, *texts: str, collection: str = "c") -> None:
    chunks = [Chunk(f"{doc_id}:{i}", doc_id, text) for i, text in enumerate(texts)]
    await store.replace_document(collection, doc_id, chunks, [[1.0, 0.0]] * len(texts), EMBEDDER)


class CountingStore(SQLiteChunkStore):
    """Counts how often the index reads a collection's chunks (a rebuild)."""

    reads = 0

    async def chunks(self, collection: str, *, owner: str | None = None) -> list[Chunk]:
        self.reads += 1
        return await super().chunks(collection, owner=owner)


async def test_ranks_the_chunk_about_the_query_first(store: SQLiteChunkStore) -> None:
    await put(store, "pets", "cats purr and cats nap", "dogs bark at the mail carrier")
    await put(store, "zoo", "a cat, a dog and an elephant", "the elephant house opens at nine")

    hits = await BM25Index().search(store, "c", "cats", k=5)
    assert [h.chunk.id for h in hits] == ["pets:0"]  # no stemming: "cat" is another word
    hits = await BM25Index().search(store, "c", "elephant dog", k=5)
    assert [h.chunk.id for h in hits] == ["zoo:0", "zoo:1"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.score > 0 for h in hits)
    assert await BM25Index().search(store, "c", "giraffe", k=5) == []
    assert await BM25Index().search(store, "c", "  ,. ", k=5) == []


async def test_score_follows_okapi_bm25(store: SQLiteChunkStore) -> None:
    """One term, three chunks: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))."""
    await put(store, "d", "apple apple pie", "banana split", "apple")
    hits = await BM25Index().search(store, "c", "APPLE", k=3)

    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    average = (3 + 2 + 1) / 3

    def score(tf: int, length: int) -> float:
        return idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * length / average))

    assert [h.chunk.id for h in hits] == ["d:2", "d:0"]
    assert [h.score for h in hits] == pytest.approx([score(1, 1), score(2, 3)])


async def test_k_limits_and_ties_keep_store_order(store: SQLiteChunkStore) -> None:
    await put(store, "a", "same words here", "same words here", "same words here")
    hits = await BM25Index().search(store, "c", "words", k=2)
    assert [h.chunk.id for h in hits] == ["a:0", "a:1"]
    assert await BM25Index().search(store, "c", "words", k=0) == []


async def test_unicode_words_match_regardless_of_case_and_composition(
    store: SQLiteChunkStore,
) -> None:
    await put(store, "u", "Ein naïver Café-Besuch in MÜNCHEN", "Привет, мир", "东京 タワー")
    index = BM25Index()

    assert tokenize("Ein naïver Café-Besuch") == ["ein", "naïver", "café", "besuch"]
    decomposed = unicodedata.normalize("NFD", "café münchen")
    assert [h.chunk.id for h in await index.search(store, "c", decomposed, k=3)] == ["u:0"]
    assert [h.chunk.id for h in await index.search(store, "c", "ПРИВЕТ", k=3)] == ["u:1"]
    # No word segmentation for scripts without spaces: a run of characters is one token.
    assert [h.chunk.id for h in await index.search(store, "c", "东京", k=3)] == ["u:2"]
    assert await index.search(store, "c", "东", k=3) == []


async def test_index_follows_writes_and_is_reused_until_then(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "chunks.sqlite3")
    index = BM25Index()
    try:
        await put(store, "a", "old text about llamas")
        assert [h.chunk.id for h in await index.search(store, "c", "llamas", k=3)] == ["a:0"]
        await index.search(store, "c", "text", k=3)
        assert store.reads == 1

        await put(store, "a", "new text about alpacas")
        assert await index.search(store, "c", "llamas", k=3) == []
        assert [h.chunk.id for h in await index.search(store, "c", "alpacas", k=3)] == ["a:0"]
        await put(store, "b", "more alpacas", collection="other")
        await index.search(store, "c", "alpacas", k=3)
        assert store.reads == 2  # a write to another collection changes nothing here

        await store.delete_document("c", "a")
        assert await index.search(store, "c", "alpacas", k=3) == []
        await store.delete_collection("other")
        assert await index.search(store, "other", "alpacas", k=3) == []
    finally:
        await store.aclose()
