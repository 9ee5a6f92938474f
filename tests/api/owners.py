"""Two keys and an admin key, and helpers that call a live server as one of them."""

import json
from typing import Any

import httpx

from chainserve.api.access.api_keys import key_id
from chainserve.api.settings import Settings
from tests.conftest import offline_settings

ALICE, BOB, ADMIN = (
    "sk-team-alice-0123456789abcdef",
    "sk-team-bob-fedcba9876543210",
    "sk-admin-00112233445566778899",
)
ALICE_ID, BOB_ID, ADMIN_ID = key_id(ALICE), key_id(BOB), key_id(ADMIN)
CHAT = {"input": {"messages": [{"role": "user", "content": "hi"}]}}


def keyed_settings(**overrides: object) -> Settings:
    """Alice and Bob as ordinary keys, plus one admin key."""
    return offline_settings(api_keys=f"{ALICE},{BOB}", admin_keys=ADMIN, **overrides)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def call(
    url: str, key: str, method: str, path: str, body: Any = None, **kwargs: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return await client.request(method, path, json=body, headers=auth(key), **kwargs)


async def new_thread(url: str, key: str) -> str:
    response = await call(url, key, "POST", "/threads", {"metadata": {}})
    assert response.status_code == 201, response.text
    return str(response.json()["thread_id"])


def same_refusal(foreign: httpx.Response, missing: httpx.Response, real: str, fake: str) -> None:
    """`foreign` (another key's id) is answered exactly as `missing` (an unknown id) was."""
    assert foreign.status_code == missing.status_code == 404
    assert foreign.headers["content-type"] == missing.headers["content-type"]
    assert json.loads(foreign.text) == json.loads(missing.text.replace(fake, real))
