"""What each variant's update costs next to a reference variant, and return against the update
time spent (the suite ``fig1``, once benchmarks/fig1_ablation.py; docs/smac.md, "The paper's
Figure 1"): the paper's claim is that batch-mean SMAC at B = 1000 needs far less optimisation
time than single-sample SMAC for close returns. ``update_time.md`` / ``update_time.csv`` and
``return_vs_update_time.png`` of a report with a batch-size ablation, next to it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from natpg.bench.report.paper import batch_key
from natpg.bench.report.plots import plot_grid
from natpg.bench.report.runs import Curve, Run, by_method, over_seeds
from natpg.bench.report.tables import csv_text, fmt, md_table

__all__ = ["largest_batch_smac", "update_time_table", "plot_return_vs_update_time"]


def largest_batch_smac(labels: set[str]) -> str | None:
    """The batch-mean SMAC label with the largest batch: ``smac`` (the whole rollout) if present,
    else ``smac@batch_size=N`` with the largest N; None when there is neither."""
    batch_mean = [label for label in labels if label == "smac" or re.fullmatch(r"smac@batch_size=\d+", label)]
    return max(batch_mean, key=batch_key, default=None)


def _update_ms(runs: list[Run]) -> dict[tuple[str, str], list[float]]:
    """(env, label) → each run's mean update time (ms): completed and stopped runs alike, as an
    update of a run that later diverged costs the same as any other."""
    timed = by_method(r for r in runs if r.summary.get("update_time_mean") is not None)
    return {key: [1e3 * float(r.summary["update_time_mean"]) for r in group] for key, group in timed.items()}


def update_time_table(runs: list[Run], reference: str | None = None) -> tuple[str, str] | None:
    """``update_time.md`` / ``.csv``: per env × method the mean update time (GAE + actor update +
    critic fit + diagnostics, per rollout) over its runs and its ratio to ``reference``'s in the
    same env (default :func:`largest_batch_smac`); None when no env has the reference."""
    times = _update_ms(runs)
    reference = reference or largest_batch_smac({label for _, label in times})
    ref = {env: float(np.mean(v)) for (env, label), v in times.items() if label == reference}
    if not ref:
        return None
    md_rows, csv_rows = [], []
    for (env, label), ms in times.items():
        if env not in ref:
            continue
        mean = float(np.mean(ms))
        md_rows.append([env, f"`{label}`", str(len(ms)), fmt(mean), fmt(mean / ref[env], 2)])
        csv_rows.append([env, label, len(ms), mean, mean / ref[env]])
    md = md_table(["env", "method", "runs", "update ms", f"÷ {reference}"], md_rows)
    md += (f"\nMean time of one update (GAE, actor update, critic fit and diagnostics; per rollout) over every run, "
           f"diverged runs included, and its ratio to `{reference}` in the same env.\n")
    return md, csv_text(["env", "method", "runs", "update_time_ms", "ratio_to_reference"], csv_rows)


def plot_return_vs_update_time(runs: list[Run], path: Path,
                               styles: dict[str, tuple[str, Any]] | None = None) -> Path | None:
    """``return_vs_update_time.png``: per env, the running-mean return against the cumulative
    update time (log scale), one line per method over its completed seeds: at each update up to
    the shortest of them, the mean of their cumulative update times and the mean ± std of their
    returns. A method none of whose runs completed is not drawn (the table lists its time)."""
    data: dict[str, dict[str, Curve]] = {}
    for (env, label), group in by_method(r for r in runs if r.status == "done"
                                         and {"update_time", "episode_return_mean"} <= set(r.metrics())).items():
        n = min(len(r.metrics()["update_time"]) for r in group)
        busy = np.mean([np.cumsum(r.metrics()["update_time"][:n]) for r in group], axis=0)
        data.setdefault(env, {})[label] = over_seeds(busy, [r.metrics()["episode_return_mean"][:n] for r in group])
    return plot_grid(data, "mean return (last 20 episodes)", "Return against the update time spent", path,
                     "completed runs; x: their mean update time spent up to each update", styles,
                     xlabel="cumulative update time (s)", xscale="log")
