"""Published MuJoCo returns at 1M steps beside a sweep's own: ``anchors.md`` of ``natpg report``.

The numbers are the packaged ``mujoco_1m_anchors.csv`` (a copy of the project's
shared/data/mujoco_1m_anchors.csv), whose comment lines name each source and its protocol. The
table puts them beside the sweep's best natpg rule and best SB3 row per task, and its caption
says how each protocol differs from ours; it never merges the two into one ranking.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources

from natpg.bench.report.runs import FinalReturns, env_order, is_sb3
from natpg.bench.report.tables import cell, fmt, md_table

__all__ = ["Anchor", "Ours", "load_anchors", "anchors_table", "anchors_section", "best_rows", "anchor_cells", "ours_cell"]

ANCHORS_FILE = "mujoco_1m_anchors.csv"

#: How the table names a source id of the CSV.
SOURCE_NAMES = {"tianshou": "Tianshou", "sb3contrib": "sb3-contrib", "zoo": "RL Zoo", "cleanrl": "CleanRL"}

_SOURCE_LINE = re.compile(r"^#\s*(?:source ids:\s*)?([a-z0-9_]+) = (.+?);?\s*$")


@dataclass(frozen=True)
class Anchor:
    source: str  # the CSV's source id: tianshou, sb3contrib, zoo, cleanrl
    algorithm: str  # PPO, TRPO, NPG, A2C
    task: str  # without version: HalfCheetah
    mean: float
    std: float | None  # None where the source gives one run


@dataclass(frozen=True)
class Ours:
    """One of our rows in the table: an env × method of the sweep and its final return."""

    label: str
    mean: float
    std: float | None
    seeds: int
    partial: bool = False


def load_anchors() -> tuple[list[Anchor], dict[str, str]]:
    """The packaged anchors, and source id → its protocol as the CSV's comment lines state it."""
    text = resources.files("natpg.bench").joinpath(ANCHORS_FILE).read_text()
    protocols: dict[str, str] = {}
    data = []
    for line in text.splitlines():
        if line.startswith("#"):
            m = _SOURCE_LINE.match(line)
            if m:
                protocols[m.group(1)] = m.group(2)
        elif line.strip():
            data.append(line)
    anchors = [Anchor(row["source"], row["algorithm"], row["env"], float(row["mean"]),
                      float(row["std"]) if row["std"] else None)
               for row in csv.DictReader(io.StringIO("\n".join(data)))]
    return anchors, protocols


def task_name(env_id: str) -> str:
    """``HalfCheetah-v5`` → ``HalfCheetah``: the anchors name tasks without their version."""
    return re.sub(r"-v\d+$", "", env_id)


def ours_cell(row: Ours | None) -> str:
    if row is None:
        return "–"
    value = fmt(row.mean, 0) if row.std is None else cell(row.mean, row.std, 0)
    seeds = "1 seed" if row.seeds == 1 else f"{row.seeds} seeds"
    return f"{value} `{row.label}` ({seeds}{', partial' if row.partial else ''})"


def anchors_table(best_natpg: dict[str, Ours], best_sb3: dict[str, Ours], envs: list[str]) -> str | None:
    """``anchors.md``: per env of ``envs`` that the anchors cover, our best natpg rule and best SB3
    row (by mean final return) beside every published number; None when no env is covered."""
    anchors, protocols = load_anchors()
    covered = [e for e in envs if any(a.task == task_name(e) for a in anchors)]
    if not covered:
        return None
    columns = list(dict.fromkeys((a.source, a.algorithm) for a in anchors))  # the CSV's order
    by_key = {(a.source, a.algorithm, a.task): a for a in anchors}
    header = ["task", "natpg: best rule", "SB3: best row"] + [f"{SOURCE_NAMES.get(s, s)} {alg}" for s, alg in columns]
    rows = []
    for env in covered:
        row = [env, ours_cell(best_natpg.get(env)), ours_cell(best_sb3.get(env))]
        for source, alg in columns:
            a = by_key.get((source, alg, task_name(env)))
            row.append("–" if a is None else fmt(a.mean, 0) if a.std is None else cell(a.mean, a.std, 0))
        rows.append(row)
    used = list(dict.fromkeys(s for s, _ in columns))
    caption = (
        "\nOur columns: the best natpg rule and the best SB3 row of this sweep per task, by mean final return (the "
        "rule or row named, seeds in brackets; *partial*: fewer completed seeds than the sweep's largest count). "
        "The other columns are published numbers at 1M environment steps, copied from their sources "
        f"(natpg/bench/{ANCHORS_FILE}). **Their protocols differ from ours, so a gap between our columns and theirs "
        "is not a like-for-like comparison:**\n\n"
        "- *Task versions*: ours are the v5 tasks (Gymnasium's `mujoco` bindings); Tianshou, sb3-contrib and the RL Zoo ran "
        "v3 (mujoco-py, MuJoCo 2.x), CleanRL v4. The dynamics and observations of v3/v4 and v5 are close but not "
        "identical.\n"
        "- *Seeds*: ours as given per cell (mean ± sample std, ddof = 1); Tianshou 10 seeds (± 1 std), sb3-contrib "
        "3, CleanRL 3, the RL Zoo a single run (no ±).\n"
        "- *Statistic*: ours is the final return, the mean return of the training episodes (stochastic policy) that "
        "ended in the last 10% of the steps. Tianshou's is the best point of the curve (the maximum over the first "
        "1M steps of the mean return of 10 test episodes), which can only be at or above the end of the same curve; "
        "the RL Zoo's is a deterministic evaluation of the final policy. sb3-contrib's is the RL Zoo's periodic "
        "evaluation (20 episodes every 50k steps, by its page's replication command) at the end of training, as the "
        "zoo's plotting script reports it. CleanRL's is what its page calls the average episodic return of the "
        "training runs (stochastic policy; the page does not state over which episodes).\n"
        "- *Runs*: the published columns are the sources' own runs with their own hyperparameters; our SB3 rows are "
        "our runs of SB3 / sb3-contrib (the `-zoo` rows with the RL Zoo's tuned values, docs/mujoco.md) on the same "
        "seeds, budget and machine as the natpg rules.\n\n"
        "Sources and protocols, as the anchors file states them:\n\n"
        + "".join(f"- {SOURCE_NAMES.get(s, s)} (`{s}`): {protocols.get(s, 'not stated in the file')}\n" for s in used))
    return md_table(header, rows) + caption


def best_rows(groups: dict[tuple[str, str], FinalReturns], target: int) -> dict[bool, dict[str, Ours]]:
    """Per task, the best natpg rule (key False) and the best SB3 row (key True) by mean final
    return; ``target``: the sweep's largest seed count, below which a row is *partial*."""
    best: dict[bool, dict[str, Ours]] = {False: {}, True: {}}
    for (env, label), g in groups.items():
        side = best[is_sb3(label)]
        if g.mean is not None and (env not in side or g.mean > side[env].mean):
            side[env] = Ours(label, g.mean, g.std, g.seeds, g.seeds < target)
    return best


def anchor_cells() -> dict[str, str]:
    """``TASK.SOURCE.ALGORITHM`` (the algorithm in lower case) → the published number as the table shows it."""
    anchors, _ = load_anchors()
    return {f"{a.task}.{a.source}.{a.algorithm.lower()}": fmt(a.mean, 0) if a.std is None else cell(a.mean, a.std, 0)
            for a in anchors}


def anchors_section(groups: dict[tuple[str, str], FinalReturns], target: int) -> str | None:
    """``anchors.md`` of a sweep's final returns (:func:`natpg.bench.report.runs.final_returns`): per
    task, its best natpg rule and best SB3 row beside the published numbers (:func:`best_rows`)."""
    best = best_rows(groups, target)
    return anchors_table(best[False], best[True], env_order({env for env, _ in groups}))
