"""Whether the shared stores answer, for `/health`: a bounded ping, never a hang."""

import asyncio
import logging
from typing import Literal

from chainserve.api.errors.typed import STORE_ERRORS
from chainserve.api.settings import Settings
from chainserve.chains.redis_connect import redis_client

logger = logging.getLogger("chainserve.health")

StoreState = Literal["ok", "unavailable"]


async def store_states(settings: Settings) -> dict[str, StoreState]:
    """`{"redis": "ok" | "unavailable"}` when Redis is configured, else `{}`."""
    if settings.redis_url is None:
        return {}
    timeout = settings.store_timeout_seconds
    client = redis_client(settings.redis_url.get_secret_value(), timeout=timeout)
    try:
        await asyncio.wait_for(client.ping(), timeout)
        return {"redis": "ok"}
    except (*STORE_ERRORS, TimeoutError) as exc:
        logger.warning("health: Redis unavailable (%s)", type(exc).__name__)
        return {"redis": "unavailable"}
    finally:
        await client.aclose()
