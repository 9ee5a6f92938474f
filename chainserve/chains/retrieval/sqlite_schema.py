"""The embedded chunk store's tables, and the in-place upgrade of files from before owners."""

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    embedder TEXT,
    dim INTEGER,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    title TEXT,
    metadata TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (collection, doc_id, idx)
);
"""
# Added in place to files from before owners; their collections keep a NULL owner (unowned)
# and their name as label. `name` stays the key every table joins on (store_rules.storage_name).
_OWNER_COLUMNS = (
    "ALTER TABLE collections ADD COLUMN owner TEXT",
    "ALTER TABLE collections ADD COLUMN label TEXT",
    "ALTER TABLE collections ADD COLUMN published INTEGER NOT NULL DEFAULT 0",
)
_OWNER_INDEXES = """
UPDATE collections SET label = name WHERE label IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS collections_published ON collections(label) WHERE published = 1;
CREATE INDEX IF NOT EXISTS collections_by_owner ON collections(owner, label);
"""


def add_owners(db: sqlite3.Connection) -> None:
    """Bring a file to the owned layout, in one transaction (another worker may race us)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(collections)")}
        for statement in _OWNER_COLUMNS:
            if statement.split()[5] not in have:
                db.execute(statement)
        for statement in _OWNER_INDEXES.strip().splitlines():
            db.execute(statement)
    except Exception:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
