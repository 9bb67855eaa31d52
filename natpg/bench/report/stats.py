"""The one rule by which a report calls a difference between two sets of final returns.

Welch's two-sided t-test at the 5% level, on mean, sample std and number of seeds of each side
(unequal variances; Welch–Satterthwaite degrees of freedom). The paper's Table 1 gives mean ±
std over 5 seeds, which is all the test needs, so ours can be set against it the same way as
against another of our methods. A side with fewer than :data:`MIN_SEEDS` seeds is not tested.

* Against the paper (:func:`reproduction`): **reproduces** when there is no significant
  difference or ours is significantly higher; **does not reproduce** when ours is significantly
  lower; **inconclusive** with fewer than :data:`MIN_SEEDS` of our seeds, or when our runs are
  shorter than the task's budget (natpg.bench.suites.PAPER_BUDGETS).
* Between two of our methods (:func:`versus`): *higher*, *lower*, *no significant difference*,
  or *inconclusive* with too few seeds.

The two-sided p-value is the Student t tail, 1 − F(|t|; ν) twice, computed as the regularised
incomplete beta function I_{ν/(ν+t²)}(ν/2, 1/2) (mpmath, installed with torch's sympy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["ALPHA", "MIN_SEEDS", "PAPER_SEEDS", "RULE", "Sample", "welch", "Verdict", "reproduction", "versus",
           "p_text", "steps_text"]

ALPHA = 0.05
#: Fewest seeds on each side for a test (the issue's bar for a verdict).
MIN_SEEDS = 3
#: The paper's Table 1: "All results are averaged over 5 seeds."
PAPER_SEEDS = 5

#: The rule in words, for the pages (rendered from here so that code and page say the same).
RULE = (f"Welch's two-sided t-test at the {ALPHA:.0%} level on the final returns (mean, sample std and seeds of each "
        f"side; the paper's Table 1 counts as {PAPER_SEEDS} seeds). Against the paper: **reproduces** when there is "
        "no significant difference or ours is significantly higher, **does not reproduce** when ours is "
        f"significantly lower, **inconclusive** with fewer than {MIN_SEEDS} of our seeds or when our runs are "
        "shorter than the task's budget. Between two of our methods: *higher* / *lower* only when significant, "
        f"else *no significant difference*; *inconclusive* when a side has fewer than {MIN_SEEDS} seeds.")


@dataclass(frozen=True)
class Sample:
    """Final returns summarised: mean, sample std (ddof = 1; None for one seed) and seeds."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Sample":
        v = np.asarray(list(values), dtype=float)
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size >= 2 else None, int(v.size))


def _t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom."""
    import mpmath

    if math.isinf(t):
        return 0.0
    return float(mpmath.betainc(df / 2, 0.5, 0, df / (df + t * t), regularized=True))


def welch(a: Sample, b: Sample) -> tuple[float, float, float]:
    """Welch's t statistic of a − b, its degrees of freedom and the two-sided p-value.
    Both sides need two seeds or more. Two samples without spread: p = 1 for equal means, else 0."""
    if a.n < 2 or b.n < 2 or a.std is None or b.std is None:
        raise ValueError("Welch's t-test needs at least two seeds on each side")
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    diff = a.mean - b.mean
    if va + vb == 0:
        return (0.0 if diff == 0 else math.copysign(math.inf, diff)), math.inf, (1.0 if diff == 0 else 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return t, df, _t_two_sided(t, df)


@dataclass(frozen=True)
class Verdict:
    word: str  # reproduces / does not reproduce / inconclusive; or higher / lower / no significant difference
    p: float | None = None  # the test's p-value; None when there was no test
    why: str = ""  # why there was no test (too few seeds, a short budget)

    def text(self) -> str:
        if self.p is not None:
            return f"{self.word} ({p_text(self.p)})"
        return f"{self.word} ({self.why})" if self.why else self.word


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _seeds(n: int, who: str) -> str:
    return f"{who}{n} seed{'s' if n != 1 else ''}"


def _test(a: Sample, b: Sample) -> tuple[int, float]:
    """(+1 a significantly higher, −1 lower, 0 neither) and p."""
    t, _, p = welch(a, b)
    return (0 if p >= ALPHA else 1 if t > 0 else -1), p


def reproduction(ours: Sample, paper: Sample, budget: int | None = None, paper_budget: int | None = None) -> Verdict:
    """Our final returns against the paper's (mean ± std over :data:`PAPER_SEEDS`) at the task's budget."""
    if budget is not None and paper_budget is not None and budget < paper_budget:
        return Verdict("inconclusive", why=f"{steps_text(budget)} of {steps_text(paper_budget)} steps")
    if ours.n < MIN_SEEDS:
        return Verdict("inconclusive", why=_seeds(ours.n, ""))
    sign, p = _test(ours, paper)
    return Verdict("does not reproduce" if sign < 0 else "reproduces", p)


def versus(a: Sample, b: Sample, budget_a: int | None = None, budget_b: int | None = None) -> Verdict:
    """Method a against method b, in words about a. Runs whose budgets (the steps each run was
    given) differ by more than 5% are not compared; an unknown budget (None) is not checked."""
    if budget_a and budget_b and abs(budget_a - budget_b) > 0.05 * max(budget_a, budget_b):
        return Verdict("inconclusive", why=f"{steps_text(budget_a)} vs {steps_text(budget_b)} steps")
    if min(a.n, b.n) < MIN_SEEDS:
        return Verdict("inconclusive", why=" vs ".join(_seeds(s.n, "") for s in (a, b)))
    sign, p = _test(a, b)
    return Verdict({1: "higher", -1: "lower", 0: "no significant difference"}[sign], p)


def steps_text(steps: int) -> str:
    """1000000 → 1M, 500000 → 500k, 1001472 → 1M, 20480 → 20k: a budget in a table cell."""
    if steps >= 1_000_000:
        return f"{steps / 1e6:.3g}M"
    return f"{steps / 1e3:.3g}k" if steps >= 1000 else str(steps)
