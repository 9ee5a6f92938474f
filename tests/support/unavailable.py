"""What a test does when a program it needs is missing: skip locally, fail in CI."""

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Locally a missing server or browser is a skip with `reason`; in CI, where `.ci/run`
    installs everything, it is a failure, so a broken install step cannot pass unseen."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
