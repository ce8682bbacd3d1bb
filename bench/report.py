"""The printed table, the issue's targets checked against the figures, and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .processes import REPOSITORY

COLUMNS = ("scenario", "tasks", "enq/s", "e2e/s", "p50 ms", "p95 ms", "p99 ms", "dup", "lost",
           "cpu s/1k", "RSS MB", "note")  # fmt: skip


def rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, figures, note) per printed line; prefill has two lines."""
    lines: list[tuple[str, dict[str, Any], str]] = []
    for name, figures in results.items():
        if "error" in figures:
            lines.append((name, {}, "ERROR: " + figures["error"].splitlines()[0][:60]))
        elif name == "prefill":
            for part in ("burst", "paced"):
                lines.append((f"prefill {part}", figures[part], _vs_empty(figures[part])))
        else:
            lines.append((name, figures, NOTES[name](figures) if name in NOTES else ""))
    return lines


def _vs_empty(figures: dict[str, Any]) -> str:
    ratios = figures.get("vs_empty") or {}
    shown = {"end_to_end_per_s": "e2e", "latency_p50": "p50", "latency_p99": "p99"}
    return "vs empty: " + ", ".join(f"{label} x{ratios[k]}" for k, label in shown.items()
                                    if k in ratios)  # fmt: skip


NOTES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ceiling": lambda f: f"load generator + receiver: {f['harness_cpu_s_per_1k']:.2f} cpu s/1k",
    "burst": lambda f: f"{f['fraction_of_ceiling']:.1%} of ceiling" if "fraction_of_ceiling" in f
    else "",
    "paced": lambda f: f"{f['rate_per_s']:.0f}/s",
    "retries": lambda f: "on schedule: {} ({} retries, {} early, late p99 {} ms)".format(
        "yes" if f["retry_schedule"]["on_schedule"] else "NO", f["retry_schedule"]["retries"],
        f["retry_schedule"]["early"], f["retry_schedule"]["late_ms"]["p99"]),
    "memory": lambda f: f"growth over last half {f['rss_growth_last_half_mb']:+.1f} MB",
}  # fmt: skip


def number(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def cells(label: str, figures: dict[str, Any], note: str) -> list[str]:
    latency = figures.get("latency_ms", {})
    return [
        label, number(figures.get("tasks")), number(figures.get("enqueue_per_s")),
        number(figures.get("end_to_end_per_s")), number(latency.get("p50"), 1),
        number(latency.get("p95"), 1), number(latency.get("p99"), 1),
        number(figures.get("duplicates")), number(figures.get("lost")),
        number(figures.get("cpu_s_per_1k"), 2), number(figures.get("rss_mb")), note,
    ]  # fmt: skip


def table(results: dict[str, Any]) -> str:
    return align([list(COLUMNS)] + [cells(*row) for row in rows(results)])


def align(lines: list[list[str]]) -> str:
    """Rows of cells as text, each column as wide as its widest cell."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            for line in lines]  # fmt: skip
    return "\n".join(line.rstrip() for line in text)


# -- the targets ----------------------------------------------------------


def get_in(results: dict[str, Any], *path: str) -> Any:
    """results[path[0]][path[1]]...; None where a key is missing."""
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _within_10_percent(ratios: dict[str, float] | None) -> bool | None:
    if not ratios:
        return None
    rates = [v >= 0.9 for k, v in ratios.items() if k.endswith("_per_s")]
    latencies = [v <= 1.1 for k, v in ratios.items() if k.startswith("latency")]
    return all(rates + latencies)


def check(name: str, measured: Any, ok: Callable[[], bool | None]) -> dict[str, Any]:
    """One target: what was measured, and whether it is met (None: not measured)."""
    return {"target": name, "measured": measured, "ok": None if measured is None else ok()}


def targets(results: dict[str, Any], tasks: int) -> list[dict[str, Any]]:
    """Each target of issue 5: what was measured, and whether it is met (None: not run)."""

    burst_e2e = get_in(results, "burst", "end_to_end_per_s")
    burst_enq = get_in(results, "burst", "enqueue_per_s")
    paced = get_in(results, "paced", "latency_ms")
    retry = get_in(results, "retries")
    before = {p: get_in(results, "prefill", p, "vs_empty") for p in ("burst", "paced")}
    memory = get_in(results, "memory")
    sqlite = get_in(results, "sqlite", "end_to_end_per_s")
    return [
        check("burst end to end >= 1,000 tasks/s", burst_e2e, lambda: burst_e2e >= 1000),
        check("burst enqueue >= 2,000 tasks/s", burst_enq, lambda: burst_enq >= 2000),
        check("paced 200/s: p50 <= 5 ms, p99 <= 25 ms", paced,
              lambda: paced["p50"] <= 5 and paced["p99"] <= 25),
        check("20 % 500s: all complete, 0 lost, retries on schedule",
              retry and {"tasks": retry["tasks"], "lost": retry["lost"],
                         "on_schedule": retry["retry_schedule"]["on_schedule"]},
              lambda: retry["lost"] == 0 and retry["tasks"] == tasks
              and retry["retry_schedule"]["on_schedule"]),
        check("prefilled table: each figure within 10 % of the empty run",
              before if any(before.values()) else None,
              lambda: _within_10_percent({**(before["burst"] or {}), **(before["paced"] or {})})),
        check("memory: RSS < 250 MB and flat over the last half",
              memory and {"rss_mb": memory["rss_mb"],
                          "growth_mb": memory["rss_growth_last_half_mb"]},
              lambda: memory["rss_mb"] < 250 and memory["flat"]),
        check("SQLite burst end to end >= 500 tasks/s", sqlite, lambda: sqlite >= 500),
    ]  # fmt: skip


VERDICTS = {True: "PASS", False: "FAIL", None: "n/a "}


def targets_text(checked: list[dict[str, Any]]) -> str:
    return "\n".join(f"{VERDICTS[c['ok']]}  {c['target']}: {c['measured']}" for c in checked)


# -- the JSON file ------------------------------------------------------------------


def git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
    }


def write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
