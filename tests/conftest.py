"""Shared fixtures: a mock OpenAI-compatible upstream and live chainserve servers."""

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from chainserve.api.settings import Settings
from tests.support.mock_upstream import MockUpstream
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.server import LiveServer

ServerFactory = Callable[..., LiveServer]
FAILED = pytest.StashKey[bool]()
"""Set on a test whose body failed, for fixtures that keep evidence (a browser screenshot)."""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (the default data directory, `.env`) resolve inside the test's tmp dir."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _upstream_session() -> Iterator[MockUpstream]:
    with MockUpstream() as mock:
        yield mock


@pytest.fixture
def upstream(_upstream_session: MockUpstream) -> Iterator[MockUpstream]:
    """The mock upstream, emptied of scripts and records for each test."""
    _upstream_session.reset()
    yield _upstream_session
    _upstream_session.release()  # never leave a held stream behind for the next test


def offline_settings(**overrides: object) -> Settings:
    """Settings for the offline model, ignoring any `.env` or OPENAI_* in the environment."""
    values: dict[str, object] = {
        "openai_api_key": None,
        "openai_base_url": None,
        "offline_delay": 0.0,
        # Process-wide, and gc.freeze() would pin the test process's garbage: off in tests
        # (tests/api/test_app.py checks it for real in a server process).
        "gc_tuning": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session (skipped locally if absent; required in CI)."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start live servers with the given settings; all are stopped when the test ends."""
    with ExitStack() as stack:

        def start(settings: Settings, chains: object = None) -> LiveServer:
            return stack.enter_context(LiveServer(settings, chains))

        yield start


def upstream_settings(upstream: MockUpstream, **overrides: object) -> Settings:
    """ChatOpenAI pointed at the mock upstream, with no retries so failures show at once."""
    values: dict[str, object] = {
        "openai_api_key": "sk-test-secret-key",
        "openai_base_url": upstream.base_url,
        "upstream_max_retries": 0,
        "upstream_timeout": 5.0,
        "allowed_models": ["gpt-4o"],
        **overrides,
    }
    return offline_settings(**values)


@pytest.fixture
def openai_settings(upstream: MockUpstream) -> Settings:
    return upstream_settings(upstream)


@pytest.fixture
def openai_server(start_server: ServerFactory, openai_settings: Settings) -> LiveServer:
    return start_server(openai_settings)


@pytest.fixture
def offline_server(start_server: ServerFactory) -> LiveServer:
    return start_server(offline_settings())


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL with pgvector for the session (skipped locally if absent; needed in CI)."""
    with PostgresServer() as server:
        yield server.url
