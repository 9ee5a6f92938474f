"""The LangServe mount: its client, endpoints and playground, under our input and config rules."""

import re

import httpx
import pytest
from langserve import RemoteRunnable

from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer
from tests.support.sse import parse_all

pytestmark = pytest.mark.asyncio

ROLE_STYLE = {"messages": [{"role": "user", "content": "hi"}]}
TYPE_STYLE = {"messages": [{"type": "human", "content": "hi"}]}


async def test_remote_runnable_streams_tokens_from_the_langserve_mount(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Hel", "lo", "\n", "ünï"]))
    remote = RemoteRunnable(f"{openai_server.url}/langserve/chat/")
    tokens = [token async for token in remote.astream(ROLE_STYLE)]
    assert "".join(tokens) == "Hello\nünï"
    assert [t for t in tokens if t] == ["Hel", "lo", "\n", "ünï"]


async def test_remote_runnable_invoke_and_batch(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["one"]), Script(chunks=["two"]), Script(chunks=["three"]))
    remote = RemoteRunnable(f"{openai_server.url}/langserve/explain/")
    assert await remote.ainvoke({"topic": "a"}) == "one"
    assert sorted(await remote.abatch([{"topic": "b"}, {"topic": "c"}])) == ["three", "two"]


@pytest.mark.parametrize("messages", [ROLE_STYLE, TYPE_STYLE], ids=["role", "type"])
@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("invoke", lambda m: {"input": m}),
        ("batch", lambda m: {"inputs": [m, m]}),
        ("stream", lambda m: {"input": m}),
        ("stream_log", lambda m: {"input": m}),
        ("stream_events", lambda m: {"input": m}),
    ],
)
async def test_both_message_styles_succeed_on_every_langserve_endpoint(
    offline_server: LiveServer, endpoint: str, body: object, messages: dict[str, object]
) -> None:
    """Stock LangServe 0.3.3 answers role-style dicts with a 500; our mount must not."""
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.post(f"/langserve/chat/{endpoint}", json=body(messages))  # type: ignore[operator]
    assert response.status_code == 200, response.text
    if endpoint.startswith("stream"):
        events = parse_all(response.content)
        assert events, "no events"
        assert not [e for e in events if e.event == "error"]
        # LangServe's `end` event has no data line, so spec parsers never dispatch it.
        assert response.content.rstrip().endswith(b"event: end")


@pytest.mark.parametrize(
    "message", [{"role": "wizard", "content": "x"}, {"content": "x"}, {"role": "user"}, "bare"]
)
@pytest.mark.parametrize("endpoint", ["invoke", "stream", "batch"])
async def test_malformed_message_on_langserve_is_422(
    offline_server: LiveServer, endpoint: str, message: object
) -> None:
    chat_input = {"messages": [message]}
    body = {"inputs": [chat_input]} if endpoint == "batch" else {"input": chat_input}
    async with httpx.AsyncClient(base_url=offline_server.url) as client:
        response = await client.post(f"/langserve/chat/{endpoint}", json=body)
    assert response.status_code == 422


@pytest.mark.parametrize("endpoint", ["invoke", "stream", "batch"])
async def test_langserve_refuses_config_outside_the_allow_list(
    openai_server: LiveServer, upstream: MockUpstream, endpoint: str
) -> None:
    config = {"configurable": {"openai_api_base": "http://attacker.invalid"}}
    body: dict[str, object] = (
        {"inputs": [{"topic": "x"}], "config": [config]}
        if endpoint == "batch"
        else {"input": {"topic": "x"}, "config": config}
    )
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.post(f"/langserve/explain/{endpoint}", json=body)
    assert response.status_code == 400
    assert "openai_api_base" in response.json()["error"]["message"]
    assert upstream.requests == []


async def test_langserve_applies_allowed_config(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    remote = RemoteRunnable(f"{openai_server.url}/langserve/explain/")
    config = {"configurable": {"model": "gpt-4o", "temperature": 0.3, "prompt": "expert"}}
    await remote.ainvoke({"topic": "x"}, config=config)  # type: ignore[arg-type]
    sent = upstream.last_request.json
    assert sent is not None
    assert (sent["model"], sent["temperature"]) == ("gpt-4o", 0.3)
    assert "domain expert" in sent["messages"][0]["content"]


async def test_langserve_schemas_list_the_allow_listed_config(offline_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url) as client:
        config = (await client.get("/langserve/chat/config_schema")).json()
        input_schema = (await client.get("/langserve/chat/input_schema")).json()
        output_schema = (await client.get("/langserve/chat/output_schema")).json()
    knobs = config["$defs"]["Configurable"]["properties"]
    assert set(knobs) == {"max_tokens", "model", "prompt", "temperature", "thread_id"}
    assert knobs["prompt"]["enum"] == ["concise", "teacher", "default"] or set(
        knobs["prompt"]["enum"]
    ) == {"concise", "teacher", "default"}
    assert "messages" in input_schema["properties"]
    assert output_schema["type"] == "string"


@pytest.mark.parametrize("chain", ["chat", "explain"])
async def test_playground_page_and_its_assets_load(offline_server: LiveServer, chain: str) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url, follow_redirects=True) as client:
        page = await client.get(f"/langserve/{chain}/playground/")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)
        assert assets, "the playground page references no scripts"
        for asset in assets:
            response = await client.get(
                asset if asset.startswith("/") else f"/langserve/{chain}/playground/{asset}"
            )
            assert response.status_code == 200, asset


async def test_playground_can_be_switched_off(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(langserve_playground=False))
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/langserve/chat/playground/")).status_code == 404
        assert (
            await client.post("/langserve/chat/invoke", json={"input": ROLE_STYLE})
        ).status_code == 200


async def test_config_in_the_playground_url_hash_obeys_the_allow_list(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    from langserve.lzstring import LZString

    bad = LZString.compressToEncodedURIComponent(
        '{"configurable": {"base_url": "http://x.invalid"}}'
    )
    good = LZString.compressToEncodedURIComponent('{"configurable": {"prompt": "eli5"}}')
    async with httpx.AsyncClient(base_url=openai_server.url, timeout=10) as client:
        refused = await client.post(
            f"/langserve/explain/c/{bad}/invoke", json={"input": {"topic": "x"}}
        )
        accepted = await client.post(
            f"/langserve/explain/c/{good}/invoke", json={"input": {"topic": "x"}}
        )
    assert refused.status_code == 400
    assert accepted.status_code == 200
    sent = upstream.last_request.json
    assert sent is not None
    assert "five-year-old" in sent["messages"][0]["content"]


@pytest.mark.parametrize("endpoint", ["invoke", "batch", "stream", "stream_log", "stream_events"])
async def test_malformed_json_on_langserve_is_422_not_500(
    offline_server: LiveServer, endpoint: str
) -> None:
    """LangServe's own answer is an error list holding a bare string, which crashed the handler."""
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.post(
            f"/langserve/chat/{endpoint}",
            content=b'{"input": ',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["type"] == "json_invalid"


@pytest.mark.parametrize("config_hash", ["0", "A", "~~~"])
@pytest.mark.parametrize("endpoint", ["invoke", "input_schema"])
async def test_an_undecodable_config_hash_is_400_not_500(
    offline_server: LiveServer, config_hash: str, endpoint: str
) -> None:
    """LangServe's decoder raises whatever it trips over (UnboundLocalError on "0")."""
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        path = f"/langserve/explain/c/{config_hash}/{endpoint}"
        if endpoint == "invoke":
            response = await client.post(path, json={"input": {"topic": "x"}})
        else:
            response = await client.get(path)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid config hash"


@pytest.mark.parametrize(
    ("endpoint", "body", "loc"),
    [
        ("invoke", {"input": {"topic": "x"}, "config": None}, ["body", "config"]),
        ("stream", {"input": {"topic": "x"}, "config": None}, ["body", "config"]),
        ("stream_events", {"input": {"topic": "x"}, "config": None}, ["body", "config"]),
        ("batch", {"inputs": True}, ["body", "inputs"]),
        ("batch", {"inputs": 1.5}, ["body", "inputs"]),
        ("batch", {"inputs": None}, ["body", "inputs"]),
    ],
)
async def test_a_null_config_or_batch_inputs_not_a_list_is_422_not_500(
    offline_server: LiveServer, endpoint: str, body: object, loc: list[str]
) -> None:
    """LangServe 0.3.3 takes both on trust, then fails with a TypeError."""
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.post(f"/langserve/explain/{endpoint}", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == loc
