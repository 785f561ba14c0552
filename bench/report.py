"""The comparison's output: per-round measurements, medians against the floor, table and chart."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FLOOR = "floor"


@dataclass(frozen=True)
class Measurement:
    """One wrk run against one (variant, model), with the CPU each party used meanwhile."""

    round: int
    variant: str
    model: str
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    wrk_cpu_seconds: float
    gateway_cpu_seconds: float
    # None where the variant has no such backend.
    postgres_cpu_seconds: float | None
    redis_cpu_seconds: float | None
    postgres_backends: int | None  # the database's connections after the run
    machine_cpu_seconds: float  # every process on the machine, this benchmark's and others'
    window_seconds: float  # wall time between the CPU samples around the run

    def cpu_ms(self, seconds: float | None) -> float | None:
        """CPU seconds of the whole run as milliseconds per request."""
        return None if seconds is None else seconds * 1000 / self.requests

    @property
    def total_cpu_seconds(self) -> float:
        """Gateway + PostgreSQL + Redis: the server side's CPU for this run."""
        backends = (self.postgres_cpu_seconds or 0.0) + (self.redis_cpu_seconds or 0.0)
        return self.gateway_cpu_seconds + backends


# Each column: its name and how to read it off one measurement.
COLUMNS: dict[str, Callable[[Measurement], float | None]] = {
    "req/s": lambda m: m.requests_per_second,
    "p50 ms": lambda m: m.p50_ms,
    "p99 ms": lambda m: m.p99_ms,
    "CPU ms/req gateway": lambda m: m.cpu_ms(m.gateway_cpu_seconds),
    "PostgreSQL": lambda m: m.cpu_ms(m.postgres_cpu_seconds),
    "Redis": lambda m: m.cpu_ms(m.redis_cpu_seconds),
    "total": lambda m: m.cpu_ms(m.total_cpu_seconds),
    "wrk CPU ms/req": lambda m: m.cpu_ms(m.wrk_cpu_seconds),
}
# Summarised like the columns, used in the notes rather than the table.
EXTRA: dict[str, Callable[[Measurement], float | None]] = {
    "machine busy cores": lambda m: m.machine_cpu_seconds / m.window_seconds,
}


@dataclass(frozen=True)
class Row:
    """Medians over rounds of one (variant, model)."""

    variant: str
    model: str
    medians: dict[str, float | None]


def summarise(measurements: Sequence[Measurement]) -> list[Row]:
    """One row per (variant, model) in the order first measured: the median of each column."""
    keys = list(dict.fromkeys((m.variant, m.model) for m in measurements))
    rows = []
    for variant, model in keys:
        runs = [m for m in measurements if (m.variant, m.model) == (variant, model)]
        medians: dict[str, float | None] = {}
        for column, read in {**COLUMNS, **EXTRA}.items():
            values = [v for v in map(read, runs) if v is not None]
            medians[column] = statistics.median(values) if values else None
        rows.append(Row(variant, model, medians))
    return rows


def markdown(rows: Sequence[Row], context: dict[str, Any]) -> str:
    """The results page: run context, the table, the load generator's share, the caveats."""
    floor = next(row for row in rows if row.variant == FLOOR)
    header = ["variant", "model", *COLUMNS]
    lines = [
        "# predgate against bare baselines",
        "",
        f"- date: {context['date']}; commit: {context['commit']}",
        f"- machine: {context['nproc']} CPUs, {context['cpu_model']}",
        f"- command: `{context['command']}` ({context['duration_s']:.0f} s)",
        f"- load: `{context['wrk']}`, {context['rounds']} round(s), every variant once per round;",
        "  values are medians over rounds; `(x)` is the ratio of the median to the floor's "
        "median (req/s: variant/floor; latency and CPU: variant/floor, so higher costs more)",
        *(f"- {line}" for line in context["setup"]),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * 2 + "---:|" * len(COLUMNS),
    ]
    for row in rows:
        cells = [
            _cell(row.medians[c], floor.medians[c], ratio=c != "wrk CPU ms/req") for c in COLUMNS
        ]
        lines.append("| " + " | ".join([row.variant, row.model, *cells]) + " |")
    lines += ["", *context["notes"]]
    return "\n".join(lines) + "\n"


def notes(rows: Sequence[Row], context: dict[str, Any]) -> list[str]:
    """The paragraphs under the table: load generator, what predgate served, method, caveats."""
    runtimes = ", ".join(
        f"{name}: {entry.get('runtime', '?')}" for name, entry in context["predgate_models"].items()
    )
    differ = [k for k, v in context["predictions"].items() if v.get("agrees") is False]
    warnings = {name: n for name, n in context["server_log_warnings"].items() if n}
    lines = [
        load_generator_note(next(row for row in rows if row.variant == FLOOR), context["nproc"]),
        "",
        f"**Models.** predgate serves the registered models with: {runtimes} "
        "(`models register`). The benchmark row's prediction "
        + (
            "agrees with scikit-learn's (float32 tolerance) in every variant."
            if not differ
            else f"DIFFERS from scikit-learn's in: {', '.join(differ)}."
        ),
    ]
    if warnings:
        counts = ", ".join(f"{name}: {count}" for name, count in warnings.items())
        lines.append(f"Warnings in the server logs, all rounds: {counts}.")
    warm = {name: n for name, n in context["warm_up_failed_responses"].items() if n}
    if warm:
        counts = ", ".join(f"{name}: {count}" for name, count in warm.items())
        lines.append(
            f"Failed responses during the 2 s warm-ups (not fatal; measured runs allow none): "
            f"{counts}."
        )
    lines += [
        "",
        "**CPU per request** = CPU seconds used during the wrk run / requests wrk completed. "
        "gateway: utime+stime of the server's process tree (master + workers; the pids are "
        "checked unchanged). PostgreSQL: every postgres process present before and after the "
        "run except client backends of other databases (the pool's backends persist; shared "
        "processes such as the WAL writer count). Redis: `INFO cpu` of the whole server, so "
        "other clients' traffic during the run would count too. `n/a`: no such backend. The "
        "machine is shared, so the numbers are noisy.",
    ]
    return lines


def load_generator_note(floor: Row, nproc: int) -> str:
    """How the floor's throughput compares with wrk's own CPU use and the machine's."""
    rate = floor.medians["req/s"] or 0.0
    wrk_ms = floor.medians["wrk CPU ms/req"] or 0.0
    server_ms = floor.medians["CPU ms/req gateway"] or 0.0
    busy = floor.medians["machine busy cores"] or 0.0
    wrk_cores, server_cores = rate * wrk_ms / 1000, rate * server_ms / 1000
    # wrk -t2: at most two threads, each on a core of its own.
    capacity = min(2, nproc) * 1000 / wrk_ms if wrk_ms else float("inf")
    text = (
        f"**Load generator.** At the floor's {rate:.0f} req/s, wrk used {wrk_ms:.3f} ms CPU per "
        f"request, {wrk_ms / server_ms if server_ms else 0:.2f}x the floor server's "
        f"{server_ms:.3f} ms. At that cost its two threads could issue about {capacity:.0f} "
        f"req/s, {capacity / rate if rate else 0:.0f}x the floor: wrk is not the bottleneck. "
        f"During the floor runs the machine's {nproc} cores were {busy:.2f} busy: the server "
        f"{server_cores:.2f}, wrk {wrk_cores:.2f}, other processes "
        f"{max(busy - server_cores - wrk_cores, 0):.2f}"
    )
    if busy >= 0.9 * nproc:
        return text + (
            ": the CPU was saturated, so the floor is bound by the CPU left to the server on "
            "this shared machine, not by wrk."
        )
    return text + ": the CPU had headroom, so the floor is bound by latency at 16 connections."


def write_json(path: Path, measurements: Sequence[Measurement], context: dict[str, Any]) -> None:
    """Raw per-round numbers and the run's context."""
    payload = {
        **context,
        "measurements": [
            {
                **asdict(m),
                **{f"{column} (this round)": read(m) for column, read in COLUMNS.items()},
            }
            for m in measurements
        ],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def write_chart(path: Path, rows: Sequence[Row]) -> None:
    """req/s and CPU ms/request (stacked gateway, PostgreSQL, Redis) per variant and model."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    labels = [row.variant if row.model == "-" else f"{row.variant} [{row.model}]" for row in rows]
    positions = list(range(len(rows)))[::-1]  # first row on top
    models = {"rf": "tab:green", "linear": "tab:blue", "-": "tab:grey"}  # "-": the floor
    figure, (rates, cpu) = plt.subplots(1, 2, figsize=(14, 0.45 * len(rows) + 1.8), sharey=True)

    values = [row.medians["req/s"] or 0.0 for row in rows]
    bars = rates.barh(positions, values, color=[models.get(row.model) for row in rows])
    rates.bar_label(bars, fmt="%.0f", padding=2, fontsize=8)
    rates.set_xlabel("requests/s (median over rounds)")
    rates.legend(
        handles=[Patch(color=colour, label=name) for name, colour in models.items()],
        title="model",
        loc="lower right",
    )

    left = [0.0] * len(rows)
    for column, label, colour in (
        ("CPU ms/req gateway", "gateway", "tab:orange"),
        ("PostgreSQL", "PostgreSQL", "tab:purple"),
        ("Redis", "Redis", "tab:red"),
    ):
        widths = [row.medians[column] or 0.0 for row in rows]
        cpu.barh(positions, widths, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for position, end, row in zip(positions, left, rows, strict=True):
        # The label is the table's total (median of each round's sum), the bar the parts' medians.
        cpu.annotate(
            f"{row.medians['total'] or 0.0:.2f}",
            (end, position),
            xytext=(2, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    cpu.set_xlim(0, max(left, default=1.0) * 1.15 or 1.0)  # room for the value labels
    cpu.set_xlabel("server CPU ms per request (median over rounds)")
    cpu.legend(loc="lower right")

    rates.set_yticks(positions, labels)
    rates.set_xlim(0, max(values, default=1.0) * 1.12 or 1.0)
    for axis in (rates, cpu):
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle("predgate against bare baselines: throughput and CPU per request")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _cell(value: float | None, floor: float | None, *, ratio: bool) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0f}" if value >= 100 else f"{value:.3g}" if value < 1 else f"{value:.2f}"
    if ratio and floor:
        text += f" ({value / floor:.2f}x)"
    return text
