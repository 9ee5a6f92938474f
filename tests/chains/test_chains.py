"""The shipped chains at the LangChain level, with a scripted fake model."""

from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tracers.context import collect_runs
from pydantic import Field

from chainserve.chains import ModelConfig, build_registry
from chainserve.chains.chat import compose_chat
from chainserve.chains.explain import compose_explain
from chainserve.chains.registry import discover_specs


class RecordingFake(GenericFakeChatModel):
    """A fake chat model that also remembers the prompts it was sent."""

    seen: list[list[BaseMessage]] = Field(default_factory=list)

    async def _astream(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(messages)
        async for chunk in super()._astream(messages, *args, **kwargs):
            yield chunk

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(messages)
        return super()._generate(messages, *args, **kwargs)


def _fake(text: str) -> RecordingFake:
    return RecordingFake(messages=iter([AIMessage(text)]), seen=[])


@pytest.mark.asyncio
async def test_chat_streams_string_chunks_from_the_model() -> None:
    model = _fake("Hello there friend")
    chain = compose_chat(model)
    chunks = [c async for c in chain.astream({"messages": [{"role": "user", "content": "hi"}]})]
    assert "".join(chunks) == "Hello there friend"
    assert len(chunks) > 1
    system, human = model.seen[0]
    assert system.type == "system"
    assert human.content == "hi"


@pytest.mark.asyncio
async def test_chat_prompt_variant_is_chosen_per_call() -> None:
    model = _fake("ok")
    chain = compose_chat(model).with_config(configurable={"prompt": "concise"})
    await chain.ainvoke({"messages": [{"type": "human", "content": "hi"}]})
    assert "at most two sentences" in str(model.seen[0][0].content)


@pytest.mark.asyncio
async def test_chat_keeps_braces_in_messages_literal() -> None:
    model = _fake("ok")
    await compose_chat(model).ainvoke({"messages": [{"role": "user", "content": "{topic} {{x}}"}]})
    assert model.seen[0][1].content == "{topic} {{x}}"


@pytest.mark.asyncio
async def test_explain_fills_the_topic() -> None:
    model = _fake("An explanation")
    assert await compose_explain(model).ainvoke({"topic": "backpressure"}) == "An explanation"
    assert model.seen[0][-1].content == "Explain backpressure."


def test_registry_discovers_every_chain_module() -> None:
    names = [spec.name for spec in discover_specs()]
    assert names == sorted(names)
    assert {"chat", "explain"} <= set(names)


def test_every_chain_exposes_only_the_enumerated_configurable_keys() -> None:
    """The model's three knobs on every shipped chain, a prompt choice where a chain has
    variants, a thread where it keeps memory, the caller's tools where the chain is the model
    itself: nothing else is settable per request."""
    for chain in build_registry(ModelConfig()).values():
        memory = {"thread_id"} if chain.spec.memory else set()
        assert {"max_tokens", "model", "temperature", *memory} <= set(chain.configurable)
        allowed = {"max_tokens", "model", "prompt", "temperature", "client_tools", *memory}
        assert set(chain.configurable) <= allowed


def test_offline_model_is_used_without_key_or_base_url() -> None:
    assert ModelConfig().provider == "offline"
    assert ModelConfig(api_key="k").provider == "openai"
    assert ModelConfig(base_url="http://127.0.0.1:1/v1").provider == "openai"
    assert ModelConfig(api_key="k", allowed_models=("a", "k")).model_choices == (
        "gpt-4o-mini",
        "a",
        "k",
    )


def _tree(run: Any) -> list[tuple[str, str]]:
    """(run type, name) of a run and every descendant, depth first."""
    return [(run.run_type, run.name)] + [pair for child in run.child_runs for pair in _tree(child)]


@pytest.mark.asyncio
async def test_a_tracer_sees_the_prompt_and_the_model_as_child_runs() -> None:
    """With a tracer attached, the shortcuts that skip unobserved work are off: the prompt's and
    the model's runs are there, inside the chain's, with the model's tokens."""
    chain = compose_chat(_fake("traced reply"))
    with collect_runs() as runs:
        text = "".join(
            [c async for c in chain.astream({"messages": [{"role": "user", "content": "hi"}]})]
        )
    assert text == "traced reply"
    (root,) = runs.traced_runs
    tree = _tree(root)
    assert ("prompt", "ChatPromptTemplate") in tree
    assert ("llm", "RecordingFake") in tree
    (llm,) = [r for r in _walk(root) if r.run_type == "llm"]
    assert any(event["name"] == "new_token" for event in llm.events)


def _walk(run: Any) -> list[Any]:
    return [run] + [r for child in run.child_runs for r in _walk(child)]


@pytest.mark.asyncio
async def test_a_prompt_missing_a_variable_fails_the_same_without_a_tracer() -> None:
    chain = compose_explain(_fake("unused"))
    with pytest.raises(KeyError, match="topic"):
        async for _ in chain.astream({}):
            pass
