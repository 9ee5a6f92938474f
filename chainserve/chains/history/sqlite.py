"""The embedded thread store: one SQLite file, safe for several worker processes (WAL)."""

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from chainserve.chains.history.store import ThreadInfo

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    thread_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS messages (
    thread_id TEXT NOT NULL REFERENCES threads(thread_id) ON DELETE CASCADE,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages(thread_id, seq);
"""
_OWNED = "CREATE INDEX IF NOT EXISTS threads_by_owner ON threads(owner, created_at)"


def _add_owner_column(db: sqlite3.Connection) -> None:
    """Files from before threads had owners get the column in place; their threads keep a
    NULL owner (unowned). Checked again inside the write lock: another worker may be first."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        columns = {row[1] for row in db.execute("PRAGMA table_info(threads)")}
        if "owner" not in columns:
            db.execute("ALTER TABLE threads ADD COLUMN owner TEXT")
        db.execute(_OWNED)


class SQLiteThreadStore:
    """Threads in a SQLite file; calls run in worker threads so the event loop never blocks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            _add_owner_column(db)
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._connect())

        return await asyncio.to_thread(locked)

    async def create(
        self, metadata: dict[str, Any] | None = None, owner: str | None = None
    ) -> ThreadInfo:
        info = ThreadInfo(uuid.uuid4().hex, time.time(), dict(metadata or {}), owner)
        await self._run(
            lambda db: db.execute(
                "INSERT INTO threads (thread_id, created_at, metadata, owner) VALUES (?, ?, ?, ?)",
                (info.thread_id, info.created_at, json.dumps(info.metadata), owner),
            )
        )
        return info

    async def get(self, thread_id: str) -> ThreadInfo | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT thread_id, created_at, metadata, owner FROM threads WHERE thread_id = ?",
                (thread_id,),
            ).fetchone()
        )
        return None if row is None else _info(row)

    async def list_threads(
        self, owner: str | None, *, everyone: bool = False, limit: int = 100
    ) -> list[ThreadInfo]:
        # `everyone` turns the owner test off rather than building another statement.
        sql = (
            "SELECT thread_id, created_at, metadata, owner FROM threads "
            "WHERE ? OR owner IS ? ORDER BY created_at DESC LIMIT ?"
        )
        rows = await self._run(lambda db: db.execute(sql, (everyone, owner, limit)).fetchall())
        return [_info(row) for row in rows]

    async def messages(self, thread_id: str) -> list[BaseMessage]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT message FROM messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
            ).fetchall()
        )
        return messages_from_dict([json.loads(row[0]) for row in rows])

    async def append(self, thread_id: str, messages: Sequence[BaseMessage]) -> None:
        rows = [(thread_id, json.dumps(message_to_dict(m))) for m in messages]

        def insert(db: sqlite3.Connection) -> None:
            with db:  # one transaction: a turn is stored whole or not at all
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO messages (thread_id, message) VALUES (?, ?)", rows)

        await self._run(insert)

    async def delete(self, thread_id: str) -> bool:
        cursor = await self._run(
            lambda db: db.execute("DELETE FROM threads WHERE thread_id = ?", (thread_id,))
        )
        return cursor.rowcount > 0

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(close)


def _info(row: tuple[Any, ...]) -> ThreadInfo:
    thread_id, created_at, metadata, owner = row
    return ThreadInfo(thread_id, created_at, json.loads(metadata), owner)
