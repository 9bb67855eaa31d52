"""``natpg report DIR...``: tables and plots from sweep directories — the MuJoCo field table
(issue 14) and the paper's Table 1 and Figures 1-5.

Writes into the report directory:

* ``returns.csv`` / ``returns.md``: final return per env × method over the completed seeds,
  columns ``env,method,seeds,mean,std,wall_time_mean,steps_per_second_mean`` (std: ddof = 1,
  empty below two seeds); failed, stopped and unfinished runs are left out and counted in the
  Markdown, which marks an env × method *partial* when it has fewer completed seeds than the
  sweep's largest seed count;
* ``anchors.md`` (when a task of the sweep has published 1M-step numbers): per task, the best
  natpg rule and the best SB3 row beside the anchors of :mod:`natpg.bench.anchors`, with how
  their protocols differ from ours;
* ``curves_ENV.png``: per task, return per training episode against environment steps, one line
  per method (same colour and style in every figure), the smoothing of the figures below, mean ±
  std band over the seeds, the number of seeds in the title;
* ``table1.md`` / ``table1.csv``: final return mean ± std over seeds per env × method (best
  mean per env in bold), and beside it the paper's Table 1 for the methods it has;
* ``thresholds.md`` / ``.csv``: environment steps until the return first reaches the
  thresholds the paper states in its text (:data:`THRESHOLDS`) for runs of the paper preset, ours
  (:data:`FIELD_THRESHOLDS`, two per MuJoCo task) for any other;
* ``timing.md`` / ``.csv``: mean actor+critic update time (ms) and steps/s per env × method;
* ``smac_rank1.md``: per env, how far batch-mean SMAC's step is from its step-size control's
  (λ, ‖ℓ̄‖², the fraction of the gradient's ℓ̄-component removed, cosine to the gradient);
* ``status.md``: runs finished / failed / unfinished per env × method (partial results);
* ``ablation.md`` and ``ablation_batch_size.png`` (Figure 1) when a directory holds SMAC at
  several batch sizes (``smac@batch_size=N``, or ``smac-*`` variants) for one env;
* ``learning_curves.png`` (Figures 2-3) and ``log_prob.png`` (Figures 4-5): per env, the
  paper's smoothing (100 non-overlapping bins over the steps, bin means, then an
  exponentially weighted mean over bins with smoothing factor 0.1), mean over seeds with
  ±1 std shaded;
* ``report.md``: all of the above in one page.

``update_docs(page, report_dir)`` refreshes a hand-written Markdown page (docs/results.md)
from those files: every block ``<!-- report:NAME from=DIR -->`` … ``<!-- /report:NAME -->``
whose DIR (relative to the page) is the report directory is replaced by ``NAME.md``
(``returns``, ``anchors``, ``table1``, ``smac_vs``, ``smac_rank1``, ``thresholds``, ``timing``,
``status``, ``ablation``, ``commands``),
so the page's tables always come from the data while its prose stays the author's; one page can
draw on several reports.

The final return of a run is ``summary.json``'s ``final_return`` (mean return of the episodes
that ended in the last 10% of the steps, natpg.trainer.final_return), for natpg and SB3 alike.
Std over seeds: the sample std (ddof = 1) in returns, anchors and the curves' bands; the
population std (ddof = 0) in Table 1, smac_vs and the ablation, unchanged so that their numbers
match the reports already published from them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from natpg.bench.anchors import Ours, anchors_table
from natpg.bench.suites import MUJOCO_FIELD_METHODS, PAPER_METHODS, SB3_METHODS, SB3_ZOO_METHODS
from natpg.bench.tables import cell, csv_text, fmt, md_table
from natpg.presets import PAPER_ENVS
from natpg.runlog import atomic_write_bytes

__all__ = ["Run", "load_runs", "write_report", "update_docs", "binned_curve", "THRESHOLDS", "FIELD_THRESHOLDS",
           "paper_table1", "final_returns", "returns_table"]

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
BINS = 100
EWM_ALPHA = 0.1


@dataclass
class Run:
    env_id: str
    label: str
    seed: int
    path: Path
    status: str  # done, failed, unfinished
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    budget: int | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    _metrics: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, np.ndarray]:
        if self._metrics is None:
            cols: dict[str, list[float]] = defaultdict(list)
            path = self.path / "metrics.csv"
            if path.exists():
                with open(path, newline="") as f:
                    for row in csv.DictReader(f):
                        for k, v in row.items():
                            try:
                                cols[k].append(float(v) if v not in ("", None) else math.nan)
                            except ValueError:
                                cols[k].append(math.nan)
            self._metrics = {k: np.asarray(v, dtype=float) for k, v in cols.items()}
        return self._metrics


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_runs(dirs: Iterable[str | Path]) -> list[Run]:
    """Every run directory (OUT/ENV/LABEL/seedS) under ``dirs``; a duplicate key keeps the first."""
    runs: dict[tuple[str, str, int], Run] = {}
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise ValueError(f"{d} does not exist")
        for seed_dir in sorted(d.glob("*/*/seed*")):
            m = re.fullmatch(r"seed(\d+)", seed_dir.name)
            if not m or not seed_dir.is_dir():
                continue
            config = _read_json(seed_dir / "config.json") or {}
            env_id = config.get("env_id") or seed_dir.parent.parent.name
            label, seed = seed_dir.parent.name, int(m.group(1))
            summary = _read_json(seed_dir / "summary.json")
            error = _read_json(seed_dir / "error.json")
            if summary is not None and summary.get("status", "completed") != "completed":
                # The trainer stopped the run early (e.g. ``stopped_nonfinite``): its final
                # return covers a shorter run, so it is a failure, not a Table-1 entry.
                status = "failed"
                error = {"error": f"{summary['status']}: {summary.get('message', '')}".rstrip(": ")}
            elif summary is not None:
                status = "done"
            elif error is not None:
                status = "failed"
            elif config:
                status = "unfinished"
            else:
                continue
            key = (env_id, label, seed)
            if key in runs:
                print(f"natpg report: {seed_dir} duplicates {runs[key].path}; keeping the first", file=sys.stderr)
                continue
            runs[key] = Run(env_id, label, seed, seed_dir, status, summary or {},
                            (error or {}).get("error"), config.get("total_steps"), config)
    return list(runs.values())


def paper_table1() -> dict[str, dict[str, tuple[float, float]]]:
    """The paper's Table 1 (packaged copy): env id → method → (mean, std)."""
    text = resources.files("natpg.bench").joinpath("paper_table1.csv").read_text()
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        env = row.pop("env_id")
        out[env] = {}
        for key in row:
            if key.endswith("_mean"):
                method = key[: -len("_mean")]
                out[env][method] = (float(row[key]), float(row[f"{method}_std"]))
    return out


# ----------------------------------------------------------------------------- ordering


def _env_order(envs: Iterable[str]) -> list[str]:
    envs = set(envs)
    return [e for e in PAPER_ENVS if e in envs] + sorted(envs - set(PAPER_ENVS))


#: natpg's rules in report order: the paper's Table 1 methods, then the rest of the MuJoCo field suite's.
_NATPG_ORDER = tuple(dict.fromkeys((*PAPER_METHODS, *(m for m in MUJOCO_FIELD_METHODS if m not in SB3_METHODS))))
#: SB3 rows last, the tuned rivals before the library defaults.
_SB3_ORDER = tuple(dict.fromkeys((*SB3_ZOO_METHODS, *SB3_METHODS)))


def _is_sb3(label: str) -> bool:
    """A Stable-Baselines3 / sb3-contrib row (natpg bench runs every ``sb3-*`` method through SB3)."""
    return label.startswith("sb3-")


def _method_order(labels: Iterable[str]) -> list[str]:
    """natpg's known rules, other natpg labels (sorted), then SB3 rows; a variant
    (``trpo@normalize_obs=false``) right after its base rule."""

    def key(label: str) -> tuple[int, int, str, str]:
        base = label.split("@")[0]
        if _is_sb3(base):
            return 2, _SB3_ORDER.index(base) if base in _SB3_ORDER else len(_SB3_ORDER), base, label
        if base in _NATPG_ORDER:
            return 0, _NATPG_ORDER.index(base), "", label
        return 1, 0, base, label

    return sorted(set(labels), key=key)


# ----------------------------------------------------------------------------- tables


def _final_stats(runs: list[Run]) -> dict[tuple[str, str], tuple[float, float, int]]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in runs:
        if r.status == "done" and r.summary.get("final_return") is not None:
            groups[(r.env_id, r.label)].append(float(r.summary["final_return"]))
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in groups.items()}


def table1(runs: list[Run]) -> tuple[str, str]:
    stats = _final_stats(runs)
    paper = paper_table1()
    envs = _env_order({e for e, _ in stats})
    methods = _method_order({m for _, m in stats})
    paper_methods = [m for m in ("ac-sgd", "ac-adam", "ac-cg", "smac")]
    header = ["env"] + methods + [f"paper {m}" for m in paper_methods]
    md_rows, csv_rows = [], []
    for env in envs:
        best = max((stats[(env, m)][0] for m in methods if (env, m) in stats), default=None)
        row = [env]
        for m in methods:
            if (env, m) not in stats:
                row.append("–")
                continue
            mean, std, n = stats[(env, m)]
            text = f"{cell(mean, std)} ({n})"
            row.append(f"**{text}**" if mean == best and len([1 for mm in methods if (env, mm) in stats]) > 1 else text)
            p = paper.get(env, {}).get(m)
            csv_rows.append([env, m, n, mean, std, p[0] if p else "", p[1] if p else "", int(mean == best)])
        for m in paper_methods:
            p = paper.get(env, {}).get(m)
            row.append(cell(*p) if p else "–")
        md_rows.append(row)
    md = md_table(header, md_rows)
    md += ("\nFinal return: mean of the episodes that ended in the last 10% of each run's steps; mean ± std over "
           "seeds (number of seeds in brackets); best of our methods per env in bold. The `paper` columns are the "
           "paper's Table 1 (5 seeds, its own — unstated, longer — budgets).\n")
    return md, csv_text(["env", "method", "seeds", "mean", "std", "paper_mean", "paper_std", "best"], csv_rows)


@dataclass
class FinalReturns:
    """One env × method of ``returns.csv``: the final returns of its completed runs, and how many
    of its runs are not in them (failed or stopped by the trainer, unfinished, or completed with
    no episode ending in the last 10% of the steps)."""

    env_id: str
    label: str
    returns: list[float] = field(default_factory=list)
    wall_times: list[float] = field(default_factory=list)
    steps_per_second: list[float] = field(default_factory=list)
    failed: int = 0
    unfinished: int = 0
    no_final_return: int = 0

    @property
    def seeds(self) -> int:
        return len(self.returns)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.returns)) if self.returns else None

    @property
    def std(self) -> float | None:
        """Sample std over seeds (ddof = 1); None below two seeds."""
        return float(np.std(self.returns, ddof=1)) if len(self.returns) >= 2 else None

    def not_counted(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.unfinished, "unfinished"),
                                              (self.no_final_return, "without a final return")) if n]
        return ", ".join(parts) or "–"


def final_returns(runs: list[Run]) -> dict[tuple[str, str], FinalReturns]:
    """(env, label) → :class:`FinalReturns`, in report order, for every env × method with a run."""
    groups: dict[tuple[str, str], FinalReturns] = {}
    for env in _env_order({r.env_id for r in runs}):
        for label in _method_order({r.label for r in runs if r.env_id == env}):
            groups[(env, label)] = FinalReturns(env, label)
    for r in runs:
        g = groups[(r.env_id, r.label)]
        if r.status == "failed":
            g.failed += 1
        elif r.status == "unfinished":
            g.unfinished += 1
        elif r.summary.get("final_return") is None:
            g.no_final_return += 1
        else:
            g.returns.append(float(r.summary["final_return"]))
            g.wall_times.append(float(r.summary.get("wall_time", math.nan)))
            g.steps_per_second.append(float(r.summary.get("steps_per_second", math.nan)))
    return groups


def _mean_or_none(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def returns_table(runs: list[Run], planned_seeds: int = 0) -> tuple[str, str]:
    """``returns.md`` / ``returns.csv``: final return per env × method over the completed seeds.

    An env × method is *partial* when it has fewer completed seeds than the largest seed count of
    the sweep: the most completed seeds of any env × method, or ``planned_seeds`` (the most seeds
    one ``natpg bench`` invocation asked for) when that is larger."""
    groups = final_returns(runs)
    target = max([planned_seeds, *(g.seeds for g in groups.values())])
    csv_rows, md_rows = [], []
    for (env, label), g in groups.items():
        csv_rows.append([env, label, g.seeds, *("" if v is None else v for v in
                        (g.mean, g.std, _mean_or_none(g.wall_times), _mean_or_none(g.steps_per_second)))])
        seeds = f"{g.seeds}" + (f" (partial: {g.seeds} of {target})" if g.seeds < target else "")
        ret = "–" if g.mean is None else fmt(g.mean) if g.std is None else cell(g.mean, g.std)
        md_rows.append([env, f"`{label}`", seeds, ret, fmt(_mean_or_none(g.wall_times), 0),
                        fmt(_mean_or_none(g.steps_per_second), 0), g.not_counted()])
    md = md_table(["env", "method", "seeds", "final return", "wall time (s)", "steps/s", "not counted"], md_rows)
    md += ("\nFinal return (summary.json `final_return`): mean return of the training episodes that ended in the last "
           "10% of each run's steps. Mean ± sample std (ddof = 1) over the completed seeds; one seed has no std. Wall "
           "time and steps/s: means over the same seeds. Runs that failed, were stopped by the trainer (e.g. after "
           "non-finite updates) or have not finished are left out of every number and counted under *not counted*. "
           f"*partial*: fewer completed seeds than the sweep's largest seed count ({target}). "
           "Machine-readable: `returns.csv` (empty std below two seeds).\n")
    return md, csv_text(["env", "method", "seeds", "mean", "std", "wall_time_mean", "steps_per_second_mean"], csv_rows)


def _planned_seeds(dirs: list[Path]) -> int:
    """The most seeds any ``natpg bench`` invocation recorded in a directory's sweep.json asked for."""
    counts = [len(inv.get("seeds") or []) for d in dirs for inv in (_read_json(d / "sweep.json") or {}).get("invocations", [])]
    return max(counts, default=0)


def _verdict(a: tuple[float, float, int], b: tuple[float, float, int]) -> str:
    """Plain words for mean a vs mean b: 'higher'/'lower' when the gap exceeds both stds, else 'within noise'."""
    (ma, sa, na), (mb, sb, nb) = a, b
    if min(na, nb) < 2:
        return ("higher" if ma > mb else "lower") + " (1 seed: no error bar)"
    if abs(ma - mb) <= max(sa, sb):
        return "within noise (gap ≤ std)"
    return "higher" if ma > mb else "lower"


def comparison_table(runs: list[Run], method: str = "smac", others: tuple[str, ...] = ("ac-sgd-matched",)) -> str | None:
    """``method`` against each of ``others`` per env: means, gap, and a verdict in words."""
    stats = _final_stats(runs)
    rows = []
    for env in _env_order({e for e, _ in stats}):
        if (env, method) not in stats:
            continue
        for other in others:
            if (env, other) not in stats:
                continue
            a, b = stats[(env, method)], stats[(env, other)]
            rows.append([env, other, f"{cell(a[0], a[1])} ({a[2]})", f"{cell(b[0], b[1])} ({b[2]})",
                         fmt(a[0] - b[0]), f"{method} {_verdict(a, b)}"])
    if not rows:
        return None
    return md_table(["env", "against", method, "other", "gap", "verdict"], rows)


def rank1_table(runs: list[Run], method: str = "smac", control: str = "ac-sgd-matched") -> str | None:
    """How much batch-mean SMAC's step differs from its step-size control, per env.

    SMAC's step is (η/λ)(g − ℓ̄ (ℓ̄ᵀg)/(λ + ‖ℓ̄‖²)): the control's step with the component of
    g along ℓ̄ scaled by λ/(λ + ‖ℓ̄‖²). The table gives λ, the median over updates (pooled over
    seeds) of ‖ℓ̄‖² and of the fraction ‖ℓ̄‖²/(λ + ‖ℓ̄‖²) of that component SMAC removes, the
    median cosine between SMAC's step and g, and both methods' final returns."""
    stats = _final_stats(runs)
    rows = []
    done = [r for r in runs if r.status == "done" and r.label == method]
    for env in _env_order({r.env_id for r in done}):
        group = [r for r in done if r.env_id == env]
        lams = {(r.config.get("method_kwargs") or {}).get("damping") for r in group}
        if len(lams) != 1 or None in lams:
            continue
        lam = float(lams.pop())
        l2 = np.concatenate([r.metrics().get("mean_score_norm_sq", np.array([])) for r in group])
        cos = np.concatenate([r.metrics().get("grad_cosine", np.array([])) for r in group])
        l2, cos = l2[np.isfinite(l2)], cos[np.isfinite(cos)]
        if not l2.size:
            continue
        shrink = l2 / (lam + l2)
        a = stats.get((env, method))
        b = stats.get((env, control))
        rows.append([env, fmt(lam, 2 if lam < 1 else 1), f"{np.median(l2):.3g}", f"{np.median(shrink):.3f}",
                     f"{np.max(shrink):.3f}", f"{np.median(cos):.4f}" if cos.size else "–",
                     f"{cell(a[0], a[1])} ({a[2]})" if a else "–", f"{cell(b[0], b[1])} ({b[2]})" if b else "–"])
    if not rows:
        return None
    return (f"What the rank-1 term does: {method}'s step is {control}'s step with the component of the policy "
            "gradient g along the mean score ℓ̄ scaled by λ/(λ + ‖ℓ̄‖²). Medians over every update of every seed "
            "(‖ℓ̄‖² and the cosine are measured at the start of each update, over the whole rollout):\n\n"
            + md_table(["env", "λ", "median ‖ℓ̄‖²", "median ‖ℓ̄‖²/(λ+‖ℓ̄‖²)", "max ‖ℓ̄‖²/(λ+‖ℓ̄‖²)",
                         "median cos(step, g)", f"{method} final", f"{control} final"], rows))


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


def _thresholds_for(run: Run) -> tuple[tuple[float, ...], str] | None:
    """A run's thresholds and where they come from: the paper's (:data:`THRESHOLDS`) first for a
    run of the paper preset, ours (:data:`FIELD_THRESHOLDS`) first for any other (natpg's default
    recipe, the SB3 zoo rows); the other set where the first has no entry for the env."""
    paper = THRESHOLDS.get(run.env_id)
    paper_set = ((paper[0],), paper[1]) if paper else None
    field_set = FIELD_THRESHOLDS.get(run.env_id)
    return (paper_set or field_set) if run.config.get("preset") == "paper" else (field_set or paper_set)


def thresholds_table(runs: list[Run]) -> tuple[str, str]:
    """Steps to each threshold, one row per env × threshold. A paper-preset run is measured
    against the paper's threshold, any other against ours, so one report can hold both sweeps."""
    done = [r for r in runs if r.status == "done" and _thresholds_for(r)]
    methods = _method_order({r.label for r in done})
    md_rows, csv_rows = [], []
    sources: dict[str, dict[float, str]] = defaultdict(dict)  # env → threshold → where it comes from
    for env in _env_order({r.env_id for r in done}):
        per_threshold: dict[float, list[Run]] = defaultdict(list)
        for r in done:
            if r.env_id == env:
                values, why = _thresholds_for(r)
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


def timing_table(runs: list[Run]) -> tuple[str, str]:
    done = [r for r in runs if r.status == "done"]
    envs = _env_order({r.env_id for r in done})
    methods = _method_order({r.label for r in done})
    csv_rows = []
    upd_rows, sps_rows = [], []
    for env in envs:
        u_row, s_row = [env], [env]
        for m in methods:
            group = [r for r in done if r.env_id == env and r.label == m]
            if not group:
                u_row.append("–"), s_row.append("–")
                continue
            upd = [r.summary.get("update_time_mean", math.nan) * 1e3 for r in group]
            sps = [r.summary.get("steps_per_second", math.nan) for r in group]
            u, s = float(np.nanmean(upd)) if np.isfinite(upd).any() else math.nan, float(np.nanmean(sps))
            u_row.append(fmt(u, 2 if u < 10 else 1))
            s_row.append(fmt(s, 0))
            csv_rows.append([env, m, len(group), u, s])
        upd_rows.append(u_row)
        sps_rows.append(s_row)
    md = ("Mean time of one update (actor + critic, ms; for SB3 the time of `train()` after each rollout):\n\n"
          + md_table(["env"] + methods, upd_rows)
          + "\nEnvironment steps per second of wall time (rollouts + updates, one CPU thread per run):\n\n"
          + md_table(["env"] + methods, sps_rows))
    return md, csv_text(["env", "method", "seeds", "update_time_ms", "steps_per_second"], csv_rows)


def _first_line(text: str | None, limit: int = 300) -> str:
    line = (text or "?").strip().splitlines()[0] if (text or "").strip() else "?"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def status_table(runs: list[Run]) -> str:
    envs = _env_order({r.env_id for r in runs})
    methods = _method_order({r.label for r in runs})
    rows = []
    for env in envs:
        row = [env]
        for m in methods:
            g = [r for r in runs if r.env_id == env and r.label == m]
            if not g:
                row.append("–")
                continue
            d = sum(r.status == "done" for r in g)
            f = sum(r.status == "failed" for r in g)
            u = sum(r.status == "unfinished" for r in g)
            row.append(f"{d}" + (f" +{f} failed" if f else "") + (f" +{u} unfinished" if u else ""))
        rows.append(row)
    failed = [r for r in runs if r.status == "failed"]
    text = "Runs finished per env × method (failed / unfinished runs noted):\n\n" + md_table(["env"] + methods, rows)
    if failed:
        text += "\nFailed runs (first line of the error; error.json in the run directory has the traceback):\n\n" + "".join(
            f"- {r.env_id} {r.label} seed {r.seed}: {_first_line(r.error)}\n" for r in failed)
    return text


# ----------------------------------------------------------------------------- curves


def binned_curve(x: np.ndarray, y: np.ndarray, x_max: float, bins: int = BINS, alpha: float = EWM_ALPHA) -> np.ndarray:
    """The paper's smoothing: means of ``y`` in ``bins`` non-overlapping bins of ``x`` over
    (0, x_max], empty bins carried forward, then an exponentially weighted mean over bins
    (s_0 = b_0, s_k = α b_k + (1 − α) s_{k−1}). Bins before the first value are NaN."""
    edges = np.linspace(0.0, x_max, bins + 1)
    ok = np.isfinite(y) & np.isfinite(x)
    x, y = x[ok], y[ok]
    idx = np.clip(np.searchsorted(edges, x, side="left") - 1, 0, bins - 1)
    sums = np.bincount(idx, weights=y, minlength=bins)
    counts = np.bincount(idx, minlength=bins)
    b = np.full(bins, np.nan)
    b[counts > 0] = sums[counts > 0] / counts[counts > 0]
    last = np.nan
    for k in range(bins):  # carry forward over empty bins (e.g. bins narrower than a rollout)
        if np.isnan(b[k]):
            b[k] = last
        else:
            last = b[k]
    s = np.full(bins, np.nan)
    prev = np.nan
    for k in range(bins):
        if np.isnan(b[k]):
            continue
        prev = b[k] if np.isnan(prev) else alpha * b[k] + (1 - alpha) * prev
        s[k] = prev
    return s


def _curves(runs: list[Run], column: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]]:
    """env → label → (bin centres, mean, std, seeds) of the smoothed ``column``: mean and sample
    std (ddof = 1, as in returns.csv; NaN, so no band, for one seed) over the completed seeds."""
    import warnings

    out: dict[str, dict[str, Any]] = defaultdict(dict)
    done = [r for r in runs if r.status == "done"]
    for env in _env_order({r.env_id for r in done}):
        for label in _method_order({r.label for r in done if r.env_id == env}):
            group = [r for r in done if r.env_id == env and r.label == label]
            x_max = max(float(r.summary.get("steps") or r.budget or 0) for r in group)
            curves = []
            for r in group:
                m = r.metrics()
                if column in m and "timesteps" in m and np.isfinite(m[column]).any():
                    curves.append(binned_curve(m["timesteps"], m[column], x_max))
            if not curves or x_max <= 0:
                continue
            arr = np.vstack(curves)
            with warnings.catch_warnings():  # all-NaN bins before a run's first episode; one seed has no std
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(arr, axis=0)
                std = np.nanstd(arr, axis=0, ddof=1) if len(curves) > 1 else np.full(BINS, np.nan)
            centres = (np.arange(BINS) + 0.5) * x_max / BINS
            out[env][label] = (centres, mean, std, len(curves))
    return out


def line_styles(labels: Iterable[str]) -> dict[str, tuple[Any, Any]]:
    """label → (colour, line style), a distinct pair for up to 20 natpg and 10 SB3 labels: tab10's
    colours in report order; natpg's rules solid (dash-dot past the tenth), SB3's rows dashed
    (dotted past the tenth). natpg's labels come first in report order, so two labels of one
    family that share a colour are ten apart and differ in style."""
    from matplotlib import colormaps

    tab10 = colormaps["tab10"].colors
    styles = {False: ("-", "-."), True: ("--", ":")}
    seen = {False: 0, True: 0}
    out = {}
    for i, label in enumerate(_method_order(labels)):
        sb3 = _is_sb3(label)
        out[label] = (tab10[i % 10], styles[sb3][(seen[sb3] // 10) % 2])
        seen[sb3] += 1
    return out


def _seed_count(counts: Iterable[int]) -> str:
    lo, hi = min(counts), max(counts)
    return "1 seed" if hi == 1 else f"{lo} seeds" if lo == hi else f"{lo}–{hi} seeds"


def seeds_phrase(counts: Iterable[int]) -> str:
    """What a figure's band is over, in words: '1 seed (no band)', 'mean ± std over 3 seeds', or a range."""
    counts = set(counts)
    if counts == {1}:
        return "1 seed (no band)"
    if len(counts) == 1:
        return f"mean ± std over {_seed_count(counts)}"
    return (f"mean ± std over {_seed_count(counts)} (per method in the legend"
            + ("; no band with 1 seed)" if 1 in counts else ")"))


def _plot_grid(data, ylabel: str, title: str, path: Path, note: str = "",
               styles: dict[str, tuple[Any, Any]] | None = None) -> Path | None:
    """One panel per env of ``data`` (from :func:`_curves`), mean line and ±1 std band per method;
    the legend right of the panels; the title says what the band is over (the actual seeds) and
    ``note`` (e.g. the smoothing). ``styles`` (from :func:`line_styles`) keeps a method's colour
    and line style the same across figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(data)
    if not envs:
        return None
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    size = (5.2 * ncols, 3.6 * nrows) if len(envs) > 1 else (7.0, 4.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    labels = _method_order({l for env in envs for l in data[env]})
    styles = styles or line_styles(labels)
    seeds: dict[str, set[int]] = defaultdict(set)
    for ax, env in zip(axes.flat, envs):
        for label, (x, mean, std, n) in data[env].items():
            colour, style = styles[label]
            ax.plot(x, mean, color=colour, linestyle=style, lw=1.5)
            ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
            seeds[label].add(n)
        if len(envs) > 1:
            ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    counts = {n for ns in seeds.values() for n in ns}
    names = [label if len(counts) == 1 else f"{label} ({_seed_count(seeds[label])})" for label in labels]
    handles = [plt.Line2D([], [], color=styles[l][0], linestyle=styles[l][1], lw=2) for l in labels]
    fig.suptitle(f"{title}\n{seeds_phrase(counts)}" + (f"; {note}" if note else ""), fontsize=11)
    fig.tight_layout()
    # Right of the panels, outside every axes: bbox_inches="tight" widens the canvas to hold it.
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


# ----------------------------------------------------------------------------- ablation (Figure 1)


def _smac_variant(label: str) -> str | None:
    """A SMAC variant of the batch-size ablation: ``smac``, ``smac@batch_size=N``, ``smac-*``."""
    if label == "smac" or re.fullmatch(r"smac@batch_size=\d+", label) or label.startswith("smac-"):
        return label
    return None


def _ablation_runs(runs: list[Run]) -> dict[str, list[str]]:
    by_env: dict[str, set[str]] = defaultdict(set)
    for r in runs:
        if r.status in ("done", "failed") and _smac_variant(r.label):
            by_env[r.env_id].add(r.label)
    return {e: sorted(v, key=_batch_key) for e, v in by_env.items() if len(v) >= 2}


def _batch_key(label: str) -> tuple[int, str]:
    m = re.fullmatch(r"smac@batch_size=(\d+)", label)
    if m:
        return int(m.group(1)), label
    if label == "smac-single":  # Algorithm 1: B = 1
        return 1, label
    return (10**9 if label == "smac" else 10**9 + 1), label


def ablation(runs: list[Run], out: Path, plots: bool) -> tuple[str | None, list[Path]]:
    envs = _ablation_runs(runs)
    if not envs:
        return None, []
    rows = []
    for env in _env_order(envs):
        for label in envs[env]:
            g = [r for r in runs if r.status == "done" and r.env_id == env and r.label == label]
            bad = [r for r in runs if r.status == "failed" and r.env_id == env and r.label == label]
            fr = [r.summary["final_return"] for r in g if r.summary.get("final_return") is not None]
            # update time of every run that has one: a stopped run's updates cost the same
            upd = [r.summary["update_time_mean"] * 1e3 for r in g + bad if r.summary.get("update_time_mean") is not None]
            wall = [r.summary.get("wall_time", math.nan) for r in g]
            stopped = ", ".join(f"seed {r.seed} at {r.summary['steps'] // 1000}k" if r.summary.get("steps") else f"seed {r.seed}"
                                for r in sorted(bad, key=lambda r: r.seed))
            rows.append([env, label, f"{len(g)} / {len(g) + len(bad)}",
                         cell(float(np.mean(fr)), float(np.std(fr))) if fr else "–", stopped or "–",
                         fmt(float(np.mean(upd)), 2) if upd else "–", fmt(float(np.mean(wall)), 1) if g else "–"])
    md = ("SMAC batch-size ablation (the paper's Figure 1; `smac` is batch-mean over the whole rollout "
          "(B = T = 1000 in the paper preset); `smac-single` and `batch_size=1` are the single-sample Algorithm 1, "
          "`smac-vec` its per-sample steps all taken at one θ). Final return over the runs that completed; "
          "a run stopped by the trainer after consecutive non-finite updates is listed as diverged, with the step; "
          "update time over every run:\n\n"
          + md_table(["env", "variant", "completed / runs", "final return", "diverged", "update ms", "wall s"], rows))
    files = []
    if plots:
        data = {env: v for env, v in _curves([r for r in runs if r.env_id in envs and r.label in envs[r.env_id]],
                                             "episode_return_mean").items()}
        p = _plot_grid(data, "return", "SMAC: effect of batch size (Figure 1)", out / "ablation_batch_size.png",
                       "100 bins, EWM 0.1")
        if p:
            files.append(p)
    return md, files


# ----------------------------------------------------------------------------- the report


def _provenance(dirs: list[Path]) -> str:
    lines = []
    for d in dirs:
        data = _read_json(d / "sweep.json")
        if not data:
            continue
        for inv in data.get("invocations", []):
            m = inv.get("machine", {})
            lines.append(f"- `{inv.get('command')}` — started {inv.get('started')} on {m.get('hostname', '?')} "
                         f"({m.get('cpu_model', m.get('processor', '?'))}, {m.get('cpu_count', '?')} CPUs, "
                         f"torch {m.get('torch', '?')}"
                         + (f", natpg {m['natpg_commit'][:12]}{'+dirty' if m['natpg_commit'].endswith('+dirty') else ''}" if m.get("natpg_commit") else "")
                         + f"), {inv.get('runs_pending')} of {inv.get('runs_planned')} runs to do"
                         + (f"; unavailable: {', '.join(inv['unavailable'])}" if inv.get("unavailable") else ""))
    return "\n".join(lines)


def _anchors(groups: dict[tuple[str, str], FinalReturns], target: int) -> str | None:
    """anchors.md: per task, our best natpg rule and best SB3 row beside the published numbers."""
    best: dict[bool, dict[str, Ours]] = {False: {}, True: {}}
    for (env, label), g in groups.items():
        side = best[_is_sb3(label)]
        if g.mean is not None and (env not in side or g.mean > side[env].mean):
            side[env] = Ours(label, g.mean, g.std, g.seeds, g.seeds < target)
    return anchors_table(best[False], best[True], _env_order({env for env, _ in groups}))


def step_size_table(runs: list[Run]) -> tuple[str, str] | None:
    """``step_size.md`` / ``.csv``: how long the actor's steps were, per env × method, pooled over
    the updates of every completed seed: median and max realised KL(π_old‖π_new) on the batch,
    the fraction of updates the line search accepted (trust-region rules and TRPO) and the
    median scale β of the trust region relative to the rule's own step."""
    done = [r for r in runs if r.status == "done" and "kl" in r.metrics()]
    if not done:
        return None
    rows, csv_rows = [], []
    for env in _env_order({r.env_id for r in done}):
        for m in _method_order({r.label for r in done if r.env_id == env}):
            group = [r for r in done if r.env_id == env and r.label == m]

            def pooled(column: str) -> np.ndarray:
                values = [r.metrics()[column] for r in group if column in r.metrics()]
                return np.concatenate(values) if values else np.array([])

            kl, accepted, scale = pooled("kl"), pooled("ls_accepted"), pooled("tr_scale")
            kl = kl[np.isfinite(kl)]
            if not kl.size:
                continue
            acc = float(np.nanmean(accepted)) if accepted.size else math.nan
            beta = float(np.nanmedian(scale)) if scale.size else math.nan
            med, top = float(np.median(kl)), float(np.max(kl))
            rows.append([env, f"`{m}`", str(len(group)), str(kl.size), fmt(med, 4), fmt(top, 4),
                         "–" if math.isnan(acc) else fmt(acc, 3), "–" if math.isnan(beta) else fmt(beta, 3)])
            csv_rows.append([env, m, len(group), kl.size, med, top, acc, beta])
    md = ("Realised KL(π_old‖π_new) per actor update on its batch, pooled over the updates of the completed seeds; "
          "*accepted*: fraction of updates whose line search found a step (trust-region rules and TRPO); "
          "*β*: median scale of the trust-region step relative to the rule's own step (> 1 lengthens it).\n\n"
          + md_table(["env", "method", "seeds", "updates", "median KL", "max KL", "accepted", "β"], rows))
    return md, csv_text(["env", "method", "seeds", "updates", "kl_median", "kl_max", "accepted_fraction", "tr_scale_median"], csv_rows)


def write_report(dirs: Iterable[str | Path], out: str | Path, plots: bool = True) -> list[Path]:
    dirs = [Path(d) for d in dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(dirs)
    if not runs:
        raise ValueError(f"no run directories under {', '.join(map(str, dirs))}")
    files: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write_bytes(out / name, text.encode())
        files.append(out / name)

    planned = _planned_seeds(dirs)
    rt_md, rt_csv = returns_table(runs, planned)
    put("returns.md", rt_md)
    put("returns.csv", rt_csv)
    groups = final_returns(runs)
    an_md = _anchors(groups, max([planned, *(g.seeds for g in groups.values())]))
    if an_md:
        put("anchors.md", an_md)
    t1_md, t1_csv = table1(runs)
    put("table1.md", t1_md)
    put("table1.csv", t1_csv)
    th_md, th_csv = thresholds_table(runs)
    put("thresholds.md", th_md)
    put("thresholds.csv", th_csv)
    tm_md, tm_csv = timing_table(runs)
    put("timing.md", tm_md)
    put("timing.csv", tm_csv)
    st_md = status_table(runs)
    put("status.md", st_md)
    step_size = step_size_table(runs)
    if step_size:
        put("step_size.md", step_size[0])
        put("step_size.csv", step_size[1])
    labels = {r.label for r in runs}
    cmp_md = comparison_table(runs, "smac", tuple(m for m in ("ac-sgd-matched", "ac-sgd", "ac-cg", *SB3_METHODS) if m in labels))
    if cmp_md:
        cmp_md = ("SMAC against its step-size control (AC-SGD at η/λ), the other baselines and SB3, per env. A verdict "
                  "'higher'/'lower' needs the gap to exceed both stds over seeds; with one seed there is no error bar.\n\n"
                  + cmp_md)
        put("smac_vs.md", cmp_md)
    r1_md = rank1_table(runs)
    if r1_md:
        put("smac_rank1.md", r1_md)
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("natpg report: matplotlib is not installed (pip install 'natpg[plots]'); tables only", file=sys.stderr)
            plots = False
    ab_md, ab_files = ablation(runs, out, plots)
    if ab_md:
        put("ablation.md", ab_md)
    files.extend(ab_files)

    figs, task_figs = [], []
    if plots:
        smoothing = "100 bins, EWM 0.1"
        returns = _curves(runs, "episode_return_mean")
        styles = line_styles({label for env in returns for label in returns[env]})
        for env in returns:  # one figure per task, each method in the same colour and style in every figure
            p = _plot_grid({env: returns[env]}, "return per episode", f"{env}: return per training episode",
                           out / f"curves_{env}.png", smoothing, styles)
            task_figs.append(p)
        p = _plot_grid(returns, "average return", "Return per episode (Figures 2-3)", out / "learning_curves.png",
                       smoothing, styles)
        if p:
            figs.append(p)
        p = _plot_grid(_curves(runs, "log_prob_mean"), "average log π(a|s)",
                       "Log-probability of the actions taken (Figures 4-5)", out / "log_prob.png", smoothing, styles)
        if p:
            figs.append(p)
        files.extend(task_figs + figs)

    parts = ["# natpg benchmark report\n", f"Sweep directories: {', '.join(f'`{d}`' for d in dirs)}\n"]
    prov = _provenance(dirs)
    if prov:
        put("commands.md", prov + "\n")
        parts.append("Commands:\n\n" + prov + "\n")
    parts += ["## Final returns\n", rt_md]
    parts += ["## Beside the published numbers\n", an_md] if an_md else []
    parts += ["## Learning curves per task\n"] + [f"![{p.stem}]({p.name})\n" for p in task_figs] if task_figs else []
    parts += ["## Final returns beside the paper (Table 1)\n", t1_md]
    parts += ["## SMAC against its controls\n", cmp_md] if cmp_md else []
    parts += ["## What SMAC's rank-1 term does\n", r1_md] if r1_md else []
    parts += ["## Steps to threshold\n", th_md, "## Update time and throughput\n",
              tm_md, "## Runs\n", st_md]
    if ab_md:
        parts += ["## Batch-size ablation (Figure 1)\n", ab_md]
        parts += [f"![ablation]({p.name})\n" for p in ab_files]
    if figs:
        parts += ["## Curves (Figures 2-5)\n"] + [f"![{p.stem}]({p.name})\n" for p in figs]
    put("report.md", "\n".join(parts))
    return files


_BLOCK = re.compile(r"(<!-- report:([a-z0-9_]+) from=(\S+) -->\n)(.*?)(<!-- /report:\2 -->)", re.DOTALL)


def update_docs(page: str | Path, report_dir: str | Path) -> list[str]:
    """Refresh the blocks of a hand-written Markdown page that come from ``report_dir``:
    ``<!-- report:NAME from=DIR -->…<!-- /report:NAME -->``, DIR relative to the page, is
    replaced by DIR/NAME.md when DIR is ``report_dir``; blocks from other report directories are
    left alone. Returns the names replaced. A page with no block from ``report_dir``, or a block
    whose file the report did not write (e.g. no ablation runs), is an error, so a page never
    keeps stale numbers silently."""
    page, report_dir = Path(page), Path(report_dir).resolve()
    text = page.read_text()
    names: list[str] = []

    def sub(m: re.Match) -> str:
        name, src_dir = m.group(2), (page.parent / m.group(3)).resolve()
        if src_dir != report_dir:
            return m.group(0)
        src = src_dir / f"{name}.md"
        if not src.exists():
            raise ValueError(f"{page} has a report:{name} block from {m.group(3)} but {src} does not exist")
        names.append(name)
        return m.group(1) + "\n" + src.read_text().strip() + "\n\n" + m.group(5)

    new = _BLOCK.sub(sub, text)
    if not names:
        raise ValueError(f"{page} has no <!-- report:NAME from=DIR --> block with DIR = {report_dir}")
    atomic_write_bytes(page, new.encode())
    return names
