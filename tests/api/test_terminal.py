"""The terminal client against a real server: piped output is exactly the chain's output; on a
terminal (a pseudo-terminal here) the answer is rendered Markdown after a spinner."""

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.terminal import ClientError, parse_config, sse_events
from api.terminal_render import source_label
from tests.conftest import ServerFactory, offline_settings, upstream_settings
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.process import ROOT

MARKDOWN = ["Here is", " code:\n\n", "```python\n", "print('hi')\n", "```\n\n", "Done."]
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
SHOW_CURSOR, HIDE_CURSOR = "\x1b[?25h", "\x1b[?25l"


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


def _default_sigint() -> None:
    # A parent that ignores SIGINT (a background CI job) would pass that on to the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class TerminalCli:
    """`python -m api ARGS` with stdin, stdout and stderr on a 100x30 pseudo-terminal."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        unset = ("OPENAI_", "CHAINSERVE_", "NO_COLOR", "FORCE_COLOR", "TTY_", "COLUMNS", "LINES")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env={**clean, "TERM": "xterm-256color", **(env or {})},
            preexec_fn=_default_sigint,
        )
        os.close(slave)
        self.master = master
        self.raw = ""

    @property
    def text(self) -> str:
        """What a reader sees, ignoring redraws: the output without escape sequences."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n")

    def _read(self, deadline: float) -> bool:
        """Reads what is there; False once the child has closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"the terminal stayed quiet; so far: {self.raw!r}")
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the other end is closed
            data = b""
        self.raw += data.decode(errors="replace")
        return bool(data)

    def wait_for(self, visible: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while visible not in self.text:
            if not self._read(deadline):
                raise AssertionError(f"exited before showing {visible!r}: {self.raw!r}")

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


TerminalFactory = Callable[..., TerminalCli]


@pytest.fixture
def terminal() -> Iterator[TerminalFactory]:
    """Start the CLI on pseudo-terminals; any still running is killed when the test ends."""
    started: list[TerminalCli] = []

    def start(*args: str, env: dict[str, str] | None = None) -> TerminalCli:
        started.append(TerminalCli(*args, env=env))
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
    cli.wait_for("[cancelled]\nyou> ")
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
    piped = _cli("chat", "rag", question, "--url", server.url)
    cli = terminal("chat", "rag", question, "--url", server.url)
    assert cli.finish() == 0, cli.raw
    assert piped.stdout == expected
    assert "[1] SSE notes, p. 3" in piped.stderr
    sources = cli.text.rindex("Sources")
    assert cli.text.rindex("real model") < sources < cli.text.index("[1] SSE notes, p. 3")
