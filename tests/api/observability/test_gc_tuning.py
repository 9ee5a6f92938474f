"""The server process collects garbage in large batches, so open streams don't stall together."""

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

import chainserve.api.app
from chainserve.api.app import create_app
from chainserve.api.observability.gc_tuning import STREAMING_THRESHOLDS
from tests.conftest import offline_settings


def test_tuning_freezes_startup_objects_and_raises_the_thresholds() -> None:
    # In a child process: the collector's settings are process-wide.
    code = (
        "import gc; from chainserve.api.observability.gc_tuning import tune_gc_for_streaming; "
        "tune_gc_for_streaming(); print(gc.get_threshold(), gc.get_freeze_count() > 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"{STREAMING_THRESHOLDS} True"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_app_tunes_the_collector_at_startup_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(chainserve.api.app, "tune_gc_for_streaming", lambda: calls.append(True))
    with TestClient(create_app(offline_settings(gc_tuning=enabled))):
        pass
    assert calls == ([True] if enabled else [])
