"""The PostgreSQL chunk store: pgvector tables searched through langchain-postgres' `PGVectorStore`.

Layout, in one schema: `chainserve_collections` and `chainserve_documents` keep what
langchain-postgres has no notion of (a collection's embedder, per-document summaries), and one
vector table per dimension, `chainserve_chunks_<dim>`, holds every collection's chunks of that
size (a pgvector column has one fixed dimension; a table per embedder would need its name in an
identifier, and a dimension is a safe one). Search filters that table on the collection column;
it is exact (no ANN index), which a btree on the collection keeps fast at our sizes and, unlike
HNSW with a filter, never returns fewer than `k` hits.

Writes do not go through `PGVectorStore`: its `adelete` and `aadd_embeddings` each commit on
their own connection, so a reader could see a document half replaced. We delete and insert the
rows in the layout it created, in one transaction that also holds the collection's row lock, so
concurrent writers to one collection queue and the embedder check cannot race.
"""

import asyncio
import json
import sys
import uuid
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_postgres import Column, ColumnDict, PGEngine, PGVectorStore
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from chainserve.chains.retrieval import pg_sql
from chainserve.chains.retrieval.pg_sql import COLUMNS, quote_identifier, vector_table
from chainserve.chains.retrieval.store_rules import (
    check_embedder,
    check_vectors,
    next_updated_at,
    storage_name,
    summarize_document,
)
from chainserve.chains.retrieval.types import (
    Chunk,
    CollectionInfo,
    DocumentInfo,
    Hit,
    PublishedNameTakenError,
)

_ID_NAMESPACE = uuid.UUID("5b0c7f8e-3c1e-4b8e-9a57-0c2a4b9d6e11")


class _NoEmbeddings(Embeddings):
    """`PGVectorStore` wants an embedding model; this store is always handed vectors."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError("PgChunkStore stores and searches given vectors only")

    def embed_query(self, text: str) -> list[float]:
        raise NotImplementedError("PgChunkStore stores and searches given vectors only")


def async_url(url: str) -> str:
    """A `postgresql://` URL with psycopg's async driver (libpq URLs, `sslmode` and all);
    an explicit `+driver` is kept."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _column_types() -> list[Column | ColumnDict]:
    return [
        Column(COLUMNS[0], "TEXT", nullable=False),
        Column(COLUMNS[1], "TEXT", nullable=False),
        Column(COLUMNS[2], "TEXT", nullable=False),
        Column(COLUMNS[3], "INTEGER", nullable=False),
    ]


class PgChunkStore:
    """Chunks in PostgreSQL with pgvector. Connections are pooled and bound to the event loop
    of first use; `aclose()` disposes of them."""

    def __init__(self, url: str, *, schema: str = "public", **engine_options: Any) -> None:
        self._engine = create_async_engine(async_url(url), **engine_options)
        self._pg = PGEngine.from_engine(self._engine)  # no loop: runs on the caller's loop
        self._schema = schema
        self._s = quote_identifier(schema)
        self._ready = False
        self._vector_stores: dict[int, PGVectorStore] = {}
        self._ddl_lock = asyncio.Lock()

    async def _setup(self) -> None:
        if self._ready:
            return
        async with self._engine.begin() as conn:
            await conn.execute(pg_sql.ADVISORY_LOCK)
            await _create_extension(conn)
            await conn.execute(text(self._sql(pg_sql.CREATE_SCHEMA)))
            for statement in pg_sql.SCHEMA:
                await conn.execute(text(self._sql(statement)))
        self._ready = True

    async def _vector_store(self, dim: int) -> PGVectorStore:
        """The `PGVectorStore` over the `dim`-dimensional table, which is created on first use."""
        if dim not in self._vector_stores:
            # One creator per process: the others would hold pool connections while waiting
            # for the advisory lock, which the creator may need.
            async with self._ddl_lock:
                if dim not in self._vector_stores:
                    await self._create_table(dim)
                    self._vector_stores[dim] = await PGVectorStore.create(
                        self._pg,
                        _NoEmbeddings(),
                        vector_table(dim),
                        schema_name=self._schema,
                        metadata_columns=list(COLUMNS),
                    )
        return self._vector_stores[dim]

    async def _create_table(self, dim: int) -> None:
        table = vector_table(dim)
        async with self._engine.begin() as conn:
            await conn.execute(pg_sql.ADVISORY_LOCK)
            name = f'{self._s}."{table}"'
            if not await conn.scalar(text(pg_sql.TABLE_EXISTS), {"n": name}):
                # langchain-postgres lays the table out (on a connection of its own).
                await self._pg.ainit_vectorstore_table(
                    table, dim, schema_name=self._schema, metadata_columns=_column_types()
                )
            await conn.execute(
                text(pg_sql.INDEX.format(t=self._qualified(dim), name=f"{table}_by_doc"))
            )

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
        matrix = check_vectors(chunks, vectors)
        dim = int(matrix.shape[1]) if chunks else None
        title, metadata = summarize_document(chunks)
        key = storage_name(owner, collection)
        rows = _chunk_rows(key, doc_id, chunks, matrix.tolist())
        await self._setup()
        if dim is not None:
            await self._vector_store(dim)  # DDL first, outside the data transaction
        async with self._engine.begin() as conn:
            await conn.execute(
                text(self._sql(pg_sql.ADD_COLLECTION)), {"n": key, "o": owner, "l": collection}
            )
            stored = await self._stored(conn, key, lock=True)
            assert stored is not None
            check_embedder(collection, stored.embedder, stored.dim, embedder, dim)
            now = next_updated_at(stored.updated_at)
            await conn.execute(
                text(self._sql(pg_sql.SET_EMBEDDER)),
                {"n": key, "e": embedder, "dim": dim, "now": now},
            )
            await self._delete_chunks(conn, stored.dim, key, doc_id)
            values = {"c": key, "d": doc_id, "title": title, "n": len(chunks), "now": now}
            await conn.execute(
                text(self._sql(pg_sql.PUT_DOCUMENT)), {**values, "meta": json.dumps(metadata)}
            )
            if dim is not None and rows:
                await conn.execute(text(pg_sql.INSERT_CHUNKS.format(t=self._qualified(dim))), rows)

    async def delete_document(
        self, collection: str, doc_id: str, *, owner: str | None = None
    ) -> bool:
        key = storage_name(owner, collection)
        await self._setup()
        async with self._engine.begin() as conn:
            stored = await self._stored(conn, key, lock=True)
            if stored is None:
                return False
            deleted = await conn.execute(
                text(self._sql(pg_sql.DELETE_DOCUMENT)), {"c": key, "d": doc_id}
            )
            if deleted.first() is None:
                return False
            await self._delete_chunks(conn, stored.dim, key, doc_id)
            now = next_updated_at(stored.updated_at)
            await conn.execute(text(self._sql(pg_sql.TOUCH)), {"n": key, "now": now})
            return True

    async def delete_collection(self, collection: str, *, owner: str | None = None) -> bool:
        key = storage_name(owner, collection)
        await self._setup()
        async with self._engine.begin() as conn:
            stored = await self._stored(conn, key, lock=True)
            if stored is None:
                return False
            await self._delete_chunks(conn, stored.dim, key, None)
            # Its documents go with it (ON DELETE CASCADE).
            await conn.execute(text(self._sql(pg_sql.DELETE_COLLECTION)), {"n": key})
            return True

    async def collections(
        self, *, owner: str | None = None, everyone: bool = False
    ) -> list[CollectionInfo]:
        await self._setup()
        async with self._engine.connect() as conn:
            sql = text(self._sql(pg_sql.COLLECTIONS_LISTED))
            rows = await conn.execute(sql, {"all": everyone, "o": owner})
            return [CollectionInfo(*row) for row in rows]

    async def collection(self, name: str, *, owner: str | None = None) -> CollectionInfo | None:
        return await self._one(pg_sql.COLLECTION_NAMED, storage_name(owner, name))

    async def published(self, name: str) -> CollectionInfo | None:
        return await self._one(pg_sql.COLLECTION_PUBLISHED, name)

    async def _one(self, sql: str, name: str) -> CollectionInfo | None:
        await self._setup()
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(self._sql(sql)), {"n": name})).first()
            return None if row is None else CollectionInfo(*row)

    async def set_published(
        self, name: str, published: bool, *, owner: str | None = None
    ) -> CollectionInfo | None:
        key = storage_name(owner, name)
        await self._setup()
        try:
            async with self._engine.begin() as conn:
                sql = text(self._sql(pg_sql.SET_PUBLISHED))
                if (await conn.execute(sql, {"n": key, "p": published})).first() is None:
                    return None
        except IntegrityError:  # the unique index on published labels
            raise PublishedNameTakenError(name) from None
        return await self.collection(name, owner=owner)

    async def documents(self, collection: str, *, owner: str | None = None) -> list[DocumentInfo]:
        key = storage_name(owner, collection)
        await self._setup()
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(self._sql(pg_sql.DOCUMENTS)), {"c": key})
            return [DocumentInfo(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

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
        key = storage_name(owner, collection)
        await self._setup()
        async with self._engine.connect() as conn:
            stored = await self._stored(conn, key)
        if stored is None or stored.embedder is None:
            return []
        check_embedder(collection, stored.embedder, stored.dim, embedder, len(vector))
        if stored.dim is None or k <= 0:
            return []
        store = await self._vector_store(stored.dim)
        where = {COLUMNS[0]: key}
        if mmr:
            found = await store.amax_marginal_relevance_search_with_score_by_vector(
                vector,
                k=k,
                fetch_k=max(fetch_k, k),
                # langchain-postgres reads 0 as "not given" (its default is 0.5).
                lambda_mult=lambda_mult or sys.float_info.min,
                filter=where,
            )
        else:
            found = await store.asimilarity_search_with_score_by_vector(vector, k=k, filter=where)
        return sorted((_hit(document, distance) for document, distance in found), key=_by_score)

    async def chunks(self, collection: str, *, owner: str | None = None) -> list[Chunk]:
        key = storage_name(owner, collection)
        await self._setup()
        async with self._engine.connect() as conn:
            stored = await self._stored(conn, key)
            if stored is None or stored.dim is None:
                return []
            sql = pg_sql.CHUNKS.format(t=self._qualified(stored.dim))
            rows = await conn.execute(text(sql), {"c": key})
            return [Chunk(r[0], r[1], r[2], json.loads(r[3]) or {}) for r in rows]

    async def aclose(self) -> None:
        self._vector_stores.clear()
        await self._pg.close()

    def _sql(self, template: str) -> str:
        return template.format(s=self._s)

    def _qualified(self, dim: int) -> str:
        return f'{self._s}."{vector_table(dim)}"'

    async def _stored(self, conn: AsyncConnection, collection: str, *, lock: bool = False) -> Any:
        """The collection's row (`embedder`, `dim`, `updated_at`), or None. With `lock`, other
        writers to the collection wait until this transaction ends."""
        sql = self._sql(pg_sql.STORED_FOR_UPDATE if lock else pg_sql.STORED)
        return (await conn.execute(text(sql), {"n": collection})).first()

    async def _delete_chunks(
        self, conn: AsyncConnection, dim: int | None, collection: str, doc_id: str | None
    ) -> None:
        """Delete a document's chunks, or with no `doc_id` the whole collection's."""
        if dim is None:
            return  # the collection has no vectors yet, so no table holds its chunks
        sql = pg_sql.DELETE_CHUNKS if doc_id is None else pg_sql.DELETE_DOCUMENT_CHUNKS
        await conn.execute(text(sql.format(t=self._qualified(dim))), {"c": collection, "d": doc_id})


class PgVectorUnavailableError(RuntimeError):
    """The database lacks pgvector and this user cannot enable it."""


async def _create_extension(conn: AsyncConnection) -> None:
    if await conn.scalar(text(pg_sql.VECTOR_ENABLED)):
        return  # enabled already: no privilege needed
    try:
        await conn.execute(text(pg_sql.CREATE_VECTOR))
    except DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise PgVectorUnavailableError(
            f"the pgvector extension is not enabled in this database and could not be "
            f"enabled ({reason}): install pgvector on the server and run "
            "`CREATE EXTENSION vector` as the database owner or a superuser"
        ) from error


def _chunk_rows(
    collection: str, doc_id: str, chunks: list[Chunk], vectors: list[list[float]]
) -> list[dict[str, Any]]:
    return [
        {
            # Derived from the row's place, so a document's rows keep their ids across replaces.
            "id": uuid.uuid5(_ID_NAMESPACE, json.dumps([collection, doc_id, i])),
            "text": chunk.text,
            "vector": json.dumps(vector),
            "collection": collection,
            "doc_id": doc_id,
            "chunk_id": chunk.id,
            "idx": i,
            "metadata": json.dumps(chunk.metadata),
        }
        for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
    ]


def _hit(document: Document, distance: float) -> Hit:
    metadata = dict(document.metadata)
    _, doc_id, chunk_id, _ = (metadata.pop(column) for column in COLUMNS)
    return Hit(Chunk(chunk_id, doc_id, document.page_content, metadata), 1.0 - float(distance))


def _by_score(hit: Hit) -> float:
    """Best first (MMR's picks come back in table order)."""
    return -hit.score
