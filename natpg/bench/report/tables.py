"""The tables of any sweep: final returns, published anchors, update time and throughput, step
sizes, runs and failures, and the commands that made them; and the text formatting every table of
the report shares (:func:`fmt`, :func:`cell`, :func:`md_table`, :func:`csv_text`)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from natpg.bench.report.runs import Run, env_order, final_returns, invocations, method_order

__all__ = ["fmt", "cell", "md_table", "csv_text", "stopped", "returns_table", "timing_table", "status_table",
           "step_size_table", "commands"]


def fmt(x: float | None, digits: int | None = None) -> str:
    """A number for a Markdown table: 1 decimal below 1000, none above, a typographic minus, '–' for none/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if digits is None:
        digits = 1 if abs(x) < 1000 else 0
    return f"{x:.{digits}f}".replace("-", "−")


def cell(mean: float, std: float, digits: int | None = None) -> str:
    """``mean ± std`` with both numbers at the precision of the mean."""
    if digits is None and math.isfinite(mean):
        digits = 1 if abs(mean) < 1000 else 0
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def stopped(runs: Iterable[Run]) -> str:
    """The failed runs among ``runs`` (in their order) and the step each stopped at, for a table
    cell: ``seed 0 at 25k, seed 2`` (no step recorded); '–' for none."""
    return ", ".join(f"seed {r.seed} at {r.summary['steps'] // 1000}k" if r.summary.get("steps") else f"seed {r.seed}"
                     for r in runs if r.status == "failed") or "–"


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


def timing_table(runs: list[Run]) -> tuple[str, str]:
    """``timing.md`` / ``.csv``: mean update time (ms) and steps/s per env × method over the completed runs."""
    done = [r for r in runs if r.status == "done"]
    envs = env_order({r.env_id for r in done})
    methods = method_order({r.label for r in done})
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
            u, s = (float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for v in (upd, sps))
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
    """``status.md``: runs finished / failed / unfinished per env × method, and the first line of each failure."""
    envs = env_order({r.env_id for r in runs})
    methods = method_order({r.label for r in runs})
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
    failed = sorted((r for r in runs if r.status == "failed"), key=lambda r: (envs.index(r.env_id), r.label, r.seed))
    text = "Runs finished per env × method (failed / unfinished runs noted):\n\n" + md_table(["env"] + methods, rows)
    if failed:
        text += "\nFailed runs (first line of the error; error.json in the run directory has the traceback):\n\n" + "".join(
            f"- {r.env_id} {r.label} seed {r.seed}: {_first_line(r.error)}\n" for r in failed)
    return text


def step_size_table(runs: list[Run]) -> tuple[str, str] | None:
    """``step_size.md`` / ``.csv``: how long the actor's steps were, per env × method, pooled over
    the updates of every completed seed: median and max realised KL(π_old‖π_new) on the batch,
    the fraction of updates the line search accepted (trust-region rules and TRPO), the fraction of
    the accepted ones that backtracked, the median of ``ls_kl / (f² δ)`` (the realised KL of the
    accepted step over what the quadratic model gives a step of fraction f of the full one: 1 where
    the model is exact), the median scale β of the trust region relative to the rule's own step, and
    the median length ‖Δθ‖ of the step in parameter space with its median cosine to the plain
    gradient (what a KL's worth of step buys in parameter space, and how far the rule's direction
    is from the gradient's), both over the updates that took a step, not those the line search
    rejected. The last five come from the packed rows that keep the update's diagnostics."""
    done = [r for r in runs if r.status == "done" and "kl" in r.metrics()]
    if not done:
        return None
    rows, csv_rows = [], []
    for env in env_order({r.env_id for r in done}):
        for m in method_order({r.label for r in done if r.env_id == env}):
            group = [r for r in done if r.env_id == env and r.label == m]

            def pooled(column: str, taken_only: bool = False) -> np.ndarray:
                """``column`` over the group's updates; with ``taken_only``, without the updates
                whose line search rejected every step (the parameters went back: length 0)."""
                values = []
                for r in group:
                    cols = r.metrics()
                    if column in cols:
                        v = cols[column]
                        values.append(v[cols["ls_accepted"] != 0] if taken_only and "ls_accepted" in cols else v)
                return np.concatenate(values) if values else np.array([])

            kl, accepted, scale = pooled("kl"), pooled("ls_accepted"), pooled("tr_scale")
            kl = kl[np.isfinite(kl)]
            if not kl.size:
                continue
            acc = float(np.nanmean(accepted)) if accepted.size else math.nan
            beta = float(np.nanmedian(scale)) if scale.size else math.nan
            length, cos = (float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan
                           for v in (pooled("update_norm", True), pooled("grad_cosine", True)))
            backtracked, model_ratio = _line_search_shape(group)
            med, top = float(np.median(kl)), float(np.max(kl))
            rows.append([env, f"`{m}`", str(len(group)), str(kl.size), f"{med:#.3g}", f"{top:#.3g}",
                         "–" if math.isnan(acc) else fmt(acc, 3), "–" if math.isnan(backtracked) else fmt(backtracked, 2),
                         "–" if math.isnan(model_ratio) else f"{model_ratio:.3f}", "–" if math.isnan(beta) else f"{beta:#.3g}",
                         "–" if math.isnan(length) else f"{length:#.3g}", "–" if math.isnan(cos) else f"{cos:.2f}"])
            csv_rows.append([env, m, len(group), kl.size, med, top, acc, backtracked, model_ratio, beta, length, cos])
    md = ("Realised KL(π_old‖π_new) per actor update on its batch, pooled over the updates of the completed seeds "
          "(3 significant digits); *accepted*: fraction of updates whose line search found a step (trust-region rules "
          "and TRPO); *backtracked*: fraction of the accepted steps shorter than the full one; *KL ÷ f²δ*: median "
          "realised KL of the accepted step over f²δ, f its fraction of the full step (1: the quadratic model of the "
          "full step, ½ dᵀFd = δ, is exact; TRPO scales with F + damping·I, so lands below); these two over the "
          "updates whose line-search diagnostics the packed metrics keep; *β*: median scale of the trust-region step "
          "relative to the rule's own step (> 1 lengthens it); *‖Δθ‖*: median length of the step in parameter space over the updates that took one "
          "(the same network for every rule of a task, so at the same KL a longer step is a direction the KL "
          "penalises less); *cos(Δθ, g)*: median cosine between the step and the plain gradient.\n\n"
          + md_table(["env", "method", "seeds", "updates", "median KL", "max KL", "accepted", "backtracked", "KL ÷ f²δ", "β",
                      "‖Δθ‖", "cos(Δθ, g)"], rows))
    return md, csv_text(["env", "method", "seeds", "updates", "kl_median", "kl_max", "accepted_fraction",
                         "backtracked_fraction", "kl_over_model_median", "tr_scale_median", "update_norm_median",
                         "grad_cosine_median"], csv_rows)


def _line_search_shape(group: list[Run]) -> tuple[float, float]:
    """(fraction of accepted steps that backtracked, median ``ls_kl / (f² δ)``) over the updates of
    ``group`` whose line-search columns are present; NaN where there are none. δ is the update's
    own radius (the ``max_kl`` column with ``--anneal-kl``), else the run's ``max_kl``; for a rule
    with its own KL-scaled step (``trpo``: ``lr · β · x``) the model's KL of the full step is lr² δ."""
    from natpg import methods

    backtracked, ratios = [], []
    for r in group:
        cols = r.metrics()
        if not {"backtracks", "ls_kl", "step_fraction"} <= cols.keys():
            continue
        kwargs = r.config.get("method_kwargs") or {}
        delta = cols.get("max_kl")
        if delta is None:
            if kwargs.get("max_kl") is None:
                continue
            delta = np.full_like(cols["ls_kl"], float(kwargs["max_kl"]))
        name = r.config.get("method")
        if name in methods.available() and not methods.get(name).shared_trust_region:
            delta = delta * float(kwargs.get("lr", 1.0)) ** 2
        f, kl, back = cols["step_fraction"], cols["ls_kl"], cols["backtracks"]
        taken = np.isfinite(f) & (f > 0) & np.isfinite(kl) & np.isfinite(back)
        backtracked.append(back[taken] > 0)
        ratios.append(kl[taken] / (f[taken] ** 2 * delta[taken]))
    if not backtracked or not np.concatenate(backtracked).size:
        return math.nan, math.nan
    return float(np.mean(np.concatenate(backtracked))), float(np.median(np.concatenate(ratios)))


def commands(dirs: list[Path]) -> str:
    """``commands.md``: every ``natpg bench`` invocation recorded in the directories' sweep.json."""
    lines = []
    for inv in invocations(dirs):
        m = inv.get("machine", {})
        commit = m.get("natpg_commit")
        lines.append(f"- `{inv.get('command')}` — started {inv.get('started')} on {m.get('hostname', '?')} "
                     f"({m.get('cpu_model', m.get('processor', '?'))}, {m.get('cpu_count', '?')} CPUs, "
                     f"torch {m.get('torch', '?')}"
                     + (f", natpg {commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''}" if commit else "")
                     + f"), {inv.get('runs_pending')} of {inv.get('runs_planned')} runs to do"
                     + (f"; unavailable: {', '.join(inv['unavailable'])}" if inv.get("unavailable") else ""))
    return "\n".join(lines)
