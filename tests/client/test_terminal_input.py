"""What the terminal client takes from the user (arguments, keys, config values, stdin) and what
it makes of servers that answer badly: always one clear line, never a traceback."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chainserve.api.cli import _parser, message_words
from chainserve.client.arguments import parse_config
from chainserve.client.chat import stats_line
from chainserve.client.http_client import Client, ClientError, Event
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ROOT
from tests.support.terminal import run_cli

KEY = "sk-terminal-0123456789"
RAG_KEYS = [
    {"id": "collection", "schema": {"type": "string", "pattern": "^[A-Za-z0-9]+$"}},
    {"id": "k", "schema": {"type": "integer", "minimum": 1}},
    {"id": "t", "schema": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
    {"id": "tags", "schema": {"type": "array"}},
]


def _one_clear_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_config_values_follow_the_chains_schema() -> None:
    """`collection=2024` stays a string; numbers are numbers; undeclared keys are guessed."""
    pairs = ["collection=2024", "k=3", "t=0.5", "tags=[1]", "other=7", "word=bm25"]
    assert parse_config(pairs, RAG_KEYS) == {
        "collection": "2024", "k": 3, "t": 0.5, "tags": [1], "other": 7, "word": "bm25",
    }  # fmt: skip
    assert parse_config(["collection=2024"]) == {"collection": 2024}  # no schema: a guess
    with pytest.raises(ClientError, match="--config k takes an integer"):
        parse_config(["k=three"], RAG_KEYS)


@pytest.mark.parametrize("pair", ["k=NaN", "k=1e999", "other=-Infinity", "t=NaN"])
def test_non_finite_config_numbers_are_refused(pair: str) -> None:
    with pytest.raises(ClientError, match="not a finite number"):
        parse_config([pair], RAG_KEYS)


@pytest.mark.parametrize(
    "args",
    [
        ["invoke", "explain", "--input", '{"topic": NaN}'],
        ["invoke", "explain", "--input", '{"topic": "x"}', "--config", "temperature=1e999"],
        ["chat", "chat", "hi", "--config", "temperature=NaN"],
    ],
    ids=["input-nan", "config-overflow", "chat-config-nan"],
)
def test_non_finite_numbers_are_one_clear_line(
    start_server: ServerFactory, args: list[str]
) -> None:
    server = start_server(offline_settings())
    assert "finite" in _one_clear_line(run_cli(*args, "--url", server.url))


def test_a_string_config_key_keeps_digits_as_text(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    result = run_cli("chat", "rag", "hi", "--config", "collection=2024", "--url", server.url)
    assert "HTTP 422" not in result.stderr


def test_message_words_join_wherever_they_stand_and_dashes_follow_a_double_dash() -> None:
    parser = _parser()
    for argv in (
        ["chat", "chat", "hi", "there", "--url", "U"],
        ["chat", "chat", "--url", "U", "hi", "there"],
        ["chat", "chat", "hi", "--url", "U", "there"],
    ):
        args, extra = parser.parse_known_args(argv)
        assert message_words(args.message, extra) == ("hi there", []), argv
    args, extra = parser.parse_known_args(["chat", "chat", "--url", "U", "--", "-v", "please"])
    assert message_words(args.message, extra) == ("-v please", [])
    args, extra = parser.parse_known_args(["chat", "chat", "hi", "--bogus"])
    assert message_words(args.message, extra) == ("hi", ["--bogus"])


def test_words_after_options_reach_the_server_as_one_message(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    result = run_cli("chat", "chat", "hi", "--url", server.url, "there", "--", "-x")
    assert result.returncode == 0, result.stderr
    assert upstream.requests[-1].json["messages"][-1]["content"] == "hi there -x"


def test_piped_stdin_follows_the_message_after_a_blank_line(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    server = start_server(upstream_settings(upstream))
    result = run_cli("chat", "chat", "review this", "--url", server.url, stdin="print(1)\n")
    assert result.returncode == 0, result.stderr
    assert upstream.requests[-1].json["messages"][-1]["content"] == "review this\n\nprint(1)\n"


@pytest.mark.parametrize(("words", "stdin"), [([], ""), (["  "], ""), ([], " \n")])
def test_an_empty_message_is_refused(
    start_server: ServerFactory, words: list[str], stdin: str
) -> None:
    server = start_server(offline_settings())
    result = run_cli("chat", "chat", *words, "--url", server.url, stdin=stdin)
    assert "message is empty" in _one_clear_line(result)


@pytest.mark.parametrize("key", ["sk-clé-0123", "sk-0123\x1b[41m", "sk-01\n23"])
def test_an_unsendable_api_key_is_refused_without_echoing_it(
    start_server: ServerFactory, key: str
) -> None:
    server = start_server(offline_settings(api_keys=KEY))
    result = run_cli("chains", "--url", server.url, "--api-key", key)
    stderr = _one_clear_line(result)
    assert "API key" in stderr
    assert "sk-" not in stderr


def test_an_api_key_with_surrounding_whitespace_is_stripped(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(api_keys=KEY))
    result = run_cli("chains", "--url", server.url, env={"CHAINSERVE_API_KEY": f" {KEY}\n"})
    assert result.returncode == 0, result.stderr


def test_client_commands_ignore_the_servers_settings(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """A broken .env or CHAINSERVE_PORT only matters to `serve`; a client skips LangChain."""
    server = start_server(offline_settings())
    (tmp_path / ".env").write_text("CHAINSERVE_REQUESTS_PER_MINUTE=lots\n")
    code = (
        "import sys\nfrom chainserve.api.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "print('langchain loaded' if 'langchain_core' in sys.modules else 'no langchain')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "chains", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "CHAINSERVE_PORT": "abc", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("chat\t") for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1] == "no langchain"


def test_ctrl_c_during_invoke_cancels_the_run_without_a_traceback(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.default_script = Script(chunks=["a", "b", "c"], hold_after=1)
    server = start_server(upstream_settings(upstream))
    process = subprocess.Popen(
        [sys.executable, "-m", "chainserve", "invoke", "chat", "--url", server.url,
         "--input", '{"messages": [{"role": "user", "content": "hi"}]}'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        upstream.wait_for_requests(1, timeout=20)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.strip() == "[cancelled]"
    upstream.wait_for_disconnect()


def _client_answering(handler: Callable[[httpx.Request], httpx.Response]) -> Client:
    client = Client("http://chainserve.test", None)
    client.http = httpx.Client(
        base_url=client.url, transport=httpx.MockTransport(handler), timeout=5
    )
    return client


def _raises(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


HTML = "<html><head><title>404</title></head><body>" + "<p>Not Found</p>\n" * 100 + "</body>"


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (lambda r: httpx.Response(200, text="<html>hello</html>"), "is not a chainserve"),
        (lambda r: httpx.Response(200, json={"ok": True}), "without a chain list"),
        (lambda r: httpx.Response(200, json=[1, 2]), "is not a chainserve"),
        (lambda r: httpx.Response(404, html=HTML), "HTTP 404: 404 Not Found Not Found"),
        (lambda r: httpx.Response(500, json={"error": "boom"}), "HTTP 500: boom"),
        (lambda r: httpx.Response(400, json=["bad", "worse"]), 'HTTP 400: ["bad","worse"]'),
        (_raises(httpx.ReadTimeout("slow")), "sent nothing for 30 s"),
        (_raises(httpx.ConnectError("refused")), "cannot reach chainserve"),
    ],
    ids=["html-200", "no-chains", "list-200", "html-404", "error-str", "error-list", "slow",
         "down"],
)  # fmt: skip
def test_a_server_that_is_not_a_chainserve_is_one_short_line(
    handler: Callable[[httpx.Request], httpx.Response], expected: str
) -> None:
    client = _client_answering(handler)
    with pytest.raises(ClientError) as caught:
        client.chains()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert len(message) < 300


def test_a_slow_invoke_is_reported_as_slow_not_unreachable() -> None:
    client = _client_answering(_raises(httpx.ReadTimeout("slow")))
    with pytest.raises(ClientError, match="sent nothing for 300 s"):
        client.invoke("chat", {}, {})


def test_an_invalid_url_is_one_clear_line() -> None:
    result = run_cli("chains", "--url", "http://[::1")
    assert "is not a URL" in _one_clear_line(result)


def test_a_garbled_event_is_a_client_error() -> None:
    with pytest.raises(ClientError, match="garbled 'data' event"):
        Event("data", ["{not json"]).json()


def test_stats_rate_counts_output_tokens_over_the_time_after_the_first(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.default_script = Script(
        chunks=["a", "b", "c"], delay=0.05, usage={"prompt_tokens": 2, "completion_tokens": 30,
                                                   "total_tokens": 32},
    )  # fmt: skip
    server = start_server(upstream_settings(upstream))
    client = Client(server.url, None)
    body = {"input": {"messages": [{"role": "user", "content": "hi"}]}}
    summary = client.stream("chat", body, lambda text: None)
    client.close()
    timings = summary["timings"]
    ttft, total = timings["time_to_first_token_ms"], timings["total_ms"]
    rate = summary["usage"]["output_tokens"] / ((total - ttft) / 1000)
    assert summary["usage"]["output_tokens"] == 30
    assert stats_line(summary) == (
        f"ttft {ttft:.0f} ms · 30 tokens · {rate:.1f} tokens/s · run {summary['run_id']}"
    )


def test_stats_without_usage_say_so() -> None:
    summary = {"run_id": "r1", "timings": {"time_to_first_token_ms": 5.0, "total_ms": 9.0}}
    assert stats_line(summary) == "ttft 5 ms · usage unknown · run r1"


def test_an_unknown_thread_is_named_with_what_to_do(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    result = run_cli("chat", "chat", "hi", "--thread", "nope", "--url", server.url)
    stderr = _one_clear_line(result)
    assert "no thread 'nope' on this server (start one without --thread)" in stderr
