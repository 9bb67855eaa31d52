"""Steps to a return threshold: the paper's thresholds (from its text) for runs of the paper
preset, ours (two per MuJoCo task) for any other run, so one report can hold both sweeps."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from natpg.bench.report.runs import BINS, Run, binned_curve, env_order, method_order
from natpg.bench.report.tables import csv_text, fmt, md_table

__all__ = ["THRESHOLDS", "FIELD_THRESHOLDS", "steps_to_threshold", "thresholds_for", "thresholds_table"]

#: Return thresholds stated in the paper's text (Section 6), with where each comes from.
THRESHOLDS: dict[str, tuple[float, str]] = {
    "Acrobot-v1": (-400.0, "the paper's stated Acrobot threshold"),
    "CartPole-v1": (750.0, "75% of the maximum return (1000)"),
    "Pendulum-v1": (-2226.0, "SMAC's final return in the paper (AC-CG 'matches' it)"),
    "HalfCheetah-v5": (-444.6, "AC-CG's final return in the paper"),
    "Hopper-v5": (303.8, "AC-Adam's final return in the paper"),
    "Swimmer-v5": (23.8, "AC-CG's final (peak) return in the paper"),
    "Walker2d-v5": (115.0, "the paper's stated Walker threshold (half of AC-CG's final)"),
    "Humanoid-v5": (3175.0, "AC-CG's final return in the paper"),
    "Pusher-v5": (-441.0, "the paper's stated Pusher threshold (AC-CG's final)"),
}
#: Return thresholds for the MuJoCo field sweep (issue 14), two per task. Ours, not from a paper:
#: round numbers, the lower one about where the weaker published 1M-step results end (CleanRL PPO,
#: Tianshou A2C/NPG, sb3-contrib TRPO on HalfCheetah), the upper one a return only the stronger
#: ones reach at 1M steps (natpg/bench/mujoco_1m_anchors.csv). Humanoid's 3000 is above every
#: published 1M-step number: it marks a run that does better than the field.
FIELD_THRESHOLDS: dict[str, tuple[tuple[float, ...], str]] = {
    "HalfCheetah-v5": ((1500.0, 3000.0), "ours"),
    "Hopper-v5": ((1000.0, 2500.0), "ours"),
    "Walker2d-v5": ((1000.0, 3000.0), "ours"),
    "Swimmer-v5": ((50.0, 100.0), "ours"),
    "Ant-v5": ((1000.0, 2500.0), "ours"),
    "Humanoid-v5": ((1000.0, 3000.0), "ours"),
}


def steps_to_threshold(run: Run, threshold: float) -> float | None:
    """Environment steps until the run's binned return (the mean of the 100 bins of the figures,
    without the EWM, which lags by about 1/α = 10 bins) first reaches ``threshold``: the right
    edge of the first such bin."""
    m = run.metrics()
    if "timesteps" not in m or "episode_return_mean" not in m or not len(m["timesteps"]):
        return None
    x_max = float(run.summary.get("steps") or m["timesteps"][-1])
    s = binned_curve(m["timesteps"], m["episode_return_mean"], x_max, alpha=1.0)
    hit = np.nonzero(np.nan_to_num(s, nan=-np.inf) >= threshold)[0]
    return float((hit[0] + 1) * x_max / BINS) if hit.size else None


def thresholds_for(run: Run) -> tuple[tuple[float, ...], str] | None:
    """A run's thresholds and where they come from: the paper's (:data:`THRESHOLDS`) first for a
    run of the paper preset, ours (:data:`FIELD_THRESHOLDS`) first for any other (natpg's default
    recipe, the SB3 zoo rows); the other set where the first has no entry for the env."""
    paper = THRESHOLDS.get(run.env_id)
    paper_set = ((paper[0],), paper[1]) if paper else None
    field_set = FIELD_THRESHOLDS.get(run.env_id)
    return (paper_set or field_set) if run.config.get("preset") == "paper" else (field_set or paper_set)


def thresholds_table(runs: list[Run]) -> tuple[str, str]:
    """Steps to each threshold, one row per env × threshold (``thresholds.md`` / ``.csv``)."""
    done = [r for r in runs if r.status == "done" and thresholds_for(r)]
    methods = method_order({r.label for r in done})
    md_rows, csv_rows = [], []
    sources: dict[str, dict[float, str]] = defaultdict(dict)  # env → threshold → where it comes from
    for env in env_order({r.env_id for r in done}):
        per_threshold: dict[float, list[Run]] = defaultdict(list)
        for r in done:
            if r.env_id == env:
                values, why = thresholds_for(r)
                for thr in values:
                    per_threshold[thr].append(r)
                    sources[env][thr] = why
        for thr in sorted(per_threshold):
            row = [env, fmt(thr)]
            for m in methods:
                group = [r for r in per_threshold[thr] if r.label == m]
                if not group:
                    row.append("–")
                    continue
                hits = [steps_to_threshold(r, thr) for r in group]
                reached = [h for h in hits if h is not None]
                for r, h in zip(group, hits):
                    csv_rows.append([env, m, r.seed, thr, "" if h is None else int(h)])
                row.append(f"{np.median(reached) / 1e3:.0f}k ({len(reached)}/{len(group)})" if reached
                           else f"never (0/{len(group)})")
            md_rows.append(row)
    md = md_table(["env", "threshold"] + methods, md_rows)
    ours = [f"{env} {' / '.join(fmt(t) for t in sorted(ts))}" for env, ts in sources.items() if "ours" in ts.values()]
    paper = [f"{env} {fmt(t)} ({why})" for env, ts in sources.items() for t, why in ts.items() if why != "ours"]
    md += ("\nEnvironment steps until the binned return (100 bins over the budget, bin means of the recent "
           "20-episode mean; no EWM, which would lag by ~10 bins) first reaches the threshold: median over the "
           "seeds that reached it (seeds that reached it / seeds); resolution 1% of the budget."
           + (f" Thresholds{' of the paper-preset runs' if ours else ''}, from the paper's text: " + "; ".join(paper) + "."
              if paper else "")
           + (f" {'Thresholds of the other runs' if paper else 'Thresholds'} are ours, not from any paper: round "
              "numbers between the weaker and the stronger published 1M-step results (anchors.md): "
              + "; ".join(ours) + "." if ours else "")
           + "\n")
    return md, csv_text(["env", "method", "seed", "threshold", "steps_to_threshold"], csv_rows)
