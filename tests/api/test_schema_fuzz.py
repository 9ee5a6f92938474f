"""Schemathesis against the app's own OpenAPI schema: no 5xx, and every response as documented.

Every operation gets schemathesis's positive and negative cases, plus cases that use the real
chain names, a real thread, a finished run, a valid LangServe config hash and a valid body, so
the fuzzing reaches runs and streams and not only 404s. Requests go to a real server over
loopback and streams are read off the wire to their end, as clients read them. Bounded and
deterministic: a fixed number of derandomized examples per operation, no shrinking (the
report carries a curl command that reproduces each failure).
"""

import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from langserve.lzstring import LZString
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from tests.conftest import ServerFactory, offline_settings
from tests.support.server import LiveServer

KEY = "sk-chainserve-fuzz-0123456789"
EXAMPLES = 8
"""Generated cases per operation, the explicit ones on top: about 900 requests in all."""

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240601,
        "generation": {"deterministic": True, "database": "none"},
        # Read every stream to its end: the default stops after 20 events, which the server
        # sees as a hang-up, and a stream cut short could not show that it ends cleanly.
        "max-stream-events": 100_000,
        "request-timeout": 10,
    }
)
HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
INPUTS = {
    "chat": {"messages": [{"role": "user", "content": "fuzz"}]},
    "explain": {"topic": "fuzz"},
}


def valid_input(schema: dict[str, Any]) -> dict[str, Any]:
    """A valid input for any served chain, from its input schema, so some cases run the chain
    to the end: a conversation for a `messages` field, "fuzz" for every other required one."""
    properties = schema.get("properties") or {}
    required = schema.get("required") or list(properties)
    return {name: INPUTS["chat"]["messages"] if name == "messages" else "fuzz" for name in required}


Check = Callable[[CheckContext, Response, Case], bool | None]


def _last_frame(content: bytes) -> dict[str, str]:
    """The fields of a stream's last event, as sent (a parser would drop a data-less one)."""
    text = content.decode().replace("\r\n", "\n").replace("\r", "\n")
    lines = [
        [line for line in frame.split("\n") if line and not line.startswith(":")]
        for frame in text.split("\n\n")
    ]
    last = [frame for frame in lines if frame][-1:] or [[]]
    return {name: value.removeprefix(" ") for name, _, value in (f.partition(":") for f in last[0])}


def stream_ends_cleanly(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 200 event stream ends with its protocol's last event, never cut off mid-way."""
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code != 200 or not content_type.startswith("text/event-stream"):
        return None
    assert not response.stream_cut_short, "the stream did not end within the request timeout"
    last = _last_frame(response.content)
    # Native and LangServe streams end with an `end` or `error` event (LangServe's `end` has
    # no data), OpenAI's and the AI SDK's with `data: [DONE]`.
    ended = last.get("event") in ("end", "error") or last.get("data") == "[DONE]"
    assert ended, f"the stream ended after {last!r}"
    return None


def refused_without_a_key(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Without a key every operation but /health is a 401 naming the missing key."""
    if case.operation.path == "/health":
        return None
    assert response.status_code == 401, f"answered {response.status_code} without a key"
    assert json.loads(response.content)["error"]["code"] == "missing_api_key"
    return None


CONFORMANCE: list[Check] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    stream_ends_cleanly,
]


def _known(server: LiveServer, headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Real values for the path parameters: chain names, a thread, a finished run, a hash."""
    with httpx.Client(base_url=server.url, headers=dict(headers), timeout=10) as client:
        listed = client.get("/chains").json()["chains"]
        chains = [chain["name"] for chain in listed]
        INPUTS.update({c["name"]: valid_input(c["input_schema"]) for c in listed})
        thread = client.post("/threads").json()["thread_id"]
        # A stream, not an invoke: only streamed runs are kept in the run log to be joined.
        streamed = client.post("/chains/explain/stream", json={"input": INPUTS["explain"]})
    config = json.dumps({"configurable": {"temperature": 0.5}})
    return {
        "name": chains,
        "thread_id": [thread],
        "run_id": [streamed.headers["x-run-id"]],
        "config_hash": [LZString.compressToEncodedURIComponent(config)],
    }


def _valid_bodies(operation: APIOperation, path: Mapping[str, str]) -> list[dict[str, Any]]:
    """Bodies the generator would hardly hit on its own (the schema types `input` as any)."""
    route = f"{operation.method.upper()} {operation.path}"
    if route in ("POST /chains/{name}/stream", "POST /chains/{name}/invoke"):
        return [{"input": INPUTS[path["name"]]}]
    if route == "POST /chains/{name}/ui":
        return [{"messages": [{"role": "user", "parts": [{"type": "text", "text": "fuzz"}]}]}]
    if route == "POST /v1/chat/completions":
        chat = INPUTS["chat"]["messages"]
        return [{"model": "chat", "messages": chat, "stream": stream} for stream in (False, True)]
    if route == "POST /auth/stream-token":
        return [{"chain": "chat"}]
    if route == "POST /collections/{name}/documents":
        return [{"documents": [{"id": "fuzz", "text": "Fuzz text.", "metadata": {"title": "F"}}]}]
    if operation.method == "post" and operation.path.startswith("/langserve/"):
        chain, endpoint = operation.path.split("/")[2], operation.path.rsplit("/", 1)[-1]
        if endpoint == "batch":
            return [{"inputs": [INPUTS[chain]]}]
        if endpoint.startswith(("invoke", "stream")):
            return [{"input": INPUTS[chain]}]
    return []


def _known_paths(operation: APIOperation, known: Mapping[str, list[str]]) -> list[dict[str, str]]:
    names = [parameter.name for parameter in operation.path_parameters]
    if not all(name in known for name in names):
        return []
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(known[name] for name in names))
    ]


def _explicit_cases(operation: APIOperation, known: Mapping[str, list[str]]) -> list[Case]:
    """Valid requests that run a chain or find a thread or run: each one is always sent."""
    cases = []
    for path in _known_paths(operation, known):
        bodies = _valid_bodies(operation, path)
        if bodies:
            cases += [
                operation.Case(path_parameters=path, body=body, media_type="application/json")
                for body in bodies
            ]
        elif path and not operation.body:
            cases.append(operation.Case(path_parameters=path))
    return cases


def _generated_cases(
    operation: APIOperation, known: Mapping[str, list[str]]
) -> st.SearchStrategy[Case]:
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    strategies += [
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=path)
        for path in _known_paths(operation, known)
    ]
    return st.one_of(strategies)


def _operations(schema: BaseSchema) -> Iterator[APIOperation]:
    for result in schema.get_all_operations():
        yield result.ok()  # a part of the schema schemathesis cannot read fails the test here


def _fuzz(
    server: LiveServer,
    checks: list[Check],
    *,
    key: Mapping[str, str] | None = None,
    send_key: bool = True,
    examples: int = EXAMPLES,
) -> dict[str, str]:
    """Every operation's cases against `server`; the failures found, by operation."""
    headers = dict(key or {})
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=CONFIG, headers=headers
    )
    known = _known(server, headers)
    sent = headers if send_key else {}
    failures: dict[str, str] = {}
    for operation in _operations(schema):

        @settings(HYPOTHESIS, max_examples=examples)
        @given(case=_generated_cases(operation, known))
        def check_operation(case: Case) -> None:
            case.call_and_validate(base_url=server.url, headers=sent, checks=checks)

        for case in _explicit_cases(operation, known):
            check_operation = example(case=case)(check_operation)

        try:
            check_operation()
        except FailureGroup as exc:
            failures[operation.label] = str(exc)
        # A broken connection or a cut-off stream raises from the HTTP client instead.
        except Exception as exc:  # noqa: BLE001 - every operation is tried, then all reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    return failures


def _report(failures: dict[str, str]) -> str:
    return "\n\n".join(f"=== {label}\n{text}" for label, text in failures.items())


def test_every_operation_answers_as_documented(start_server: ServerFactory) -> None:
    failures = _fuzz(start_server(offline_settings()), CONFORMANCE)
    assert not failures, _report(failures)


@pytest.fixture
def keyed_server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings(api_keys=[KEY]))


def test_every_operation_answers_as_documented_with_a_valid_key(keyed_server: LiveServer) -> None:
    failures = _fuzz(keyed_server, CONFORMANCE, key={"Authorization": f"Bearer {KEY}"})
    assert not failures, _report(failures)


def test_every_operation_refuses_a_request_without_a_key_with_a_documented_401(
    keyed_server: LiveServer,
) -> None:
    """The schema is fetched with the key; every case is then sent without one."""
    checks = [*CONFORMANCE, refused_without_a_key]
    bearer = {"Authorization": f"Bearer {KEY}"}
    failures = _fuzz(keyed_server, checks, key=bearer, send_key=False, examples=2)
    assert not failures, _report(failures)
