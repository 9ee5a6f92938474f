"""The PostgreSQL store's SQL in one place: `{s}` is the quoted schema, `{t}` a vector table."""

from sqlalchemy import text

COLUMNS = ("chainserve_collection", "chainserve_doc_id", "chainserve_chunk_id", "chainserve_idx")
"""The vector tables' own columns; prefixed because langchain-postgres merges them into each
result's metadata, where a chunk's own `doc_id` key would otherwise be overwritten."""
# Serialises DDL across processes (concurrent CREATE ... IF NOT EXISTS can still collide).
ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('chainserve_chunk_store'))")


def vector_table(dim: int) -> str:
    return f"chainserve_chunks_{int(dim)}"


def quote_identifier(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


VECTOR_ENABLED = "SELECT 1 FROM pg_extension WHERE extname = 'vector'"
CREATE_VECTOR = "CREATE EXTENSION IF NOT EXISTS vector"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s}"
TABLE_EXISTS = "SELECT to_regclass(:n) IS NOT NULL"
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {s}.chainserve_collections (
        name TEXT PRIMARY KEY,
        embedder TEXT,
        dim INTEGER,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.chainserve_documents (
        collection TEXT NOT NULL REFERENCES {s}.chainserve_collections (name) ON DELETE CASCADE,
        doc_id TEXT NOT NULL,
        title TEXT,
        metadata JSONB NOT NULL,
        chunks INTEGER NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (collection, doc_id)
    )""",
    # Owners, added in place to tables from before them: their collections keep a NULL owner
    # (unowned) and their name as label. `name` stays the key every table joins on
    # (store_rules.storage_name).
    "ALTER TABLE {s}.chainserve_collections ADD COLUMN IF NOT EXISTS owner TEXT",
    "ALTER TABLE {s}.chainserve_collections ADD COLUMN IF NOT EXISTS label TEXT",
    "ALTER TABLE {s}.chainserve_collections "
    "ADD COLUMN IF NOT EXISTS published BOOLEAN NOT NULL DEFAULT false",
    "UPDATE {s}.chainserve_collections SET label = name WHERE label IS NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS chainserve_collections_published "
    "ON {s}.chainserve_collections (label) WHERE published",
    "CREATE INDEX IF NOT EXISTS chainserve_collections_by_owner "
    "ON {s}.chainserve_collections (owner, label)",
)
INDEX = (
    'CREATE INDEX IF NOT EXISTS "{name}" ON {t} '
    "(chainserve_collection, chainserve_doc_id, chainserve_idx)"
)
STORED = "SELECT embedder, dim, updated_at FROM {s}.chainserve_collections WHERE name = :n"
STORED_FOR_UPDATE = STORED + " FOR UPDATE"
DELETE_COLLECTION = "DELETE FROM {s}.chainserve_collections WHERE name = :n"
DELETE_CHUNKS = "DELETE FROM {t} WHERE chainserve_collection = :c"
DELETE_DOCUMENT_CHUNKS = DELETE_CHUNKS + " AND chainserve_doc_id = :d"
ADD_COLLECTION = (
    "INSERT INTO {s}.chainserve_collections (name, embedder, dim, updated_at, owner, label) "
    "VALUES (:n, NULL, NULL, 0, :o, :l) ON CONFLICT DO NOTHING"
)
SET_PUBLISHED = "UPDATE {s}.chainserve_collections SET published = :p WHERE name = :n RETURNING 1"
SET_EMBEDDER = (
    "UPDATE {s}.chainserve_collections SET embedder = :e, dim = COALESCE(:dim, dim), "
    "updated_at = :now WHERE name = :n"
)
PUT_DOCUMENT = (
    "INSERT INTO {s}.chainserve_documents "
    "VALUES (:c, :d, :title, CAST(:meta AS jsonb), :n, :now) "
    "ON CONFLICT (collection, doc_id) DO UPDATE SET title = excluded.title, "
    "metadata = excluded.metadata, chunks = excluded.chunks, updated_at = excluded.updated_at"
)
DELETE_DOCUMENT = (
    "DELETE FROM {s}.chainserve_documents WHERE collection = :c AND doc_id = :d RETURNING 1"
)
# An emptied collection forgets its embedder (and, with no chunks left, its dimension).
TOUCH = """UPDATE {s}.chainserve_collections SET updated_at = :now,
    embedder = CASE WHEN EXISTS (
        SELECT 1 FROM {s}.chainserve_documents WHERE collection = :n) THEN embedder END,
    dim = CASE WHEN EXISTS (
        SELECT 1 FROM {s}.chainserve_documents WHERE collection = :n AND chunks > 0) THEN dim END
    WHERE name = :n"""
COLLECTIONS = (
    "SELECT c.label, COUNT(d.doc_id), COALESCE(SUM(d.chunks), 0), c.embedder, c.updated_at, "
    "c.owner, c.published FROM {s}.chainserve_collections c "
    "LEFT JOIN {s}.chainserve_documents d ON d.collection = c.name "
)
# `:all` true lists every owner's.
COLLECTIONS_LISTED = COLLECTIONS + (
    "WHERE CAST(:all AS boolean) OR c.owner IS NOT DISTINCT FROM CAST(:o AS text) "
    'OR c.published GROUP BY c.name ORDER BY c.label COLLATE "C", c.owner COLLATE "C"'
)
COLLECTION_NAMED = COLLECTIONS + "WHERE c.name = :n GROUP BY c.name"
COLLECTION_PUBLISHED = COLLECTIONS + "WHERE c.label = :n AND c.published GROUP BY c.name"
DOCUMENTS = (
    "SELECT doc_id, title, chunks, CAST(metadata AS text), updated_at "
    'FROM {s}.chainserve_documents WHERE collection = :c ORDER BY doc_id COLLATE "C"'
)
INSERT_CHUNKS = (
    "INSERT INTO {t} (langchain_id, content, embedding, chainserve_collection, "
    "chainserve_doc_id, chainserve_chunk_id, chainserve_idx, langchain_metadata) "
    "VALUES (:id, :text, CAST(:vector AS vector), :collection, :doc_id, :chunk_id, :idx, "
    "CAST(:metadata AS json))"
)
CHUNKS = (
    "SELECT chainserve_chunk_id, chainserve_doc_id, content, CAST(langchain_metadata AS text) "
    'FROM {t} WHERE chainserve_collection = :c ORDER BY chainserve_doc_id COLLATE "C", '
    "chainserve_idx"
)
