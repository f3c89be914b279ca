"""Figures from samples, and the report of ``bench.lean``: the Markdown table and the CDF plot.

Percentiles treat a turn that never got its answer as infinitely late (it is in the
population the percentile speaks about), so a p99 over a phase that lost more than 1 % of
its answers says "none" instead of a flattering number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

INF = float("inf")
# Sends this late (p99) mean the generator could not keep its schedule: the rate's ack
# figures then measure this process's starvation as much as the server.
GENERATOR_BEHIND_MS = 5.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN (no answer) counts as +inf."""
    if not values:
        return math.nan
    ordered = sorted(INF if math.isnan(v) else v for v in values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(value: float, digits: int = 2) -> float | None:
    """Seconds to rounded milliseconds; None for "never" (inf) and "no data" (NaN)."""
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value * 1000, digits)


def latency(values: Sequence[float]) -> dict[str, Any]:
    """n, unanswered, p50/p90/p99/max in ms."""
    answered = [v for v in values if not math.isnan(v)]
    return {
        "n": len(values),
        "unanswered": len(values) - len(answered),
        "p50_ms": ms(percentile(values, 50)),
        "p90_ms": ms(percentile(values, 90)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(max(answered)) if answered else None,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


# --------------------------------------------------------------------------- Markdown


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value}{unit}"


def _get(tree: Mapping[str, Any], *path: str) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def markdown(result: Mapping[str, Any]) -> str:
    run = result["run"]
    targets = result["targets"]
    names = [n for n in ("daemon-meta", "daemon-twilio", "floor") if n in targets]
    failed = [f"`{n}`: {targets[n]['error']}" for n in names if "error" in targets[n]]
    lines = [
        "# bench.lean",
        "",
        f"Commit `{run['commit']}`{' (dirty tree)' if run['dirty'] else ''}, {run['date']}, "
        f"Python {run['python']}, {run['cpus']} CPUs; {run['duration_s']:.0f} s. "
        f"Other processes used {_cell(run.get('other_cpu_share'))} of the machine's CPU "
        "during the run (shared machine: figures are noisier the higher this is).",
        "",
        *([f"**Failed**: {'; '.join(failed)}", ""] if failed else []),
        "## Per turn",
        "",
        "| | " + " | ".join(names) + " | daemon-meta ÷ floor |",
        "|---" * (len(names) + 2) + "|",
    ]

    def row(label: str, *path: str, unit: str = "") -> None:
        values = [_get(targets[n], *path) for n in names]
        floor = _get(targets.get("floor", {}), *path)
        meta = _get(targets.get("daemon-meta", {}), *path)
        cells = " | ".join(_cell(v, unit) for v in values)
        lines.append(f"| {label} | {cells} | {_cell(ratio(meta, floor))} |")

    row("CPU ms per text turn", "text", "cpu_ms_per_turn")
    row("CPU ms per voice turn", "voice", "cpu_ms_per_turn")
    row("time to text p50 (ms)", "text", "time_to_text", "p50_ms")
    row("time to text p99 (ms)", "text", "time_to_text", "p99_ms")
    row("time to voice p50 (ms)", "voice", "time_to_voice", "p50_ms")
    row("time to voice p99 (ms)", "voice", "time_to_voice", "p99_ms")
    row("saturation, turns/s", "saturation", "turns_per_s")
    row("… its CPU use (share of a core)", "saturation", "cpu_util")
    row("start-up to READY=1 (s)", "startup", "ready_s")
    row("RSS idle (MiB)", "memory", "idle_rss_mib")
    row("RSS peak (MiB)", "memory", "peak_rss_mib")
    row("others' CPU share, text window", "text", "other_cpu_share")
    row("others' CPU share, voice window", "voice", "other_cpu_share")
    text_rate = _get(result, "plan", "text_rate")
    voice_rate = _get(result, "plan", "voice_rate")
    lines += [
        "",
        f"CPU per turn: utime+stime of the process over a steady window of open-loop load "
        f"({text_rate} text turns/s, {voice_rate} voice turns/s, upstreams answering at "
        "once), divided by the turns finished in it. Saturation: closed loop, "
        f"{_get(result, 'plan', 'saturation_users')} users.",
        "",
        "## Webhook ack under open-loop load",
        "",
        "One webhook in four carries a text message (a turn), three carry a delivery status, "
        "as Meta sends about three statuses per message we send. Latency from the scheduled "
        "send time to the response's last byte.",
        "",
    ]
    header = "| webhooks/s |"
    rule = "|---|"
    for n in names:
        if _get(targets[n], "open_loop"):
            header += f" {n} p50 | p99 | CPU | late sends p99 | others |"
            rule += "---|---|---|---|---|"
    lines += [header, rule]
    for rate in _get(result, "plan", "mix_rates") or []:
        cells = [f"| {rate} |"]
        for n in names:
            phases = _get(targets[n], "open_loop") or {}
            if not phases:
                continue
            phase = phases.get(str(rate), {})
            lag = _get(phase, "send_lag", "p99_ms")
            behind = " ⚠" if lag is None or lag > GENERATOR_BEHIND_MS else ""
            cells.append(
                f" {_cell(_get(phase, 'ack', 'p50_ms'))} | {_cell(_get(phase, 'ack', 'p99_ms'))} |"
                f" {_cell(_get(phase, 'cpu_util'))} | {_cell(lag)}{behind} |"
                f" {_cell(_get(phase, 'other_cpu_share'))} |"
            )
        lines.append("".join(cells))
    lines += [
        "",
        "CPU: the process's share of one core over the window. Late sends: how late the "
        "generator's sends went out (timer resolution is 1 ms); a rate whose late sends "
        "approach its ack figures measured the generator, not the server (⚠: over "
        f"{GENERATOR_BEHIND_MS} ms). Others: the share of the machine's CPU other processes "
        "took meanwhile.",
        "",
        "## New TCP connections per turn, steady state",
        "",
        f"Closed loop, agent answering in {_get(result, 'plan', 'agent_latency')} s, "
        f"{_get(result, 'plan', 'conn_voice_share')} of the turns voice notes; counted at "
        "the simulators' accept, over the window after warm-up.",
        "",
        "| target | users | WhatsApp | Agentforce | ElevenLabs | turns | time to text p50 (ms) "
        "| p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        for users, phase in (_get(targets[n], "connections") or {}).items():
            per_turn = phase["new_connections_per_turn"]
            lines.append(
                f"| {n} | {users} | {_cell(per_turn.get('whatsapp'))} |"
                f" {_cell(per_turn.get('agentforce'))} | {_cell(per_turn.get('elevenlabs'))} |"
                f" {phase['turns']} | {_cell(_get(phase, 'time_to_text', 'p50_ms'))} |"
                f" {_cell(_get(phase, 'time_to_text', 'p99_ms'))} |"
            )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plot


COLOURS = {"daemon-meta": "tab:blue", "daemon-twilio": "tab:orange", "floor": "tab:green"}


def plot(series: Mapping[str, Mapping[str, Iterable[float]]], path: Path) -> bool:
    """One panel per group (e.g. "ack at 200/s"), one CDF per target. False without
    matplotlib (the JSON and the table are written anyway)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import ScalarFormatter
    except ImportError:
        return False
    groups = [g for g, lines in series.items() if any(lines.values())]
    cols = 3
    rows = max(1, math.ceil(len(groups) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups, strict=False):
        low, high = INF, 0.0
        for name, values in series[group].items():
            data = sorted(v * 1000 for v in values if not math.isnan(v))
            if not data:
                continue
            low, high = min(low, data[0]), max(high, data[-1])
            ys = [(i + 1) / len(data) for i in range(len(data))]
            ax.step(data, ys, where="post", label=name, color=COLOURS.get(name))
        ax.set_title(group)
        if high > 20 * max(low, 1e-3):  # a long tail: log, else the body is one line
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("ms")
        ax.set_ylabel("share of requests")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    """``python -m bench.report RESULT.json``: write the Markdown table again from the JSON
    (after a change to this module, or to read an older run the same way)."""
    import json
    import sys

    path = Path(sys.argv[1])
    path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
