"""API keys guard every route but /health, on every route family; stream tokens open one chain."""

import httpx
import openai
import pytest

from tests.conftest import ServerFactory, offline_settings
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

KEY, OTHER_KEY = "sk-chainserve-first-0123456789", "sk-chainserve-second-9876543210"
CHAT = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
OPENAI_CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}

# (method, path, json body) for one route of each family
GUARDED = [
    ("GET", "/chains", None),
    ("POST", "/chains/chat/stream", CHAT),
    ("POST", "/chains/chat/invoke", CHAT),
    ("GET", "/chains/explain/stream?topic=x", None),
    ("GET", "/runs/some-run", None),
    ("GET", "/threads/some-thread", None),
    ("POST", "/langserve/chat/invoke", {"input": {"messages": []}}),
    ("GET", "/langserve/chat/playground/", None),
    ("POST", "/v1/chat/completions", OPENAI_CHAT),
    ("GET", "/v1/models", None),
    ("POST", "/auth/stream-token", {"chain": "chat"}),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
]


@pytest.fixture
def keyed_server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(api_keys=f"{KEY}, {OTHER_KEY}"))


async def _call(
    server: LiveServer, method: str, path: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
async def test_every_route_family_refuses_a_request_without_a_key(
    keyed_server: LiveServer, method: str, path: str, body: object
) -> None:
    response = await _call(keyed_server, method, path, body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="chainserve"'
    error = response.json()["error"]
    assert error["code"] == "missing_api_key"
    assert "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize(("method", "path", "body"), GUARDED)
async def test_a_wrong_key_is_refused_and_never_echoed(
    keyed_server: LiveServer, method: str, path: str, body: object
) -> None:
    wrong = KEY[:-1] + "X"
    response = await _call(keyed_server, method, path, body, {"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert wrong not in response.text
    assert KEY not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"authorization": f"bearer {OTHER_KEY}"},
        {"X-API-Key": KEY},
    ],
    ids=["bearer", "second-key-lowercase-scheme", "x-api-key"],
)
async def test_any_configured_key_opens_the_routes(
    keyed_server: LiveServer, headers: dict[str, str]
) -> None:
    assert (await _call(keyed_server, "GET", "/chains", None, headers)).status_code == 200
    response = await _call(keyed_server, "POST", "/chains/chat/invoke", CHAT, headers)
    assert response.status_code == 200
    assert response.json()["output"]


async def test_health_stays_open_for_probes(keyed_server: LiveServer) -> None:
    assert (await _call(keyed_server, "GET", "/health", None)).status_code == 200


async def test_the_official_openai_sdk_authenticates_with_its_api_key(
    keyed_server: LiveServer,
) -> None:
    good = openai.AsyncOpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEY, max_retries=0)
    bad = openai.AsyncOpenAI(base_url=f"{keyed_server.url}/v1", api_key="sk-nope", max_retries=0)
    async with good, bad:
        reply = await good.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content
        with pytest.raises(openai.AuthenticationError) as caught:
            await bad.models.list()
    assert caught.value.status_code == 401


async def _stream_token(server: LiveServer, chain: str) -> str:
    response = await _call(
        server, "POST", "/auth/stream-token", {"chain": chain}, {"X-API-Key": KEY}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["stream_url"] == f"/chains/{chain}/stream?token={body['token']}"
    token: str = body["token"]
    return token


async def test_a_stream_token_opens_its_chains_get_stream_without_a_header(
    keyed_server: LiveServer,
) -> None:
    token = await _stream_token(keyed_server, "explain")
    async with httpx.AsyncClient(base_url=keyed_server.url, timeout=10) as client:
        response = await client.get(
            "/chains/explain/stream", params={"topic": "tokens", "token": token}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: end" in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/chains/chat/stream?message=hi"),  # another chain
        ("POST", "/chains/explain/stream"),  # not the GET stream route
        ("POST", "/chains/explain/invoke"),
        ("GET", "/chains"),
    ],
)
async def test_a_stream_token_opens_nothing_else(
    keyed_server: LiveServer, method: str, path: str
) -> None:
    token = await _stream_token(keyed_server, "explain")
    sep = "&" if "?" in path else "?"
    body = {"input": {"topic": "x"}} if method == "POST" else None
    response = await _call(keyed_server, method, f"{path}{sep}token={token}", body)
    assert response.status_code == 401


async def test_a_tampered_stream_token_is_refused(keyed_server: LiveServer) -> None:
    token = await _stream_token(keyed_server, "explain")
    payload, _, signature = token.partition(".")
    forged = payload.replace(payload[-2:], "AA") + "." + signature
    response = await _call(
        keyed_server, "GET", f"/chains/explain/stream?topic=x&token={forged}", None
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_stream_token"


async def test_a_stream_token_for_an_unknown_chain_is_a_404(keyed_server: LiveServer) -> None:
    response = await _call(
        keyed_server, "POST", "/auth/stream-token", {"chain": "nope"}, {"X-API-Key": KEY}
    )
    assert response.status_code == 404


async def test_cors_answers_preflight_for_listed_origins_only_and_never_with_credentials(
    start_server: ServerFactory,
) -> None:
    server = start_server(
        offline_settings(api_keys=KEY, cors_origins="https://app.example, http://localhost:5173")
    )
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        allowed = await client.options(
            "/chains/chat/stream", headers={"Origin": "https://app.example", **preflight}
        )
        refused = await client.options(
            "/chains/chat/stream", headers={"Origin": "https://evil.example", **preflight}
        )
        actual = await client.get(
            "/chains", headers={"Origin": "https://app.example", "X-API-Key": KEY}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    assert "access-control-allow-origin" not in refused.headers
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-run-id" in actual.headers["access-control-expose-headers"].lower()


async def test_no_cors_headers_unless_origins_are_configured(offline_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.get("/chains", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers
