"""The terminal client's HTTP side: one chainserve's chains, invoke and streams, through httpx.

Plain HTTP and SSE, so it talks to a local server or a remote one behind keys. Whatever goes
wrong (no server, not a chainserve, a refused request, a failed run) becomes a `ClientError`
of one line. The commands built on it: client/commands.py; a conversation:
client/chat.py; how tokens show: client/render.py.
"""

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from chainserve.client.tty import one_line

DEFAULT_URL = "http://127.0.0.1:8000"
LIST_TIMEOUT = httpx.Timeout(10.0, read=30.0)
"""For the quick JSON calls (the chain list, a new thread)."""
RUN_TIMEOUT = httpx.Timeout(10.0, read=300.0)
"""An invoke answers when the run ends; streams send keepalives meanwhile."""


class ClientError(Exception):
    """Something the user should read: a refused request, a failed run, no server."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status that carried the error, if one did."""


@dataclass
class Event:
    event: str = "message"
    data: list[str] = field(default_factory=list)

    def json(self) -> Any:
        try:
            return json.loads("\n".join(self.data))
        except ValueError:
            raise ClientError(
                f"the server sent a garbled {self.event!r} event: {one_line(''.join(self.data))}"
            ) from None


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


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The Authorization header for `api_key` (else $CHAINSERVE_API_KEY), if there is a key.

    A key httpx cannot send would otherwise come back inside its error message."""
    key = (api_key or os.environ.get("CHAINSERVE_API_KEY") or "").strip()
    if not key:
        return {}
    if not key.isascii() or not key.isprintable():
        raise ClientError(
            "the API key has characters a key cannot have (non-ASCII or control characters); "
            "check --api-key or $CHAINSERVE_API_KEY"
        )
    return {"Authorization": f"Bearer {key}"}


class Client:
    def __init__(self, url: str | None, api_key: str | None) -> None:
        self.url = (url or os.environ.get("CHAINSERVE_URL") or DEFAULT_URL).rstrip("/")
        headers = auth_headers(api_key)
        try:
            self.http = httpx.Client(base_url=self.url, headers=headers, timeout=RUN_TIMEOUT)
        except httpx.InvalidURL as exc:
            raise ClientError(f"{self.url!r} is not a URL: {exc}") from None
        self.run_id: str | None = None
        """The id of the run the latest stream started, once the server announced it."""

    def close(self) -> None:
        self.http.close()

    def _json(
        self, method: str, path: str, timeout: httpx.Timeout = LIST_TIMEOUT, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, timeout) from None
        except httpx.InvalidURL as exc:
            raise ClientError(f"{self.url!r} is not a URL: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_error_text(response), response.status_code)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise self._not_chainserve(method, path, response.text)
        return body

    def _transport_error(self, exc: httpx.HTTPError, timeout: httpx.Timeout) -> ClientError:
        if isinstance(exc, httpx.ReadTimeout):
            return ClientError(f"chainserve at {self.url} sent nothing for {timeout.read:.0f} s")
        return ClientError(f"cannot reach chainserve at {self.url}: {one_line(str(exc))}")

    def _not_chainserve(self, method: str, path: str, text: str) -> ClientError:
        answered = one_line(text) or "nothing"
        return ClientError(f"{self.url} is not a chainserve: {method} {path} answered {answered}")

    def chains(self) -> list[dict[str, Any]]:
        listed = self._json("GET", "/chains").get("chains")
        if not isinstance(listed, list):
            raise self._not_chainserve("GET", "/chains", "without a chain list")
        return [c for c in listed if isinstance(c, dict) and isinstance(c.get("name"), str)]

    def chain(self, name: str) -> dict[str, Any]:
        for chain in self.chains():
            if chain["name"] == name:
                return chain
        raise ClientError(f"no chain named {name!r} at {self.url}")

    def invoke(self, name: str, chain_input: Any, configurable: dict[str, Any]) -> Any:
        body = {"input": chain_input, "config": {"configurable": configurable}}
        path = f"/chains/{name}/invoke"
        answer = self._json("POST", path, json=body, timeout=RUN_TIMEOUT)
        if "output" not in answer:
            raise self._not_chainserve("POST", path, "without an output")
        return answer["output"]

    def new_thread(self) -> str:
        thread = self._json("POST", "/threads").get("thread_id")
        if not isinstance(thread, str):
            raise self._not_chainserve("POST", "/threads", "without a thread id")
        return thread

    def stream(
        self,
        name: str,
        body: dict[str, Any],
        on_text: Callable[[str], None],
        on_step: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Pass the run's text to `on_text` as it arrives (a structured output as indented
        JSON once complete) and a line per tool call or result to `on_step`; return its `end`
        summary, which holds the `sources` a retrieval chain announced."""
        self.run_id = None
        try:
            with self.http.stream("POST", f"/chains/{name}/stream", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_text(response), response.status_code)
                return self._read_events(response, on_text, on_step or _ignore)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ReadTimeout):
                raise self._transport_error(exc, RUN_TIMEOUT) from None
            raise ClientError(f"the connection to {self.url} broke: {one_line(str(exc))}") from None

    def _read_events(
        self,
        response: httpx.Response,
        on_text: Callable[[str], None],
        on_step: Callable[[str], None],
    ) -> dict[str, Any]:
        sources: list[dict[str, Any]] | None = None
        for event in sse_events(response.iter_lines()):
            if event.event == "data":
                on_text(_text(event.json()))
            elif event.event == "object":
                data = event.json()
                if isinstance(data, dict) and data.get("complete"):
                    on_text(json.dumps(data.get("value"), indent=2, ensure_ascii=False) + "\n")
            elif event.event in ("tool_call", "tool_result"):
                on_step(_step_line(event.event, event.json()))
            elif event.event == "metadata":
                run = _field(event.json(), "run_id")
                self.run_id = run if isinstance(run, str) else None
            elif event.event == "sources":
                sources = _sources(event.json())
            elif event.event == "end":
                data = event.json()
                summary: dict[str, Any] = data if isinstance(data, dict) else {}
                if sources is not None:
                    summary.setdefault("sources", sources)
                return summary
            elif event.event == "error":
                message = _field(event.json(), "message")
                raise ClientError(str(message) if message else "the run failed")
        raise ClientError("the stream ended without an end event")


def _field(data: Any, name: str) -> Any:
    return data.get(name) if isinstance(data, dict) else None


def _text(chunk: Any) -> str:
    """A text chunk, or a model message's text; a value is printed whole from its `object`."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, dict) and chunk.get("type") in ("ai", "AIMessageChunk"):
        content = chunk.get("content")
        return content if isinstance(content, str) else ""
    return ""


def _ignore(_line: str) -> None:
    return None


def _step_line(kind: str, data: Any) -> str:
    """`[tool call] calculator {"expression": "2+2"}` or `[tool result] calculator: 4`."""
    if not isinstance(data, dict):
        return f"[{kind.replace('_', ' ')}]"
    if kind == "tool_call":
        arguments = json.dumps(data.get("arguments"), ensure_ascii=False)
        return f"[tool call] {data.get('name')} {arguments}"
    return f"[tool result] {data.get('name')}: {data.get('content')}"


def _sources(data: Any) -> list[dict[str, Any]]:
    """The `sources` event's list (sent as `{"sources": [...]}`), keeping only objects."""
    listed = data.get("sources") if isinstance(data, dict) else data
    return [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []


_TAG = re.compile(r"<[^>]*>")


def _error_text(response: httpx.Response) -> str:
    """`HTTP 404: message`: chainserve's `error.message`, else what the body says, on one line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = _field(body, "error")
    message = _field(error, "message") or error or _field(body, "detail")
    if not isinstance(message, str):
        message = response.text
        if "html" in response.headers.get("content-type", ""):
            message = _TAG.sub(" ", message)
    return f"HTTP {response.status_code}: {one_line(message) or response.reason_phrase}"
