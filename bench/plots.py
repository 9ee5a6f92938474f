"""PNG plots of the concurrency sweep: one line per server, error bars from min to max."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt

from bench.report import SERVER_ORDER

PLOTS = (
    ("gap_p99_ms", "p99 inter-token gap at the client (ms)", "sweep_p99_gap.png"),
    ("server_cpu_pct", "server CPU (% of one core)", "sweep_cpu.png"),
)


def _series(
    levels: Mapping[str, Any], server: str, key: str
) -> tuple[list[int], list[float], list[list[float]]]:
    xs: list[int] = []
    ys: list[float] = []
    errors: list[list[float]] = [[], []]
    for level, entries in levels.items():
        entry = entries.get(server)
        summary = (entry or {}).get("summary", {}).get(key)
        if not entry or entry.get("failed") or not summary:
            continue
        xs.append(int(level))
        ys.append(summary["median"])
        errors[0].append(summary["median"] - summary["min"])
        errors[1].append(summary["max"] - summary["median"])
    return xs, ys, errors


def plot_sweep(data: Mapping[str, Any], out: Path) -> list[Path]:
    """Write the sweep plots into `out`; returns the files written (none without a sweep)."""
    levels = data.get("sweep") or {}
    if not levels:
        return []
    written = []
    rate = data["plan"]["sweep_rate"]
    for key, label, filename in PLOTS:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for server in SERVER_ORDER:
            xs, ys, errors = _series(levels, server, key)
            if xs:
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=server)
        if key == "gap_p99_ms":
            ax.axhline(1000 / rate, color="grey", linestyle="--", label="upstream's gap")
        ax.set_xscale("log")
        ax.set_xticks([int(level) for level in levels])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel(f"concurrent streams ({rate:.0f} tokens/s each)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs concurrency")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / filename
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
