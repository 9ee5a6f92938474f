"""Rules both chunk stores share, so SQLite and PostgreSQL accept and refuse the same writes."""

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from chainserve.chains.retrieval.types import (
    Chunk,
    ChunkStore,
    CollectionInfo,
    EmbedderMismatchError,
)

Matrix = npt.NDArray[np.float32]


def storage_name(owner: str | None, name: str) -> str:
    """The key a collection is stored under: its name for an unowned one (as before owners
    existed), else `owner/name`, which no collection name can be (names have no `/`)."""
    return name if owner is None else f"{owner}/{name}"


def check_vectors(chunks: list[Chunk], vectors: list[list[float]]) -> Matrix:
    """The vectors as a (chunks x dimensions) matrix; one vector per chunk, all one length."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    matrix = np.asarray(vectors, dtype=np.float32)  # ValueError when lengths differ
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError("vectors must be non-empty lists of numbers")
    return matrix


def check_embedder(
    collection: str, stored: str | None, stored_dim: int | None, asked: str, dim: int | None
) -> None:
    """Raise unless vectors from `asked` (of `dim` dimensions) fit the collection."""
    if stored is not None and stored != asked:
        raise EmbedderMismatchError(collection, stored, asked)
    if stored_dim is not None and dim is not None and stored_dim != dim:
        raise ValueError(
            f"collection {collection!r} holds {stored_dim}-dimensional vectors, not {dim}"
        )


def next_updated_at(previous: float | None) -> float:
    """Now, but always after `previous`: `updated_at` then changes on every write, so it is a
    cheap version for caches (BM25, the vector matrix) even when two writes share a clock tick."""
    now = time.time()
    return now if previous is None else max(now, previous + 1e-6)


def summarize_document(chunks: list[Chunk]) -> tuple[str | None, dict[str, Any]]:
    """A document's title and metadata, from its chunks: the metadata every chunk shares (the
    store is given chunks only; a chunk's metadata is its document's plus its own)."""
    shared = dict(chunks[0].metadata) if chunks else {}
    for chunk in chunks[1:]:
        shared = {k: v for k, v in shared.items() if k in chunk.metadata and chunk.metadata[k] == v}
    title = shared.get("title")
    return (title if isinstance(title, str) else None), shared


async def readable(store: ChunkStore, name: str, owner: str | None) -> CollectionInfo | None:
    """The collection `owner` reads by `name`: its own if it has one, else a published one."""
    own = await store.collection(name, owner=owner)
    return own if own is not None else await store.published(name)
