"""Choose the durable stores from Settings: embedded by default, Redis when configured."""

from chainserve.api.access.limit_counts import (
    LocalRequestRate,
    LocalStreamSlots,
    RequestRate,
    StreamSlots,
)
from chainserve.api.runs.log import RunLog
from chainserve.api.runs.log_memory import MemoryRunLog
from chainserve.api.settings import Settings
from chainserve.chains.history import ThreadStore
from chainserve.chains.history.sqlite import SQLiteThreadStore
from chainserve.chains.retrieval.types import ChunkStore


def build_thread_store(settings: Settings) -> ThreadStore:
    """Threads live in SQLite under the data directory unless `CHAINSERVE_REDIS_URL` is set."""
    if settings.redis_url is not None:
        from chainserve.chains.history.redis import RedisThreadStore

        return RedisThreadStore(
            settings.redis_url.get_secret_value(), timeout=settings.store_timeout_seconds
        )
    return SQLiteThreadStore(settings.data_dir / "threads.sqlite3")


def build_run_log(settings: Settings) -> RunLog:
    """Runs are logged in-process unless `CHAINSERVE_REDIS_URL` is set (then any worker can
    join or cancel any run)."""
    if settings.redis_url is not None:
        from chainserve.api.runs.log_redis import RedisRunLog

        return RedisRunLog(
            settings.redis_url.get_secret_value(),
            ttl=settings.run_ttl_seconds,
            max_events=settings.run_max_events,
            timeout=settings.store_timeout_seconds,
            lease=settings.run_lease_seconds,
            flush_interval=settings.run_flush_ms / 1000,
        )
    return MemoryRunLog(ttl=settings.run_ttl_seconds, max_events=settings.run_max_events)


def build_limit_counts(settings: Settings) -> tuple[RequestRate | None, StreamSlots | None]:
    """The per-caller counts, for the limits that are set: shared in Redis when it is
    configured (every worker and replica enforces one budget), else in this process."""
    per_minute, per_caller = settings.requests_per_minute, settings.max_streams_per_key
    if settings.redis_url is None:
        return (
            LocalRequestRate(per_minute) if per_minute else None,
            LocalStreamSlots(per_caller) if per_caller else None,
        )
    from chainserve.api.access.limit_counts_redis import RedisRequestRate, RedisStreamSlots
    from chainserve.chains.redis_connect import redis_client

    url, timeout = settings.redis_url.get_secret_value(), settings.store_timeout_seconds
    return (
        RedisRequestRate(redis_client(url, timeout=timeout, decode_responses=False), per_minute)
        if per_minute
        else None,
        RedisStreamSlots(redis_client(url, timeout=timeout, decode_responses=False), per_caller)
        if per_caller
        else None,
    )


def build_chunk_store(settings: Settings) -> ChunkStore:
    """Documents for retrieval live in SQLite under the data directory unless
    `CHAINSERVE_DATABASE_URL` points at PostgreSQL with pgvector."""
    if settings.database_url is not None:
        from chainserve.chains.retrieval.pg_store import PgChunkStore

        return PgChunkStore(settings.database_url.get_secret_value())
    from chainserve.chains.retrieval.sqlite_store import SQLiteChunkStore

    return SQLiteChunkStore(settings.data_dir / "documents.sqlite3")
