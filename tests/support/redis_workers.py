"""Two `chainserve serve` processes sharing one Redis database and one mock upstream."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mock_upstream import MockUpstream
from tests.support.process import ServerProcess


def redis_workers(
    request: pytest.FixtureRequest,
    failed: "pytest.StashKey[bool]",
    tmp_path: Path,
    redis_url: str,
    upstream: MockUpstream,
    **env: str,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Worker A and worker B on a fresh Redis database, with `env` on top of the shared
    settings; a failed test (per the `failed` stash key) shows what both logged."""
    database = f"{redis_url.rsplit('/', 1)[0]}/{uuid.uuid4().int % 15 + 1}"
    settings = {
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": upstream.base_url,
        "CHAINSERVE_UPSTREAM_MAX_RETRIES": "0",
        "CHAINSERVE_REDIS_URL": database,
        **env,
    }
    with ServerProcess(tmp_path, settings) as a, ServerProcess(tmp_path, settings) as b:
        yield a, b
    if request.node.stash.get(failed, False):
        print(f"worker A logged:\n{a.output}\nworker B logged:\n{b.output}")
