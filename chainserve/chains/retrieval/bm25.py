"""BM25 keyword search over a collection's chunks, rebuilt when the collection changes.

Okapi BM25 (k1 = 1.5, b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)), which is never
negative) in pure Python: a few thousand chunks index in well under a second. Tokens are
lowercased runs of Unicode word characters after NFKC normalisation (so a decomposed "é" still
matches a composed one); scripts written without spaces (Chinese, Japanese) are not segmented,
so there a token is a whole run of characters.
"""

import asyncio
import heapq
import math
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass

from chainserve.chains.retrieval.types import Chunk, ChunkStore, CollectionInfo, Hit

K1 = 1.5
B = 0.75
_WORD = re.compile(r"\w+")

Fingerprint = tuple[float | None, int, int]


def tokenize(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def fingerprint(info: CollectionInfo) -> Fingerprint:
    """What changes whenever a collection's chunks do: the stores move `updated_at` forward on
    every write; the counts guard stores whose clock is coarser."""
    return (info.updated_at, info.documents, info.chunks)


@dataclass(frozen=True)
class _Index:
    version: Fingerprint
    chunks: list[Chunk]
    postings: dict[str, list[tuple[int, int]]]
    """term -> (chunk position, term frequency) for each chunk containing it."""
    norms: list[float]
    """K1 * (1 - B + B * length / average length), per chunk."""

    @classmethod
    def build(cls, version: Fingerprint, chunks: list[Chunk]) -> "_Index":
        postings: defaultdict[str, list[tuple[int, int]]] = defaultdict(list)
        lengths: list[int] = []
        for position, chunk in enumerate(chunks):
            counts = Counter(tokenize(chunk.text))
            lengths.append(sum(counts.values()))
            for term, frequency in counts.items():
                postings[term].append((position, frequency))
        average = (sum(lengths) / len(lengths)) if lengths else 0.0
        norms = [K1 * (1 - B + B * (n / average if average else 0.0)) for n in lengths]
        return cls(version, chunks, postings, norms)

    def search(self, query: str, k: int) -> list[Hit]:
        total = len(self.chunks)
        scores: dict[int, float] = {}
        for term in dict.fromkeys(tokenize(query)):  # each distinct query term once, in order
            matches = self.postings.get(term, [])
            idf = math.log(1 + (total - len(matches) + 0.5) / (len(matches) + 0.5))
            for position, frequency in matches:
                gain = idf * frequency * (K1 + 1) / (frequency + self.norms[position])
                scores[position] = scores.get(position, 0.0) + gain
        # Highest score first; ties keep the store's order (document, then chunk).
        best = heapq.nlargest(k, scores.items(), key=lambda item: (item[1], -item[0]))
        return [Hit(self.chunks[position], score) for position, score in best if score > 0]


class BM25Index:
    """Keyword search over any `ChunkStore`, one cached index per collection.

    Before each search it asks the store for the collection's summary (one cheap query) and
    rebuilds when the fingerprint moved. Two concurrent searches after a write may both
    rebuild; the result is the same, so no lock (which would bind to one event loop).
    """

    def __init__(self) -> None:
        self._indexes: dict[tuple[str | None, str], _Index] = {}

    async def search(
        self, store: ChunkStore, collection: str, query: str, k: int, owner: str | None = None
    ) -> list[Hit]:
        """The `k` best-scoring chunks for `query` in `owner`'s collection; empty for an
        unknown collection or a query sharing no word with it."""
        key = (owner, collection)
        info = await store.collection(collection, owner=owner)
        if info is None:
            self._indexes.pop(key, None)
            return []
        version = fingerprint(info)
        index = self._indexes.get(key)
        if index is None or index.version != version:
            chunks = await store.chunks(collection, owner=owner)
            # Pure-Python CPU work that grows with the collection: keep it off the event loop.
            index = await asyncio.to_thread(_Index.build, version, chunks)
            self._indexes[key] = index
        return index.search(query, k) if k > 0 else []
