"""Sweep directories → runs, and what every table and figure aggregates from them: the report
order of tasks and methods, final returns per env × method, curves smoothed the paper's way.

The final return of a run is ``summary.json``'s ``final_return`` (mean return of the episodes
that ended in the last 10% of the steps, natpg.trainer.final_return), for natpg and SB3 alike.
Std over seeds is the sample std (ddof = 1) everywhere; one seed has none.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from natpg.bench.suites import MUJOCO_FIELD_METHODS, PAPER_METHODS, SB3_METHODS, SB3_ZOO_METHODS
from natpg.presets import PAPER_ENVS
from natpg.runlog import open_metrics, pack_metrics

__all__ = ["Run", "load_runs", "pack_runs", "read_json", "env_order", "method_order", "is_sb3", "by_method", "FinalReturns",
           "final_returns", "planned_seeds", "invocations", "binned_curve", "Curve", "curves", "over_seeds", "BINS",
           "EWM_ALPHA"]

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
    budget: int | None = None  # the steps the run was asked for (config.json total_steps)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    _metrics: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, np.ndarray]:
        """metrics.csv (or its packed copy) as columns of floats (NaN for an empty or non-numeric cell)."""
        if self._metrics is None:
            cols: dict[str, list[float]] = defaultdict(list)
            f = open_metrics(self.path)
            if f is not None:
                with f:
                    for row in csv.DictReader(f):
                        for k, v in row.items():
                            try:
                                cols[k].append(float(v) if v not in ("", None) else math.nan)
                            except ValueError:
                                cols[k].append(math.nan)
            self._metrics = {k: np.asarray(v, dtype=float) for k, v in cols.items()}
        return self._metrics

    @property
    def final_return(self) -> float | None:
        value = self.summary.get("final_return") if self.status == "done" else None
        return None if value is None else float(value)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _status(summary: dict | None, error: dict | None, config: dict) -> tuple[str | None, dict | None]:
    if summary is not None and summary.get("status", "completed") != "completed":
        # The trainer stopped the run early (e.g. ``stopped_nonfinite``): its final return covers a
        # shorter run, so it is a failure, not a table entry.
        return "failed", {"error": f"{summary['status']}: {summary.get('message', '')}".rstrip(": ")}
    if summary is not None:
        return "done", error
    if error is not None:
        return "failed", error
    return ("unfinished" if config else None), error


#: Per label, the columns beyond :data:`natpg.runlog.PACKED_FULL_COLUMNS` that a report pools over
#: every update of the run: SMAC's ‖ℓ̄‖² and cosine (:func:`natpg.bench.report.paper.rank1`).
POOLED_COLUMNS = {"smac": frozenset({"mean_score_norm_sq", "grad_cosine"})}


def pack_runs(dirs: Iterable[str | Path]) -> int:
    """Pack the metrics of every ended run (OUT/ENV/LABEL/seedS) under ``dirs``
    (:func:`natpg.runlog.pack_metrics`); returns how many were packed."""
    return sum(pack_metrics(seed_dir, POOLED_COLUMNS.get(seed_dir.parent.name, frozenset()))
               for d in dirs for seed_dir in sorted(Path(d).glob("*/*/seed*")) if seed_dir.is_dir())


def load_runs(dirs: Iterable[str | Path]) -> list[Run]:
    """Every run directory (OUT/ENV/LABEL/seedS) under ``dirs``; a duplicate (env, label, seed,
    budget) keeps the first. Runs of one env × label at several budgets (e.g. 1M and 5M steps in
    two directories) are told apart: all but the longest get ``@steps=N`` appended to their label."""
    runs: dict[tuple[str, str, int, int | None], Run] = {}
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise ValueError(f"{d} does not exist")
        for seed_dir in sorted(d.glob("*/*/seed*")):
            m = re.fullmatch(r"seed(\d+)", seed_dir.name)
            if not m or not seed_dir.is_dir():
                continue
            config = read_json(seed_dir / "config.json") or {}
            summary = read_json(seed_dir / "summary.json")
            status, error = _status(summary, read_json(seed_dir / "error.json"), config)
            if status is None:
                continue
            env_id = config.get("env_id") or seed_dir.parent.parent.name
            run = Run(env_id, seed_dir.parent.name, int(m.group(1)), seed_dir, status, summary or {},
                      (error or {}).get("error"), config.get("total_steps"), config)
            key = (run.env_id, run.label, run.seed, run.budget)
            if key in runs:
                print(f"natpg report: {seed_dir} duplicates {runs[key].path}; keeping the first", file=sys.stderr)
                continue
            runs[key] = run
    budgets: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in runs.values():
        budgets[(r.env_id, r.label)].add(r.budget or 0)
    for r in runs.values():
        longest = max(budgets[(r.env_id, r.label)])
        if (r.budget or 0) < longest:
            r.label = f"{r.label}@steps={r.budget}"
    return list(runs.values())


# ----------------------------------------------------------------------------- ordering


def env_order(envs: Iterable[str]) -> list[str]:
    """The paper's nine tasks in its order, then any other env alphabetically."""
    envs = set(envs)
    return [e for e in PAPER_ENVS if e in envs] + sorted(envs - set(PAPER_ENVS))


#: natpg's rules in report order: the paper's Table 1 methods, then the rest of the MuJoCo field suite's.
_NATPG_ORDER = tuple(dict.fromkeys((*PAPER_METHODS, *(m for m in MUJOCO_FIELD_METHODS if m not in SB3_METHODS))))
#: SB3 rows last, the tuned rivals before the library defaults.
_SB3_ORDER = tuple(dict.fromkeys((*SB3_ZOO_METHODS, *SB3_METHODS)))


def is_sb3(label: str) -> bool:
    """A Stable-Baselines3 / sb3-contrib row (natpg bench runs every ``sb3-*`` method through SB3)."""
    return label.startswith("sb3-")


def method_order(labels: Iterable[str]) -> list[str]:
    """natpg's known rules, other natpg labels (sorted), then SB3 rows; a variant
    (``trpo@normalize_obs=false``) right after its base rule."""

    def key(label: str) -> tuple[int, int, str, str]:
        base = label.split("@")[0]
        if is_sb3(base):
            return 2, _SB3_ORDER.index(base) if base in _SB3_ORDER else len(_SB3_ORDER), base, label
        if base in _NATPG_ORDER:
            return 0, _NATPG_ORDER.index(base), "", label
        return 1, 0, base, label

    return sorted(set(labels), key=key)


def by_method(runs: Iterable[Run]) -> dict[tuple[str, str], list[Run]]:
    """(env, label) → its runs in seed order, in report order of envs and methods."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.seed):
        groups[(r.env_id, r.label)].append(r)
    return {(env, label): groups[(env, label)] for env in env_order({e for e, _ in groups})
            for label in method_order({m for e, m in groups if e == env})}


# ----------------------------------------------------------------------------- final returns


@dataclass
class FinalReturns:
    """One env × method: the final returns of its completed runs, and how many of its runs are not
    in them (failed or stopped by the trainer, unfinished, or completed with no episode ending in
    the last 10% of the steps)."""

    env_id: str
    label: str
    returns: list[float] = field(default_factory=list)
    by_seed: dict[int, float] = field(default_factory=dict)
    wall_times: list[float] = field(default_factory=list)
    steps_per_second: list[float] = field(default_factory=list)
    update_times: list[float] = field(default_factory=list)  # s, of every run that has one (a stopped run too)
    episode_lengths: list[float] = field(default_factory=list)  # steps per episode over each counted run
    wall_by_seed: dict[int, float] = field(default_factory=dict)  # s, of each counted run
    budgets: set[int] = field(default_factory=set)  # of the counted runs
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

    @property
    def wall_time_mean(self) -> float | None:
        """Mean wall time per run (s) over the runs that recorded one (finite and positive); None without any."""
        walls = [w for w in self.wall_times if math.isfinite(w) and w > 0]
        return sum(walls) / len(walls) if walls else None

    @property
    def budget(self) -> int | None:
        """The shortest budget among the counted runs (they share one unless a directory mixes them)."""
        return min(self.budgets) if self.budgets else None

    def not_counted(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.unfinished, "unfinished"),
                                              (self.no_final_return, "without a final return")) if n]
        return ", ".join(parts) or "–"


def final_returns(runs: list[Run]) -> dict[tuple[str, str], FinalReturns]:
    """(env, label) → :class:`FinalReturns`, in report order, for every env × method with a run."""
    groups: dict[tuple[str, str], FinalReturns] = {}
    for env in env_order({r.env_id for r in runs}):
        for label in method_order({r.label for r in runs if r.env_id == env}):
            groups[(env, label)] = FinalReturns(env, label)
    for r in runs:
        g = groups[(r.env_id, r.label)]
        if r.summary.get("update_time_mean") is not None and r.status in ("done", "failed"):
            g.update_times.append(float(r.summary["update_time_mean"]))
        if r.status == "failed":
            g.failed += 1
        elif r.status == "unfinished":
            g.unfinished += 1
        elif r.final_return is None:
            g.no_final_return += 1
        else:
            g.returns.append(r.final_return)
            g.by_seed[r.seed] = r.final_return
            g.wall_times.append(float(r.summary.get("wall_time", math.nan)))
            g.wall_by_seed[r.seed] = g.wall_times[-1]
            g.steps_per_second.append(float(r.summary.get("steps_per_second", math.nan)))
            if r.summary.get("episodes") and r.summary.get("steps"):
                g.episode_lengths.append(float(r.summary["steps"]) / float(r.summary["episodes"]))
            if r.budget is not None:
                g.budgets.add(int(r.budget))
    return groups


# ----------------------------------------------------------------------------- sweep.json


def invocations(dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """Every ``natpg bench`` invocation recorded in the directories' sweep.json, in order."""
    return [inv for d in dirs for inv in (read_json(Path(d) / "sweep.json") or {}).get("invocations", [])]


def planned_seeds(dirs: Iterable[Path]) -> int:
    """The most seeds any ``natpg bench`` invocation recorded in a directory's sweep.json asked for."""
    return max((len(inv.get("seeds") or []) for inv in invocations(dirs)), default=0)


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


@dataclass(frozen=True)
class Curve:
    """One method's smoothed curve on one env: bin centres, mean over seeds, sample std (NaN with one seed)."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: int


def curves(runs: list[Run], column: str, transform: Callable[[np.ndarray], np.ndarray] | None = None,
           alpha: float = EWM_ALPHA) -> dict[str, dict[str, Curve]]:
    """env → label → :class:`Curve` of the smoothed ``column`` over the completed seeds: each run's
    values (through ``transform`` first, e.g. ``np.log10``) by :func:`binned_curve` with ``alpha``
    (1: bin means alone), then mean and sample std over the seeds."""
    out: dict[str, dict[str, Curve]] = defaultdict(dict)
    done = [r for r in runs if r.status == "done"]
    for env in env_order({r.env_id for r in done}):
        for label in method_order({r.label for r in done if r.env_id == env}):
            group = [r for r in done if r.env_id == env and r.label == label]
            x_max = max(float(r.summary.get("steps") or r.budget or 0) for r in group)
            smoothed = []
            for r in group:
                m = r.metrics()
                if column in m and "timesteps" in m and np.isfinite(m[column]).any():
                    y = m[column] if transform is None else transform(m[column])
                    smoothed.append(binned_curve(m["timesteps"], y, x_max, alpha=alpha))
            if not smoothed or x_max <= 0:
                continue
            out[env][label] = over_seeds((np.arange(BINS) + 0.5) * x_max / BINS, smoothed)
    return out


def over_seeds(x: np.ndarray, values: list[np.ndarray]) -> Curve:
    """The :class:`Curve` of one method: at each ``x``, the mean and sample std of ``values`` (one
    array per seed, as long as ``x``) over the seeds where it is finite."""
    arr = np.vstack(values)
    with warnings.catch_warnings():  # all-NaN points, e.g. before a run's first episode
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=0)
        std = np.nanstd(arr, axis=0, ddof=1) if len(values) > 1 else np.full(len(x), np.nan)
    return Curve(x, mean, std, len(values))
