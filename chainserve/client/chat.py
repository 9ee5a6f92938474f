"""`chainserve chat`: one answer to a message, or a conversation at a `you>` prompt.

Ctrl-C closes the stream, which the server sees as a hang-up and cancels the run.
"""

import contextlib
import sys
from dataclasses import dataclass
from typing import Any

from chainserve.client.http_client import Client, ClientError
from chainserve.client.render import answer_view, print_sources, styled_output
from chainserve.client.tty import one_line

PROMPT = "you> "


@dataclass(frozen=True)
class TurnOptions:
    """What stays the same for every turn of one `chat` command."""

    configurable: dict[str, Any]
    stats: bool = False
    plain: bool = False


def input_for(chain: dict[str, Any], message: str, thread: str | None) -> dict[str, Any]:
    """The request body carrying one user message, shaped by the chain's input schema."""
    properties = chain.get("input_schema", {}).get("properties", {})
    if "messages" in properties:
        body: dict[str, Any] = {"input": {"messages": [{"role": "user", "content": message}]}}
        if thread:
            body["thread_id"] = thread
        return body
    required = chain.get("input_schema", {}).get("required", [])
    if len(required) != 1:
        raise ClientError(f"chain {chain['name']!r} takes more than one field: use `invoke`")
    return {"input": {required[0]: message}}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stats_line(summary: dict[str, Any]) -> str:
    """Time to first token and the rate after it, both from the server's own `timings`, so
    neither the network nor this process's start-up is counted."""
    timings = summary.get("timings") or {}
    usage = summary.get("usage") or {}
    ttft = _number(timings.get("time_to_first_token_ms"))
    total = _number(timings.get("total_ms"))
    output = usage.get("output_tokens")
    parts = [f"ttft {ttft:.0f} ms" if ttft is not None else "ttft -"]
    if isinstance(output, int) and not isinstance(output, bool):
        parts.append(f"{output} tokens")
        if ttft is not None and total is not None and total > ttft:
            parts.append(f"{output / ((total - ttft) / 1000):.1f} tokens/s")
    else:
        parts.append("usage unknown")
    return " · ".join([*parts, f"run {summary.get('run_id')}"])


def cancelled_line(run_id: str | None) -> str:
    return f"[cancelled] run {run_id}" if run_id else "[cancelled]"


def note(text: str) -> None:
    """One line on stderr; what the server sent in it (ids, messages) cannot steer the terminal."""
    print(one_line(text, limit=1000), file=sys.stderr)


def run_turn(
    client: Client, chain: dict[str, Any], message: str, thread: str | None, options: TurnOptions
) -> None:
    """Stream one answer to stdout; then its sources and stats to stderr."""
    body = {**input_for(chain, message, thread), "config": {"configurable": options.configurable}}
    styled = styled_output(plain=options.plain)
    try:
        with answer_view(styled=styled) as view:
            summary = client.stream(chain["name"], body, view.write, note)
    except ClientError as exc:
        if thread and exc.status == 404 and "thread" in str(exc):
            message = f"no thread {thread!r} on this server (start one without --thread)"
            raise ClientError(message, exc.status) from None
        raise
    if summary.get("sources"):
        print_sources(summary["sources"], styled=styled)
    if summary.get("finish_reason") == "length":
        note("[cut] the answer reached its token limit (`max_tokens`, at most the server's cap)")
    if options.stats:
        note(stats_line(summary))


def message_for(message: str | None) -> str | None:
    """The message to send: MESSAGE, followed by a blank line and stdin's text when stdin is
    piped (`cat f.py | chainserve chat chat "review this"`); stdin's text alone without one.
    None: no message, so a conversation at the prompt."""
    piped = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if message is None:
        return piped
    return f"{message}\n\n{piped}" if piped and piped.strip() else message


def chat(
    client: Client, chain: dict[str, Any], message: str | None, thread: str | None,
    options: TurnOptions,
) -> int:  # fmt: skip
    """One turn with MESSAGE (or stdin when piped), else a conversation at a prompt."""
    message = message_for(message)
    if message is None:
        return converse(client, chain, thread, options)
    if not message.strip():
        raise ClientError("nothing to send: the message is empty")
    try:
        run_turn(client, chain, message, thread, options)
    except KeyboardInterrupt:
        note(cancelled_line(client.run_id))
        return 130
    return 0


def read_line() -> str:
    """One line typed at the prompt. With stdout on the terminal readline draws the prompt (and
    redraws it while the line is edited); otherwise it goes to stderr, so `> log` keeps only
    the answers."""
    if sys.stdout.isatty():
        return input(PROMPT)
    sys.stderr.write(PROMPT)
    sys.stderr.flush()
    return input()


def converse(
    client: Client, chain: dict[str, Any], thread: str | None, options: TurnOptions
) -> int:
    """Turns until Ctrl-D; Ctrl-C stops an answer, or drops the line being typed."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        with contextlib.suppress(ImportError):  # not every Python has it
            import readline  # noqa: F401  # arrow keys and history for input()
    memory = "messages" in chain.get("input_schema", {}).get("properties", {})
    thread = thread or (client.new_thread() if memory else None)
    where = f" in thread {thread}" if thread else ""
    keys = "Ctrl-C stops an answer, Ctrl-D quits"
    note(f"chatting with {chain['name']} at {client.url}{where}; {keys}")
    while True:
        try:
            line = read_line()
        except EOFError:
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)  # the line typed so far is dropped; the session goes on
            continue
        if not line.strip():
            continue
        try:
            run_turn(client, chain, line, thread, options)
        except KeyboardInterrupt:
            note(cancelled_line(client.run_id))
        except ClientError as exc:
            note(f"error: {one_line(str(exc))}")
        if not sys.stdout.isatty():
            print(flush=True)  # answers written to a file stay one per line
