"""Choose the durable stores from Settings: embedded by default, Redis when configured."""

from api.settings import Settings
from chains.history import ThreadStore
from chains.history.sqlite import SQLiteThreadStore


def build_thread_store(settings: Settings) -> ThreadStore:
    """Threads live in SQLite under the data directory unless `CHAINSERVE_REDIS_URL` is set."""
    if settings.redis_url is not None:
        from chains.history.redis import RedisThreadStore

        return RedisThreadStore(settings.redis_url.get_secret_value())
    return SQLiteThreadStore(settings.data_dir / "threads.sqlite3")
