"""The two retrievers the `rag` chain can switch between per request: vectors and BM25.

Both read the same `ChunkStore`, take the collection and `k` from `configurable`, and return
LangChain `Document`s whose metadata carries the chunk id, document id and score, which the
chain turns into its `sources` event.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import ConfigurableField, Runnable, RunnableConfig
from pydantic import ConfigDict, Field

from chainserve.chains.owner import owner_of
from chainserve.chains.retrieval.bm25 import BM25Index
from chainserve.chains.retrieval.store_rules import readable
from chainserve.chains.retrieval.types import ChunkStore, Hit

COLLECTION_KEY = "collection"
K_KEY = "k"
SEARCH_TYPE_KEY = "search_type"
RETRIEVER_KEY = "retriever"
DEFAULT_COLLECTION = "default"
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

CollectionName = Annotated[str, Field(pattern=COLLECTION_PATTERN)]
TopK = Annotated[int, Field(ge=1, le=20)]
SearchType = Literal["similarity", "mmr"]


def legacy_embedder_for(stored: str | None, embedder: str, legacy: str | None) -> str:
    """The id to check a collection that records `stored` against: `embedder`, or `legacy`
    when the collection carries it, so collections from before server-qualified ids keep
    working (and keep that id) wherever the old version would have used them."""
    return stored if stored is not None and stored == legacy else embedder


@dataclass(frozen=True)
class Retrieval:
    """What retrieval chains are built with: where chunks live and how text becomes vectors."""

    store: ChunkStore
    embeddings: Embeddings
    embedder: str
    """The embedding model's id, recorded with each collection's vectors."""
    legacy_embedder: str | None = None
    """The id an older chainserve recorded for this very set-up (see `legacy_embedder_for`)."""

    def embedder_for(self, stored: str | None) -> str:
        return legacy_embedder_for(stored, self.embedder, self.legacy_embedder)


def _document(hit: Hit) -> Document:
    chunk = hit.chunk
    metadata: dict[str, Any] = {
        **chunk.metadata,
        "chunk_id": chunk.id,
        "doc_id": chunk.doc_id,
        "score": round(hit.score, 4),
    }
    return Document(id=chunk.id, page_content=chunk.text, metadata=metadata)


class _StoreRetriever(BaseRetriever):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    """A `ChunkStore` (typed loosely: pydantic cannot validate a Protocol)."""
    collection: str = DEFAULT_COLLECTION
    k: int = 4

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        # The run's owner (set by the server in `configurable`) reaches the search as an
        # argument: a retriever is otherwise given only the query and its callbacks.
        return await super().ainvoke(input, config, reader=owner_of(config), **kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, reader: str | None = None
    ) -> list[Document]:
        raise NotImplementedError("retrievers over the chunk store run async (ainvoke)")

    async def _owner(self, reader: str | None) -> tuple[bool, str | None]:
        """Whose collection of this name `reader` searches: its own, else a published one."""
        found = await readable(self.store, self.collection, reader)
        return (False, None) if found is None else (True, found.owner)


class VectorRetriever(_StoreRetriever):
    """Nearest chunks by cosine similarity of embeddings, or MMR for variety."""

    embeddings: Embeddings
    embedder: str
    legacy_embedder: str | None = None
    search_type: SearchType = "similarity"

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        reader: str | None = None,
    ) -> list[Document]:
        found = await readable(self.store, self.collection, reader)
        if found is None:
            return []
        vector = await self.embeddings.aembed_query(query)
        hits = await self.store.search(
            self.collection,
            vector,
            legacy_embedder_for(found.embedder, self.embedder, self.legacy_embedder),
            self.k,
            owner=found.owner,
            mmr=self.search_type == "mmr",
            fetch_k=max(20, 4 * self.k),
        )
        return [_document(hit) for hit in hits]


class KeywordRetriever(_StoreRetriever):
    """BM25 over the collection's chunks: exact terms (names, codes) embeddings can miss."""

    index: BM25Index

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        reader: str | None = None,
    ) -> list[Document]:
        found, owner = await self._owner(reader)
        if not found:
            return []
        hits = await self.index.search(self.store, self.collection, query, self.k, owner)
        return [_document(hit) for hit in hits]


def build_retriever(retrieval: Retrieval, k: int = 4) -> Runnable[str, list[Document]]:
    """The retriever a request configures: `retriever` (vector or bm25), `collection`, `k`,
    and for vectors `search_type` (similarity or mmr)."""
    collection = ConfigurableField(
        id=COLLECTION_KEY,
        name="Collection",
        description="The document collection to search (see GET /collections).",
        annotation=CollectionName,
    )
    top_k = ConfigurableField(
        id=K_KEY, name="k", description="How many chunks to retrieve (1 to 20).", annotation=TopK
    )
    vector = VectorRetriever(
        store=retrieval.store,
        embeddings=retrieval.embeddings,
        embedder=retrieval.embedder,
        legacy_embedder=retrieval.legacy_embedder,
        k=k,
    ).configurable_fields(
        collection=collection,
        k=top_k,
        search_type=ConfigurableField(
            id=SEARCH_TYPE_KEY,
            name="Search type",
            description="Vector search: `similarity` (nearest) or `mmr` (relevant and varied).",
            annotation=SearchType,
        ),
    )
    keyword = KeywordRetriever(store=retrieval.store, index=BM25Index(), k=k).configurable_fields(
        collection=collection, k=top_k
    )
    return vector.configurable_alternatives(
        ConfigurableField(
            id=RETRIEVER_KEY,
            name="Retriever",
            description="`vector` (embeddings) or `bm25` (keywords).",
        ),
        default_key="vector",
        bm25=keyword,
    )
