"""Both chunk stores, SQLite and PostgreSQL with pgvector, pass the same behaviour tests."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from chainserve.chains.retrieval.pg_store import PgChunkStore, PgVectorUnavailableError
from chainserve.chains.retrieval.sqlite_store import SQLiteChunkStore
from chainserve.chains.retrieval.types import (
    Chunk,
    ChunkStore,
    EmbedderMismatchError,
    PublishedNameTakenError,
)

pytestmark = pytest.mark.asyncio

Opener = Callable[[], ChunkStore]
E1, E2 = "test/embedder-1", "test/embedder-2"


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores on one fresh database (a SQLite file, or a Postgres schema of its own);
    every store opened is closed, and the schema dropped, when the test ends."""
    opened: list[ChunkStore] = []
    url = schema = ""
    if request.param == "sqlite":

        def make() -> ChunkStore:
            opened.append(SQLiteChunkStore(tmp_path / "data" / "chunks.sqlite3"))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres_url")
        schema = f"test_{uuid.uuid4().hex[:12]}"

        def make() -> ChunkStore:
            opened.append(PgChunkStore(url, schema=schema))
            return opened[-1]

    yield make
    for store in opened:
        await store.aclose()
    if schema:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as db:
            await db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest_asyncio.fixture
async def store(open_store: Opener) -> ChunkStore:
    return open_store()


def doc(doc_id: str, *texts: str, title: str | None = None, **meta: Any) -> list[Chunk]:
    shared = {"title": title or doc_id.title(), "source": f"{doc_id}.md", **meta}
    return [
        Chunk(f"{doc_id}:{i}", doc_id, text, {**shared, "start_index": i * 100})
        for i, text in enumerate(texts)
    ]


async def put(
    store: ChunkStore,
    doc_id: str,
    vectors: list[list[float]],
    *,
    collection: str = "docs",
    embedder: str = E1,
    **meta: Any,
) -> list[Chunk]:
    """Store a document of one chunk per vector, texts `<doc_id> <n>`."""
    chunks = doc(doc_id, *(f"{doc_id} {i}" for i in range(len(vectors))), **meta)
    await store.replace_document(collection, doc_id, chunks, vectors, embedder)
    return chunks


async def test_reingesting_a_document_replaces_its_chunks(store: ChunkStore) -> None:
    await put(store, "a", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    await put(store, "b", [[1, 1, 0]])
    await put(store, "a", [[1, 0, 0], [0, 1, 0]])
    await put(store, "a", [[1, 0, 0], [0, 1, 0]])

    assert [c.id for c in await store.chunks("docs")] == ["a:0", "a:1", "b:0"]
    info = await store.collection("docs")
    assert info is not None
    assert (info.documents, info.chunks, info.embedder) == (2, 3, E1)
    hits = await store.search("docs", [1, 0, 0], E1, k=10)
    assert sorted(h.chunk.id for h in hits) == ["a:0", "a:1", "b:0"]


async def test_failed_replace_leaves_the_document_as_it_was(store: ChunkStore) -> None:
    before = await put(store, "a", [[1, 0, 0], [0, 1, 0]])
    with pytest.raises(EmbedderMismatchError):
        await put(store, "a", [[1, 0, 0]], embedder=E2)
    with pytest.raises(ValueError, match="dimensional"):
        await put(store, "a", [[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        await store.replace_document("docs", "a", doc("a", "x", "y"), [[1, 0, 0]], E1)
    assert await store.chunks("docs") == before


async def test_readers_never_see_a_half_replaced_document(store: ChunkStore) -> None:
    """Each replace swaps all of a document's chunks at once, even to a concurrent reader."""
    versions = {n: [f"v{n} part {i}" for i in range(n)] for n in (3, 5)}
    await store.replace_document("docs", "a", doc("a", *versions[3]), [[1, 0, 0]] * 3, E1)
    seen: set[tuple[str, ...]] = set()

    async def write() -> None:
        for round_ in range(12):
            texts = versions[5 if round_ % 2 else 3]
            vectors = [[1.0, 0.0, float(i)] for i in range(len(texts))]
            await store.replace_document("docs", "a", doc("a", *texts), vectors, E1)

    async def read() -> None:
        for _ in range(30):
            seen.add(tuple(c.text for c in await store.chunks("docs")))
            hits = await store.search("docs", [1, 0, 0], E1, k=10)
            seen.add(tuple(h.chunk.text for h in sorted(hits, key=lambda h: h.chunk.id)))
            await asyncio.sleep(0)

    await asyncio.gather(write(), read(), read())
    assert seen <= {tuple(texts) for texts in versions.values()}


async def test_concurrent_writes_keep_every_document_whole(store: ChunkStore) -> None:
    writes = [put(store, f"d{n}", [[1, n, 0]] * (1 + n % 3)) for n in range(8)]
    writes += [put(store, "same", [[0, 1, 0]] * n) for n in (2, 4, 3)]
    await asyncio.gather(*writes)

    documents = {d.id: d.chunks for d in await store.documents("docs")}
    assert documents == {**{f"d{n}": 1 + n % 3 for n in range(8)}, "same": documents["same"]}
    same = [c for c in await store.chunks("docs") if c.doc_id == "same"]
    assert [c.id for c in same] == [f"same:{i}" for i in range(documents["same"])]
    info = await store.collection("docs")
    assert info is not None
    assert info.chunks == sum(documents.values())


async def test_delete_document(store: ChunkStore) -> None:
    await put(store, "a", [[1, 0, 0]])
    await put(store, "b", [[0, 1, 0], [0, 0, 1]])

    assert await store.delete_document("docs", "a") is True
    assert await store.delete_document("docs", "a") is False
    assert [d.id for d in await store.documents("docs")] == ["b"]
    assert {h.chunk.doc_id for h in await store.search("docs", [1, 0, 0], E1, k=5)} == {"b"}
    info = await store.collection("docs")
    assert info is not None
    assert (info.documents, info.chunks) == (1, 2)


async def test_emptied_collection_stays_and_forgets_its_embedder(store: ChunkStore) -> None:
    """A collection lives until deleted; once empty it may take another model's vectors."""
    await put(store, "a", [[1, 0, 0]])
    assert await store.delete_document("docs", "a") is True

    info = await store.collection("docs")
    assert info is not None
    assert (info.documents, info.chunks, info.embedder) == (0, 0, None)
    assert await store.search("docs", [1, 0, 0], E2, k=3) == []
    await put(store, "b", [[1, 0, 0, 0]], embedder=E2)
    assert [h.chunk.id for h in await store.search("docs", [1, 0, 0, 0], E2, k=3)] == ["b:0"]


async def test_delete_collection(store: ChunkStore) -> None:
    await put(store, "a", [[1, 0, 0]])
    await put(store, "a", [[1, 0, 0]], collection="other")

    assert await store.delete_collection("docs") is True
    assert await store.delete_collection("docs") is False
    assert [c.name for c in await store.collections()] == ["other"]
    assert await store.collection("docs") is None
    assert await store.search("docs", [1, 0, 0], E1, k=3) == []
    assert await store.chunks("docs") == []
    assert len(await store.chunks("other")) == 1


async def test_listings_count_documents_and_chunks(store: ChunkStore) -> None:
    await put(store, "guide", [[1, 0, 0], [0, 1, 0]], title="The Guide", lang="en")
    await put(store, "faq", [[0, 0, 1]], title="FAQ")
    await put(store, "x", [[1, 0]], collection="Second", embedder=E2)

    listed = [(c.name, c.documents, c.chunks, c.embedder) for c in await store.collections()]
    assert listed == [("Second", 1, 1, E2), ("docs", 2, 3, E1)]
    documents = await store.documents("docs")
    assert [(d.id, d.title, d.chunks) for d in documents] == [
        ("faq", "FAQ", 1),
        ("guide", "The Guide", 2),
    ]
    # A document's metadata is what all its chunks share (not each chunk's start_index).
    assert documents[1].metadata == {"title": "The Guide", "source": "guide.md", "lang": "en"}
    info = await store.collection("docs")
    assert info is not None
    assert info.updated_at is not None
    assert all(d.updated_at is not None and d.updated_at <= info.updated_at for d in documents)


async def test_updated_at_moves_on_every_write(store: ChunkStore) -> None:
    stamps = []
    for _ in range(3):
        await put(store, "a", [[1, 0, 0]])
        info = await store.collection("docs")
        assert info is not None
        stamps.append(info.updated_at)
    await put(store, "b", [[1, 0, 0]])
    await store.delete_document("docs", "b")
    info = await store.collection("docs")
    assert info is not None
    stamps.append(info.updated_at)
    assert stamps == sorted(set(stamps))


async def test_search_ranks_nearest_first_with_cosine_scores(store: ChunkStore) -> None:
    await put(store, "a", [[0, 1, 0], [3, 4, 0], [2, 0, 0]])
    await put(store, "far", [[-1, 0, 0]])
    await put(store, "elsewhere", [[1, 0, 0]], collection="other")

    hits = await store.search("docs", [5, 0, 0], E1, k=3)
    assert [h.chunk.id for h in hits] == ["a:2", "a:1", "a:0"]
    assert [h.score for h in hits] == pytest.approx([1.0, 0.6, 0.0], abs=1e-6)
    assert hits[0].chunk.text == "a 2"
    everything = await store.search("docs", [1, 0, 0], E1, k=50)
    assert [h.chunk.id for h in everything][-1] == "far:0"
    assert everything[-1].score == pytest.approx(-1.0, abs=1e-6)


async def test_mmr_trades_relevance_for_variety(store: ChunkStore) -> None:
    await put(store, "a", [[1, 0, 0], [1, 0.1, 0], [0.5, 0, 0.87]])
    query = [1.0, 0.0, 0.3]

    nearest = await store.search("docs", query, E1, k=2)
    varied = await store.search("docs", query, E1, k=2, mmr=True, fetch_k=10)

    assert [h.chunk.id for h in nearest] == ["a:0", "a:1"]
    assert [h.chunk.id for h in varied] == ["a:0", "a:2"]
    assert varied[1].score == pytest.approx(0.7265, abs=1e-3)
    assert len(await store.search("docs", query, E1, k=5, mmr=True, fetch_k=2)) == 3


async def test_embedder_mismatch_is_refused(store: ChunkStore) -> None:
    await put(store, "a", [[1, 0, 0]])

    with pytest.raises(EmbedderMismatchError) as raised:
        await store.search("docs", [1, 0, 0], E2, k=1)
    assert (raised.value.stored, raised.value.asked) == (E1, E2)
    with pytest.raises(EmbedderMismatchError):
        await put(store, "b", [[1, 0, 0]], embedder=E2)
    assert [d.id for d in await store.documents("docs")] == ["a"]


async def test_unknown_collection_is_empty(store: ChunkStore) -> None:
    assert await store.collection("nope") is None
    assert await store.collections() == []
    assert await store.documents("nope") == []
    assert await store.chunks("nope") == []
    assert await store.search("nope", [1, 0, 0], E1, k=3) == []
    assert await store.search("nope", [1, 0, 0], E1, k=3, mmr=True) == []
    assert await store.delete_document("nope", "a") is False
    assert await store.delete_collection("nope") is False


async def test_everything_survives_reopening(open_store: Opener) -> None:
    first = open_store()
    chunks = await put(first, "a", [[1, 0, 0], [0, 1, 0]], title="Kept")
    await first.aclose()

    again = open_store()
    assert await again.chunks("docs") == chunks
    assert [(d.id, d.title) for d in await again.documents("docs")] == [("a", "Kept")]
    assert [h.chunk.id for h in await again.search("docs", [0, 1, 0], E1, k=1)] == ["a:1"]
    with pytest.raises(EmbedderMismatchError):
        await put(again, "b", [[1, 0, 0]], embedder=E2)


async def test_metadata_round_trips(store: ChunkStore) -> None:
    metadata = {
        "title": "Ünïcode — ✓",
        "page": 3,
        "ratio": 0.25,
        "tags": ["a", "b"],
        "nested": {"Header 1": "Intro", "empty": None, "flag": True},
        "doc_id": "a chunk's own key named like a column",
    }
    chunk = Chunk("a:0", "a", "text with 'quotes'; DROP TABLE chunks; --", metadata)
    await store.replace_document('it\'s "odd"', "a", [chunk], [[1, 0, 0]], E1)

    assert await store.chunks('it\'s "odd"') == [chunk]
    (hit,) = await store.search('it\'s "odd"', [1, 0, 0], E1, k=1)
    assert hit.chunk == chunk
    (document,) = await store.documents('it\'s "odd"')
    assert document.metadata == metadata
    assert document.title == "Ünïcode — ✓"


async def test_two_stores_on_one_database_share_it(open_store: Opener) -> None:
    """Like two server workers: concurrent first writes, and each sees the other's writes
    (neither serves a stale cached matrix)."""
    one, two = open_store(), open_store()
    await asyncio.gather(*(put(s, f"{n}", [[1, n, 0]]) for n, s in enumerate([one, two] * 3)))
    assert len(await one.search("docs", [1, 0, 0], E1, k=10)) == 6

    await put(two, "0", [[0, 0, 1]])
    (hit,) = await one.search("docs", [0, 0, 1], E1, k=1)
    assert hit.chunk.id == "0:0"
    assert hit.score == pytest.approx(1.0)


async def test_pg_store_explains_a_database_without_pgvector(postgres_url: str) -> None:
    """A user who may not create extensions, in a database without pgvector, gets told why."""
    name = f"bare_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as db:
        await db.execute(f"CREATE ROLE {name} LOGIN")
        await db.execute(f"CREATE DATABASE {name}")
    store = PgChunkStore(
        postgres_url.replace("postgres@", f"{name}@").rsplit("/", 1)[0] + f"/{name}"
    )
    try:
        with pytest.raises(PgVectorUnavailableError, match="CREATE EXTENSION vector"):
            await store.collections()
    finally:
        await store.aclose()
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as db:
            await db.execute(f"DROP DATABASE {name}")
            await db.execute(f"DROP ROLE {name}")


async def test_each_owner_has_its_own_collection_of_a_name(store: ChunkStore) -> None:
    mine, theirs = "key-aaaaaaaaaaaa", "key-bbbbbbbbbbbb"
    chunks = doc("a", "alpha")
    await store.replace_document("docs", "a", chunks, [[1.0, 0.0]], E1, owner=mine)
    await store.replace_document("docs", "b", doc("b", "beta"), [[0.0, 1.0]], E2, owner=theirs)
    hits = await store.search("docs", [1.0, 0.0], E1, 5, owner=mine)
    assert [h.chunk.doc_id for h in hits] == ["a"]
    assert [c.doc_id for c in await store.chunks("docs", owner=theirs)] == ["b"]
    assert await store.collection("docs") is None  # the unowned namespace is a third one
    listed = await store.collections(owner=mine)
    assert [(c.name, c.owner, c.published) for c in listed] == [("docs", mine, False)]
    assert len(await store.collections(everyone=True)) == 2
    assert await store.delete_document("docs", "a", owner=theirs) is False


async def test_one_published_collection_per_name_readable_by_every_owner(
    store: ChunkStore,
) -> None:
    mine, theirs = "key-aaaaaaaaaaaa", "key-bbbbbbbbbbbb"
    await store.replace_document("kb", "a", doc("a", "alpha"), [[1.0, 0.0]], E1, owner=mine)
    await store.replace_document("kb", "b", doc("b", "beta"), [[0.0, 1.0]], E1, owner=theirs)
    assert await store.published("kb") is None
    shared = await store.set_published("kb", True, owner=mine)
    assert shared is not None
    assert (shared.owner, shared.published) == (mine, True)
    found = await store.published("kb")
    assert found is not None
    assert found.owner == mine
    assert [c.owner for c in await store.collections(owner=None)] == [mine]  # listed for all
    with pytest.raises(PublishedNameTakenError):
        await store.set_published("kb", True, owner=theirs)
    assert await store.set_published("nothing", True, owner=mine) is None
    await store.set_published("kb", False, owner=mine)
    assert await store.published("kb") is None
