"""Metrics under `chainserve serve --workers N`: any worker's `/metrics` adds up all of them."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chainserve.api.serve import shared_metrics_dir
from tests.support.process import ROOT, ServerProcess


def _count(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def _worker_pids(directory: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}


def test_every_worker_reports_the_requests_of_all_workers(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left over from an earlier run")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "CHAINSERVE_OFFLINE_DELAY": "0"}
    with ServerProcess(tmp_path, env, args=["--workers", "2"]) as server:
        assert not (shared / "counter_1.db").exists()  # stale values were wiped at start
        sent = 0
        # A new connection per request, so both workers take some; stop once both have.
        while sent < 400 and (sent < 20 or len(_worker_pids(shared)) < 2):
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert client.get("/chains").status_code == 200
            sent += 1
        assert len(_worker_pids(shared)) == 2, "one worker served every request"
        scrapes = []
        for _ in range(6):
            with httpx.Client(base_url=server.url, timeout=10) as client:
                scrapes.append(client.get("/metrics").text)
    for text in scrapes:
        listing = {"route": "/chains", "method": "GET", "status": "200"}
        assert _count(text, "chainserve_requests_total", **listing) == sent
        assert "chainserve_process_" not in text  # per-process figures don't add up


def test_a_dead_workers_open_streams_stop_counting(tmp_path: Path) -> None:
    """A worker killed mid-stream never lowers its gauge; the next scrape drops it."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    died = textwrap.dedent(
        """
        import os
        from chainserve.api.observability.metrics import Metrics
        metrics = Metrics()
        metrics.active_streams.labels("/chains/{name}/stream").inc()
        metrics.requests.labels("/chains/{name}/stream", "POST", "200").inc()
        os._exit(0)
        """
    )
    scrape = textwrap.dedent(
        """
        import sys
        from chainserve.api.observability.metrics import Metrics
        sys.stdout.write(Metrics().exposition().decode())
        """
    )
    subprocess.run([sys.executable, "-c", died], env=env, check=True)
    assert list(tmp_path.glob("gauge_livesum_*.db"))
    text = subprocess.run(
        [sys.executable, "-c", scrape], env=env, check=True, capture_output=True, text=True
    ).stdout
    route = "/chains/{name}/stream"
    assert _count(text, "chainserve_active_streams", route=route) == 0
    assert _count(text, "chainserve_requests_total", route=route, method="POST", status="200") == 1
    assert not list(tmp_path.glob("gauge_livesum_*.db"))


def test_serve_with_workers_makes_and_removes_a_metrics_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_dir(1) as none:
        assert none is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    with shared_metrics_dir(2) as made:
        assert made is not None
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        assert Path(made).is_dir()
    assert not Path(made).exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_named_metrics_directory_is_emptied_even_for_one_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted single process (pid 1 in a container, say) must not inherit old values."""
    (tmp_path / "gauge_livesum_1.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with shared_metrics_dir(1) as chosen:
        assert chosen == str(tmp_path)
        assert not (tmp_path / "gauge_livesum_1.db").exists()
    assert (tmp_path / "notes.txt").exists()
