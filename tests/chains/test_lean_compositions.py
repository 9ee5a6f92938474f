"""A user's `[steps |] prompt | ChatOpenAI | StrOutputParser()` served lean is indistinguishable
from the chain as written: the same output, the same request upstream, the same callbacks,
tracer runs, `astream_events` and `astream_log`, on the same inputs."""

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from operator import itemgetter
from typing import Any
from uuid import UUID

import openai
import pytest
import pytest_asyncio
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.output_parsers import JsonOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import (
    ConfigurableField,
    Runnable,
    RunnableConfig,
    RunnableLambda,
    RunnablePassthrough,
    RunnableSequence,
)
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.schemas import Run
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models import base as langchain_openai_base

from chainserve.chains import build_registry
from chainserve.chains.lean_compositions import LeanSequence, lean
from chainserve.chains.models.factory import ModelConfig
from chainserve.chains.models.served_openai import ServedChatOpenAI
from chainserve.chains.models.upstream_client import UpstreamClient
from chainserve.chains.user_chains import spec_for_runnable
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

QUESTION = {"question": "What is LCEL?"}


class Shelf(BaseRetriever):
    """A retriever with no network: every query finds the same two documents."""

    def _get_relevant_documents(self, query: str, **kwargs: Any) -> list[Document]:
        return [Document(page_content=f"{query} is a notation"), Document(page_content="pipes")]


def _prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [("system", "Answer briefly. {context}"), ("human", "{question}")]
    ).partial(context="")


def _model(base_url: str, **fields: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4.1-mini", api_key="sk-user", base_url=base_url, max_retries=0, **fields
    )


def plain(base_url: str) -> Runnable[Any, str]:
    return _prompt() | _model(base_url) | StrOutputParser()


def bound(base_url: str) -> Runnable[Any, str]:
    model = _model(base_url, temperature=0.3).bind(stop=["\n\n"], seed=7)
    named = model.with_config(run_name="answerer", tags=["mine"], metadata={"team": "docs"})
    return _prompt() | named | StrOutputParser()


def retrieval(base_url: str) -> Runnable[Any, str]:
    context = itemgetter("question") | Shelf() | RunnableLambda(_joined)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Use: {context}"), ("human", "{question}")]
    )
    steps = RunnablePassthrough.assign(context=context) | prompt
    return steps | _model(base_url) | StrOutputParser()


def configurable(base_url: str) -> Runnable[Any, str]:
    model = _model(base_url).configurable_fields(
        temperature=ConfigurableField(id="temperature", name="Temperature")
    )
    return (_prompt() | model | StrOutputParser()).with_config(run_name="my_chain")


def _joined(documents: list[Document]) -> str:
    return " / ".join(document.page_content for document in documents)


CHAINS: dict[str, Callable[[str], Runnable[Any, str]]] = {
    "plain": plain,
    "bound": bound,
    "retrieval": retrieval,
    "configurable": configurable,
}
CONFIGS: dict[str, RunnableConfig] = {"configurable": {"configurable": {"temperature": 0.2}}}


@pytest_asyncio.fixture
async def model_config(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelConfig]:
    # The chain as written gets langchain-openai's process-wide default client, cached per base
    # URL; each test runs on its own event loop, so here it is one per test, closed with it.
    default = openai.DefaultAsyncHttpxClient()
    monkeypatch.setattr(
        langchain_openai_base, "_get_default_async_httpx_client", lambda *args: default
    )
    http, wire = openai.DefaultAsyncHttpxClient(), UpstreamClient()
    yield ModelConfig(http_client=http, upstream_client=wire)
    for client in (default, http, wire):
        await client.aclose()


class ModelCallbacks(AsyncCallbackHandler):
    """Every model and retriever event, as a handler that ignores chain runs sees them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **kwargs: Any) -> None:
        self.events.append((event, kwargs))

    async def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self._add("chat_model_start", serialized=serialized, messages=messages, **kwargs)

    async def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self._add("llm_end", response=response, **kwargs)

    async def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self._add("llm_error", error=repr(error), **kwargs)

    async def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
        self._add("retriever_start", serialized=serialized, query=query, **kwargs)

    async def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
        self._add("retriever_end", documents=documents, **kwargs)


class TokenCallbacks(ModelCallbacks):
    async def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self._add("token", token=token, **kwargs)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_COMPLETION_ID = re.compile(r"chatcmpl-mock-\d+")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")


def normalised(value: Any) -> Any:
    """`value` as JSON with run ids numbered by first appearance, timestamps and the mock's
    completion ids blanked: what differs between two runs of the same chain on one input."""
    text = json.dumps(value, default=_jsonable, sort_keys=True)
    ids: dict[str, str] = {}
    text = _UUID.sub(lambda m: ids.setdefault(m.group(0), f"id{len(ids)}"), text)
    text = _COMPLETION_ID.sub("chatcmpl-mock", text)
    return json.loads(_TIME.sub("<time>", text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return repr(value)


async def streamed(
    chain: Runnable[Any, str], input: Any = QUESTION, config: RunnableConfig | None = None
) -> str:
    return "".join([chunk async for chunk in chain.astream(input, config)])


def both(name: str, base_url: str, config: ModelConfig) -> tuple[Runnable[Any, str], Any]:
    original = CHAINS[name](base_url)
    served = lean(original, config)
    assert served is not original
    return original, served


@pytest.mark.parametrize("name", CHAINS)
async def test_served_chain_sends_the_same_request_and_streams_the_same_text(
    name: str, upstream: MockUpstream, model_config: ModelConfig
) -> None:
    upstream.enqueue(*[Script(chunks=["LCEL", " is", " pipes."])] * 2)
    original, served = both(name, upstream.base_url, model_config)
    config = CONFIGS.get(name)
    texts = [await streamed(chain, config=config) for chain in (served, original)]
    assert texts == ["LCEL is pipes."] * 2
    sent_lean, sent_original = (request.json for request in upstream.requests[-2:])
    assert sent_lean == sent_original


@pytest.mark.parametrize("handler_type", [ModelCallbacks, TokenCallbacks])
@pytest.mark.parametrize("name", CHAINS)
async def test_model_and_retriever_callbacks_match_the_chain_as_written(
    name: str,
    handler_type: type[ModelCallbacks],
    upstream: MockUpstream,
    model_config: ModelConfig,
) -> None:
    """A handler that ignores chain runs (so the lean path serves) sees the same model and
    retriever runs: same parent (the top run id given), tags, metadata, inputs and results."""
    original, served = both(name, upstream.base_url, model_config)
    seen = []
    for chain in (original, served):
        handler = handler_type()
        run_id = UUID(int=1)
        config: RunnableConfig = {
            **CONFIGS.get(name, {}),
            "callbacks": [handler],
            "run_id": run_id,
            "tags": ["request"],
            "metadata": {"request": "r1"},
        }
        await streamed(chain, config=config)
        starts = [kwargs for event, kwargs in handler.events if event == "chat_model_start"]
        assert len(starts) == 1
        assert starts[0]["parent_run_id"] == run_id
        seen.append(normalised(handler.events))
    assert seen[0] == seen[1]


def _tree(run: Run) -> dict[str, Any]:
    return {
        "name": run.name,
        "run_type": run.run_type,
        "tags": run.tags,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "error": run.error,
        "metadata": (run.extra or {}).get("metadata"),
        "invocation_params": (run.extra or {}).get("invocation_params"),
        "serialized": run.serialized,
        "events": [event.get("name") for event in run.events],
        "children": [_tree(child) for child in run.child_runs],
    }


async def observed_both_ways(
    name: str,
    base_url: str,
    model_config: ModelConfig,
    observe: Callable[[Runnable[Any, str], RunnableConfig | None], Awaitable[Any]],
) -> list[Any]:
    """What `observe` sees of the chain as written, then of the chain served lean, normalised."""
    return [
        normalised(await observe(chain, CONFIGS.get(name)))
        for chain in both(name, base_url, model_config)
    ]


async def _tracer_tree(chain: Runnable[Any, str], config: RunnableConfig | None) -> Any:
    with collect_runs() as collected:
        await streamed(chain, config=config)
    (root,) = [run for run in collected.traced_runs if run.parent_run_id is None]
    return _tree(root)


async def _events(chain: Runnable[Any, str], config: RunnableConfig | None) -> Any:
    return [event async for event in chain.astream_events(QUESTION, config, version="v2")]


async def _log(chain: Runnable[Any, str], config: RunnableConfig | None) -> Any:
    return [patch.ops async for patch in chain.astream_log(QUESTION, config)]


@pytest.mark.parametrize("name", CHAINS)
async def test_tracer_runs_match_the_chain_as_written(
    name: str, upstream: MockUpstream, model_config: ModelConfig
) -> None:
    trees = await observed_both_ways(name, upstream.base_url, model_config, _tracer_tree)
    assert trees[0] == trees[1]
    assert trees[1]["children"], "the sequence's steps are traced"


@pytest.mark.parametrize("name", CHAINS)
async def test_astream_events_match_the_chain_as_written(
    name: str, upstream: MockUpstream, model_config: ModelConfig
) -> None:
    streams = await observed_both_ways(name, upstream.base_url, model_config, _events)
    assert streams[0] == streams[1]
    assert [event["event"] for event in streams[1]].count("on_chat_model_end") == 1


@pytest.mark.parametrize("name", CHAINS)
async def test_astream_log_matches_the_chain_as_written(
    name: str, upstream: MockUpstream, model_config: ModelConfig
) -> None:
    logs = await observed_both_ways(name, upstream.base_url, model_config, _log)
    assert logs[0] == logs[1]
    assert logs[1], "the log has patches"


async def test_a_plain_stream_skips_the_sequence_and_a_traced_one_runs_it(
    upstream: MockUpstream, model_config: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pins that the lean path is really taken (not a fallback that would match trivially), and
    that a tracer sends the stream through the sequence itself."""
    served = lean(plain(upstream.base_url), model_config)
    calls: list[str] = []
    sequence_astream = RunnableSequence.astream

    async def spy(self: RunnableSequence, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        calls.append(self.get_name())
        async for chunk in sequence_astream(self, *args, **kwargs):
            yield chunk

    monkeypatch.setattr(RunnableSequence, "astream", spy)
    assert await streamed(served, config={"callbacks": [TokenCallbacks()]}) == "Hello, world!"
    assert calls == []
    with collect_runs():
        assert await streamed(served) == "Hello, world!"
    assert calls == ["RunnableSequence"]


async def test_the_users_chat_openai_is_rebuilt_with_the_same_fields_and_identity(
    upstream: MockUpstream, model_config: ModelConfig
) -> None:
    mine = _model(upstream.base_url, temperature=0.1, model_kwargs={"user": "u1"}, tags=["t"])
    served = lean(_prompt() | mine | StrOutputParser(), model_config)
    assert isinstance(served, LeanSequence)
    rebuilt = served.sequence.steps[1]
    assert isinstance(rebuilt, ServedChatOpenAI)
    assert rebuilt.get_name() == "ChatOpenAI"
    assert rebuilt._serialized == mine._serialized
    assert rebuilt._get_invocation_params() == mine._get_invocation_params()
    assert rebuilt._get_ls_params() == mine._get_ls_params()
    assert rebuilt.root_async_client._client is model_config.http_client
    assert rebuilt.upstream_client is model_config.upstream_client


async def test_a_users_own_http_client_is_kept_and_requests_go_through_it(
    upstream: MockUpstream, model_config: ModelConfig
) -> None:
    own = openai.DefaultAsyncHttpxClient(headers={"x-mine": "yes"})
    served = lean(plain(upstream.base_url).with_types(input_type=dict), model_config)
    mine = _model(upstream.base_url, http_async_client=own)
    chain = lean(_prompt() | mine | StrOutputParser(), model_config)
    assert isinstance(chain, LeanSequence)
    rebuilt = chain.sequence.steps[1]
    assert isinstance(rebuilt, ServedChatOpenAI)
    assert rebuilt.upstream_client is None
    assert await streamed(chain) == "Hello, world!"
    assert upstream.requests[-1].headers.get("x-mine") == "yes"
    assert await streamed(served) == "Hello, world!"
    await own.aclose()


def _fake() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([]))


@pytest.mark.parametrize(
    "chain",
    [
        pytest.param(lambda: _prompt() | _fake() | JsonOutputParser(), id="json-parser"),
        pytest.param(lambda: _prompt() | RunnableLambda(str) | StrOutputParser(), id="no-model"),
        pytest.param(lambda: _prompt() | _fake(), id="no-parser"),
        pytest.param(lambda: _prompt() | _fake() | StrOutputParser() | str.upper, id="after"),
    ],
)
async def test_other_compositions_are_served_unchanged(
    chain: Callable[[], Runnable[Any, Any]],
) -> None:
    built = chain()
    assert lean(built, ModelConfig()) is built


async def test_any_chat_model_streams_lean_and_unchanged_in_output() -> None:
    """A model that is not `ChatOpenAI` is kept as it is; the sequence around it still goes."""
    messages = iter(["one two three"] * 2)
    model = GenericFakeChatModel(messages=messages)
    original = _prompt() | model | StrOutputParser()
    served = lean(original, ModelConfig())
    assert isinstance(served, LeanSequence)
    assert served.sequence.steps[1] is model
    served_chunks = [chunk async for chunk in served.astream(QUESTION)]
    original_chunks = [chunk async for chunk in original.astream(QUESTION)]
    assert served_chunks == original_chunks


@pytest.mark.parametrize(
    ("fields", "warned"),
    [
        pytest.param({}, True, id="streaming-unset"),
        pytest.param({"streaming": False}, True, id="streaming-false"),
        pytest.param({"streaming": True}, False, id="streaming-true"),
    ],
)
async def test_start_up_warns_when_a_knob_would_turn_a_users_stream_into_one_piece(
    fields: dict[str, Any],
    warned: bool,
    upstream: MockUpstream,
    model_config: ModelConfig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LangChain rebuilds a configured model with an explicit `streaming=False` unless it was
    built with `streaming=True`; the registry says so once, naming the chain."""
    model = _model(upstream.base_url, **fields).configurable_fields(
        temperature=ConfigurableField(id="temperature")
    )
    spec = spec_for_runnable("tuned", _prompt() | model | StrOutputParser())
    with caplog.at_level(logging.WARNING, logger="chainserve.chains.registry"):
        build_registry(model_config, extra=[spec], examples=False)
    messages = [record.getMessage() for record in caplog.records]
    assert any("chain 'tuned'" in m and "streaming=True" in m for m in messages) is warned


async def test_no_start_up_warning_for_a_model_without_knobs(
    upstream: MockUpstream, model_config: ModelConfig, caplog: pytest.LogCaptureFixture
) -> None:
    spec = spec_for_runnable("plain", plain(upstream.base_url))
    with caplog.at_level(logging.WARNING, logger="chainserve.chains.registry"):
        build_registry(model_config, extra=[spec], examples=False)
    assert not caplog.records
