"""What only the SMAC paper's reproduction needs: its Table 1 beside ours, the budget per task,
a verdict per task and method, SMAC against its step-size control, what SMAC's rank-1 term does,
and the batch-size ablation of its Figure 1."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from natpg.bench.report.plots import plot_grid
from natpg.bench.report.runs import FinalReturns, Run, curves, env_order, final_returns
from natpg.bench.report.stats import PAPER_SEEDS, Sample, Verdict, reproduction, steps_text, versus
from natpg.bench.report.tables import cell, csv_text, fmt, md_table, stopped
from natpg.bench.suites import PAPER_BUDGETS

__all__ = ["PAPER_TABLE1_METHODS", "paper_table1", "sample", "compare", "final_cell", "verdicts", "table1", "verdicts_table",
           "budgets_table", "comparisons", "comparison_table", "Rank1", "rank1", "rank1_table", "batch_key",
           "ablation_variants", "ablation_table", "ablation_figure"]

#: The methods of the paper's Table 1, SMAC last as the paper has it.
PAPER_TABLE1_METHODS = ("ac-sgd", "ac-adam", "ac-cg", "smac")


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


def sample(g: FinalReturns) -> Sample | None:
    return Sample(g.mean, g.std, g.seeds) if g.seeds else None


def compare(a: FinalReturns, b: FinalReturns) -> Verdict | None:
    """``a`` against ``b`` by the rule (:func:`natpg.bench.report.stats.versus`), budgets
    included; None when either has no completed run."""
    if not a.seeds or not b.seeds:
        return None
    return versus(sample(a), sample(b), a.budget, b.budget)


def _task_budget(env: str) -> int | None:
    b = PAPER_BUDGETS.get(env)
    return b.steps if b else None


def final_cell(g: FinalReturns | None, against_budget: bool = False) -> str:
    """``mean ± std (seeds)``, the mean alone for one seed; with ``against_budget``, a run shorter
    than the task's budget says so: ``(3; 1M of 5M)``."""
    if g is None or not g.seeds:
        return "–"
    value = fmt(g.mean) if g.std is None else cell(g.mean, g.std)
    task = _task_budget(g.env_id)
    short = against_budget and g.budget is not None and task is not None and g.budget < task
    return f"{value} ({g.seeds}" + (f"; {steps_text(g.budget)} of {steps_text(task)}" if short else "") + ")"


def verdicts(runs: list[Run]) -> dict[tuple[str, str], Verdict]:
    """(env, method) → our final returns against the paper's, by :func:`natpg.bench.report.stats.reproduction`;
    runs of the paper preset only (natpg's own recipe is not the paper's algorithm)."""
    paper = paper_table1()
    out = {}
    for (env, label), g in final_returns([r for r in runs if r.config.get("preset") == "paper"]).items():
        p = paper.get(env, {}).get(label)
        ours = sample(g)
        if p is not None and ours is not None:
            out[(env, label)] = reproduction(ours, Sample(p[0], p[1], PAPER_SEEDS), g.budget, _task_budget(env))
    return out


def table1(runs: list[Run]) -> tuple[str, str]:
    """``table1.md`` / ``.csv``: per env, each of the paper's methods beside the paper's number,
    then our other methods (the step-size control, SB3)."""
    groups = final_returns(runs)
    paper = paper_table1()
    found = verdicts(runs)
    envs = env_order({e for (e, _), g in groups.items() if g.seeds})
    labels = list(dict.fromkeys(label for (_, label), g in groups.items() if g.seeds))
    # a label at a second, shorter budget (``smac@steps=1000000``) goes to its own table below
    shorter = [m for m in labels if "@steps=" in m]
    others = [m for m in labels if m not in PAPER_TABLE1_METHODS and m not in shorter]
    header = ["env"] + [h for m in PAPER_TABLE1_METHODS for h in (m, f"paper {m}")] + others
    md_rows, short_rows, csv_rows = [], [], []
    for env in envs:
        row = [env]
        for m in PAPER_TABLE1_METHODS:
            p = paper.get(env, {}).get(m)
            row += [final_cell(groups.get((env, m)), against_budget=True), cell(*p) if p else "–"]
        row += [final_cell(groups.get((env, m)), against_budget=True) for m in others]
        md_rows.append(row)
        short = [final_cell(groups.get((env, m)), against_budget=True) for m in shorter]
        if any(c != "–" for c in short):
            short_rows.append([env] + short)
        for m in labels:
            g = groups.get((env, m))
            if g is None or not g.seeds:
                continue
            p = paper.get(env, {}).get(m)
            v = found.get((env, m))
            csv_rows.append([env, m, g.seeds, g.mean, "" if g.std is None else g.std, g.budget or "",
                             _task_budget(env) or "", p[0] if p else "", p[1] if p else "",
                             v.word if v else "", "" if v is None or v.p is None else v.p])
    md = md_table(header, md_rows)
    md += ("\nFinal return: the mean return of the training episodes that ended in the last 10% of a run's steps; "
           "mean ± sample std over seeds, seeds in brackets (one seed: the mean alone). A cell whose runs are shorter "
           "than the task's budget says so (`1M of 5M`). The `paper` columns are the paper's Table 1 "
           f"({PAPER_SEEDS} seeds, at its own budgets).\n")
    if short_rows:
        md += ("\nThe same methods at a second, shorter budget, where a task also has runs at its own (these are "
               "not compared with the paper's numbers):\n\n"
               + md_table(["env"] + [f"{m.split('@steps=')[0]} at {steps_text(int(m.split('@steps=')[1]))}" for m in shorter],
                        short_rows))
    return md, csv_text(["env", "method", "seeds", "mean", "std", "budget", "task_budget", "paper_mean", "paper_std",
                         "verdict", "p"], csv_rows)


def verdicts_table(runs: list[Run]) -> str | None:
    """``verdicts.md``: per task, our budget against the task's and the verdict of each of the paper's methods."""
    found = verdicts(runs)
    if not found:
        return None
    groups = final_returns(runs)
    methods = [m for m in ("smac", "ac-sgd", "ac-adam", "ac-cg") if any(k[1] == m for k in found)]
    rows = []
    for env in env_order({e for e, _ in found}):
        ours = {g.budget for (e, m), g in groups.items() if e == env and m in methods and g.budget}
        task = PAPER_BUDGETS[env]
        rows.append([env, ", ".join(steps_text(b) for b in sorted(ours)) or "–",
                     steps_text(task.steps) + ("" if task.from_text else " (ours)")]
                    + [found[(env, m)].text() if (env, m) in found else "–" for m in methods])
    return ("Our final returns against the paper's Table 1, per task and method, by the rule of `rule.md`. *Task "
            "budget*: what the paper's text implies (`budgets.md`); *(ours)* where the text gives no total.\n\n"
            + md_table(["task", "our budget", "task budget"] + methods, rows))


def budgets_table(runs: list[Run]) -> str:
    """``budgets.md``: per task, the budget of the ``paper`` suite, the sentence of the paper it
    rests on and how it was read, and the budgets of the runs at hand."""
    present: dict[str, set[int]] = defaultdict(set)
    for r in runs:
        if r.budget:
            present[r.env_id].add(int(r.budget))
    rows = [[env, steps_text(b.steps), "the text" if b.from_text else "ours", f"“{b.quote}”", b.reading,
             ", ".join(steps_text(s) for s in sorted(present[env])) or "–"]
            for env, b in PAPER_BUDGETS.items()]
    return ("The paper states no training budget. Per task, the sentence of its Section 6 about training length, what "
            "it implies, and the budget of natpg's `paper` suite (`PAPER_BUDGETS` in natpg/bench/suites.py):\n\n"
            + md_table(["task", "budget", "from", "the paper", "reading", "our runs"], rows))


def comparisons(runs: list[Run], method: str, others: tuple[str, ...]) -> dict[tuple[str, str], Verdict]:
    """(env, other) → ``method`` against ``other`` by :func:`natpg.bench.report.stats.versus`."""
    groups = final_returns(runs)
    out = {}
    for env in env_order({e for e, _ in groups}):
        a = groups.get((env, method))
        for other in others:
            b = groups.get((env, other))
            v = compare(a, b) if a is not None and b is not None else None
            if v is not None:
                out[(env, other)] = v
    return out


def comparison_table(runs: list[Run], method: str = "smac", others: tuple[str, ...] = ("ac-sgd-matched",)) -> str | None:
    """``method`` against each of ``others`` per env: final returns, gap, and the verdict of the rule."""
    groups = final_returns(runs)
    rows = [[env, other, final_cell(groups[(env, method)]), final_cell(groups[(env, other)]),
             fmt(groups[(env, method)].mean - groups[(env, other)].mean), v.text()]
            for (env, other), v in comparisons(runs, method, others).items()]
    if not rows:
        return None
    return md_table(["env", "against", method, "other", "gap", f"{method} is (Welch, 5%)"], rows)


@dataclass(frozen=True)
class Rank1:
    """How far batch-mean SMAC's step is from its step-size control's on one env, over every update."""

    damping: float
    score_norm_sq: float  # median ‖ℓ̄‖²
    removed: float  # median ‖ℓ̄‖²/(λ + ‖ℓ̄‖²)
    removed_max: float
    cosine: float | None  # median cos(step, g)


def rank1(runs: list[Run], method: str = "smac") -> dict[str, Rank1]:
    """env → :class:`Rank1` of ``method``'s completed runs (envs whose runs share one λ and log ‖ℓ̄‖²).

    SMAC's step is (η/λ)(g − ℓ̄ (ℓ̄ᵀg)/(λ + ‖ℓ̄‖²)): the control's step with the component of g along
    ℓ̄ scaled by λ/(λ + ‖ℓ̄‖²)."""
    done = [r for r in runs if r.status == "done" and r.label == method]
    out = {}
    for env in env_order({r.env_id for r in done}):
        group = [r for r in done if r.env_id == env]
        lams = {(r.config.get("method_kwargs") or {}).get("damping") for r in group}
        if len(lams) != 1 or None in lams:
            continue
        lam = float(lams.pop())
        l2 = np.concatenate([r.metrics().get("mean_score_norm_sq", np.array([])) for r in group])
        cos = np.concatenate([r.metrics().get("grad_cosine", np.array([])) for r in group])
        l2, cos = l2[np.isfinite(l2)], cos[np.isfinite(cos)]
        if l2.size:
            shrink = l2 / (lam + l2)
            out[env] = Rank1(lam, float(np.median(l2)), float(np.median(shrink)), float(np.max(shrink)),
                             float(np.median(cos)) if cos.size else None)
    return out


def rank1_table(runs: list[Run], method: str = "smac", control: str = "ac-sgd-matched") -> str | None:
    """``smac_rank1.md``: :func:`rank1` per env, with both methods' final returns."""
    groups = final_returns(runs)
    rows = [[env, fmt(r.damping, 2 if r.damping < 1 else 1), f"{r.score_norm_sq:.3g}", f"{r.removed:.3f}",
             f"{r.removed_max:.3f}", "–" if r.cosine is None else f"{r.cosine:.4f}",
             final_cell(groups.get((env, method))), final_cell(groups.get((env, control)))]
            for env, r in rank1(runs, method).items()]
    if not rows:
        return None
    return (f"What the rank-1 term does: {method}'s step is {control}'s step with the component of the policy "
            "gradient g along the mean score ℓ̄ scaled by λ/(λ + ‖ℓ̄‖²). Medians over every update of every seed "
            "(‖ℓ̄‖² and the cosine are measured at the start of each update, over the whole rollout):\n\n"
            + md_table(["env", "λ", "median ‖ℓ̄‖²", "median ‖ℓ̄‖²/(λ+‖ℓ̄‖²)", "max ‖ℓ̄‖²/(λ+‖ℓ̄‖²)",
                         "median cos(step, g)", f"{method} final", f"{control} final"], rows))


# ----------------------------------------------------------------------------- Figure 1


def batch_key(label: str) -> tuple[int, str]:
    """A SMAC variant's place in the ablation, by batch size: ``smac-single`` (B = 1), ``smac@batch_size=N``,
    ``smac`` (the whole rollout), then the other ``smac-*`` variants."""
    m = re.fullmatch(r"smac@batch_size=(\d+)", label)
    if m:
        return int(m.group(1)), label
    if label == "smac-single":  # Algorithm 1: B = 1
        return 1, label
    return (10**9 if label == "smac" else 10**9 + 1), label


def ablation_variants(runs: list[Run]) -> dict[str, list[str]]:
    """env → the SMAC variants of the batch-size ablation it holds (``smac``, ``smac@batch_size=N``,
    ``smac-*``), smallest batch first; envs with fewer than two variants are left out."""
    by_env: dict[str, set[str]] = defaultdict(set)
    for r in runs:
        if r.status in ("done", "failed") and (r.label == "smac" or r.label.startswith("smac-")
                                               or re.fullmatch(r"smac@batch_size=\d+", r.label)):
            by_env[r.env_id].add(r.label)
    return {e: sorted(v, key=batch_key) for e, v in by_env.items() if len(v) >= 2}


def ablation_table(runs: list[Run]) -> str | None:
    """``ablation.md``: the paper's Figure 1, SMAC at several batch sizes; None without such runs."""
    envs = ablation_variants(runs)
    if not envs:
        return None
    groups = final_returns(runs)
    rows = []
    for env in env_order(envs):
        for label in envs[env]:
            g = groups[(env, label)]
            bad = sorted((r for r in runs if r.status == "failed" and r.env_id == env and r.label == label),
                         key=lambda r: r.seed)
            rows.append([env, label, f"{g.seeds} / {g.seeds + len(bad)}", final_cell(g), stopped(bad),
                         fmt(float(np.mean(g.update_times)) * 1e3, 2) if g.update_times else "–",
                         fmt(float(np.mean(g.wall_times)), 1) if g.seeds else "–"])
    return ("SMAC batch-size ablation (the paper's Figure 1; `smac` is batch-mean over the whole rollout "
          "(B = T = 1000 in the paper preset); `smac-single` and `batch_size=1` are the single-sample Algorithm 1, "
          "`smac-vec` its per-sample steps all taken at one θ). Final return over the runs that completed (mean ± "
          "sample std, seeds in brackets); a run stopped by the trainer after consecutive non-finite updates is listed "
          "as diverged, with the step; update time over every run:\n\n"
          + md_table(["env", "variant", "completed / runs", "final return", "diverged", "update ms", "wall s"], rows))


def ablation_figure(runs: list[Run], out: Path, note: str,
                    styles: dict[str, tuple[str, Any]] | None = None) -> Path | None:
    """``ablation_batch_size.png``: the return curves of :func:`ablation_table`'s variants."""
    envs = ablation_variants(runs)
    data = curves([r for r in runs if r.env_id in envs and r.label in envs[r.env_id]], "episode_return_mean")
    return plot_grid(data, "return", "SMAC: effect of batch size (Figure 1)", out / "ablation_batch_size.png", note,
                     styles)
