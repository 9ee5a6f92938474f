"""What the retrieval pieces pass each other: chunks, hits, collection summaries, and the store.

The store keeps chunks of documents with their vectors, per named collection. Two stores
implement `ChunkStore`: an embedded SQLite file (the default; `sqlite_store.py`) and PostgreSQL
with pgvector (`pg_store.py`, when a database URL is configured). The BM25 keyword retriever
reads a collection's chunks from the same store, so both retrievers see the same documents.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Chunk:
    """One piece of a document, as embedded and retrieved."""

    id: str
    """`{doc_id}:{index}`: stable, so re-ingesting a document replaces its chunks."""
    doc_id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """The document's metadata (`title`, `source`, ...) plus the chunk's own (`page`,
    `start_index`, Markdown headers)."""


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float
    """Higher is more relevant: cosine similarity for vectors, BM25 score for keywords."""


@dataclass(frozen=True)
class DocumentInfo:
    id: str
    title: str | None
    chunks: int
    metadata: dict[str, Any] = field(default_factory=dict)
    updated_at: float | None = None
    """Unix time of the document's last ingest."""


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    documents: int
    chunks: int
    embedder: str | None
    """The embedding model its vectors come from (None while it is empty)."""
    updated_at: float | None = None
    owner: str | None = None
    """Whose it is (an opaque string from the caller); None: unowned (from before owners, or
    a single-owner server). Names are per owner: two owners may both have `default`."""
    published: bool = False
    """Readable by every owner (never writable by them); one published collection per name."""


class EmbedderMismatchError(ValueError):
    """A collection's vectors come from another embedding model than the one asked to use."""

    def __init__(self, collection: str, stored: str, asked: str) -> None:
        super().__init__(
            f"collection {collection!r} was embedded with {stored!r}, not {asked!r}: "
            "re-ingest its documents or use the embedding model it was built with"
        )
        self.collection, self.stored, self.asked = collection, stored, asked


class PublishedNameTakenError(ValueError):
    """Another owner's collection of the same name is published already."""

    def __init__(self, collection: str) -> None:
        super().__init__(
            f"a collection named {collection!r} is published already: unpublish it first, "
            "or publish a collection of another name"
        )
        self.collection = collection


class IngestError(ValueError):
    """The document cannot be ingested; the message tells the user what to do about it."""


class ChunkStore(Protocol):
    """Collections of chunks, per owner: every method acts on `owner`'s collection of that
    name (None: the unowned ones), except `published`, which finds one any owner may read."""

    async def replace_document(
        self,
        collection: str,
        doc_id: str,
        chunks: list[Chunk],
        vectors: list[list[float]],
        embedder: str,
        *,
        owner: str | None = None,
    ) -> None:
        """Make `chunks` the document's only chunks, atomically (creating the collection).
        Raises `EmbedderMismatchError` if the collection holds another embedder's vectors."""

    async def delete_document(
        self, collection: str, doc_id: str, *, owner: str | None = None
    ) -> bool:
        """False if there was no such document."""

    async def delete_collection(self, collection: str, *, owner: str | None = None) -> bool:
        """False if there was no such collection."""

    async def collections(
        self, *, owner: str | None = None, everyone: bool = False
    ) -> list[CollectionInfo]:
        """`owner`'s collections and the published ones; with `everyone`, every collection."""

    async def collection(self, name: str, *, owner: str | None = None) -> CollectionInfo | None: ...

    async def published(self, name: str) -> CollectionInfo | None:
        """The published collection named `name`, whoever owns it."""

    async def set_published(
        self, name: str, published: bool, *, owner: str | None = None
    ) -> CollectionInfo | None:
        """Publish (or unpublish) `owner`'s collection; None if there is none. Raises
        `PublishedNameTakenError` if another of that name is published."""

    async def documents(
        self, collection: str, *, owner: str | None = None
    ) -> list[DocumentInfo]: ...

    async def search(
        self,
        collection: str,
        vector: list[float],
        embedder: str,
        k: int,
        *,
        owner: str | None = None,
        mmr: bool = False,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
    ) -> list[Hit]:
        """The `k` chunks nearest `vector` (cosine), or with `mmr` the `k` of the `fetch_k`
        nearest that are relevant and unlike each other. Empty for an unknown collection."""

    async def chunks(self, collection: str, *, owner: str | None = None) -> list[Chunk]:
        """Every chunk of a collection (for keyword search)."""

    async def aclose(self) -> None: ...
