"""What each variant's update costs next to a reference variant, and return against the update
time spent (the suite ``fig1``, once benchmarks/fig1_ablation.py; docs/smac.md, "The paper's
Figure 1"): the paper's claim is that batch-mean SMAC at B = 1000 needs far less optimisation
time than single-sample SMAC for close returns.

Pure functions of :func:`natpg.bench.report.load_runs`'s runs, for ``natpg report`` to write as
``update_time.md`` / ``update_time.csv`` and ``return_vs_update_time.png`` next to the ablation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from natpg.bench.tables import csv_text, fmt, md_table, save_png

if TYPE_CHECKING:
    from natpg.bench.report import Run

__all__ = ["largest_batch_smac", "update_time_table", "plot_return_vs_update_time"]


def largest_batch_smac(labels: set[str]) -> str | None:
    """The batch-mean SMAC label with the largest batch: ``smac@batch_size=N`` with the largest N,
    else ``smac`` (a whole-rollout batch); None when there is neither."""
    sized = {int(m.group(1)): label for label in labels if (m := re.fullmatch(r"smac@batch_size=(\d+)", label))}
    return sized[max(sized)] if sized else ("smac" if "smac" in labels else None)


def _update_ms(runs: list["Run"]) -> dict[tuple[str, str], list[float]]:
    """(env, label) → each run's mean update time (ms): completed and stopped runs alike, as an
    update of a run that later diverged costs the same as any other."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.seed):
        if r.summary.get("update_time_mean") is not None:
            out[(r.env_id, r.label)].append(1e3 * float(r.summary["update_time_mean"]))
    return out


def update_time_table(runs: list["Run"], reference: str | None = None) -> tuple[str, str] | None:
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


def plot_return_vs_update_time(runs: list["Run"], path: Path) -> Path | None:
    """``return_vs_update_time.png``: per env, the running-mean return against the cumulative
    update time (log scale), mean over the completed seeds of each method, up to the shortest of
    them; a method whose every run was stopped is drawn up to where its first seed stopped, ending in ×."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(runs, key=lambda r: r.seed):
        if r.status in ("done", "failed") and {"update_time", "episode_return_mean"} <= set(r.metrics()):
            groups[r.env_id][r.label].append(r)
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, (env, by_label) in zip(axes[0], groups.items()):
        for label, group in by_label.items():
            done = [r for r in group if r.status == "done"]
            shown = done or group[:1]
            n = min(len(r.metrics()["update_time"]) for r in shown)
            busy = np.mean([np.cumsum(r.metrics()["update_time"][:n]) for r in shown], axis=0)
            ret = np.mean([r.metrics()["episode_return_mean"][:n] for r in shown], axis=0)
            line = ax.plot(busy, ret, label=label if done else f"{label} (stopped)")[0]
            if not done:
                ax.plot(busy[-1:], ret[-1:], "x", color=line.get_color(), markersize=9)
        ax.set(title=env, xlabel="cumulative update time (s)", ylabel="mean return (last 20 episodes)", xscale="log")
    return save_png(fig, axes[0], path)
