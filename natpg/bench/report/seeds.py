"""Per-seed outcomes of a sweep's runs: final return, best running mean, when the running mean first
reached a "solved" return (the table of the suites ``baselines-*`` and ``isopo-rat-*``, once
benchmarks/baselines.py and isopo_rat.py; docs/baselines.md, docs/isopo_rat.md): ``seeds.md`` /
``seeds.csv`` of every report.
"""

from __future__ import annotations

import json
import math

import numpy as np

from natpg.bench.report.runs import Run, by_method
from natpg.bench.report.tables import csv_text, fmt, md_table

__all__ = ["SOLVED", "best_and_first", "seeds_table"]

#: Return at which a task counts as solved: CartPole-v0's 195 (over 100 episodes; here the
#: trainer's running mean over ``return_window`` = 20), the mark docs/baselines.md and docs/isopo_rat.md use.
SOLVED: dict[str, float] = {"CartPole-v1": 195.0}


def best_and_first(run: Run, target: float | None) -> tuple[float | None, float | None]:
    """(best running mean of the episode return, first environment step at which it reached
    ``target``), from the run's metrics rows; None where there is none."""
    m = run.metrics()
    steps, mean = m.get("timesteps", np.array([])), m.get("episode_return_mean", np.array([]))
    finite = np.isfinite(mean)
    best = float(mean[finite].max()) if finite.any() else None
    hit = np.nonzero(finite & (mean >= target))[0] if target is not None else np.array([], dtype=int)
    return best, (float(steps[hit[0]]) if hit.size else None)


def _per_seed(values: list[str]) -> str:
    return " / ".join(values) or "–"


def seeds_table(runs: list[Run], targets: dict[str, float] = SOLVED) -> tuple[str, str]:
    """``seeds.md`` / ``seeds.csv``: per env × method, each seed's final return (a failed or
    stopped run shows why), the mean over the completed seeds, each seed's best running mean and
    the step its running mean first reached the env's target (``targets``), mean update and wall
    time. The CSV has one row per run, with the rule's hyperparameters."""
    groups = by_method(r for r in runs if r.status in ("done", "failed"))
    md_rows, csv_rows = [], []
    for (env, label), group in groups.items():
        target = targets.get(env)
        finals, bests, firsts = [], [], []
        for r in group:
            best, first = best_and_first(r, target)
            final = r.summary.get("final_return") if r.status == "done" else None
            finals.append(fmt(final) if final is not None else ("failed" if r.status == "failed" else "–"))
            bests.append(fmt(best))
            firsts.append("never" if first is None else f"{first / 1e3:.0f}k")
            csv_rows.append([env, label, r.seed, r.status, final, best, first, r.summary.get("update_time_mean"),
                             r.summary.get("wall_time"), json.dumps(r.config.get("method_kwargs") or {}, sort_keys=True)])
        done = [float(r.summary["final_return"]) for r in group if r.status == "done" and r.summary.get("final_return") is not None]
        update_ms = [1e3 * r.summary["update_time_mean"] for r in group if r.summary.get("update_time_mean") is not None]
        walls = [r.summary["wall_time"] for r in group if r.status == "done" and r.summary.get("wall_time") is not None]
        md_rows.append([env, f"`{label}`", _per_seed(finals), fmt(float(np.mean(done))) if done else "–", _per_seed(bests),
                        _per_seed(firsts) if target is not None else "n/a",
                        fmt(float(np.mean(update_ms))) if update_ms else "–", fmt(float(np.mean(walls))) if walls else "–"])
    solved = "; ".join(f"{env} {fmt(t)}" for env, t in targets.items() if any(e == env for e, _ in groups))
    md = md_table(["env", "method", "final (per seed)", "mean", "best running mean", "target reached at", "update ms",
                   "wall s"], md_rows)
    md += ("\nPer seed, in seed order: final = mean return of the episodes that ended in the last 10% of the steps "
           "(`failed`: the run failed or was stopped by the trainer); mean over the completed seeds; best running mean = "
           "the highest mean return over the last 20 episodes at any update; target reached at = the first step at which "
           f"that running mean reached the target{' (' + solved + ')' if solved else ''}. Update and wall time: means "
           "over the runs.\n")
    header = ["env", "method", "seed", "status", "final_return", "best_running_mean", "first_step_at_target",
              "update_time_mean_s", "wall_time_s", "hyperparameters"]
    return md, csv_text(header, [["" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row]
                                 for row in csv_rows])
