"""Collections belong to the key that made them, names are per key, and admins publish."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.api.owners import (
    ADMIN,
    ADMIN_ID,
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    call,
    keyed_settings,
    same_refusal,
)
from tests.api.streaming import collect
from tests.conftest import ServerFactory
from tests.support.server import LiveServer

pytestmark = pytest.mark.asyncio

SECRET = {"id": "launch", "text": "The launch code is ZEBRA-7.", "metadata": {"title": "Launch"}}
OFFICE = {"id": "office", "text": "The office opens at nine.", "metadata": {"title": "Office"}}


async def ingest(url: str, key: str, name: str, doc: dict[str, Any], **params: str) -> None:
    response = await call(
        url, key, "POST", f"/collections/{name}/documents", {"documents": [doc]}, params=params
    )
    assert response.status_code == 200, response.text


async def sources(url: str, key: str, question: str, **configurable: object) -> list[str]:
    """The document ids the `rag` chain retrieved for `key`."""
    body = {
        "input": {"question": question},
        "config": {"configurable": {"retriever": "bm25", **configurable}},
    }
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream(
            "POST", "/chains/rag/stream", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        result = await collect(response)
    assert result.status == 200, result.body
    return [s["doc_id"] for s in result.of("sources")[0].json()["sources"]]


def names(response: httpx.Response) -> list[tuple[str, str | None]]:
    return [(c["name"], c["owner"]) for c in response.json()["collections"]]


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(keyed_settings())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/collections/{}"),
        ("DELETE", "/collections/{}"),
        ("DELETE", "/collections/{}/documents/launch"),
        ("GET", "/collections/{}?owner=" + ALICE_ID),
    ],
)
async def test_another_keys_collection_is_refused_like_a_missing_one(
    server: LiveServer, method: str, path: str
) -> None:
    await ingest(server.url, ALICE, "secrets", SECRET)
    foreign = await call(server.url, BOB, method, path.format("secrets"))
    missing = await call(server.url, BOB, method, path.format("nothing"))
    same_refusal(foreign, missing, "secrets", "nothing")
    assert names(await call(server.url, BOB, "GET", "/collections")) == []
    kept = await call(server.url, ALICE, "GET", "/collections/secrets")
    assert [d["id"] for d in kept.json()["document_list"]] == ["launch"]


async def test_two_keys_each_have_a_default_and_rag_searches_the_callers_own(
    server: LiveServer,
) -> None:
    await ingest(server.url, ALICE, "default", SECRET)
    await ingest(server.url, BOB, "default", OFFICE)
    assert names(await call(server.url, ALICE, "GET", "/collections")) == [("default", ALICE_ID)]
    assert names(await call(server.url, BOB, "GET", "/collections")) == [("default", BOB_ID)]
    assert await sources(server.url, ALICE, "launch code office") == ["launch"]
    assert await sources(server.url, BOB, "launch code office") == ["office"]
    await ingest(server.url, ALICE, "private", SECRET)
    assert await sources(server.url, BOB, "launch code", collection="private") == []
    assert await sources(server.url, ALICE, "launch code", collection="private") == ["launch"]


async def test_the_rag_knob_on_langserve_searches_only_the_callers_collections(
    server: LiveServer,
) -> None:
    await ingest(server.url, ALICE, "private", SECRET)
    body = {
        "input": {"question": "launch code"},
        "config": {"configurable": {"collection": "private", "retriever": "bm25"}},
    }
    seen = {}
    for key in (ALICE, BOB):
        response = await call(server.url, key, "POST", "/langserve/rag/stream_events", body)
        assert response.status_code == 200
        seen[key] = "ZEBRA-7" in response.text
    assert seen == {ALICE: True, BOB: False}


async def test_an_admin_sees_and_manages_every_keys_collections(server: LiveServer) -> None:
    await ingest(server.url, ALICE, "default", SECRET)
    await ingest(server.url, BOB, "default", OFFICE)
    listed = names(await call(server.url, ADMIN, "GET", "/collections"))
    assert sorted(listed) == sorted([("default", ALICE_ID), ("default", BOB_ID)])
    alices = await call(server.url, ADMIN, "GET", f"/collections/default?owner={ALICE_ID}")
    assert [d["id"] for d in alices.json()["document_list"]] == ["launch"]
    deleted = await call(server.url, ADMIN, "DELETE", f"/collections/default?owner={BOB_ID}")
    assert deleted.status_code == 204
    assert (await call(server.url, BOB, "GET", "/collections/default")).status_code == 404
    assert (await call(server.url, ALICE, "GET", "/collections/default")).status_code == 200
    # An ordinary key cannot reach another owner by naming it.
    sneaky = await call(server.url, BOB, "POST", f"/collections/x/documents?owner={ALICE_ID}")
    assert sneaky.status_code == 404


async def test_a_published_collection_is_read_only_for_keys_and_their_own_name_wins(
    server: LiveServer,
) -> None:
    await ingest(server.url, ADMIN, "kb", OFFICE)
    refused = await call(server.url, ALICE, "POST", "/collections/kb/publish")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"
    assert (await call(server.url, ALICE, "GET", "/collections/kb")).status_code == 404
    published = await call(server.url, ADMIN, "POST", "/collections/kb/publish")
    assert published.status_code == 200
    assert published.json()["published"] is True
    assert names(await call(server.url, ALICE, "GET", "/collections")) == [("kb", ADMIN_ID)]
    assert (await call(server.url, ALICE, "GET", "/collections/kb")).status_code == 200
    assert await sources(server.url, ALICE, "office", collection="kb") == ["office"]
    for path in ("/collections/kb", "/collections/kb/documents/office"):
        write = await call(server.url, ALICE, "DELETE", path)
        assert write.status_code == 403
        assert write.json()["error"]["code"] == "collection_read_only"
    # Bob's own `kb` shadows the published one for Bob, and leaves it as it was.
    await ingest(server.url, BOB, "kb", SECRET)
    assert await sources(server.url, BOB, "launch office", collection="kb") == ["launch"]
    assert await sources(server.url, ALICE, "launch office", collection="kb") == ["office"]
    # One published collection per name.
    clash = await call(server.url, ADMIN, "POST", f"/collections/kb/publish?owner={BOB_ID}")
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "published_name_taken"
    assert (await call(server.url, ADMIN, "POST", "/collections/kb/unpublish")).status_code == 200
    assert (await call(server.url, ALICE, "GET", "/collections/kb")).status_code == 404
    assert await sources(server.url, ALICE, "office", collection="kb") == []


async def test_collection_ownership_survives_a_restart(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    settings = keyed_settings(data_dir=tmp_path / "data")
    with LiveServer(settings) as first:
        await ingest(first.url, ALICE, "default", SECRET)
    second = start_server(settings)
    assert (await call(second.url, BOB, "GET", "/collections/default")).status_code == 404
    assert (await call(second.url, ALICE, "GET", "/collections/default")).status_code == 200


@pytest_asyncio.fixture
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    """A database of its own on the session's PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"owners_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as db:
        await db.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as db:
        await db.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def test_collections_in_postgres_are_owned_per_key(
    start_server: ServerFactory, fresh_database: str
) -> None:
    server = start_server(keyed_settings(database_url=fresh_database))
    await ingest(server.url, ALICE, "default", SECRET)
    await ingest(server.url, BOB, "default", OFFICE)
    assert names(await call(server.url, BOB, "GET", "/collections")) == [("default", BOB_ID)]
    assert await sources(server.url, BOB, "launch code office") == ["office"]
    assert await sources(server.url, ALICE, "launch code office") == ["launch"]
    foreign = await call(server.url, BOB, "GET", f"/collections/default?owner={ALICE_ID}")
    assert foreign.status_code == 404
    await call(server.url, ADMIN, "POST", f"/collections/default/publish?owner={ALICE_ID}")
    await ingest(server.url, ADMIN, "other", OFFICE)
    listed = names(await call(server.url, BOB, "GET", "/collections"))
    assert sorted(listed) == sorted([("default", ALICE_ID), ("default", BOB_ID)])
    # Bob's own `default` still wins over the published one.
    assert await sources(server.url, BOB, "launch code office") == ["office"]
    refused = await call(server.url, BOB, "DELETE", "/collections/default/documents/launch")
    assert refused.status_code == 404  # Bob's own default has no `launch`
    assert (await call(server.url, BOB, "DELETE", "/collections/default")).status_code == 204
    assert await sources(server.url, BOB, "launch code office") == ["launch"]
    read_only = await call(server.url, BOB, "DELETE", "/collections/default")
    assert read_only.status_code == 403


OLD_SQLITE = """
CREATE TABLE collections (name TEXT PRIMARY KEY, embedder TEXT, dim INTEGER,
                          updated_at REAL NOT NULL);
CREATE TABLE documents (collection TEXT NOT NULL, doc_id TEXT NOT NULL, title TEXT,
                        metadata TEXT NOT NULL, chunks INTEGER NOT NULL, updated_at REAL NOT NULL,
                        PRIMARY KEY (collection, doc_id));
CREATE TABLE chunks (collection TEXT NOT NULL, doc_id TEXT NOT NULL, idx INTEGER NOT NULL,
                     id TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
                     embedding BLOB NOT NULL, PRIMARY KEY (collection, doc_id, idx));
INSERT INTO collections VALUES ('default', 'test/old-embedder', 2, 1.0);
INSERT INTO documents VALUES ('default', 'old', 'Old doc', '{}', 1, 1.0);
INSERT INTO chunks VALUES ('default', 'old', 0, 'old:0', 'from before', '{}', zeroblob(8));
"""
OLD_POSTGRES = (
    "CREATE TABLE chainserve_collections (name TEXT PRIMARY KEY, embedder TEXT, dim INTEGER, "
    "updated_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE chainserve_documents (collection TEXT NOT NULL REFERENCES "
    "chainserve_collections (name) ON DELETE CASCADE, doc_id TEXT NOT NULL, title TEXT, "
    "metadata JSONB NOT NULL, chunks INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (collection, doc_id))",
    "INSERT INTO chainserve_collections VALUES ('default', NULL, NULL, 1.0)",
    "INSERT INTO chainserve_documents VALUES ('default', 'old', 'Old doc', '{}', 0, 1.0)",
)


async def _only_admins_see_the_old_collection(url: str) -> None:
    for key in (ALICE, BOB):
        assert (await call(url, key, "GET", "/collections/default")).status_code == 404
        assert names(await call(url, key, "GET", "/collections")) == []
        legacy = await call(url, key, "GET", "/collections/default?owner=legacy")
        assert legacy.status_code == 404
    assert names(await call(url, ADMIN, "GET", "/collections")) == [("default", None)]
    old = await call(url, ADMIN, "GET", "/collections/default?owner=legacy")
    assert [d["id"] for d in old.json()["document_list"]] == ["old"]
    # The admin can share it, and a key's own `default` lives beside it.
    shared = await call(url, ADMIN, "POST", "/collections/default/publish?owner=legacy")
    assert shared.status_code == 200
    assert (await call(url, ALICE, "GET", "/collections/default")).json()["owner"] is None
    await ingest(url, ALICE, "default", SECRET)
    own = await call(url, ALICE, "GET", "/collections/default")
    assert [d["id"] for d in own.json()["document_list"]] == ["launch"]


async def test_sqlite_collections_from_before_owners_are_migrated_and_admin_only(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "documents.sqlite3") as db:
        db.executescript(OLD_SQLITE)
    server = start_server(keyed_settings(data_dir=data))
    await _only_admins_see_the_old_collection(server.url)


async def test_postgres_collections_from_before_owners_are_migrated_and_admin_only(
    start_server: ServerFactory, fresh_database: str
) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as db:
        for statement in OLD_POSTGRES:
            await db.execute(statement)  # type: ignore[arg-type]
    server = start_server(keyed_settings(database_url=fresh_database))
    await _only_admins_see_the_old_collection(server.url)
