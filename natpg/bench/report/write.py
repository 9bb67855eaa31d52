"""``natpg report DIR... --out OUT``: every table and figure of the sweep directories, one file each,
and ``report.md`` with all of them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from natpg.bench.report import anchors, damping, paper, seeds, tables, targets, thresholds, update_time
from natpg.bench.report.plots import line_styles, plot_grid
from natpg.bench.report.runs import Run, curves, final_returns, load_runs, planned_seeds
from natpg.bench.report.stats import RULE
from natpg.bench.suites import SB3_METHODS
from natpg.runlog import atomic_write_bytes

__all__ = ["Report", "build_report", "write_report", "write_built", "write_figures", "SMAC_AGAINST"]

#: What SMAC is compared with in ``smac_vs.md``: its step-size control first, then the baselines and SB3.
SMAC_AGAINST = ("ac-sgd-matched", "ac-sgd", "ac-cg", *SB3_METHODS)
SMOOTHING = "100 bins, EWM 0.1"


@dataclass
class Report:
    """The tables of some sweep directories: name → Markdown (``sections``) and name → CSV text."""

    dirs: list[Path]
    runs: list[Run]
    sections: dict[str, str] = field(default_factory=dict)
    csvs: dict[str, str] = field(default_factory=dict)


def build_report(dirs: Iterable[str | Path]) -> Report:
    """Every table of :func:`write_report` (no figures), in memory."""
    dirs = [Path(d) for d in dirs]
    runs = load_runs(dirs)
    if not runs:
        raise ValueError(f"no run directories under {', '.join(map(str, dirs))}")
    rep = Report(dirs, runs)
    s, c = rep.sections, rep.csvs
    planned = planned_seeds(dirs)
    s["returns"], c["returns"] = tables.returns_table(runs, planned)
    groups = final_returns(runs)
    most = max([planned, *(g.seeds for g in groups.values())])  # below it, a row is partial
    beside = anchors.anchors_section(groups, most)
    if beside:
        s["anchors"] = beside
    field = targets.targets_section(groups, most)
    if field:
        s["targets"] = field
    s["table1"], c["table1"] = paper.table1(runs)
    found = paper.verdicts_table(runs)
    if found:
        s["budgets"] = paper.budgets_table(runs)
        s["verdicts"] = found
    labels = {r.label for r in runs}
    vs = paper.comparison_table(runs, "smac", tuple(m for m in SMAC_AGAINST if m in labels))
    control = paper.comparison_table(runs, "smac", ("ac-sgd-matched",))
    if control:
        s["smac_vs_control"] = control
    if vs:
        s["smac_vs"] = ("SMAC against its step-size control (AC-SGD at η/λ), the other baselines and SB3, per env, by "
                        "the rule of `rule.md`:\n\n" + vs)
    if found or vs:
        s["rule"] = RULE + "\n"
    r1 = paper.rank1_table(runs)
    if r1:
        s["smac_rank1"] = r1
    s["thresholds"], c["thresholds"] = thresholds.thresholds_table(runs)
    s["seeds"], c["seeds"] = seeds.seeds_table(runs)
    s["timing"], c["timing"] = tables.timing_table(runs)
    s["status"] = tables.status_table(runs)
    step_size = tables.step_size_table(runs)
    if step_size:
        s["step_size"], c["step_size"] = step_size
    lam = damping.damping_table(runs)
    if lam:
        s["damping"], c["damping"] = lam
    ab = paper.ablation_table(runs)
    if ab:
        s["ablation"] = ab
        cost = update_time.update_time_table(runs)
        if cost:
            s["update_time"], c["update_time"] = cost
    cmd = tables.commands(dirs)
    if cmd:
        s["commands"] = cmd + "\n"
    return rep


#: report.md's sections in order, with their headings.
_HEADINGS = {
    "commands": "Commands", "returns": "Final returns", "anchors": "Beside the published numbers",
    "targets": "Against the zoo rows: the targets",
    "table1": "Final returns beside the paper (Table 1)", "budgets": "The paper's budgets",
    "rule": "How a difference is called", "verdicts": "Does it reproduce?", "smac_vs": "SMAC against its controls",
    "smac_rank1": "What SMAC's rank-1 term does", "thresholds": "Steps to threshold", "seeds": "Per seed",
    "timing": "Update time and throughput", "step_size": "Step sizes", "damping": "Adaptive damping", "status": "Runs",
    "ablation": "Batch-size ablation (Figure 1)", "update_time": "Batch-size ablation: update time",
}
#: The figures report.md shows right after a section: section → figure names.
_FIGURES = {"damping": ("damping",), "ablation": ("ablation_batch_size",), "update_time": ("return_vs_update_time",)}


def file_stem(env_id: str) -> str:
    """An env id as part of a file name: ``MinAtar/Breakout-v1`` → ``MinAtar_Breakout-v1`` (and
    ``module:Env-v0`` → ``module_Env-v0``); a plain Gymnasium id is unchanged."""
    return env_id.replace("/", "_").replace(":", "_")


def write_figures(runs: list[Run], out: Path) -> list[Path]:
    """One figure of return curves per task, all tasks in one (the paper's Figures 2-3), log-probabilities
    (Figures 4-5), the damping where a run adapted it, and the batch-size ablation (Figure 1) with its return
    against update time; each method in the same colour and style in every figure."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("natpg report: matplotlib is not installed (pip install 'natpg[plots]'); tables only", file=sys.stderr)
        return []
    returns = curves(runs, "episode_return_mean")
    styles = line_styles({r.label for r in runs if r.status == "done"})
    files = [plot_grid({env: returns[env]}, "return per episode", f"{env}: return per training episode",
                       out / f"curves_{file_stem(env)}.png", SMOOTHING, styles) for env in returns]
    files.append(plot_grid(returns, "average return", "Return per training episode", out / "learning_curves.png",
                           SMOOTHING, styles))
    files.append(plot_grid(curves(runs, "log_prob_mean"), "average log π(a|s)", "Log-probability of the actions taken",
                           out / "log_prob.png", SMOOTHING, styles))
    files.append(damping.plot_damping(runs, out / "damping.png", styles))
    variants = paper.ablation_variants(runs)
    if variants:
        files.append(paper.ablation_figure(runs, out, SMOOTHING, styles))
        files.append(update_time.plot_return_vs_update_time(
            [r for r in runs if r.label in variants.get(r.env_id, ())], out / "return_vs_update_time.png", styles))
    return [f for f in files if f]


def write_report(dirs: Iterable[str | Path], out: str | Path, plots: bool = True) -> list[Path]:
    """Write every section as NAME.md (and NAME.csv where it has one), the figures, and report.md."""
    return write_built(build_report(dirs), out, plots)


def write_built(rep: Report, out: str | Path, plots: bool = True) -> list[Path]:
    """:func:`write_report` of a report already built."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write_bytes(out / name, text.encode())
        files.append(out / name)

    for name, text in rep.sections.items():
        put(f"{name}.md", text)
    for name, text in rep.csvs.items():
        put(f"{name}.csv", text)
    figures = write_figures(rep.runs, out) if plots else []
    files += figures
    parts = ["# natpg benchmark report\n", f"Sweep directories: {', '.join(f'`{d}`' for d in rep.dirs)}\n"]
    for name, heading in _HEADINGS.items():
        if name in rep.sections:
            parts += [f"## {heading}\n", rep.sections[name]]
        if name == "returns":
            parts += [f"![{p.stem}]({p.name})\n" for p in figures if p.stem.startswith("curves_")]
        parts += [f"![{p.stem}]({p.name})\n" for p in figures if p.stem in _FIGURES.get(name, ())]
    others = [p for p in figures if p.stem in ("learning_curves", "log_prob")]
    if others:
        parts += ["## Curves (Figures 2-5)\n"] + [f"![{p.stem}]({p.name})\n" for p in others]
    put("report.md", "\n".join(parts))
    return files
