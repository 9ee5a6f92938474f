"""Bad input never reaches the model: every mistake is a clear 4xx, never a 500."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import ServerFactory, offline_settings
from tests.support.mock_upstream import MockUpstream
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

JSON = {"content-type": "application/json"}


async def _post(server: LiveServer, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post(path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("route", ["stream", "invoke"])
@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"input": {}}, ["body", "input", "topic"]),
        ({"input": {"topic": 42}}, ["body", "input", "topic"]),
        ({"input": {"topic": ""}}, ["body", "input", "topic"]),
        ({"input": "just a string"}, ["body", "input"]),
        ({"topic": "x"}, ["body", "input"]),
        ({"input": {"topic": "x"}, "surprise": 1}, ["body", "surprise"]),
    ],
)
async def test_invalid_input_is_422_naming_the_field(
    openai_server: LiveServer, upstream: MockUpstream, route: str, payload: object, loc: list[str]
) -> None:
    response = await _post(openai_server, f"/chains/explain/{route}", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"][0]["loc"] == loc
    assert ".".join(loc) in error["message"]
    assert upstream.requests == []


@pytest.mark.parametrize(
    "message",
    [
        {"role": "wizard", "content": "hi"},
        {"content": "no role"},
        {"role": "user"},
        {"role": "user", "content": 5},
        {"type": "human", "content": {"not": "a list"}},
        {"role": "tool", "content": "result"},
        "a bare string",
        ["user", "tuple form"],
    ],
)
async def test_malformed_chat_message_is_422(
    openai_server: LiveServer, upstream: MockUpstream, message: object
) -> None:
    response = await _post(
        openai_server, "/chains/chat/stream", json={"input": {"messages": [message]}}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"][:4] == ["body", "input", "messages", 0]
    assert upstream.requests == []


async def test_empty_message_list_is_422(openai_server: LiveServer, upstream: MockUpstream) -> None:
    response = await _post(openai_server, "/chains/chat/invoke", json={"input": {"messages": []}})
    assert response.status_code == 422


async def test_role_style_and_type_style_messages_both_reach_the_model(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"type": "ai", "content": "reply"},
        {"type": "human", "content": "second"},
        {"role": "assistant", "content": "again"},
        {"role": "user", "content": [{"type": "text", "text": "parts"}]},
    ]
    response = await _post(
        openai_server, "/chains/chat/invoke", json={"input": {"messages": messages}}
    )
    assert response.status_code == 200
    sent = upstream.last_request.json
    assert sent is not None
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]


async def test_malformed_json_is_422(openai_server: LiveServer) -> None:
    response = await _post(
        openai_server, "/chains/chat/stream", content=b'{"input": ', headers=JSON
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "path", ["/chains/chat/stream", "/chains/chat/invoke", "/langserve/chat/invoke"]
)
async def test_invalid_utf8_is_400(openai_server: LiveServer, path: str) -> None:
    response = await _post(openai_server, path, content=b'{"input": "\xff\xfe"}', headers=JSON)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/chains/chat/stream", "/langserve/chat/invoke", "/langserve/chat/batch"]
)
async def test_absurdly_deep_json_is_400_not_500(openai_server: LiveServer, path: str) -> None:
    body = b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await _post(openai_server, path, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"


async def test_brackets_inside_strings_do_not_count_as_depth(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    topic = "[" * 500 + '\\"{' * 100
    response = await _post(
        openai_server, "/chains/explain/invoke", json={"input": {"topic": topic}}
    )
    assert response.status_code == 200


async def test_unknown_chain_is_404_listing_the_known_ones(openai_server: LiveServer) -> None:
    response = await _post(openai_server, "/chains/nope/stream", json={"input": {}})
    assert response.status_code == 404
    assert "chat, explain" in response.json()["error"]["message"]


async def test_bad_query_config_json_on_get_stream_is_422(openai_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.get(
            "/chains/explain/stream", params={"topic": "x", "config": "{nope"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "config"]


async def test_missing_query_field_on_get_stream_is_422(openai_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=openai_server.url) as client:
        response = await client.get("/chains/explain/stream")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["query", "topic"]


@pytest.fixture
def small_body_server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(max_body_bytes=4096))


def _chat(content: str) -> bytes:
    return json.dumps({"input": {"messages": [{"role": "user", "content": content}]}}).encode()


async def test_a_body_over_the_limit_is_413_before_it_is_read(
    small_body_server: LiveServer,
) -> None:
    response = await _post(small_body_server, "/chains/chat/stream", content=_chat("x" * 5000))
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "body_too_large"
    assert "4096 bytes" in error["message"]


async def test_a_chunked_body_is_counted_as_it_arrives(small_body_server: LiveServer) -> None:
    """No Content-Length to trust: the limit applies to the bytes actually received."""

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"input": {"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}}'

    response = await _post(small_body_server, "/chains/chat/invoke", content=pieces(), headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_a_body_under_the_limit_is_served(small_body_server: LiveServer) -> None:
    response = await _post(
        small_body_server, "/chains/chat/invoke", content=_chat("z" * 3000), headers=JSON
    )
    assert response.status_code == 200


async def test_the_openai_route_says_413_in_openai_shape(small_body_server: LiveServer) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = await _post(small_body_server, "/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_a_body_of_escaped_quotes_is_checked_in_linear_time(
    openai_server: LiveServer, upstream: MockUpstream
) -> None:
    """It used to make the depth scan quadratic on the event loop: 48 KB stalled every stream."""
    response = await _post(
        openai_server, "/chains/chat/invoke", content=b'\\"' * 300_000, headers=JSON
    )
    assert response.status_code in (400, 422)
    assert upstream.requests == []


async def test_json_in_utf16_is_refused_on_every_route_family(openai_server: LiveServer) -> None:
    """`json.loads` would decode it past the UTF-8 and depth checks (a 500 on LangServe)."""
    nested = '["\u2241",' + "[" * 5000 + "]" * 5000 + ',"\u2241"]'
    for path in ("/langserve/chat/invoke", "/chains/chat/invoke", "/v1/chat/completions"):
        response = await _post(
            openai_server, path, content=nested.encode("utf-16-le"), headers=JSON
        )
        assert response.status_code == 400, path
        assert "UTF-8" in response.text


async def test_a_body_on_a_get_route_is_held_to_the_limit_too(
    small_body_server: LiveServer,
) -> None:
    async with httpx.AsyncClient(base_url=small_body_server.url, timeout=10) as client:
        response = await client.request(
            "GET", "/langserve/explain/playground/index.html", content=b"x" * 10_000
        )
    assert response.status_code == 413


# One route of each family, with a valid body to plant a hazard in.
FAMILIES = [
    ("/chains/chat/stream", {"input": {"messages": [{"role": "user", "content": "HAZARD"}]}}),
    ("/chains/chat/invoke", {"input": {"messages": [{"role": "user", "content": "HAZARD"}]}}),
    (
        "/v1/chat/completions",
        {"model": "chat", "messages": [{"role": "user", "content": "HAZARD"}]},
    ),
    ("/langserve/chat/invoke", {"input": {"messages": [{"role": "user", "content": "HAZARD"}]}}),
    ("/langserve/chat/stream", {"input": {"messages": [{"role": "user", "content": "HAZARD"}]}}),
    ("/threads", {"metadata": {"HAZARD": "HAZARD"}}),
]


def _planted(body: object, hazard: bytes) -> bytes:
    return json.dumps(body).encode().replace(b'"HAZARD"', hazard)


@pytest.mark.parametrize(("path", "body"), FAMILIES, ids=[path for path, _ in FAMILIES])
async def test_a_lone_surrogate_escape_is_400_on_every_route_family(
    offline_server: LiveServer, path: str, body: object
) -> None:
    """It parsed into a string no response could encode: a 500, or a stream cut off mid-way."""
    response = await _post(offline_server, path, content=_planted(body, b'"\\ud800"'), headers=JSON)
    assert response.status_code == 400
    assert "surrogate" in response.json()["error"]["message"]


@pytest.mark.parametrize(("path", "body"), FAMILIES, ids=[path for path, _ in FAMILIES])
async def test_an_integer_too_long_to_parse_is_400_on_every_route_family(
    offline_server: LiveServer, path: str, body: object
) -> None:
    """It was a 400 coded `invalid_config` on the native routes, and a 500 on LangServe's."""
    hazard = b"1" + b"0" * 5000
    response = await _post(offline_server, path, content=_planted(body, hazard), headers=JSON)
    assert response.status_code == 400
    assert "integer longer than" in response.json()["error"]["message"]


async def test_surrogate_pairs_and_long_floats_are_served(offline_server: LiveServer) -> None:
    content = '"\\ud83d\\ude00 ' + "1." + "5" * 5000 + '"'
    body = {"input": {"messages": [{"role": "user", "content": "HAZARD"}]}}
    response = await _post(
        offline_server,
        "/chains/chat/invoke",
        content=_planted(body, content.encode()),
        headers=JSON,
    )
    assert response.status_code == 200
    assert "😀" in response.json()["output"]


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("input", "[" * 2000, "nested deeper than 64 levels"),
        ("config", "[" * 2000, "nested deeper than 64 levels"),
        ("input", "1" * 5000, "integer longer than"),
        ("config", '{"tags": ["\\udc00"]}', "surrogate"),
    ],
    ids=["deep-input", "deep-config", "long-integer", "lone-surrogate"],
)
async def test_json_in_a_get_stream_query_gets_the_body_checks(
    offline_server: LiveServer, param: str, value: str, message: str
) -> None:
    """`json.loads` raised RecursionError or ValueError on these: a 500."""
    async with httpx.AsyncClient(base_url=offline_server.url, timeout=10) as client:
        response = await client.get("/chains/explain/stream", params={"topic": "x", param: value})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["loc"] == ["query", param]
    assert message in error["message"]
