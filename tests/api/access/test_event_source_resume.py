"""A real browser `EventSource` on a run token's URL, with keys on, resumes the run by itself
when its connection drops: Chromium sends `Last-Event-ID` to the same URL, the token still
opens it, and nothing is missed or repeated."""

import json
from pathlib import Path

import httpx

from tests.api.streaming import chat_input
from tests.conftest import ServerFactory, upstream_settings
from tests.support.browser import chromium
from tests.support.cut_proxy import CutProxy
from tests.support.mock_upstream import MockUpstream, Script

KEY = "sk-chainserve-first-0123456789"
TOKENS = [f" t{i}" for i in range(12)]
HELD_AT = 6
"""The upstream holds after this many tokens: the connection is cut while the run is mid-way."""

FOLLOW = """(url) => {
  const seen = (window.seen = { events: [], opens: 0, closed: false });
  const source = new EventSource(url);
  source.onopen = () => { seen.opens += 1; };
  const keep = (e) => seen.events.push({ event: e.type, id: e.lastEventId, data: e.data });
  for (const name of ["metadata", "data", "end"]) source.addEventListener(name, keep);
  source.onerror = () => { seen.closed = source.readyState === EventSource.CLOSED; };
}"""


def _run_and_token(url: str) -> str:
    """Start a run with the key (a page would, with `fetch`), then get its stream URL."""
    body = {**chat_input(), "on_disconnect": "continue"}
    with httpx.Client(base_url=url, timeout=10, headers={"X-API-Key": KEY}) as client:
        with client.stream("POST", "/chains/chat/stream", json=body) as started:
            assert started.status_code == 200
            run_id = started.headers["x-run-id"]
        issued = client.post("/auth/stream-token", json={"run_id": run_id})
    assert issued.status_code == 200, issued.text
    stream_url: str = issued.json()["stream_url"]
    return stream_url


def test_event_source_on_a_run_token_url_resumes_by_itself_after_a_dropped_connection(
    tmp_path: Path, start_server: ServerFactory, upstream: MockUpstream
) -> None:
    upstream.enqueue(Script(chunks=TOKENS, hold_after=HELD_AT))
    # The upstream stays held while the browser notices the cut and waits its reconnection
    # delay; the default 5 s read timeout would end the run with an error on a busy machine.
    server = start_server(upstream_settings(upstream, api_keys=KEY, upstream_timeout=60.0))
    stream_url = _run_and_token(server.url)
    port = int(server.url.rsplit(":", 1)[1])
    with CutProxy(port) as proxy, chromium(tmp_path / "profile") as context:
        page = context.new_page()
        page.goto(f"{proxy.url}/health")  # the page's origin; /health needs no key
        page.evaluate(FOLLOW, stream_url)
        page.wait_for_function("window.seen.events.length > 4")  # metadata and held tokens
        proxy.cut()
        page.wait_for_function("window.seen.opens === 2")  # EventSource came back by itself
        upstream.release()
        # After `end` it reconnects once more, is answered 204, and gives up for good.
        page.wait_for_function("window.seen.closed", timeout=20_000)
        seen = page.evaluate("window.seen")

    events = seen["events"]
    assert [int(e["id"]) for e in events] == list(range(len(events)))
    assert "".join(json.loads(e["data"]) for e in events if e["event"] == "data") == "".join(TOKENS)
    assert events[-1]["event"] == "end"
    assert seen["opens"] == 2
