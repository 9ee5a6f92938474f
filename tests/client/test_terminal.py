"""The terminal client against a real server: piped output is exactly the chain's output; on a
terminal (a pseudo-terminal here) the answer is rendered Markdown after a spinner."""

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from chainserve.client.arguments import parse_config
from chainserve.client.http_client import ClientError, sse_events
from chainserve.client.render import source_label
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ROOT
from tests.support.terminal import (
    HIDE_CURSOR,
    SHOW_CURSOR,
    TerminalCli,
    TerminalFactory,
    run_cli,
    screen,
)

MARKDOWN = ["Here is", " code:\n\n", "```python\n", "print('hi')\n", "```\n\n", "Done."]
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@pytest.fixture
def terminal() -> Iterator[TerminalFactory]:
    """Start the CLI on pseudo-terminals; any still running is killed when the test ends."""
    started: list[TerminalCli] = []

    def start(
        *args: str, env: dict[str, str] | None = None, stdout: IO[str] | None = None
    ) -> TerminalCli:
        started.append(TerminalCli(*args, env=env, stdout=stdout))
        return started[-1]

    yield start
    for cli in started:
        cli.close()


def test_piped_chat_output_equals_the_chains_output(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    message = "Tell me about “SSE”\nin two lines."
    expected = httpx.post(
        f"{server.url}/chains/chat/invoke",
        json={"input": {"messages": [{"role": "user", "content": message}]}},
    ).json()["output"]
    from_argument = run_cli("chat", "chat", message, "--url", server.url)
    from_stdin = run_cli("chat", "chat", "--url", server.url, "--stats", stdin=message)
    assert from_argument.returncode == 0, from_argument.stderr
    assert from_argument.stdout == expected
    assert from_stdin.stdout == expected
    assert "tokens/s" in from_stdin.stderr


def test_an_answer_cut_at_the_token_cap_says_so_on_stderr(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(max_output_tokens=4))
    cut = run_cli("chat", "chat", "tell me everything", "--url", server.url)
    assert cut.returncode == 0, cut.stderr
    assert cut.stdout == "[offline model] You said:"
    assert "[cut] the answer reached its token limit" in cut.stderr
    whole = run_cli("chat", "chat", "hi", "--url", start_server(offline_settings()).url)
    assert "[cut]" not in whole.stderr


def test_chains_invoke_and_config_reach_the_server(start_server: ServerFactory) -> None:
    server = start_server(offline_settings())
    listed = run_cli("chains", "--url", server.url)
    invoked = run_cli(
        "invoke", "explain", "--input", '{"topic": "SSE"}', "--config", "prompt=eli5",
        "--url", server.url,
    )  # fmt: skip
    names = [line.split("\t")[0] for line in listed.stdout.splitlines()]
    assert names == sorted(server.app.state.chains)
    assert "curious five-year-old" in invoked.stdout


def test_errors_are_one_clear_line_and_a_failing_status(start_server: ServerFactory) -> None:
    server = start_server(offline_settings(api_keys="sk-terminal-0123456789"))
    no_key = run_cli("chat", "chat", "hi", "--url", server.url)
    with_key = run_cli(
        "chat", "chat", "hi", "--url", server.url, "--api-key", "sk-terminal-0123456789"
    )
    bad_chain = run_cli(
        "chat", "nope", "hi", "--url", server.url, "--api-key", "sk-terminal-0123456789"
    )
    nowhere = run_cli("chains", "--url", "http://127.0.0.1:9")
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
    assert source_label({"number": 2, "title": None, "doc_id": "b"}) == "[2] b"
    assert source_label({"number": 1, "title": "Guide", "page": 3}) == "[1] Guide, p. 3"


def test_a_terminal_shows_a_spinner_then_the_answer_as_markdown(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    """Code comes highlighted, without its fences; the spinner is drawn before any token."""
    upstream.default_script = Script(chunks=MARKDOWN)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "show me code", "--url", server.url)
    assert cli.finish() == 0, cli.raw
    text = cli.text
    first_frame = min(i for i in map(text.find, SPINNER_FRAMES) if i >= 0)
    assert first_frame < text.index("Here is code:")
    assert "print('hi')" in text
    assert "Done." in text
    assert "```" not in text
    assert re.search(r"\x1b\[[0-9;]*mprint", cli.raw), "the code is not highlighted"
    assert cli.raw.rfind(SHOW_CURSOR) > cli.raw.rfind(HIDE_CURSOR)


@pytest.mark.parametrize(
    ("flags", "env"), [(["--plain"], {}), ([], {"NO_COLOR": "1"})], ids=["plain", "no-color"]
)
def test_plain_and_no_color_give_the_bare_text_on_a_terminal(
    start_server: ServerFactory,
    upstream: MockUpstream,
    terminal: TerminalFactory,
    flags: list[str],
    env: dict[str, str],
) -> None:
    upstream.default_script = Script(chunks=MARKDOWN)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "show me code", "--url", server.url, *flags, env=env)
    assert cli.finish() == 0, cli.raw
    assert "\x1b" not in cli.raw
    assert cli.text == "".join(MARKDOWN) + "\n"


def test_ctrl_c_on_a_terminal_cancels_the_run_and_restores_the_cursor(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    upstream.default_script = Script(chunks=["First", " words", " never", " shown"], hold_after=2)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url)
    cli.wait_for("First words")
    cli.process.send_signal(signal.SIGINT)
    assert cli.finish() == 130, cli.raw
    assert "[cancelled]" in cli.text
    assert "never" not in cli.text
    assert cli.raw.rfind(SHOW_CURSOR) > cli.raw.rfind(HIDE_CURSOR)
    upstream.wait_for_disconnect()  # the server saw the hang-up and cancelled the run


def test_ctrl_c_in_a_conversation_cancels_the_answer_and_prompts_again(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    upstream.default_script = Script(chunks=["First", " words", " never", " shown"], hold_after=2)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "--url", server.url)
    cli.wait_for("you> ")
    cli.send("hello\n")
    cli.wait_for("First words")
    cli.process.send_signal(signal.SIGINT)
    cli.wait_for_match(r"\[cancelled\] run [0-9a-f-]{36}\nyou> $")
    upstream.wait_for_disconnect()
    cli.send("\x04")  # Ctrl-D at the prompt
    assert cli.finish() == 0, cli.raw
    assert cli.raw.rfind(SHOW_CURSOR) > cli.raw.rfind(HIDE_CURSOR)


def test_a_failed_run_on_a_terminal_clears_the_spinner_and_says_why(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    upstream.default_script = Script(status=400, error_message="no such thing")
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url)
    assert cli.finish() == 1, cli.raw
    assert "chainserve:" in cli.text
    assert cli.raw.rfind(SHOW_CURSOR) > cli.raw.rfind(HIDE_CURSOR)


def test_rag_sources_follow_the_answer_and_stay_off_piped_stdout(
    start_server: ServerFactory, terminal: TerminalFactory
) -> None:
    server = start_server(offline_settings())
    document = {
        "id": "a",
        "text": "Server-sent events stream text over HTTP, one event at a time.",
        "metadata": {"title": "SSE notes", "page": 3},
    }
    ingested = httpx.post(
        f"{server.url}/collections/default/documents", json={"documents": [document]}
    )
    assert ingested.status_code == 200, ingested.text
    question = "What are server-sent events?"
    expected = httpx.post(
        f"{server.url}/chains/rag/invoke", json={"input": {"question": question}}
    ).json()["output"]
    piped = run_cli("chat", "rag", question, "--url", server.url)
    cli = terminal("chat", "rag", question, "--url", server.url)
    assert cli.finish() == 0, cli.raw
    assert piped.stdout == expected
    assert "[1] SSE notes, p. 3" in piped.stderr
    sources = cli.text.rindex("Sources")
    assert cli.text.rindex("real model") < sources < cli.text.index("[1] SSE notes, p. 3")


def test_a_typed_ctrl_c_is_not_echoed_into_the_live_answer(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    """An echoed `^C` wraps rich's full-width lines, so the last redraw would leave a second
    copy of the answer's first line; echo is off while the answer is drawn, and back after."""
    upstream.default_script = Script(chunks=["First", " words", " never", " shown"], hold_after=2)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url)
    cli.wait_for("First words")
    cli.send("\x03")  # typed, not signalled: the terminal itself sends SIGINT
    assert cli.finish() == 130, cli.raw
    assert "^C" not in cli.raw
    shown = screen(cli.raw)
    assert [row for row in shown if "First words" in row] == ["First words"], shown
    assert cli.echoes()
    upstream.wait_for_disconnect()


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["term", "hup"]
)
def test_a_termination_signal_during_an_answer_restores_the_terminal(
    start_server: ServerFactory,
    upstream: MockUpstream,
    terminal: TerminalFactory,
    signum: signal.Signals,
    status: int,
) -> None:
    upstream.default_script = Script(chunks=["First", " words", " never", " shown"], hold_after=2)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url)
    cli.wait_for("First words")
    cli.process.send_signal(signum)
    assert cli.finish() == status, cli.raw
    assert "Traceback" not in cli.text
    assert cli.raw.rfind(SHOW_CURSOR) > cli.raw.rfind(HIDE_CURSOR)
    assert cli.echoes()


ESCAPES = ["Safe ", "\x1b]0;PWNED\x07", "\x1b[41mred", "\x9b31m", " text\r\nend\tok"]


@pytest.mark.parametrize("flags", [[], ["--plain"]], ids=["rich", "plain"])
def test_escape_sequences_in_an_answer_never_reach_the_terminal(
    start_server: ServerFactory,
    upstream: MockUpstream,
    terminal: TerminalFactory,
    flags: list[str],
) -> None:
    upstream.default_script = Script(chunks=ESCAPES)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url, *flags)
    assert cli.finish() == 0, cli.raw
    assert "\x1b]" not in cli.raw
    assert "\x1b[41m" not in cli.raw
    assert "\x9b" not in cli.raw
    assert "\x07" not in cli.raw
    assert "red" in cli.text
    assert "end" in cli.text


def test_piped_output_keeps_the_answers_escape_sequences_byte_for_byte(
    start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.default_script = Script(chunks=ESCAPES)
    server = start_server(upstream_settings(upstream))
    piped = subprocess.run(
        [sys.executable, "-m", "chainserve", "chat", "chat", "hi", "--url", server.url],
        input=b"",
        capture_output=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "".join(ESCAPES).encode()


def test_a_conversation_names_its_thread_and_ctrl_c_at_the_prompt_drops_the_line(
    start_server: ServerFactory, terminal: TerminalFactory
) -> None:
    server = start_server(offline_settings())
    cli = terminal("chat", "chat", "--url", server.url)
    thread = cli.wait_for_match(r"in thread ([0-9a-f]+);").group(1)
    cli.wait_for("you> ")
    cli.send("never sent")
    cli.wait_for("you> never sent")  # read by readline: Ctrl-C flushes what is still queued
    cli.wait_until_reading_keys()
    cli.send("\x03")
    cli.wait_for_match(r"never sent\n+you> $")
    cli.send("hello\n")
    cli.wait_for("real model")
    cli.wait_for_match(r"\nyou> $")
    cli.send("\x04")
    assert cli.finish() == 0, cli.raw
    sent = httpx.get(f"{server.url}/threads/{thread}").json()
    assert "never sent" not in json.dumps(sent)
    assert "hello" in json.dumps(sent)


def test_an_error_after_part_of_an_answer_starts_on_a_new_line(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory
) -> None:
    upstream.default_script = Script(chunks=["Half", " an", " answer", "!"], drop_after=2)
    server = start_server(upstream_settings(upstream))
    cli = terminal("chat", "chat", "hi", "--url", server.url, "--plain")
    assert cli.finish() == 1, cli.raw
    assert "Half an\nchainserve: " in cli.text


def test_a_conversation_redirected_to_a_file_keeps_only_the_answers_there(
    start_server: ServerFactory, upstream: MockUpstream, terminal: TerminalFactory, tmp_path: Path
) -> None:
    """The prompt goes to stderr; each answer ends its own line in the file."""
    upstream.default_script = Script(chunks=["An", " answer"])
    server = start_server(upstream_settings(upstream))
    log = tmp_path / "log"
    with log.open("w") as out:
        cli = terminal("chat", "chat", "--url", server.url, stdout=out)
    cli.wait_for("you> ")
    cli.send("one\n")
    cli.wait_for_match(r"you> one\nyou> $")
    cli.send("two\n")
    cli.wait_for_match(r"you> two\nyou> $")
    cli.send("\x04")
    assert cli.finish() == 0, cli.raw
    assert log.read_text() == "An answer\nAn answer\n"
