"""The terminal client against a real server: piped output is exactly the chain's output."""

import json
import subprocess
import sys

import httpx
import pytest

from api.terminal import ClientError, parse_config, sse_events
from tests.conftest import ServerFactory, offline_settings
from tests.support.process import ROOT


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_piped_chat_output_equals_the_chains_output(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    message = "Tell me about “SSE”\nin two lines."
    expected = httpx.post(
        f"{server.url}/chains/chat/invoke",
        json={"input": {"messages": [{"role": "user", "content": message}]}},
    ).json()["output"]
    from_argument = _cli("chat", "chat", message, "--url", server.url)
    from_stdin = _cli("chat", "chat", "--url", server.url, "--stats", stdin=message)
    assert from_argument.returncode == 0, from_argument.stderr
    assert from_argument.stdout == expected
    assert from_stdin.stdout == expected
    assert "tokens/s" in from_stdin.stderr


def test_chains_invoke_and_config_reach_the_server(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    listed = _cli("chains", "--url", server.url)
    invoked = _cli(
        "invoke", "explain", "--input", '{"topic": "SSE"}', "--config", "prompt=eli5",
        "--url", server.url,
    )  # fmt: skip
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [
        "chat", "explain", "rag",
    ]  # fmt: skip
    assert "curious five-year-old" in invoked.stdout


def test_errors_are_one_clear_line_and_a_failing_status(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(api_keys="sk-terminal-0123456789"))
    no_key = _cli("chat", "chat", "hi", "--url", server.url)
    with_key = _cli(
        "chat", "chat", "hi", "--url", server.url, "--api-key", "sk-terminal-0123456789"
    )
    bad_chain = _cli(
        "chat", "nope", "hi", "--url", server.url, "--api-key", "sk-terminal-0123456789"
    )
    nowhere = _cli("chains", "--url", "http://127.0.0.1:9")
    assert no_key.returncode == 1
    assert "HTTP 401" in no_key.stderr
    assert "Traceback" not in no_key.stderr
    assert with_key.returncode == 0
    assert "no chain named 'nope'" in bad_chain.stderr
    assert nowhere.returncode == 1
    assert "cannot reach chainserve" in nowhere.stderr


def test_sse_lines_and_config_pairs_parse() -> None:
    lines = iter(["event: data", 'data: "a"', "", ": keepalive", "", "data: 1", "data: 2", ""])
    events = list(sse_events(lines))
    assert [(e.event, e.data) for e in events] == [("data", ['"a"']), ("message", ["1", "2"])]
    assert parse_config(["k=3", "retriever=bm25", "t=0.5", "flag=true"]) == {
        "k": 3, "retriever": "bm25", "t": 0.5, "flag": True,
    }  # fmt: skip
    with pytest.raises(ClientError, match="key=value"):
        parse_config(["oops"])
    assert json.dumps(parse_config([])) == "{}"
