"""The field targets of the ``mujoco`` suite against RL Zoo's tuned SB3 rows: ``targets.md`` of ``natpg report``.

Three targets, per task, each judged on the means over the completed seeds (the test of the
results pages' rule is given beside, never in place of, the comparison of means):

* natpg's best rule (by mean final return) at or above both ``sb3-ppo-zoo`` and ``sb3-trpo-zoo``;
* natpg's ``trpo`` at or above ``sb3-trpo-zoo``;
* the best rule's mean wall time per run at most a third of each zoo row's.
"""

from __future__ import annotations

from dataclasses import dataclass

from natpg.bench.report.anchors import best_rows
from natpg.bench.report.paper import compare
from natpg.bench.report.runs import FinalReturns, env_order
from natpg.bench.report.tables import fmt, md_table
from natpg.bench.suites import SB3_ZOO_METHODS

__all__ = ["Target", "field_targets", "met_counts", "targets_section", "WALL_FRACTION"]

#: The wall-time target: natpg's run takes at most this fraction of a zoo row's.
WALL_FRACTION = 1 / 3
TRPO_ZOO = "sb3-trpo-zoo"


@dataclass(frozen=True)
class Target:
    """One task: whether each target is met (None where a side has no completed run) and its cell text."""

    env: str
    best_ge_zoo: bool | None
    trpo_ge_zoo: bool | None
    wall: bool | None
    cells: tuple[str, str, str]


def _versus(a: FinalReturns, b: FinalReturns) -> str:
    v = compare(a, b)
    return v.text() if v else "–"


def field_targets(groups: dict[tuple[str, str], FinalReturns], target: int) -> list[Target]:
    """Per task with a completed run of both zoo rows, the three targets; ``target`` is the sweep's
    largest seed count (for the best rows, as ``anchors.md`` picks them)."""
    best = best_rows(groups, target)[False]
    out = []
    for env in env_order({e for e, _ in groups}):
        zoo = [groups.get((env, z)) for z in SB3_ZOO_METHODS]
        if any(z is None or not z.seeds for z in zoo) or env not in best:
            continue
        rule = groups[(env, best[env].label)]
        ge = [rule.mean >= z.mean for z in zoo]
        partial = f" ({rule.seeds} seeds, partial)" if best[env].partial else ""
        cell1 = (f"{'yes' if all(ge) else 'no'}: `{rule.label}`{partial} {fmt(rule.mean)}; "
                 + "; ".join(f"`{z.label}` {fmt(z.mean)}, {_versus(rule, z)}" for z in zoo))
        trpo, trpo_zoo = groups.get((env, "trpo")), groups[(env, TRPO_ZOO)]
        if trpo is None or not trpo.seeds:
            ok2, cell2 = None, "– (no completed `trpo` run)"
        else:
            ok2 = trpo.mean >= trpo_zoo.mean
            cell2 = f"{'yes' if ok2 else 'no'}: {fmt(trpo.mean)}; {fmt(trpo_zoo.mean)}, {_versus(trpo, trpo_zoo)}"
        walls = [z.wall_time_mean for z in zoo]
        ours = rule.wall_time_mean
        if ours is None or any(w is None for w in walls):
            ok3, cell3 = None, "– (no wall time recorded)"
        else:
            ok3 = all(ours <= WALL_FRACTION * w for w in walls)
            cell3 = (f"{'yes' if ok3 else 'no'}: `{rule.label}` {fmt(ours, 0)} s; "
                     + "; ".join(f"`{z.label}` {fmt(w, 0)} s, ⅓ of it {fmt(WALL_FRACTION * w, 0)} s"
                                 for z, w in zip(zoo, walls)))
        out.append(Target(env, all(ge), ok2, ok3, (cell1, cell2, cell3)))
    return out


def met_counts(found: list[Target]) -> dict[str, str]:
    """``best`` / ``trpo`` / ``wall`` → ``N of M``: the tasks meeting each target, of those judged."""
    counts = {}
    for key, attr in (("best", "best_ge_zoo"), ("trpo", "trpo_ge_zoo"), ("wall", "wall")):
        judged = [getattr(t, attr) for t in found if getattr(t, attr) is not None]
        counts[key] = f"{sum(judged)} of {len(judged)}"
    return counts


def targets_section(groups: dict[tuple[str, str], FinalReturns], target: int) -> str | None:
    """``targets.md``: the table of :func:`field_targets` and the tasks meeting each; None without zoo rows."""
    found = field_targets(groups, target)
    if not found:
        return None
    n = met_counts(found)
    header = ["task", "best natpg rule ≥ both zoo rows", "`trpo` ≥ `sb3-trpo-zoo`",
              "best rule's wall time ≤ ⅓ of each zoo row's"]
    table = md_table(header, [[t.env, *t.cells] for t in found])
    return (table + f"\nMet on: best rule ≥ both zoo rows {n['best']} tasks; `trpo` ≥ `sb3-trpo-zoo` {n['trpo']}; "
            f"wall time ≤ ⅓ {n['wall']}. Each target compares means over the completed seeds (final return; "
            "wall time per run); beside each zoo row's mean, the results pages' test of the row against it (Welch's "
            "t-test at 5%, *inconclusive* below three seeds a side): a met target can rest on a difference no test "
            "separates. Wall times are as the runs recorded them, on the sweep's machines.\n")
