"""Markdown tables from a run's JSON: the JSON is the record, the markdown is one view of it.

`render` takes only the saved JSON, so an old `latest.json` can be re-rendered after the table
layout changes without re-running anything.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Data = Mapping[str, Any]
BASELINES = ("bare", "langserve", "relay")
USER_CHAIN = "chainserve (your chain)"
"""chainserve serving a user's own `prompt | ChatOpenAI | StrOutputParser()` (`--chains`)."""
AGENT = "chainserve (agent)"
"""chainserve serving a user's `create_agent` graph (`--chains bench/agent_chain.py`)."""
LANGGRAPH = "langgraph (tutorial)"
"""The same agent's `astream(stream_mode="messages")` in a hand-framed `StreamingResponse`."""
REDIS = "chainserve + Redis"
"""chainserve's `chat` chain with `CHAINSERVE_REDIS_URL` set (run log and threads in Redis)."""
SERVER_ORDER = ("chainserve", REDIS, USER_CHAIN, AGENT, *BASELINES, LANGGRAPH)


def num(value: float | None) -> str:
    """Three significant figures or so, without scientific notation."""
    if value is None or not math.isfinite(value):
        return "–"
    size = abs(value)
    if size >= 99.95 or value == int(value):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _summary(entry: Mapping[str, Any] | None, key: str) -> Mapping[str, float] | None:
    if not entry or entry.get("failed"):
        return None
    summary: Mapping[str, Any] | None = entry.get("summary", {}).get(key)
    return summary


def cell(entry: Mapping[str, Any] | None, key: str) -> str:
    """`median (min-max)` of one figure, a dash when there is none."""
    s = _summary(entry, key)
    if s is None:
        return "–"
    if math.isclose(s["min"], s["max"]):
        return num(s["median"])
    return f"{num(s['median'])} ({num(s['min'])}–{num(s['max'])})"


def ratio(entries: Mapping[str, Any], name: str, baseline: str, key: str) -> str:
    mine, theirs = _summary(entries.get(name), key), _summary(entries.get(baseline), key)
    if mine is None or theirs is None or theirs["median"] == 0:
        return "–"
    return f"{mine['median'] / theirs['median']:.2f}"


def ratios(entries: Mapping[str, Any], name: str, key: str) -> str:
    return " / ".join(ratio(entries, name, b, key) for b in BASELINES)


def _servers(entries: Mapping[str, Any]) -> list[str]:
    return [name for name in SERVER_ORDER if name in entries]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _failed_row(name: str, entry: Mapping[str, Any], width: int) -> list[str]:
    return [f"**{name}**", "failed: " + str(entry["failed"]).splitlines()[0][:120]] + [""] * (
        width - 2
    )


def _rows(
    entries: Mapping[str, Any], width: int, row: Callable[[str, Mapping[str, Any]], list[str]]
) -> list[list[str]]:
    """One row per server in report order; a failed server gets its reason instead."""
    return [
        _failed_row(name, entries[name], width)
        if entries[name].get("failed")
        else row(name, entries[name])
        for name in _servers(entries)
    ]


def _header(data: Data) -> list[str]:
    meta, plan = data["meta"], data["plan"]
    dirty = " (with uncommitted changes)" if meta.get("dirty") else ""
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    return [
        "# chainserve streaming benchmark",
        "",
        f"- **Date**: {meta['date']} · commit `{meta.get('commit') or '?'}`{dirty}",
        f"- **Machine**: {meta['cores']} cores ({meta.get('cpu_model') or 'unknown CPU'}), "
        f"{meta['ram_gib']:.1f} GiB RAM, {meta['platform']}, Python {meta['python']}",
        f"- **Run**: {plan['name']}, {plan['rounds']} rounds ({plan['sweep_rounds']} for the "
        f"sweep) in {meta.get('elapsed_s', 0):.0f} s. Every server is its own process (uvicorn, "
        "uvloop + httptools, one worker); the load generator and the mock upstream run on the "
        "same cores.",
        f"- **Versions**: {versions}",
        "",
        "Cells are the median of the rounds, with (min–max). `× bare / × langserve / × relay`: "
        "this row's median divided by that baseline's median in the same run.",
        "",
    ]


def _cpu_section(data: Data) -> list[str]:
    entries = data.get("cpu")
    if not entries:
        return []
    plan = data["plan"]
    rows = _rows(
        entries,
        6,
        lambda name, entry: [
            f"**{name}**",
            cell(entry, "us_per_chunk"),
            *(ratio(entries, name, b, "us_per_chunk") for b in BASELINES),
            cell(entry, "chunks_per_s"),
        ],
    )
    header = ["server", "CPU µs / chunk", "× bare", "× langserve", "× relay", "chunks / s"]
    return [
        "## 1. Server CPU per streamed chunk",
        "",
        f"One stream of {plan['cpu_chunks']:,} chunks, the upstream at full speed (64 chunks "
        "per write). CPU: the server's user + system time (psutil, children included) over "
        "the request, divided by the chunks the client received. chunks/s: received chunks "
        "÷ (last chunk − request sent).",
        "",
        *_table(header, rows),
        "",
        *_user_chain_targets(entries),
        *_agent_targets(entries),
        *_redis_cpu_targets(entries, plan["cpu_chunks"]),
    ]


def _median(entries: Mapping[str, Any], name: str, key: str) -> float | None:
    summary = _summary(entries.get(name), key)
    return None if summary is None else float(summary["median"])


def _redis_cpu_targets(entries: Mapping[str, Any], chunks: int) -> list[str]:
    """The Redis row against the in-memory one: at most 1.5 times its CPU, and 5 µs of
    redis-server CPU per chunk."""
    if REDIS not in entries:
        return []
    redis = _median(entries, REDIS, "redis_us_per_chunk")
    # psutil reads CPU time in 10 ms ticks: 0 means "less than one tick over the stream".
    resolution = 0.01 / max(1, chunks) * 1e6
    shown = f"under {num(resolution)}" if redis is not None and redis < resolution else num(redis)
    return [
        f"*{REDIS}*: the `chat` chain with its run log in Redis: "
        f"{ratio(entries, REDIS, 'chainserve', 'us_per_chunk')}× chainserve in memory "
        f"(target ≤ 1.5), and redis-server {shown} µs per chunk (target ≤ 5).",
        "",
    ]


def _redis_difference(
    entries: Mapping[str, Any], key: str, what: str, unit: str, target: str
) -> list[str]:
    with_redis, without = _median(entries, REDIS, key), _median(entries, "chainserve", key)
    if with_redis is None or without is None:
        return []
    return [
        f"*{REDIS}*: {what} {num(with_redis)} {unit} against {num(without)} without Redis: "
        f"{num(with_redis - without)} {unit} more ({target}).",
        "",
    ]


def _agent_targets(entries: Mapping[str, Any]) -> list[str]:
    """The agent row against LangGraph's own token stream of the same agent (target 0.5)."""
    if AGENT not in entries or LANGGRAPH not in entries:
        return []
    return [
        f"*{AGENT}*: a `create_agent` graph loaded with `--chains` (`bench/agent_chain.py`), its "
        f"answer streamed as tokens: {ratio(entries, AGENT, LANGGRAPH, 'us_per_chunk')}× "
        'LangGraph\'s own `astream(stream_mode="messages")` served the tutorial way '
        "(target ≤ 0.5). Both rows are measured here only.",
        "",
    ]


def _user_chain_targets(entries: Mapping[str, Any]) -> list[str]:
    """The user-chain row against its targets: at most 0.10 times LangServe on the same chain,
    and within 2 times chainserve's own `chat`."""
    if USER_CHAIN not in entries:
        return []
    key = "us_per_chunk"
    return [
        f"*{USER_CHAIN}*: LangServe's chain (`bench/user_chain.py`) loaded with `--chains`: "
        f"{ratio(entries, USER_CHAIN, 'langserve', key)}× langserve (target ≤ 0.10) and "
        f"{ratio(entries, USER_CHAIN, 'chainserve', key)}× chainserve's `chat` (target ≤ 2).",
        "",
    ]


def _ttft_section(data: Data) -> list[str]:
    entries = data.get("ttft")
    if not entries:
        return []
    plan = data["plan"]
    rows = _rows(
        entries,
        6,
        lambda name, entry: [
            f"**{name}**",
            cell(entry, "added_ms"),
            cell(entry, "ttft_ms"),
            *(ratio(entries, name, b, "added_ms") for b in BASELINES),
        ],
    )
    header = ["server", "added TTFT ms", "TTFT ms", "× bare", "× langserve", "× relay"]
    return [
        "## 2. Added time to first token",
        "",
        f"The upstream waits {plan['ttft_first_delay'] * 1000:.0f} ms, then sends "
        f"{plan['ttft_tokens']} tokens. Per round, the median TTFT of {plan['ttft_requests']} "
        "sequential requests (each on a new connection) through a server, minus the same "
        f"straight from the upstream: **{cell(entries.get('direct'), 'ttft_ms')} ms**.",
        "",
        *_table(header, rows),
        "",
        *_redis_difference(entries, "added_ms", "added TTFT", "ms", "target: within 1 ms"),
    ]


_SWEEP_COLUMNS = (
    ("ok_streams", "ok streams"),
    ("total_tokens_per_s", "total tokens/s"),
    ("tokens_per_s", "tokens/s per stream"),
    ("gap_p50_ms", "p50 gap ms"),
    ("gap_p99_ms", "p99 gap ms"),
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("server_cpu_pct", "server CPU %"),
    ("rss_kib_per_stream", "RSS KiB / stream"),
)
_HARNESS_COLUMNS = (
    ("client_cpu_pct", "client CPU %"),
    ("upstream_cpu_pct", "upstream CPU %"),
    ("redis_cpu_pct", "redis CPU %"),
    ("wall_s", "round wall s"),
)
_RATIO_COLUMNS = (
    ("total_tokens_per_s", "total tokens/s"),
    ("tokens_per_s", "tokens/s per stream"),
    ("gap_p99_ms", "p99 gap"),
    ("ttft_p50_ms", "TTFT p50"),
    ("server_cpu_pct", "server CPU %"),
    ("rss_kib_per_stream", "RSS / stream"),
)


def _sweep_intro(plan: Mapping[str, Any]) -> str:
    rate = f"{plan['sweep_rate']:.0f}"
    return " ".join(
        [
            f"N concurrent streams of {plan['sweep_tokens']} tokens; the upstream sends each at",
            f"{rate} tokens/s, one write per token; the streams start evenly over",
            f"{plan['ramp_seconds']:.0f} s.",
            "*total tokens/s*: tokens received by all streams ÷ the round's wall time (the",
            f"upstream offers N × {rate} while every stream is open).",
            "*tokens/s per stream*: median over streams of (tokens − 1) ÷ (last − first token),",
            f"against the upstream's {rate}: the pace once a stream has started.",
            "*TTFT p50*: how long a stream waited for its first token.",
            "*Gaps*: between consecutive tokens of one stream at the client, all streams pooled",
            "(tokens that arrive in one socket read have a 0 ms gap).",
            "*CPU %*: CPU time ÷ wall time of the round (100 % = one core).",
            "*RSS / stream*: (peak RSS in the round − idle RSS after warm-up) ÷ N.",
            "*ok streams*: complete, with every token, within",
            f"{plan['sweep_timeout']:.0f} s of being sent.",
        ]
    )


def _sweep_section(data: Data) -> list[str]:
    levels = data.get("sweep")
    if not levels:
        return []
    plan = data["plan"]
    rows, ratio_rows, harness_rows = [], [], []
    for level, entries in levels.items():
        for name in _servers(entries):
            entry = entries[name]
            if entry.get("failed"):
                rows.append([level, *_failed_row(name, entry, len(_SWEEP_COLUMNS) + 1)])
                continue
            rows.append([level, f"**{name}**", *(cell(entry, k) for k, _ in _SWEEP_COLUMNS)])
            ratio_rows.append(
                [level, f"**{name}**", *(ratios(entries, name, k) for k, _ in _RATIO_COLUMNS)]
            )
            harness_rows.append(
                [level, f"**{name}**", *(cell(entry, k) for k, _ in _HARNESS_COLUMNS)]
            )
    return [
        "## 3. Concurrency sweep",
        "",
        _sweep_intro(plan),
        "",
        *_table(["streams", "server", *(t for _, t in _SWEEP_COLUMNS)], rows),
        "",
        "Ratios, `× bare / × langserve / × relay` (for tokens/s, below 1 is slower; for the "
        "others, below 1 is better):",
        "",
        *_table(["streams", "server", *(t for _, t in _RATIO_COLUMNS)], ratio_rows),
        "",
        "The harness's own load in the same rounds (the load generator and the mock upstream "
        "share the machine's cores with the server):",
        "",
        *_table(["streams", "server", *(t for _, t in _HARNESS_COLUMNS)], harness_rows),
        "",
    ]


def _capacity_section(data: Data) -> list[str]:
    entries = data.get("capacity")
    if not entries:
        return []
    plan = data["plan"]
    rows = _rows(
        entries,
        5,
        lambda name, entry: [
            f"**{name}**",
            cell(entry, "streams"),
            *(ratio(entries, name, b, "streams") for b in BASELINES),
        ],
    )
    levels = ", ".join(str(n) for n in plan["capacity_levels"])
    return [
        "## 4. Capacity of one worker",
        "",
        f"The most concurrent streams ({plan['sweep_tokens']} tokens at "
        f"{plan['sweep_rate']:.0f} tokens/s, started over {plan['ramp_seconds']:.0f} s) one "
        f"worker serves with every stream complete and a p99 inter-token gap under "
        f"{plan['capacity_gap_ms']:.0f} ms. Levels tried upwards ({levels}); the first "
        f"failure ends the search. Rounds: {plan['capacity_rounds']}.",
        "",
        *_table(["server", "streams", "× bare", "× langserve", "× relay"], rows),
        "",
        *_redis_capacity(entries),
    ]


def _redis_capacity(entries: Mapping[str, Any]) -> list[str]:
    if REDIS not in entries:
        return []
    return [
        f"*{REDIS}*: {ratio(entries, REDIS, 'chainserve', 'streams')}× the streams chainserve "
        "holds with its run log in memory (target ≥ 0.8).",
        "",
    ]


def _workers_section(data: Data) -> list[str]:
    entries = data.get("workers")
    if not entries:
        return []
    plan = data["plan"]
    interval_ms = 1000 / plan["multi_rate"]

    def added(entry: Mapping[str, Any]) -> str:
        p99 = _summary(entry, "gap_p99_ms")
        return "–" if p99 is None else num(p99["median"] - interval_ms)

    rows = _rows(
        entries,
        9,
        lambda name, entry: [
            f"**{name}**",
            cell(entry, "ok_streams"),
            cell(entry, "tokens_per_s"),
            cell(entry, "gap_p99_ms"),
            added(entry),
            cell(entry, "ttft_p50_ms"),
            cell(entry, "server_cpu_pct"),
            cell(entry, "rss_kib_per_stream"),
            ratio(entries, name, "bare", "rss_kib_per_stream"),
        ],
    )
    header = [
        "server",
        "ok streams",
        "tokens/s per stream",
        "p99 gap ms",
        "p99 added gap ms",
        "TTFT p50 ms",
        "server CPU % (all workers)",
        "RSS KiB / stream",
        "RSS × bare",
    ]
    return [
        f"## 5. {plan['multi_streams']:,} streams, {plan['multi_workers']} workers",
        "",
        f"{plan['multi_streams']:,} concurrent streams of {plan['sweep_tokens']} tokens at "
        f"{plan['multi_rate']:.0f} tokens/s each (one token every {interval_ms:.0f} ms), started "
        f"over {plan['ramp_seconds']:.0f} s, each server with {plan['multi_workers']} workers "
        f"(LangServe left out; *{REDIS}*: both workers on one redis-server). "
        "*p99 added gap*: the p99 gap minus the upstream's "
        f"{interval_ms:.0f} ms. *ok streams*: complete within {plan['multi_timeout']:.0f} s. "
        f"Rounds: {plan['multi_rounds']}.",
        "",
        *_table(header, rows),
        "",
    ]


def _notes(data: Data) -> list[str]:
    notes: list[str] = list(data.get("notes", []))
    sections = [("cpu", data.get("cpu") or {}), ("ttft", data.get("ttft") or {})]
    sections += [(f"sweep {n}", e) for n, e in (data.get("sweep") or {}).items()]
    sections.append(("capacity", data.get("capacity") or {}))
    sections.append(("workers", data.get("workers") or {}))
    for label, entries in sections:
        for name, entry in entries.items():
            if entry.get("failed"):
                notes.append(f"{label} · {name}: failed: {entry['failed']}")
            for error, counts in entry.get("errors", {}).items():
                per_round = " / ".join(str(count) for count in counts)
                notes.append(f"{label} · {name}: {error} ({per_round} streams, by round)")
            client_cpu = _summary(entry, "client_cpu_pct")
            if client_cpu and client_cpu["max"] > 85:
                notes.append(
                    f"{label} · {name}: the load generator used up to "
                    f"{client_cpu['max']:.0f} % of a core; its gaps include client-side delay"
                )
    if not notes:
        return []
    return ["## Notes", "", *(f"- {_one_line(note)}" for note in notes), ""]


def _one_line(text: str, limit: int = 400) -> str:
    """Log tails and tracebacks squeezed into one markdown bullet."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render(data: Data) -> str:
    lines = [
        *_header(data),
        *_cpu_section(data),
        *_ttft_section(data),
        *_sweep_section(data),
        *_capacity_section(data),
        *_workers_section(data),
        *_notes(data),
    ]
    return "\n".join(lines).rstrip() + "\n"
