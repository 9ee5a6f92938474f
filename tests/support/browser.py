"""Debian's headless Chromium driven by Playwright, for the developer page's tests.

Playwright's own browser downloads need the internet; `.ci/run` installs Debian's `chromium`
instead and Playwright drives that binary. Locally the tests skip when it is absent.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

from tests.support.unavailable import unavailable

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Without the background-networking flags Chromium keeps dialling Google's hosts, which a
# closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> str:
    path = os.environ.get("CHAINSERVE_TEST_CHROMIUM") or shutil.which("chromium")
    if path is None:
        unavailable("chromium is not installed (Debian package chromium; .ci/run installs it)")
    return path


@contextmanager
def chromium(profile: Path) -> Iterator[BrowserContext]:
    """A fresh browser profile in `profile`; the context closes (and Chromium exits) after."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium_binary(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


def screenshot_path(name: str) -> Path:
    """Where a test's screenshot goes: `test-artifacts/` (kept by CI, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def forget_old_failures() -> None:
    """Screenshots of failures from an earlier run would read as this run's."""
    for stale in ARTIFACTS.glob("FAILED-*.png"):
        stale.unlink(missing_ok=True)
