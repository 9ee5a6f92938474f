"""Per-request config: the enumerated knobs work; anything else is refused before the upstream."""

import httpx
import pytest

from tests.support.mock_upstream import MockUpstream
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

TOPIC = {"topic": "caching"}


async def _invoke(server: LiveServer, config: object, chain: str = "explain") -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post(f"/chains/{chain}/invoke", json={"input": TOPIC, "config": config})


@pytest.mark.parametrize(
    "config",
    [
        {"configurable": {"api_key": "sk-attacker"}},
        {"configurable": {"openai_api_key": "sk-attacker"}},
        {"configurable": {"base_url": "http://attacker.invalid"}},
        {"configurable": {"openai_api_base": "http://attacker.invalid"}},
        {"configurable": {"model_kwargs": {"user": "x"}}},
        {"callbacks": []},
        {"recursion_limit": 1},
    ],
)
async def test_config_outside_the_allow_list_is_400_and_never_reaches_upstream(
    openai_server: LiveServer, upstream: MockUpstream, config: object
) -> None:
    response = await _invoke(openai_server, config)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "cannot be set per request" in message
    assert "model, prompt, temperature" in message
    assert upstream.requests == []


@pytest.mark.parametrize(
    "configurable",
    [{"temperature": "hot"}, {"temperature": 5}, {"model": "gpt-9-ultra"}, {"prompt": "nope"}],
)
async def test_wrong_config_values_are_422(
    openai_server: LiveServer, upstream: MockUpstream, configurable: dict[str, object]
) -> None:
    response = await _invoke(openai_server, {"configurable": configurable})
    assert response.status_code == 422
    key = next(iter(configurable))
    error = response.json()["error"]
    assert error["details"][0]["loc"] == ["body", "config", "configurable", key]
    # The path is named once: "body.config.configurable.k: <problem>", as the page shows it.
    assert error["message"].startswith(f"body.config.configurable.{key}: ")
    assert error["message"].count("configurable") == 1
    assert upstream.requests == []


async def test_model_temperature_and_prompt_are_switchable_per_request(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    response = await _invoke(
        openai_server,
        {"configurable": {"model": "gpt-4o", "temperature": 0.1, "prompt": "eli5"}, "tags": ["t"]},
    )
    assert response.status_code == 200
    assert response.json()["metadata"]["model"]["name"] == "gpt-4o"
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["model"] == "gpt-4o"
    assert sent["temperature"] == 0.1
    assert "five-year-old" in sent["messages"][0]["content"]


async def test_defaults_apply_when_no_config_is_given(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    response = await _invoke(openai_server, None)
    assert response.status_code == 200
    sent = upstream.last_request.json
    assert sent is not None
    assert (sent["model"], sent["temperature"]) == ("gpt-4o-mini", 0.7)
    assert "software developers" in sent["messages"][0]["content"]


async def test_list_chains_shows_schemas_and_configurable_keys(openai_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        chains = (await client.get("/chains")).json()["chains"]
    by_name = {c["name"]: c for c in chains}
    assert set(by_name) == set(openai_server.app.state.chains)
    assert by_name["explain"]["input_schema"]["required"] == ["topic"]
    rag = {k["id"]: k for k in by_name["rag"]["configurable"]}
    assert {"collection", "k", "retriever", "search_type", "model"} <= set(rag)
    assert set(rag["retriever"]["options"]) == {"vector", "bm25"}
    assert "messages" in by_name["chat"]["input_schema"]["properties"]
    knobs = {k["id"]: k for k in by_name["chat"]["configurable"]}
    assert set(knobs) == {"max_tokens", "model", "prompt", "temperature", "thread_id"}
    assert knobs["max_tokens"]["default"] == 4096
    assert knobs["max_tokens"]["schema"]["maximum"] == 4096
    assert knobs["model"]["options"] == ["gpt-4o-mini", "gpt-4o"]
    assert knobs["model"]["default"] == "gpt-4o-mini"
    assert set(knobs["prompt"]["options"]) == {"default", "concise", "teacher"}
    assert knobs["temperature"]["default"] == 0.7
