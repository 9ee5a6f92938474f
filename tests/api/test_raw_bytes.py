"""Hypothesis sends bytes no OpenAPI schema can express to every JSON route of a live server.

Invalid UTF-8, UTF-16/32 and BOMs, NUL bytes, nesting far past any limit, integers Python
refuses to parse, NaN and infinities, duplicate keys, lone surrogate escapes, truncated JSON
and wrong content types, each planted in a valid request (in its input, its config, at its
top level) or replacing it; the same in the JSON a GET stream takes from its query string.
Whatever comes in, the answer is never a 5xx: a 2xx whose stream ends cleanly, or a 4xx with
the typed error body of the route's family. The same server answers every example, and is
still healthy and serving chains at the end.
"""

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from langserve.lzstring import LZString

from tests.conftest import ServerFactory, offline_settings
from tests.support.server import LiveServer

INPUTS: dict[str, Any] = {
    "chat": {"messages": [{"role": "user", "content": "hi"}]},
    "explain": {"topic": "bytes"},
}
CONFIG = {"configurable": {"temperature": 0.5}, "tags": ["fuzz"], "metadata": {"k": "v"}}
HASH = LZString.compressToEncodedURIComponent(json.dumps({"configurable": {"temperature": 0.5}}))
MARK = "\x01hole\x01"
"""A string planted in a valid body; its JSON text is then swapped for the raw bytes."""

HAZARDS = [
    # lone and misordered surrogate escapes, in values (keys: see `_planted`)
    b'"\\ud800"',
    b'"a\\udc00b"',
    b'"\\udbff\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00\\\\ud800"',  # a valid pair, then an escaped backslash and text
    # NUL and other control characters, escaped (valid JSON) and raw (not)
    b'"\\u0000"',
    b'"a\x00b"',
    b"\x00",
    b'"\x1f\x7f"',
    # invalid UTF-8: stray continuation, overlong, CESU-8 surrogate, truncated sequence
    b'"\xff\xfe"',
    b'"\xc0\xaf"',
    b'"\xed\xa0\x80"',
    b'"\xe2\x82"',
    # integers past Python's int parsing limit, and just inside it
    b"1" * 4300,
    b"1" * 4301,
    b"-" + b"9" * 5000,
    b"1" + b"0" * 5000,
    # floats the parser turns into inf, 0 or NaN, and the non-standard literals
    b"1e999",
    b"-1e999",
    b"1e-999",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1." + b"0" * 5000 + b"1",
    # nesting at, just past and far past the limit (64), as arrays and as objects
    b"[" * 63 + b"]" * 63,
    b"[" * 65 + b"]" * 65,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"[" * 100_000,
    # duplicate keys, and every JSON type where some other one is expected
    b'{"k": 1, "k": {"k": [1, 1]}}',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    None,
]
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
REFUSALS = {400, 404, 413, 415, 422}
"""Bad bytes are refused as such: never a 5xx, nor a status that means something else."""

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _valid_body(path: str) -> Any:
    """A request each JSON route serves, the base every hazard is planted in (LangServe's token
    feedback always answers 400 here: it needs LangSmith)."""
    chain = "explain" if "/explain/" in path else "chat"
    if path.startswith("/langserve/"):
        endpoint = path.rsplit("/", 1)[-1]
        if endpoint == "token_feedback":
            return {"token_or_url": "x", "score": 1}
        if endpoint == "batch":
            return {"inputs": [INPUTS[chain]], "config": {"tags": ["fuzz"]}}
        return {"input": INPUTS[chain], "config": {"tags": ["fuzz"]}, "kwargs": {}}
    if path == "/v1/chat/completions":
        return {"model": "chat", "stream": True, "config": CONFIG, **INPUTS["chat"]}
    if path == "/auth/stream-token":
        return {"chain": "chat"}
    if path == "/threads":
        return {"metadata": {"k": "v"}}
    if path.endswith("/ui"):
        return {"messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}
    return {"input": INPUTS[chain], "config": CONFIG}


def _json_routes(server: LiveServer) -> list[str]:
    """Every operation the schema gives a JSON body, its path parameters filled in."""
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    paths = [
        path
        for path, operations in schema["paths"].items()
        if "application/json"
        in operations.get("post", {}).get("requestBody", {}).get("content", {})
    ]
    return sorted(path.format(name="chat", config_hash=HASH) for path in paths)


def _holes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where a hazard can go: every value in the body, and a new key in every object."""
    yield path
    if isinstance(value, dict):
        yield (*path, MARK)  # a new key, named by the mark itself
        for key, item in value.items():
            yield from _holes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _holes(item, (*path, index))


def _planted(body: Any, hole: tuple[Any, ...], hazard: bytes) -> bytes:
    def put(value: Any, rest: tuple[Any, ...]) -> Any:
        if not rest:
            return MARK
        if isinstance(value, dict):
            return {**value, rest[0]: put(value.get(rest[0]), rest[1:])}
        copy = list(value)
        copy[rest[0]] = put(copy[rest[0]], rest[1:])
        return copy

    text = json.dumps(put(body, hole)).encode()
    marked = json.dumps(MARK).encode()
    if hazard.startswith(b'"'):
        # A string hazard is planted as the new key too (surrogates and NULs in names).
        text = text.replace(marked + b": " + marked, hazard + b": " + hazard)
    return text.replace(marked, hazard)


@st.composite
def raw_requests(draw: st.DrawFn, routes: list[str]) -> tuple[str, bytes, str | None]:
    """A route, a body no schema can express, and the content type it is sent as."""
    path = draw(st.sampled_from(routes))
    valid = _valid_body(path)
    text = json.dumps(valid).encode()
    body = draw(
        st.one_of(
            st.builds(
                _planted,
                st.just(valid),
                st.sampled_from(list(_holes(valid))),
                st.sampled_from(HAZARDS),
            ),
            st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"]).map(
                lambda codec: json.dumps(valid, ensure_ascii=False).encode(codec)
            ),
            st.integers(0, len(text) - 1).map(lambda end: text[:end]),
            st.binary(max_size=64),
        )
    )
    content_type = draw(st.sampled_from(CONTENT_TYPES)) if draw(st.booleans()) else CONTENT_TYPES[0]
    return path, body, content_type


def _assert_typed_error(sent: str, path: str, response: httpx.Response) -> None:
    content_type = response.headers["content-type"]
    assert content_type.startswith("application/json"), f"{sent}: {content_type}"
    error = response.json()["error"]
    if path.startswith("/v1/"):
        assert set(error) >= OPENAI_ERROR_KEYS, f"{sent}: {error}"
        assert isinstance(error["message"], str), f"{sent}: {error}"
    else:
        assert isinstance(error["code"], str), f"{sent}: {error}"
        assert isinstance(error["message"], str), f"{sent}: {error}"
        assert isinstance(error["retryable"], bool), f"{sent}: {error}"


def _assert_clean_end(sent: str, response: httpx.Response) -> None:
    """A 2xx stream ends with its protocol's last event, not cut off by a failure mid-way."""
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        return
    tail = response.text.replace("\r\n", "\n").rstrip("\n").rsplit("\n\n", 1)[-1]
    assert any(
        line in ("event: end", "event: error", "data: [DONE]") for line in tail.split("\n")
    ), f"{sent}: the stream ended with {tail!r}"


def _assert_answer(sent: str, path: str, response: httpx.Response) -> None:
    assert response.status_code < 500, f"{sent}: {response.text}"
    if response.status_code < 300:
        _assert_clean_end(sent, response)
    else:
        assert response.status_code in REFUSALS, f"{sent}: {response.status_code}"
        _assert_typed_error(sent, path, response)


def _assert_serving(server: LiveServer) -> None:
    """Healthy, and still running chains: nothing the fuzzing sent broke the server."""
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    body = {"input": INPUTS["chat"]}
    response = httpx.post(f"{server.url}/chains/chat/invoke", json=body, timeout=10)
    assert response.status_code == 200
    assert "hi" in response.json()["output"]


def test_no_raw_body_gets_a_5xx_or_an_untyped_error(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    routes = _json_routes(server)

    @settings(FUZZ, max_examples=300)
    @given(request=raw_requests(routes))
    def send(request: tuple[str, bytes, str | None]) -> None:
        path, body, content_type = request
        headers = {"content-type": content_type} if content_type else {}
        response = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=10)
        _assert_answer(f"POST {path} ({content_type}) {body[:300]!r}", path, response)

    send()
    _assert_serving(server)


QUERY_HAZARDS = [hazard for hazard in HAZARDS if len(hazard) <= 6_000] + [b"[" * 1_100]
"""Short enough for a request line (the HTTP server refuses one over 16 KiB before chainserve
sees it), and deep enough to have made `json.loads` raise RecursionError."""


@st.composite
def raw_queries(draw: st.DrawFn) -> str:
    """A GET stream URL whose `input`, `config` or input field carries a hazard."""
    chain = draw(st.sampled_from(["chat", "explain"]))
    field = "message" if chain == "chat" else "topic"
    params: dict[str, bytes] = {field: b"q"}
    where = draw(st.sampled_from(["input", "config", field]))
    hazard = draw(st.sampled_from(QUERY_HAZARDS))
    if where == field:
        params[field] = hazard
    else:
        valid = INPUTS[chain] if where == "input" else CONFIG
        hole = draw(st.sampled_from(list(_holes(valid))))
        params[where] = _planted(valid, hole, hazard)
    query = "&".join(
        f"{key}={quote_from_bytes(value, safe='[]{},:')}" for key, value in params.items()
    )
    return f"/chains/{chain}/stream?{query}"


def test_no_query_string_gets_a_5xx_or_an_untyped_error(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())

    @settings(FUZZ, max_examples=100)
    @given(url=raw_queries())
    def send(url: str) -> None:
        response = httpx.get(f"{server.url}{url}", timeout=10)
        _assert_answer(f"GET {url[:300]}", url, response)

    send()
    _assert_serving(server)
