"""chainserve behind LiteLLM's proxy: a real third-party OpenAI-compatible server's streams,
refusals and rate limits reach each client as they should (not only our own mock's)."""

from collections.abc import Iterator

import openai
import pytest

from chainserve.api.settings import Settings
from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory, offline_settings
from tests.support.litellm_proxy import ANSWER, MASTER_KEY, LiteLLMProxy
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def litellm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiteLLMProxy]:
    with LiteLLMProxy(tmp_path_factory.mktemp("litellm")) as proxy:
        yield proxy


def _behind(proxy: LiteLLMProxy, model: str) -> Settings:
    return offline_settings(
        openai_api_key=MASTER_KEY,
        openai_base_url=proxy.base_url,
        model=model,
        upstream_max_retries=0,
        upstream_timeout=30.0,
    )


def _sdk(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


async def test_litellms_stream_reaches_every_client_whole(
    start_server: ServerFactory, litellm: LiteLLMProxy
) -> None:
    server = start_server(_behind(litellm, "answers"))
    native = await stream(server.url, "chat", chat_input())
    assert native.status == 200
    assert native.text == ANSWER
    assert native.of("end")[0].json()["finish_reason"] == "stop"

    messages = [{"role": "user", "content": "hi"}]
    chunks = list(
        _sdk(server).chat.completions.create(model="chat", messages=messages, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER

    with _sdk(server).responses.stream(model="chat", input="hi") as events:
        final = events.get_final_response()
    assert final.output_text == ANSWER


async def test_litellms_refusal_keeps_its_status_and_reason(
    start_server: ServerFactory, litellm: LiteLLMProxy
) -> None:
    for model, reason in [
        ("context-too-long", "ContextWindowExceededError"),
        ("no-such-model", "Invalid model name passed in model=no-such-model"),
    ]:
        server = start_server(_behind(litellm, model))
        native = await stream(server.url, "chat", chat_input())
        assert native.status == 400, native.events
        error = native.json()["error"]
        assert error["code"] == "upstream_bad_request"
        assert error["upstream_status"] == 400
        assert reason in error["message"]
        assert MASTER_KEY not in native.body.decode()

        messages = [{"role": "user", "content": "hi"}]
        with _sdk(server) as client, pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="chat", messages=messages, stream=True)
        assert reason in str(raised.value)


async def test_litellms_rate_limit_is_a_429_even_after_rags_sources(
    start_server: ServerFactory, litellm: LiteLLMProxy
) -> None:
    server = start_server(_behind(litellm, "rate-limited"))
    result = await stream(server.url, "rag", {"input": {"question": "what is SSE?"}})
    assert result.status == 429, result.events
    assert result.json()["error"]["code"] == "upstream_rate_limited"
    messages = [{"role": "user", "content": "hi"}]
    with _sdk(server) as client, pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat", messages=messages, stream=True)
