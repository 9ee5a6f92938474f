"""The embedded chunk store: collections of embedded chunks in one SQLite file, searched with numpy.

A collection exists from its first ingested document until it is deleted: removing its last
document leaves it empty, with no embedder, so it may then be re-filled with another model's
vectors. Vectors are stored normalised (float32), so cosine similarity is a dot product over a
per-collection matrix kept in memory. The cache is keyed by the collection's `updated_at`,
which every write moves strictly forward, so a write from another process (several workers on
one file) is noticed too.
"""

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from chainserve.chains.retrieval.sqlite_schema import SCHEMA, add_owners
from chainserve.chains.retrieval.store_rules import (
    Matrix,
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

T = TypeVar("T")


@dataclass(frozen=True)
class _Loaded:
    """A collection's chunks and their normalised vectors (row i is chunk i)."""

    updated_at: float
    chunks: list[Chunk]
    matrix: Matrix


def normalised(vectors: list[list[float]] | Matrix) -> Matrix:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is a cosine."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    result: Matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return result


def _patiently(call: Callable[[], object]) -> None:
    """Run `call`, waiting out another process's lock. SQLite answers some lock conflicts
    (another connection switching the file to WAL or creating the schema at the same moment)
    with an immediate "database is locked" that its busy timeout does not cover."""
    for attempt in range(10):
        try:
            call()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 9:
                raise
            time.sleep(min(0.01 * 2**attempt, 1.0))


class SQLiteChunkStore:
    """Chunks in a SQLite file; database work runs in worker threads so the event loop never
    blocks, on one connection guarded by a lock. Search returns hits best first (MMR's picks
    too); hits and `chunks()` share the cached `Chunk`s, so callers must not mutate them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._cache: dict[str, _Loaded] = {}

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The busy timeout from the start: switching to WAL takes a lock that another
            # worker opening the same file at the same moment would otherwise fail on.
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=5.0
            )
            try:
                _patiently(lambda: db.execute("PRAGMA journal_mode=WAL"))
                _patiently(lambda: db.executescript(SCHEMA))
                _patiently(lambda: add_owners(db))
            except BaseException:
                db.close()  # never leave a half-set-up connection holding a lock
                raise
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """`work` in one transaction (BEGIN IMMEDIATE for writes, so two writers queue instead
        of failing on upgrade), in a worker thread."""

        def locked() -> T:
            with self._lock:
                db = self._connect()
                _patiently(lambda: db.execute("BEGIN IMMEDIATE" if write else "BEGIN"))
                try:
                    result = work(db)
                except Exception:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result

        return await asyncio.to_thread(locked)

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
        matrix = normalised(check_vectors(chunks, vectors))
        title, metadata = summarize_document(chunks)
        dim = matrix.shape[1] if chunks else None
        key = storage_name(owner, collection)
        rows = [
            (key, doc_id, i, c.id, c.text, json.dumps(c.metadata), matrix[i].tobytes())
            for i, c in enumerate(chunks)
        ]

        def replace(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT embedder, dim, updated_at FROM collections WHERE name = ?", (key,)
            ).fetchone()
            stored_embedder, stored_dim, previous = row if row else (None, None, None)
            check_embedder(collection, stored_embedder, stored_dim, embedder, dim)
            now = next_updated_at(previous)
            db.execute(
                "INSERT INTO collections (name, embedder, dim, updated_at, owner, label) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "embedder = excluded.embedder, dim = COALESCE(excluded.dim, dim), "
                "updated_at = excluded.updated_at",
                (key, embedder, dim, now, owner, collection),
            )
            db.execute("DELETE FROM chunks WHERE collection = ? AND doc_id = ?", (key, doc_id))
            db.execute(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                (key, doc_id, title, json.dumps(metadata), len(chunks), now),
            )
            db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

        await self._run(replace, write=True)

    async def delete_document(
        self, collection: str, doc_id: str, *, owner: str | None = None
    ) -> bool:
        name = storage_name(owner, collection)

        def delete(db: sqlite3.Connection) -> bool:
            key = (name, doc_id)
            db.execute("DELETE FROM chunks WHERE collection = ? AND doc_id = ?", key)
            if db.execute(
                "DELETE FROM documents WHERE collection = ? AND doc_id = ?", key
            ).rowcount:
                _touch(db, name)
                return True
            return False

        return await self._run(delete, write=True)

    async def delete_collection(self, collection: str, *, owner: str | None = None) -> bool:
        key = storage_name(owner, collection)

        def delete(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM chunks WHERE collection = ?", (key,))
            db.execute("DELETE FROM documents WHERE collection = ?", (key,))
            self._cache.pop(key, None)
            return db.execute("DELETE FROM collections WHERE name = ?", (key,)).rowcount > 0

        return await self._run(delete, write=True)

    async def collections(
        self, *, owner: str | None = None, everyone: bool = False
    ) -> list[CollectionInfo]:
        rows = await self._run(lambda db: db.execute(_LISTED, (everyone, owner)).fetchall())
        return [_collection_info(row) for row in rows]

    async def collection(self, name: str, *, owner: str | None = None) -> CollectionInfo | None:
        key = storage_name(owner, name)
        row = await self._run(lambda db: db.execute(_NAMED, (key,)).fetchone())
        return None if row is None else _collection_info(row)

    async def published(self, name: str) -> CollectionInfo | None:
        row = await self._run(lambda db: db.execute(_PUBLISHED, (name,)).fetchone())
        return None if row is None else _collection_info(row)

    async def set_published(
        self, name: str, published: bool, *, owner: str | None = None
    ) -> CollectionInfo | None:
        key = storage_name(owner, name)

        def publish(db: sqlite3.Connection) -> CollectionInfo | None:
            try:
                changed = db.execute(
                    "UPDATE collections SET published = ? WHERE name = ?", (int(published), key)
                ).rowcount
            except sqlite3.IntegrityError:  # the unique index on published labels
                raise PublishedNameTakenError(name) from None
            return _collection_info(db.execute(_NAMED, (key,)).fetchone()) if changed else None

        return await self._run(publish, write=True)

    async def documents(self, collection: str, *, owner: str | None = None) -> list[DocumentInfo]:
        key = storage_name(owner, collection)
        rows = await self._run(
            lambda db: db.execute(
                "SELECT doc_id, title, chunks, metadata, updated_at FROM documents "
                "WHERE collection = ? ORDER BY doc_id",
                (key,),
            ).fetchall()
        )
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
        loaded = await self._load(collection, owner, embedder)
        if loaded is None or k <= 0 or not loaded.chunks:
            return []
        query = normalised(np.asarray(vector, dtype=np.float32))
        if query.shape[0] != loaded.matrix.shape[1]:
            raise ValueError(
                f"query vector has {query.shape[0]} dimensions, "
                f"collection {collection!r} has {loaded.matrix.shape[1]}"
            )
        # The matrix product and MMR are CPU work on up to every chunk: off the loop too.
        return await asyncio.to_thread(_rank, loaded, query, k, mmr, max(fetch_k, k), lambda_mult)

    async def chunks(self, collection: str, *, owner: str | None = None) -> list[Chunk]:
        loaded = await self._load(collection, owner, None)
        return [] if loaded is None else list(loaded.chunks)

    async def _load(
        self, collection: str, owner: str | None, embedder: str | None
    ) -> _Loaded | None:
        """The collection's cached chunks and matrix, re-read when another write happened;
        None for an unknown or empty collection. Checks `embedder` when given."""
        key = storage_name(owner, collection)

        def load(db: sqlite3.Connection) -> _Loaded | None:
            row = db.execute(
                "SELECT embedder, dim, updated_at FROM collections WHERE name = ?", (key,)
            ).fetchone()
            if row is None or row[0] is None:
                return None
            if embedder is not None:
                check_embedder(collection, row[0], None, embedder, None)
            cached = self._cache.get(key)
            if cached is not None and cached.updated_at == row[2]:
                return cached
            loaded = _read_collection(db, key, row[1], row[2])
            self._cache[key] = loaded
            return loaded

        return await self._run(load)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                self._cache.clear()

        await asyncio.to_thread(close)


_SELECT = (
    "SELECT c.label, c.embedder, c.updated_at, COUNT(d.doc_id), COALESCE(SUM(d.chunks), 0), "
    "c.owner, c.published FROM collections c LEFT JOIN documents d ON d.collection = c.name "
)
# The first parameter, true, lists every owner's.
_LISTED = _SELECT + (
    "WHERE ? OR c.owner IS ? OR c.published = 1 GROUP BY c.name ORDER BY c.label, c.owner"
)
_NAMED = _SELECT + "WHERE c.name = ? GROUP BY c.name"
_PUBLISHED = _SELECT + "WHERE c.label = ? AND c.published = 1 GROUP BY c.name"


def _collection_info(row: tuple[Any, ...]) -> CollectionInfo:
    name, embedder, updated_at, documents, chunks, owner, published = row
    return CollectionInfo(name, documents, chunks, embedder, updated_at, owner, bool(published))


def _touch(db: sqlite3.Connection, collection: str) -> None:
    """Move `updated_at` on; an emptied collection forgets its embedder."""
    (previous,) = db.execute(
        "SELECT updated_at FROM collections WHERE name = ?", (collection,)
    ).fetchone()
    db.execute(
        "UPDATE collections SET updated_at = ?, "
        "embedder = CASE WHEN EXISTS (SELECT 1 FROM documents WHERE collection = name) "
        "THEN embedder END, "
        "dim = CASE WHEN EXISTS (SELECT 1 FROM chunks WHERE collection = name) THEN dim END "
        "WHERE name = ?",
        (next_updated_at(previous), collection),
    )


def _read_collection(
    db: sqlite3.Connection, collection: str, dim: int | None, updated_at: float
) -> _Loaded:
    rows = db.execute(
        "SELECT id, doc_id, text, metadata, embedding FROM chunks "
        "WHERE collection = ? ORDER BY doc_id, idx",
        (collection,),
    ).fetchall()
    chunks = [Chunk(r[0], r[1], r[2], json.loads(r[3])) for r in rows]
    matrix = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32)
    return _Loaded(updated_at, chunks, matrix.reshape(len(rows), dim or 0))


def _rank(
    loaded: _Loaded, query: Matrix, k: int, mmr: bool, fetch_k: int, lambda_mult: float
) -> list[Hit]:
    scores = loaded.matrix @ query
    nearest = _top(scores, fetch_k if mmr else k)
    if mmr:
        candidates = loaded.matrix[nearest].tolist()
        picked = maximal_marginal_relevance(query, candidates, lambda_mult=lambda_mult, k=k)
        nearest = nearest[sorted(picked)]  # best first, like plain search, not in pick order
    return [Hit(loaded.chunks[i], float(scores[i])) for i in nearest]


def _top(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.intp]:
    """Indices of the `k` highest scores, highest first (argpartition: no full sort)."""
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]
