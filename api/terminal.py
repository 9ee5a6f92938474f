"""The terminal client: `chainserve chains`, `invoke` and `chat` against any chainserve.

Plain HTTP and SSE through httpx, so it talks to a local server or a remote one behind keys.
Tokens are shown as they arrive (how: api/terminal_render.py); Ctrl-C closes the stream, which
the server sees as a hang-up and cancels the run.
"""

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from api.terminal_render import answer_view, print_sources, styled_output

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """Something the user should read: a refused request, a failed run, no server."""


@dataclass
class Event:
    event: str = "message"
    data: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


def sse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from a response's lines (comments and ids skipped)."""
    current = Event()
    for line in lines:
        if not line:
            if current.data:
                yield current
            current = Event()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "data":
            current.data.append(value)
    if current.data:
        yield current


def parse_config(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs as `configurable`; values are JSON when they parse (numbers, true)."""
    configurable: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"--config takes key=value, not {pair!r}")
        try:
            configurable[key] = json.loads(raw)
        except ValueError:
            configurable[key] = raw
    return configurable


class Client:
    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.url = (url or os.environ.get("CHAINSERVE_URL") or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get("CHAINSERVE_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # Long reads: an invoke answers when the run ends; streams send keepalives meanwhile.
        timeout = httpx.Timeout(10.0, read=300.0)
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach chainserve at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_error_text(response))
        return response.json()

    def chains(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/chains")["chains"])

    def chain(self, name: str) -> dict[str, Any]:
        for chain in self.chains():
            if chain["name"] == name:
                return chain
        raise ClientError(f"no chain named {name!r} at {self.url}")

    def invoke(self, name: str, chain_input: Any, configurable: dict[str, Any]) -> Any:
        body = {"input": chain_input, "config": {"configurable": configurable}}
        return self._json("POST", f"/chains/{name}/invoke", json=body)["output"]

    def new_thread(self) -> str:
        return str(self._json("POST", "/threads")["thread_id"])

    def stream(
        self, name: str, body: dict[str, Any], on_text: Callable[[str], None]
    ) -> dict[str, Any]:
        """Pass the run's text to `on_text` as it arrives; return its `end` summary, which
        holds the `sources` a retrieval chain announced."""
        sources: list[dict[str, Any]] | None = None
        try:
            with self.http.stream("POST", f"/chains/{name}/stream", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_text(response))
                for event in sse_events(response.iter_lines()):
                    if event.event == "data":
                        on_text(_text(event.json()))
                    elif event.event == "sources":
                        sources = _sources(event.json())
                    elif event.event == "end":
                        summary: dict[str, Any] = event.json()
                        if sources is not None:
                            summary.setdefault("sources", sources)
                        return summary
                    elif event.event == "error":
                        raise ClientError(event.json().get("message", "the run failed"))
        except httpx.TransportError as exc:
            raise ClientError(f"the connection to {self.url} broke: {exc}") from None
        raise ClientError("the stream ended without an end event")


def _text(chunk: Any) -> str:
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, dict) and isinstance(chunk.get("content"), str):
        return str(chunk["content"])
    return ""


def _sources(data: Any) -> list[dict[str, Any]]:
    """The `sources` event's list (sent as `{"sources": [...]}`), keeping only objects."""
    listed = data.get("sources") if isinstance(data, dict) else data
    return [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = error.get("message") or response.text
    except ValueError:
        message = response.text
    return f"HTTP {response.status_code}: {message}"


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


def stats_line(summary: dict[str, Any], elapsed: float) -> str:
    timings = summary.get("timings") or {}
    usage = summary.get("usage") or {}
    ttft = timings.get("time_to_first_token_ms")
    output = usage.get("output_tokens") or 0
    rate = output / elapsed if elapsed > 0 else 0.0
    first = f"{ttft:.0f} ms" if isinstance(ttft, (int, float)) else "-"
    return f"ttft {first} · {output} tokens · {rate:.1f} tokens/s · run {summary.get('run_id')}"


def run_turn(
    client: Client,
    chain: dict[str, Any],
    message: str,
    thread: str | None,
    configurable: dict[str, Any],
    *,
    stats: bool,
    plain: bool = False,
) -> None:
    body = {**input_for(chain, message, thread), "config": {"configurable": configurable}}
    styled = styled_output(plain=plain)
    started = time.monotonic()
    with answer_view(styled=styled) as view:
        summary = client.stream(chain["name"], body, view.write)
    if summary.get("sources"):
        print_sources(summary["sources"], styled=styled)
    if stats:
        print(stats_line(summary, time.monotonic() - started), file=sys.stderr)


def chat(
    client: Client,
    name: str,
    message: str | None,
    thread: str | None,
    configurable: dict[str, Any],
    *,
    stats: bool,
    plain: bool = False,
) -> int:
    """One turn with MESSAGE (or stdin when piped), else a conversation at a prompt."""
    chain = client.chain(name)
    if message is None and not sys.stdin.isatty():
        message = sys.stdin.read()
    if message is not None:
        try:
            run_turn(client, chain, message, thread, configurable, stats=stats, plain=plain)
        except KeyboardInterrupt:
            print("\n[cancelled]", file=sys.stderr)
            return 130
        return 0
    memory = "messages" in chain.get("input_schema", {}).get("properties", {})
    thread = thread or (client.new_thread() if memory else None)
    print(
        f"chatting with {name} at {client.url}; Ctrl-C stops an answer, Ctrl-D quits",
        file=sys.stderr,
    )
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not line.strip():
            continue
        try:
            run_turn(client, chain, line, thread, configurable, stats=stats, plain=plain)
        except KeyboardInterrupt:
            print("\n[cancelled]", file=sys.stderr)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
