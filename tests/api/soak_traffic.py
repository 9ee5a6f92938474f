"""Soak traffic: seeded plans for hundreds of streams, each driven and abandoned as planned.

A plan says what one client does on one route family: read its stream to the end, or hang
up before the response head, right after it, or after k tokens; abandoned runs either ask to
`continue` (and may be joined on /runs/{id}/stream) or are cancelled. The plan's index
travels to the mock upstream inside the prompt, so the upstream can play the plan's script
and the test can match each upstream request to its client.
"""

import asyncio
import random
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx

from tests.support.mock_upstream import Script
from tests.support.sse import Event, SSEParser

Route = Literal["post", "get", "openai", "ui", "langserve"]
Fate = Literal["complete", "before_head", "after_head", "after_tokens"]
Join = Literal["none", "to_end", "hang_up"]
JOINS: tuple[Join, ...] = ("none", "to_end", "hang_up")
ROUTES: tuple[Route, ...] = ("post", "get", "openai", "ui", "langserve")
FATES: tuple[Fate, ...] = ("complete", "before_head", "after_head", "after_tokens")
FATE_WEIGHTS = (35, 15, 15, 35)
CONCURRENCY = 24

TOKENS = [f" t{i}" for i in range(12)]
SHORT = Script(chunks=TOKENS, delay=0.02)
"""About a quarter of a second per stream: slow enough that hang-ups land mid-stream."""
LONG = replace(SHORT, chunks=[f" t{i}" for i in range(500)])
"""Ten seconds: a run that missed its hang-up completes it, which the checks see; one that was
cancelled has its upstream see the hang-up with seconds to spare on a stalled machine."""
MARKER = re.compile(r"soak#(\d+)#")


@dataclass(frozen=True)
class Plan:
    """What one client does; its index travels to the upstream inside the prompt."""

    index: int
    route: Route
    fate: Fate
    keep: int = 0
    """after_tokens: tokens read before hanging up."""
    wait: float = 0.0
    """before_head: seconds to wait for the response head before giving up."""
    on_disconnect: Literal["cancel", "continue"] = "cancel"
    join: Join = "none"
    """continue: join the run afterwards on /runs/{id}/stream (resuming after the last event
    seen) and read it to its end, or hang up on the join too (which must not cancel)."""
    flowing: bool = False
    """cancel: the upstream is still streaming when the client hangs up (else it holds)."""

    @property
    def text(self) -> str:
        return f"soak#{self.index}#"

    def script(self) -> Script:
        """Completing and continued runs end by themselves. A cancel-mode abandoned run's
        upstream either holds after the last token its client reads or streams on for long
        after it: only the run's cancel can end that upstream request in time."""
        if self.fate == "complete" or self.on_disconnect == "continue":
            return replace(SHORT, first_delay=0.15) if self.fate == "before_head" else SHORT
        if self.flowing:
            return LONG
        hold = {"before_head": 0, "after_head": 1, "after_tokens": self.keep}[self.fate]
        return replace(SHORT, hold_after=hold)


@dataclass
class Outcome:
    """What the client of one plan saw."""

    plan: Plan
    got_head: bool = False
    run_id: str | None = None
    last_event_id: str | None = None
    tokens: int = 0
    completed: bool = False
    joined_to_end: bool = False


def make_plans(rng: random.Random, count: int, first_index: int) -> list[Plan]:
    """`count` plans over every route family; the same seed always gives the same plans."""
    plans = []
    for index in range(first_index, first_index + count):
        route = rng.choice(ROUTES)
        fate = rng.choices(FATES, FATE_WEIGHTS)[0]
        plan = Plan(index, route, fate)
        if fate == "after_tokens":
            plan = replace(plan, keep=rng.randint(1, len(TOKENS) - 2))
        if fate == "before_head":
            plan = replace(plan, wait=rng.uniform(0.0, 0.1))
        # LangServe has no `on_disconnect`: a hang-up always ends its request.
        if fate != "complete" and route != "langserve" and rng.random() < 0.3:
            plan = replace(plan, on_disconnect="continue", join=rng.choices(JOINS, (3, 5, 2))[0])
        elif fate in ("after_head", "after_tokens"):
            plan = replace(plan, flowing=rng.random() < 0.5)
        plans.append(plan)
    return plans


def request_for(plan: Plan) -> tuple[str, str, dict[str, Any]]:
    """Method, path and httpx arguments that open `plan`'s stream on its route family."""
    user = [{"role": "user", "content": plan.text}]
    control: dict[str, Any] = {"on_disconnect": plan.on_disconnect}
    if plan.route == "post":
        return "POST", "/chains/chat/stream", {"json": {"input": {"messages": user}, **control}}
    if plan.route == "get":
        return "GET", "/chains/explain/stream", {"params": {"topic": plan.text, **control}}
    if plan.route == "openai":
        body = {"model": "chat", "messages": user, "stream": True, **control}
        return "POST", "/v1/chat/completions", {"json": body}
    if plan.route == "ui":
        parts = [{"type": "text", "text": plan.text}]
        body = {"messages": [{"id": "m1", "role": "user", "parts": parts}], **control}
        return "POST", "/chains/chat/ui", {"json": body}
    return "POST", "/langserve/chat/stream", {"json": {"input": {"messages": user}}}


def is_token(route: Route, event: Event) -> bool:
    """Whether `event` carries one of the model's tokens, in `route`'s framing."""
    if route in ("post", "get"):
        return event.event == "data"
    if event.data == "[DONE]":
        return False
    data = event.json()
    if route == "openai":
        return bool(data["choices"] and data["choices"][0]["delta"].get("content"))
    if route == "ui":
        return bool(data.get("type") == "text-delta")
    return event.event == "data" and bool(data)


def is_finished(route: Route, events: list[Event], body_tail: bytes) -> bool:
    """Whether the stream ended the way a successful run ends, in `route`'s framing."""
    if route in ("post", "get"):
        return bool(events) and events[-1].event == "end"
    if route in ("openai", "ui"):
        return bool(events) and events[-1].data == "[DONE]"
    # LangServe's `end` event has no data line, so spec parsers never dispatch it.
    return body_tail.rstrip().endswith(b"event: end")


async def read_stream(response: httpx.Response, outcome: Outcome) -> None:
    """Read until the plan says hang up (returning closes the connection) or the stream ends."""
    plan, parser, tail = outcome.plan, SSEParser(), b""
    events: list[Event] = []
    async for chunk in response.aiter_raw():
        tail = (tail + chunk)[-64:]
        for event in parser.feed(chunk):
            events.append(event)
            outcome.last_event_id = event.id
            outcome.tokens += is_token(plan.route, event)
            if plan.fate == "after_tokens" and outcome.tokens >= plan.keep:
                return
    outcome.completed = is_finished(plan.route, events, tail)


async def drive(client: httpx.AsyncClient, plan: Plan) -> Outcome:
    """Open `plan`'s stream and abandon it (or not) where the plan says; closing a response
    before its end closes its connection, which is how the server learns of the hang-up."""
    outcome = Outcome(plan)
    method, path, kwargs = request_for(plan)
    request = client.build_request(method, path, **kwargs)
    try:
        async with asyncio.timeout(plan.wait if plan.fate == "before_head" else None):
            response = await client.send(request, stream=True)
    except TimeoutError:
        assert plan.fate == "before_head"
    else:
        try:
            assert response.status_code == 200, await response.aread()
            outcome.got_head = True
            outcome.run_id = response.headers.get("x-run-id")
            if plan.fate not in ("before_head", "after_head"):
                await read_stream(response, outcome)
        finally:
            await response.aclose()
    if plan.join != "none" and outcome.run_id is not None:
        outcome.joined_to_end = await join(client, outcome)
    return outcome


async def join(client: httpx.AsyncClient, outcome: Outcome) -> bool:
    """Join a continued run after the last event its client saw, and follow it to the end
    (True if that was an `end` event), or hang up at the first event."""
    headers = {"Last-Event-ID": outcome.last_event_id} if outcome.last_event_id else {}
    path = f"/runs/{outcome.run_id}/stream"
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code in (200, 204), await response.aread()
        parser, last = SSEParser(), None
        async for chunk in response.aiter_raw():
            for event in parser.feed(chunk):
                if outcome.plan.join == "hang_up":
                    return False
                last = event.event
        return last == "end"


async def run_traffic(url: str, plans: list[Plan]) -> list[Outcome]:
    """Drive every plan, at most CONCURRENCY streams at a time, from one pooled client."""
    queue = list(reversed(plans))
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            plan = queue.pop()
            async with asyncio.timeout(20):
                outcomes.append(await drive(client, plan))

    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return outcomes
