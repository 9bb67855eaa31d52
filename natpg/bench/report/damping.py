"""Adaptive against fixed damping: per env × method the final return, the realised KL per update
and the damping λ each seed ended at, and λ over the run (the suite ``adaptive-damping``, once
benchmarks/smac_adaptive_damping.py; docs/smac.md, "Adaptive damping"): ``damping.md`` /
``damping.csv`` and ``damping.png`` of a report in which some run adapted its damping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from natpg.bench.report.plots import plot_grid
from natpg.bench.report.runs import Run, by_method, curves
from natpg.bench.report.tables import cell, csv_text, fmt, md_table, stopped

__all__ = ["adapts_damping", "damping_table", "plot_damping"]


def adapts_damping(run: Run) -> bool:
    return bool((run.config.get("method_kwargs") or {}).get("adaptive_damping"))


def _adapting_envs(runs: list[Run]) -> set[str]:
    return {r.env_id for r in runs if adapts_damping(r)}


def _groups(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """(env, label) → its runs that finished or failed, for the envs where some run adapted its damping."""
    envs = _adapting_envs(runs)
    return by_method(r for r in runs if r.env_id in envs and r.status in ("done", "failed"))


def _median_kl(run: Run) -> float:
    """The middle of the run's finite realised KLs, sorted (the upper middle for an even count,
    as in the published tables)."""
    kl = run.metrics().get("kl", np.array([]))
    kl = np.sort(kl[np.isfinite(kl)])
    return float(kl[kl.size // 2]) if kl.size else np.nan


def _final_damping(run: Run) -> float:
    """λ of the run's last update (its metrics' ``damping`` column; NaN for a rule without one)."""
    damping = run.metrics().get("damping", np.array([]))
    return float(damping[-1]) if damping.size else np.nan


def damping_table(runs: list[Run]) -> tuple[str, str] | None:
    """``damping.md`` / ``damping.csv``, or None when no run adapted its damping. Final return:
    mean ± std (ddof = 0, as the tables published from benchmarks/smac_adaptive_damping.py)
    over the completed seeds; a run stopped by the trainer is listed with its step. Median KL:
    each run's median realised KL(π_old‖π_new) over its updates, averaged over its seeds
    (stopped ones too). Final λ: per seed."""
    groups = _groups(runs)
    if not groups:
        return None
    md_rows, csv_rows = [], []
    for (env, label), group in groups.items():
        done = [r for r in group if r.status == "done" and r.summary.get("final_return") is not None]
        finals = [float(r.summary["final_return"]) for r in done]
        medians = [m for m in map(_median_kl, group) if np.isfinite(m)]
        kl = float(np.mean(medians)) if medians else np.nan
        lams = [_final_damping(r) for r in group]
        walls = [r.summary["wall_time"] for r in done if r.summary.get("wall_time") is not None]
        md_rows.append([env, f"`{label}`", f"{cell(float(np.mean(finals)), float(np.std(finals)))} ({len(finals)}/{len(group)})"
                        if finals else f"– (0/{len(group)})", stopped(group), f"{kl:.2e}" if np.isfinite(kl) else "–",
                        ", ".join(f"{x:.3g}" for x in lams) if np.isfinite(lams).all() else "–",
                        fmt(float(np.mean(walls))) if walls else "–"])
        csv_rows += [[env, label, r.seed, r.status, r.summary.get("final_return", "") if r.status == "done" else "",
                      _median_kl(r), _final_damping(r)] for r in group]
    md = md_table(["env", "method", "final return (completed/runs)", "stopped", "median KL per update", "final λ",
                   "wall s"], md_rows)
    md += ("\nFinal return: mean ± std (ddof = 0) over the seeds that completed; *stopped*: runs the trainer stopped "
           "after consecutive non-finite updates, with the step. Median KL: the median over a run's updates of the "
           "realised KL(π_old‖π_new) on its batch, averaged over the seeds. Final λ: the damping of each seed's last "
           "update (the start value, for a rule with fixed damping).\n")
    return md, csv_text(["env", "method", "seed", "status", "final_return", "median_kl", "final_damping"], csv_rows)


def plot_damping(runs: list[Run], path: Path, styles: dict[str, tuple[str, Any]] | None = None) -> Path | None:
    """``damping.png``: log₁₀ λ against environment steps, one panel per env where some run
    adapted its damping, one line per method whose completed runs log their damping (fixed λ: a
    flat line); mean ± std over the seeds of log₁₀ λ (the geometric mean and spread of λ), bin
    means without smoothing. None when no run adapted its damping."""
    envs = _adapting_envs(runs)
    data = curves([r for r in runs if r.env_id in envs], "damping", np.log10, alpha=1.0)
    return plot_grid(data, "log₁₀ λ", "Damping λ over training", path,
                     "completed runs; λ of each update, bin means, no smoothing", styles)
