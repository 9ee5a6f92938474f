"""Prometheus `/metrics`: requests, streams, first tokens, tokens per key id, errors, cancels."""

import asyncio
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chainserve.api.access.api_keys import key_id
from chainserve.api.observability.metrics import MAX_MODEL_LABELS, NO_KEY, OTHER_MODEL, Metrics
from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script

pytestmark = pytest.mark.asyncio

KEY = "sk-metrics-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scrape: str, name: str, **labels: str) -> float:
    return samples(scrape).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, **kwargs: object) -> str:
    response = await client.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_requests_are_counted_by_route_template_method_and_status(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        await client.post("/chains/chat/invoke", json=chat_input("hi"))
        await client.post("/chains/chat/invoke", json=chat_input("again"))
        await client.get("/runs/no-such-run")
        await client.get("/no/such/path/at/all")
        text = await scrape(client)
    requests = "chainserve_requests_total"
    assert value(text, requests, route="/chains/{name}/invoke", method="POST", status="200") == 2
    assert value(text, requests, route="/runs/{run_id}", method="GET", status="404") == 1
    # Raw paths never become labels: every unknown path is one series.
    assert value(text, requests, route="unmatched", method="GET", status="404") == 1
    assert "no-such-run" not in text
    assert value(text, "chainserve_errors_total", code="not_found") == 2


async def test_a_stream_records_first_token_duration_and_tokens_per_chain_and_key_id(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, api_keys=KEY))
    upstream.enqueue(
        Script(
            chunks=["a", "b", "c"],
            usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        )
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=AUTH) as client:
        response = await client.post("/chains/chat/stream", json=chat_input("hi"))
        assert response.status_code == 200
        text = await scrape(client)
    kid = key_id(KEY)
    assert value(text, "chainserve_time_to_first_token_seconds_count", chain="chat") == 1
    assert value(text, "chainserve_run_duration_seconds_count", chain="chat", status="done") == 1
    tokens = {"chain": "chat", "model": "gpt-4o-mini", "key_id": kid}
    assert value(text, "chainserve_tokens_total", **tokens, direction="input") == 7
    assert value(text, "chainserve_tokens_total", **tokens, direction="output") == 3
    assert KEY not in text
    stream_route = {"route": "/chains/{name}/stream", "method": "POST", "status": "200"}
    assert value(text, "chainserve_requests_total", **stream_route) == 1


async def test_tokens_are_counted_under_the_model_a_users_chain_calls(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """A user's own `ChatOpenAI(model="gpt-4.1")` is what its tokens are counted under, not
    the server's default model."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    mine = ChatOpenAI(
        model="gpt-4.1", base_url=upstream.base_url, api_key="sk-user", stream_usage=True
    )
    chain = ChatPromptTemplate.from_template("{question}") | mine | StrOutputParser()
    server = start_server(offline_settings(example_chains=False), {"ask": chain})
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    upstream.enqueue(Script(chunks=["a", "b"], usage=usage))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chains/ask/stream", json={"input": {"question": "q"}})
        assert response.status_code == 200
        text = await scrape(client)
    labels = {"chain": "ask", "model": "gpt-4.1", "key_id": "anonymous"}
    assert value(text, "chainserve_tokens_total", **labels, direction="input") == 4
    assert value(text, "chainserve_tokens_total", **labels, direction="output") == 2


async def test_invoked_runs_count_duration_but_no_first_token(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        await client.post("/chains/chat/invoke", json=chat_input("hi"))
        text = await scrape(client)
    assert value(text, "chainserve_run_duration_seconds_count", chain="chat", status="done") == 1
    assert value(text, "chainserve_time_to_first_token_seconds_count", chain="chat") == 0
    labels = {"chain": "chat", "model": "chainserve-offline", "key_id": "anonymous"}
    assert value(text, "chainserve_tokens_total", **labels, direction="output") > 0


async def test_the_active_streams_gauge_follows_open_streams(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.enqueue(Script(chunks=["a", "b", "c"], hold_after=1))
    route = "/chains/{name}/stream"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with client.stream("POST", "/chains/chat/stream", json=chat_input("hi")) as stream:
            assert stream.status_code == 200
            await upstream.wait_for_requests_async(1)
            during = await scrape(client)
            upstream.release()
            await stream.aread()
        after = await scrape(client)
    assert value(during, "chainserve_active_streams", route=route) == 1
    assert value(after, "chainserve_active_streams", route=route) == 0


async def test_a_client_hang_up_counts_as_a_cancellation(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.enqueue(Script(chunks=["a", "b", "c"], hold_after=1))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with client.stream("POST", "/chains/chat/stream", json=chat_input("hi")) as stream:
            assert stream.status_code == 200
            await upstream.wait_for_requests_async(1)
        await upstream.wait_for_disconnect_async(0)
        for _ in range(100):  # the run records its end a loop turn or two after the hang-up
            text = await scrape(client)
            if value(text, "chainserve_cancellations_total", chain="chat"):
                break
            await asyncio.sleep(0.02)
    assert value(text, "chainserve_cancellations_total", chain="chat") == 1
    cancelled = {"chain": "chat", "status": "cancelled"}
    assert value(text, "chainserve_run_duration_seconds_count", **cancelled) == 1
    assert value(text, "chainserve_active_streams", route="/chains/{name}/stream") == 0


async def test_errors_are_counted_by_code_for_failed_runs_and_refusals(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, api_keys=KEY, requests_per_minute=5))
    upstream.enqueue(Script(status=500, error_message="boom"))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        failed = await client.post("/chains/chat/stream", json=chat_input("hi"), headers=AUTH)
        unauthorized = await client.get("/chains")
        refused = [(await client.get("/chains", headers=AUTH)).status_code for _ in range(5)]
        text = await scrape(client, headers={"X-API-Key": KEY})
    assert failed.status_code == 502
    assert unauthorized.status_code == 401
    assert 429 in refused
    assert value(text, "chainserve_errors_total", code="upstream_error") == 1
    assert value(text, "chainserve_errors_total", code="missing_api_key") == 1
    assert value(text, "chainserve_errors_total", code="rate_limited") == refused.count(429)
    # A refusal before routing still names the route it was meant for.
    listing = {"route": "/chains", "method": "GET"}
    assert value(text, "chainserve_requests_total", **listing, status="401") == 1


async def test_metrics_need_a_key_when_keys_are_set_and_can_be_switched_off(
    start_server: ServerFactory,
) -> None:
    guarded = start_server(offline_settings(api_keys=KEY))
    off = start_server(offline_settings(metrics=False))
    async with httpx.AsyncClient(timeout=10) as client:
        anonymous = await client.get(f"{guarded.url}/metrics")
        with_key = await client.get(f"{guarded.url}/metrics", headers=AUTH)
        disabled = await client.get(f"{off.url}/metrics")
    assert anonymous.status_code == 401
    assert with_key.status_code == 200
    assert disabled.status_code == 404


async def test_langserve_runs_are_measured_like_native_ones(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream, api_keys=KEY))
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    upstream.enqueue(*(Script(chunks=["a", "b"], usage=usage) for _ in range(4)))
    # LangServe's batch keeps only configurable/tags/metadata of a config, so the observer we
    # add never sees its runs: only the request is counted.
    body = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
    async with httpx.AsyncClient(base_url=server.url, timeout=10, headers=AUTH) as client:
        streamed = await client.post("/langserve/chat/stream", json=body)
        invoked = await client.post("/langserve/chat/invoke", json=body)
        batched = await client.post(
            "/langserve/chat/batch", json={"inputs": [body["input"], body["input"]]}
        )
        text = await scrape(client)
    assert (streamed.status_code, invoked.status_code, batched.status_code) == (200, 200, 200)
    kid = key_id(KEY)
    assert value(text, "chainserve_time_to_first_token_seconds_count", chain="chat") == 1
    assert value(text, "chainserve_run_duration_seconds_count", chain="chat", status="done") == 2
    tokens = {"chain": "chat", "model": "gpt-4o-mini", "key_id": kid}
    assert value(text, "chainserve_tokens_total", **tokens, direction="input") == 10
    assert value(text, "chainserve_tokens_total", **tokens, direction="output") == 4
    batch = {"route": "/langserve/chat/batch", "method": "POST", "status": "200"}
    assert value(text, "chainserve_requests_total", **batch) == 1
    assert value(text, "chainserve_active_streams", route="/langserve/chat/stream") == 0
    done = {"route": "/langserve/chat/stream", "method": "POST", "status": "200"}
    assert value(text, "chainserve_requests_total", **done) == 1


async def test_a_langserve_hang_up_counts_as_a_cancellation(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.enqueue(Script(chunks=["a", "b", "c"], hold_after=1))
    body = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        async with client.stream("POST", "/langserve/chat/stream", json=body) as stream:
            assert stream.status_code == 200
            await upstream.wait_for_requests_async(1)
        await upstream.wait_for_disconnect_async(0)
        for _ in range(250):
            # The run's cancellation is counted as it is cancelled; the stream ends a moment
            # later, once its response is done: wait for both.
            text = await scrape(client)
            cancelled = value(text, "chainserve_cancellations_total", chain="chat")
            streaming = value(text, "chainserve_active_streams", route="/langserve/chat/stream")
            if cancelled and not streaming:
                break
            await asyncio.sleep(0.02)
    assert value(text, "chainserve_cancellations_total", chain="chat") == 1
    assert value(text, "chainserve_active_streams", route="/langserve/chat/stream") == 0


async def test_a_provider_failure_on_langserve_is_a_502_counted_once(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    upstream.enqueue(Script(status=500, error_message="boom"))
    body = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        failed = await client.post("/langserve/chat/invoke", json=body)
        text = await scrape(client)
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "upstream_error"
    assert value(text, "chainserve_errors_total", code="upstream_error") == 1
    assert value(text, "chainserve_errors_total", code="internal_error") == 0
    assert value(text, "chainserve_run_duration_seconds_count", chain="chat", status="error") == 1


async def test_an_unhandled_error_is_counted_as_internal_error(
    start_server: ServerFactory,
) -> None:
    server = start_server(offline_settings())

    async def broken() -> None:
        raise RuntimeError("a bug")

    server.app.add_api_route("/broken", broken)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/broken")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        text = await scrape(client)  # a new connection: uvicorn closes one after an app error
    assert response.status_code == 500
    assert value(text, "chainserve_errors_total", code="internal_error") == 1
    broken_route = {"route": "/broken", "method": "GET", "status": "500"}
    assert value(text, "chainserve_requests_total", **broken_route) == 1


@dataclass
class FinishedRun:
    """A run as the metrics see it, calling whatever model a caller chose."""

    model_called: str
    chain: str = "ask"
    status: str = "done"
    started: float = 0.0
    ended_at: float | None = 1.0
    first_chunk_at: float | None = None
    streamed: bool = False
    error_code: str | None = None

    def usage(self) -> dict[str, int]:
        return {"input_tokens": 3, "output_tokens": 1}


async def test_model_names_a_caller_chooses_cannot_grow_the_metrics_without_bound() -> None:
    """A chain whose own `model` field is configurable takes any string; past a fixed number
    of distinct models the rest are counted as `other`, so no token is lost and no caller
    can add time series without end."""
    metrics = Metrics()
    for n in range(MAX_MODEL_LABELS + 40):
        metrics.observe_run(FinishedRun(model_called=f"model-{n}"), NO_KEY)
    metrics.observe_run(FinishedRun(model_called="model-0"), NO_KEY)
    text = metrics.exposition().decode()
    series = {
        dict(labels)["model"] for name, labels in samples(text) if name == "chainserve_tokens_total"
    }
    assert len(series) == MAX_MODEL_LABELS + 1
    assert OTHER_MODEL in series
    labels = {"chain": "ask", "key_id": NO_KEY, "direction": "output"}
    assert value(text, "chainserve_tokens_total", model="model-0", **labels) == 2
    assert value(text, "chainserve_tokens_total", model=OTHER_MODEL, **labels) == 40
    total = sum(v for (name, _), v in samples(text).items() if name == "chainserve_tokens_total")
    assert total == (MAX_MODEL_LABELS + 41) * 4
