"""Upstream timeouts for the first token and between tokens; retries only before the first one."""

import pytest

from chainserve.api.settings import Settings
from tests.api.streaming import chat_input, stream
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio


def _settings(upstream: MockUpstream, **overrides: object) -> Settings:
    return upstream_settings(upstream, **{"upstream_timeout": 10.0, **overrides})


async def test_a_provider_silent_past_the_first_token_timeout_is_a_504(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(_settings(upstream, upstream_first_token_timeout=0.5))
    upstream.enqueue(Script(chunks=["late"], first_delay=3))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 504
    assert result.json()["error"]["code"] == "upstream_timeout"
    await upstream.wait_for_disconnect_async(0)  # we gave up on it; it did not finish
    assert upstream.requests[0].chunks_sent == 0


async def test_a_provider_silent_between_tokens_ends_the_stream_with_an_error_event(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(
        _settings(upstream, upstream_first_token_timeout=5.0, upstream_token_timeout=0.5)
    )
    upstream.enqueue(Script(chunks=["one", " two"], delay=0.2, hold_after=1))
    result = await stream(server.url, "chat", chat_input())
    upstream.release()
    assert result.status == 200
    assert [e.event for e in result.events] == ["metadata", "data", "error"]
    assert result.events[-1].json()["code"] == "upstream_timeout"
    assert result.events[-1].json()["retryable"] is True


async def test_a_stream_that_stalls_before_its_first_token_is_retried(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(
        _settings(upstream, upstream_first_token_timeout=0.5, upstream_max_retries=1)
    )
    # The head and the role-only opening chunk arrive at once, then the first token never does.
    upstream.enqueue(Script(chunks=["late"], hold_after=0), Script(chunks=["on", " time"]))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 200
    assert result.text == "on time"
    assert len(upstream.requests) == 2
    assert upstream.requests[0].disconnected_at is not None


async def test_after_the_first_token_a_failure_is_never_retried(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """A retry would send the caller the start of the answer twice."""
    server = start_server(_settings(upstream, upstream_max_retries=2))
    upstream.enqueue(Script(chunks=["one", " two"], drop_after=1), Script(chunks=["again"]))
    result = await stream(server.url, "chat", chat_input())
    assert result.status == 200
    assert [e.event for e in result.events] == ["metadata", "data", "error"]
    assert result.events[-1].json()["code"] == "upstream_error"
    assert len(upstream.requests) == 1


async def test_the_model_gets_the_configured_timeouts() -> None:
    settings = offline_settings(
        openai_base_url="http://127.0.0.1:9/v1",
        upstream_connect_timeout=3.0,
        upstream_first_token_timeout=40.0,
        upstream_token_timeout=20.0,
    )
    config = settings.model_settings()
    assert (config.connect_timeout, config.first_token_timeout, config.token_timeout) == (
        3.0,
        40.0,
        20.0,
    )
