"""`build_model`'s knobs survive `bind_tools` and `with_structured_output`: a configured request
still rebuilds the model, and the rebuilt model still receives the tools."""

from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio
from pydantic import BaseModel

from chainserve.chains.agent import calculator
from chainserve.chains.models.factory import ModelConfig, build_model
from chainserve.chains.models.upstream_client import UpstreamClient
from tests.support.mock_upstream import MockUpstream, Script

KNOBS = ["max_tokens", "model", "temperature"]


class Answer(BaseModel):
    value: int


@pytest_asyncio.fixture
async def remote(upstream: MockUpstream) -> AsyncIterator[ModelConfig]:
    http, wire = openai.DefaultAsyncHttpxClient(), UpstreamClient()
    yield ModelConfig(
        api_key="sk-test",
        base_url=upstream.base_url,
        allowed_models=("gpt-4.1",),
        http_client=http,
        upstream_client=wire,
    )
    await http.aclose()
    await wire.aclose()


def test_bound_tools_and_structured_output_keep_the_knobs() -> None:
    model = build_model(ModelConfig())
    for runnable in (
        model.bind_tools([calculator]),
        model.with_structured_output(Answer),
        model.with_structured_output(Answer, include_raw=True),
    ):
        assert sorted(spec.id for spec in runnable.config_specs) == KNOBS


@pytest.mark.asyncio
async def test_a_configured_request_sends_the_tools_with_the_knobs_values(
    upstream: MockUpstream, remote: ModelConfig
) -> None:
    upstream.enqueue(Script(chunks=["4"]))
    bound = build_model(remote).bind_tools([calculator], tool_choice="auto")
    config = {"configurable": {"temperature": 0.25, "model": "gpt-4.1"}}
    async for _ in bound.astream("2 + 2", config):
        pass
    sent = upstream.requests[-1].json
    assert sent["temperature"] == 0.25
    assert sent["model"] == "gpt-4.1"
    assert [t["function"]["name"] for t in sent["tools"]] == ["calculator"]
    assert sent["tool_choice"] == "auto"


@pytest.mark.asyncio
async def test_structured_output_on_a_configured_request_asks_for_the_schema(
    upstream: MockUpstream, remote: ModelConfig
) -> None:
    upstream.enqueue(Script(chunks=['{"value"', ": 7}"]))
    structured = build_model(remote).with_structured_output(Answer)
    answer = await structured.ainvoke("seven", {"configurable": {"temperature": 0.5}})
    assert answer == Answer(value=7)
    sent = upstream.requests[-1].json
    assert sent["temperature"] == 0.5
    assert sent["response_format"]["json_schema"]["name"] == "Answer"


@pytest.mark.asyncio
async def test_the_offline_model_with_tools_obeys_a_per_request_knob() -> None:
    bound = build_model(ModelConfig(offline_delay=0)).bind_tools([calculator])
    answer = await bound.ainvoke("Say hello to everyone here", {"configurable": {"max_tokens": 3}})
    assert answer.response_metadata["finish_reason"] == "length"
    assert len(answer.text.split()) == 3
