"""`rag`: answer a question from a document collection, naming the sources it used.

question → retriever (vector or BM25, per request) → prompt with the retrieved context → model.
Before the answer streams, the chain dispatches a LangChain custom event, `sources`, with the
chunks it retrieved; chainserve's routes send it as a `sources` SSE event and put the list in
the run's `end` summary, and LangServe's `stream_events` shows it as `on_custom_event`.
"""

from operator import itemgetter
from typing import Any

from langchain_core.callbacks import adispatch_custom_event
from langchain_core.documents import Document
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnablePassthrough,
)
from pydantic import BaseModel, Field

from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.models.streaming import PromptModelText
from chainserve.chains.prompts import literal_instruction, prompt_variants
from chainserve.chains.registry import ChainSpec
from chainserve.chains.retrieval.retrievers import Retrieval, build_retriever

SOURCES_EVENT = "sources"
SNIPPET_CHARS = 240

INSTRUCTIONS = {
    "default": "Answer the question using only the numbered context below. Cite the passages "
    "you use like [1]. If the context does not contain the answer, say you don't know.",
    "brief": "Answer in one or two sentences from the numbered context only, citing like [1]. "
    "If the context does not say, answer that you don't know.",
}


class RagInput(BaseModel):
    question: str = Field(min_length=1, max_length=4000, description="What to answer.")


def _prompt(instruction: str) -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", literal_instruction(instruction) + "\n\nContext:\n{context}"),
            ("human", "{question}"),
        ]
    )


def source_of(number: int, document: Document) -> dict[str, Any]:
    """What a client is told about one retrieved chunk."""
    metadata = document.metadata
    text = " ".join(document.page_content.split())
    snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
    source: dict[str, Any] = {
        "number": number,
        "doc_id": metadata.get("doc_id"),
        "chunk_id": metadata.get("chunk_id"),
        "title": metadata.get("title"),
        "score": metadata.get("score"),
        "snippet": snippet,
    }
    if "page" in metadata:
        source["page"] = metadata["page"]
    return source


def _context(documents: list[Document]) -> str:
    if not documents:
        return "(no documents matched)"
    return "\n\n".join(
        f"[{n}] {d.metadata.get('title') or d.metadata.get('doc_id')}\n{d.page_content}"
        for n, d in enumerate(documents, 1)
    )


async def _announce_sources(inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    documents: list[Document] = inputs["documents"]
    sources = [source_of(n, d) for n, d in enumerate(documents, 1)]
    await adispatch_custom_event(SOURCES_EVENT, {"sources": sources}, config=config)
    return {"question": inputs["question"], "context": _context(documents)}


def compose_rag(
    model: Runnable[LanguageModelInput, BaseMessage], retriever: Runnable[str, list[Document]]
) -> Runnable[Any, str]:
    """The chain around any chat model and retriever; `build_rag` supplies the configured ones."""
    answer = PromptModelText(prompt=prompt_variants(_prompt, INSTRUCTIONS), model=model)
    chain: Runnable[Any, str] = (
        RunnablePassthrough.assign(documents=itemgetter("question") | retriever)
        | RunnableLambda(_announce_sources, name="sources")
        | answer
    )
    return chain.with_types(input_type=RagInput)


def build_rag(config: ModelConfig) -> Runnable[Any, str]:
    retrieval: Retrieval | None = config.retrieval
    if retrieval is None:
        raise ValueError("the rag chain needs a document store: build it with `retrieval`")
    return compose_rag(build_model(config), build_retriever(retrieval))


def rag_from_query(params: Any) -> dict[str, Any]:
    """`?question=...` for browser `EventSource`."""
    return {"question": params.get("question", "")}


CHAINS = (
    ChainSpec(
        name="rag",
        description='Answer from a document collection: send `{"question": ...}`; pick the '
        "collection, `k`, `search_type` and `retriever` (vector or bm25) in `configurable`.",
        build=build_rag,
        input_type=RagInput,
        from_query=rag_from_query,
        needs_retrieval=True,
    ),
)
