"""Threads and runs belong to the key that made them, on every route family, across restarts."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve.lzstring import LZString

from tests.api.owners import (
    ADMIN,
    ADMIN_ID,
    ALICE,
    ALICE_ID,
    BOB,
    CHAT,
    call,
    keyed_settings,
    new_thread,
    same_refusal,
)
from tests.conftest import ServerFactory
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

MISSING = "0123456789abcdef0123456789abcdef"
MISSING_RUN = "00000000-0000-4000-8000-000000000000"
MESSAGES = [{"role": "user", "content": "hi"}]


def _hash(thread_id: str) -> str:
    config = json.dumps({"configurable": {"thread_id": thread_id}})
    return str(LZString.compressToEncodedURIComponent(config))


# Each route family that can continue a thread: (method, path, body) for a thread id.
ThreadCall = Callable[[str], tuple[str, str, Any]]
THREAD_ROUTES: dict[str, ThreadCall] = {
    "native stream": lambda t: ("POST", "/chains/chat/stream", {**CHAT, "thread_id": t}),
    "native GET stream": lambda t: ("GET", f"/chains/chat/stream?message=hi&thread_id={t}", None),
    "native invoke": lambda t: (
        "POST",
        "/chains/chat/invoke",
        {**CHAT, "config": {"configurable": {"thread_id": t}}},
    ),
    "v1": lambda t: (
        "POST",
        "/v1/chat/completions",
        {"model": "chat", "messages": MESSAGES, "thread_id": t},
    ),
    "v1 stream": lambda t: (
        "POST",
        "/v1/chat/completions",
        {"model": "chat", "messages": MESSAGES, "thread_id": t, "stream": True},
    ),
    "ui": lambda t: (
        "POST",
        "/chains/chat/ui",
        {"messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}], "thread_id": t},
    ),
    "langserve invoke": lambda t: (
        "POST",
        "/langserve/chat/invoke",
        {"input": {"messages": MESSAGES}, "config": {"configurable": {"thread_id": t}}},
    ),
    "langserve stream": lambda t: (
        "POST",
        "/langserve/chat/stream",
        {"input": {"messages": MESSAGES}, "config": {"configurable": {"thread_id": t}}},
    ),
    "langserve batch": lambda t: (
        "POST",
        "/langserve/chat/batch",
        {"inputs": [{"messages": MESSAGES}], "config": {"configurable": {"thread_id": t}}},
    ),
    "playground hash invoke": lambda t: (
        "POST",
        f"/langserve/chat/c/{_hash(t)}/invoke",
        {"input": {"messages": MESSAGES}},
    ),
    "playground hash page": lambda t: ("GET", f"/langserve/chat/c/{_hash(t)}/playground/", None),
}


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(keyed_settings())


@pytest.mark.parametrize("family", sorted(THREAD_ROUTES))
async def test_another_keys_thread_is_refused_like_a_missing_one_on_every_route_family(
    server: LiveServer, family: str
) -> None:
    thread_id = await new_thread(server.url, ALICE)
    route = THREAD_ROUTES[family]
    foreign = await call(server.url, BOB, *route(thread_id))
    missing = await call(server.url, BOB, *route(MISSING))
    if "hash" in family:  # the thread id is inside the hash: compare the bodies as they are
        assert foreign.status_code == missing.status_code == 404
        assert json.loads(foreign.text)["error"]["code"] == "not_found"
    else:
        same_refusal(foreign, missing, thread_id, MISSING)
    thread = await call(server.url, ALICE, "GET", f"/threads/{thread_id}")
    assert thread.json()["messages"] == []  # Bob's attempt never reached the thread
    own = await call(server.url, ALICE, *route(thread_id))
    assert own.status_code == 200, own.text


async def test_another_keys_thread_cannot_be_read_or_deleted_and_the_404_matches(
    server: LiveServer,
) -> None:
    thread_id = await new_thread(server.url, ALICE)
    for method in ("GET", "DELETE"):
        foreign = await call(server.url, BOB, method, f"/threads/{thread_id}")
        missing = await call(server.url, BOB, method, f"/threads/{MISSING}")
        same_refusal(foreign, missing, thread_id, MISSING)
    assert (await call(server.url, ALICE, "GET", f"/threads/{thread_id}")).status_code == 200
    assert (await call(server.url, ALICE, "DELETE", f"/threads/{thread_id}")).status_code == 204


async def test_threads_list_only_the_callers_own_and_an_admin_sees_and_manages_all(
    server: LiveServer,
) -> None:
    alices = await new_thread(server.url, ALICE)
    bobs = await new_thread(server.url, BOB)
    listed = await call(server.url, ALICE, "GET", "/threads")
    assert [t["thread_id"] for t in listed.json()["threads"]] == [alices]
    assert listed.json()["threads"][0]["owner"] == ALICE_ID
    everything = await call(server.url, ADMIN, "GET", "/threads")
    assert {t["thread_id"] for t in everything.json()["threads"]} == {alices, bobs}
    read = await call(server.url, ADMIN, "GET", f"/threads/{alices}")
    assert read.status_code == 200
    assert read.json()["owner"] == ALICE_ID
    ran = await call(server.url, ADMIN, "POST", "/chains/chat/invoke", {**CHAT, "thread_id": bobs})
    assert ran.status_code == 200
    assert (await call(server.url, ADMIN, "DELETE", f"/threads/{bobs}")).status_code == 204
    assert (await call(server.url, BOB, "GET", f"/threads/{bobs}")).status_code == 404
    admins = await new_thread(server.url, ADMIN)
    own = await call(server.url, ADMIN, "GET", f"/threads/{admins}")
    assert own.json()["owner"] == ADMIN_ID


async def _run_id(url: str, key: str) -> str:
    response = await call(url, key, "POST", "/chains/chat/stream", CHAT)
    assert response.status_code == 200
    return response.headers["x-run-id"]


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("GET", "/stream"), ("POST", "/cancel")]
)
async def test_another_keys_run_is_refused_like_a_missing_one(
    server: LiveServer, method: str, suffix: str
) -> None:
    run_id = await _run_id(server.url, ALICE)
    foreign = await call(server.url, BOB, method, f"/runs/{run_id}{suffix}")
    missing = await call(server.url, BOB, method, f"/runs/{MISSING_RUN}{suffix}")
    same_refusal(foreign, missing, run_id, MISSING_RUN)
    own = await call(server.url, ALICE, method, f"/runs/{run_id}{suffix}")
    assert own.status_code in (200, 204, 409)  # 409: cancelling a run that has finished
    admin = await call(server.url, ADMIN, method, f"/runs/{run_id}{suffix}")
    assert admin.status_code == own.status_code


SPOOF = {"configurable": {"__chainserve_owner": ALICE_ID}}
SPOOFS: dict[str, tuple[str, str, Any]] = {
    "native": ("POST", "/chains/chat/invoke", {**CHAT, "config": SPOOF}),
    "native GET": ("GET", f"/chains/chat/stream?message=hi&config={json.dumps(SPOOF)}", None),
    "v1": (
        "POST",
        "/v1/chat/completions",
        {"model": "chat", "messages": MESSAGES, "config": SPOOF},
    ),
    "langserve": (
        "POST",
        "/langserve/chat/invoke",
        {"input": {"messages": MESSAGES}, "config": SPOOF},
    ),
    "playground hash": (
        "POST",
        f"/langserve/chat/c/{LZString.compressToEncodedURIComponent(json.dumps(SPOOF))}/invoke",
        {"input": {"messages": MESSAGES}},
    ),
}


@pytest.mark.parametrize("family", sorted(SPOOFS))
async def test_a_request_cannot_name_itself_the_owner_through_configurable(
    server: LiveServer, family: str
) -> None:
    response = await call(server.url, BOB, *SPOOFS[family])
    assert response.status_code == 400, response.text


async def test_a_stream_token_opens_only_its_own_keys_threads_and_its_runs_are_its_own(
    server: LiveServer,
) -> None:
    alices, bobs = await new_thread(server.url, ALICE), await new_thread(server.url, BOB)
    issued = await call(server.url, BOB, "POST", "/auth/stream-token", {"chain": "chat"})
    token = issued.json()["token"]
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        path = f"/chains/chat/stream?token={token}&message=hi&thread_id="
        foreign = await client.get(path + alices)
        missing = await client.get(path + MISSING)
        own = await client.get(path + bobs)
    same_refusal(foreign, missing, alices, MISSING)
    assert own.status_code == 200
    run_id = own.headers["x-run-id"]
    assert (await call(server.url, ALICE, "GET", f"/runs/{run_id}")).status_code == 404
    assert (await call(server.url, BOB, "GET", f"/runs/{run_id}")).status_code == 200
    turns = (await call(server.url, BOB, "GET", f"/threads/{bobs}")).json()["messages"]
    assert len(turns) == 2


async def test_ownership_survives_a_restart_on_sqlite(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    settings = keyed_settings(data_dir=tmp_path / "data")
    with LiveServer(settings) as first:
        thread_id = await new_thread(first.url, ALICE)
    second = start_server(settings)
    assert (await call(second.url, BOB, "GET", f"/threads/{thread_id}")).status_code == 404
    assert (await call(second.url, ALICE, "GET", f"/threads/{thread_id}")).status_code == 200


async def test_threads_and_runs_in_redis_are_owned_across_servers(
    start_server: ServerFactory, redis_url: str
) -> None:
    """Two servers on one Redis: what Alice made on one, Bob cannot reach through the other."""
    one = start_server(keyed_settings(redis_url=redis_url))
    other = start_server(keyed_settings(redis_url=redis_url))
    thread_id = await new_thread(one.url, ALICE)
    run_id = await _run_id(one.url, ALICE)
    for path in (f"/threads/{thread_id}", f"/runs/{run_id}"):
        assert (await call(other.url, BOB, "GET", path)).status_code == 404
        assert (await call(other.url, ALICE, "GET", path)).status_code == 200
        assert (await call(other.url, ADMIN, "GET", path)).status_code == 200
    body = {**CHAT, "thread_id": thread_id}
    ran = await call(other.url, BOB, "POST", "/chains/chat/invoke", body)
    assert ran.status_code == 404
    alices = await call(other.url, ALICE, "GET", "/threads")
    assert thread_id in [t["thread_id"] for t in alices.json()["threads"]]
    bobs = await call(other.url, BOB, "GET", "/threads")
    assert thread_id not in [t["thread_id"] for t in bobs.json()["threads"]]
    everyone = await call(other.url, ADMIN, "GET", "/threads", params={"limit": 1000})
    assert thread_id in [t["thread_id"] for t in everyone.json()["threads"]]


OLD_THREADS_SCHEMA = """
CREATE TABLE threads (thread_id TEXT PRIMARY KEY, created_at REAL NOT NULL,
                      metadata TEXT NOT NULL DEFAULT '{}');
CREATE TABLE messages (thread_id TEXT NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
                       seq INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL);
INSERT INTO threads VALUES ('legacythread', 1700000000.0, '{"from": "before"}');
"""


async def test_threads_from_before_owners_are_migrated_and_seen_by_admins_only(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "threads.sqlite3") as db:
        db.executescript(OLD_THREADS_SCHEMA)
    server = start_server(keyed_settings(data_dir=data))
    for key in (ALICE, BOB):
        assert (await call(server.url, key, "GET", "/threads/legacythread")).status_code == 404
        assert (await call(server.url, key, "GET", "/threads")).json()["threads"] == []
    seen = await call(server.url, ADMIN, "GET", "/threads/legacythread")
    assert seen.status_code == 200
    assert seen.json()["owner"] is None
    assert seen.json()["metadata"] == {"from": "before"}
    listed = await call(server.url, ADMIN, "GET", "/threads")
    assert [t["thread_id"] for t in listed.json()["threads"]] == ["legacythread"]
    # New threads in the migrated file are owned as usual.
    thread_id = await new_thread(server.url, ALICE)
    assert (await call(server.url, BOB, "GET", f"/threads/{thread_id}")).status_code == 404


async def test_redis_threads_and_runs_from_before_owners_are_seen_by_admins_only(
    start_server: ServerFactory, redis_url: str
) -> None:
    import uuid

    from redis.asyncio import Redis

    old, old_run = f"legacy{uuid.uuid4().hex[:20]}", str(uuid.uuid4())
    record = {"run_id": old_run, "chain": "chat", "model": {}, "created_at": 1.0, "status": "done"}
    redis: Redis = Redis.from_url(redis_url)
    await redis.hset(f"chainserve:thread:{old}", mapping={"created_at": "1.0", "metadata": "{}"})
    await redis.set(f"chainserve:run:{old_run}", json.dumps(record), ex=600)
    await redis.aclose()
    server = start_server(keyed_settings(redis_url=redis_url))
    for path in (f"/threads/{old}", f"/runs/{old_run}"):
        assert (await call(server.url, ALICE, "GET", path)).status_code == 404
        assert (await call(server.url, ADMIN, "GET", path)).status_code == 200
    listed = await call(server.url, ADMIN, "GET", "/threads", params={"limit": 1000})
    assert old in [t["thread_id"] for t in listed.json()["threads"]]
