"""Both thread stores keep the same promises: order, isolation, deletion, durability."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from langchain_core.messages import AIMessage, HumanMessage

from chainserve.chains.history import ThreadStore
from chainserve.chains.history.redis import RedisThreadStore
from chainserve.chains.history.sqlite import SQLiteThreadStore

pytestmark = pytest.mark.asyncio

StoreFactory = Callable[[], ThreadStore]


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores that share one backing database, as two workers would."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        db = f"{url.rsplit('/', 1)[0]}/{uuid.uuid4().int % 15 + 1}"
        # Another test may have used the same database: start from an empty one, so listings
        # hold only this test's threads.
        with redis.Redis.from_url(db) as client:
            client.flushdb()
        factory: StoreFactory = lambda: RedisThreadStore(db)  # noqa: E731
    else:
        factory = lambda: SQLiteThreadStore(tmp_path / "threads.sqlite3")  # noqa: E731
    opened: list[ThreadStore] = []

    def make() -> ThreadStore:
        opened.append(factory())
        return opened[-1]

    yield make
    for store in opened:
        await store.aclose()


async def test_messages_come_back_in_order_with_their_types(make_store: StoreFactory) -> None:
    store = make_store()
    thread = await store.create({"team": "x"})
    await store.append(thread.thread_id, [HumanMessage("q1"), AIMessage("a1")])
    await store.append(thread.thread_id, [HumanMessage("q2")])
    messages = await store.messages(thread.thread_id)
    assert [(m.type, m.content) for m in messages] == [
        ("human", "q1"),
        ("ai", "a1"),
        ("human", "q2"),
    ]
    info = await store.get(thread.thread_id)
    assert info is not None
    assert info.metadata == {"team": "x"}


async def test_threads_are_isolated(make_store: StoreFactory) -> None:
    store = make_store()
    one, two = await store.create(), await store.create()
    await store.append(one.thread_id, [HumanMessage("only in one")])
    assert await store.messages(two.thread_id) == []


async def test_delete_removes_thread_and_messages(make_store: StoreFactory) -> None:
    store = make_store()
    thread = await store.create()
    await store.append(thread.thread_id, [HumanMessage("x")])
    assert await store.delete(thread.thread_id) is True
    assert await store.get(thread.thread_id) is None
    assert await store.messages(thread.thread_id) == []
    assert await store.delete(thread.thread_id) is False


async def test_a_second_store_on_the_same_backend_sees_everything(make_store: StoreFactory) -> None:
    """What one worker writes, another reads: the point of a shared store."""
    writer, reader = make_store(), make_store()
    thread = await writer.create()
    await asyncio.gather(
        *(writer.append(thread.thread_id, [HumanMessage(f"m{i}")]) for i in range(20))
    )
    assert await reader.get(thread.thread_id) is not None
    assert len(await reader.messages(thread.thread_id)) == 20


async def test_unknown_thread_reads_as_missing(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.get("nope") is None
    assert await store.messages("nope") == []


async def test_threads_keep_their_owner_and_list_by_it(make_store: StoreFactory) -> None:
    store = make_store()
    mine = await store.create(owner="key-aaaaaaaaaaaa")
    theirs = await store.create(owner="key-bbbbbbbbbbbb")
    unowned = await store.create()
    again = make_store()  # another worker, or the same one after a restart
    found = await again.get(mine.thread_id)
    assert found is not None
    assert found.owner == "key-aaaaaaaaaaaa"
    assert [t.thread_id for t in await again.list_threads("key-aaaaaaaaaaaa")] == [mine.thread_id]
    assert [t.thread_id for t in await again.list_threads(None)] == [unowned.thread_id]
    everyone = await again.list_threads(None, everyone=True, limit=1000)
    assert {mine.thread_id, theirs.thread_id, unowned.thread_id} <= {t.thread_id for t in everyone}
    assert await again.delete(mine.thread_id)
    assert await again.list_threads("key-aaaaaaaaaaaa") == []
