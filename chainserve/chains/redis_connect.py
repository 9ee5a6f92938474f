"""One way to open a Redis client: every command bounded by a timeout, no hidden retries."""

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(url: str, *, timeout: float, decode_responses: bool = True) -> Redis:
    """A client whose connect and every read give up after `timeout` seconds.

    redis-py's defaults (5 s, then three retries with backoff) turn an unreachable Redis
    into a request that hangs for half a minute; callers here fail fast and say so. A
    blocking command (XREAD BLOCK) must block for less than `timeout`, or its socket read
    times out first: see `blocking_slice`.
    """
    return Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def blocking_slice(timeout: float) -> float:
    """The longest a single blocking command may block on a client opened with `timeout`."""
    return timeout / 2
