"""A resumable sweep of training runs: one run directory per (env, method, seed).

Layout under OUT::

    OUT/sweep.json                     every invocation: command, date, machine, runs planned
    OUT/ENV/METHOD_LABEL/seedS/        config.json, metrics.csv, summary.json, checkpoint.pt
                                       (error.json instead of summary.json when the run failed)

A run is finished iff ``summary.json`` exists. Rerunning the same command skips finished
runs, retries failed ones (``--skip-failed`` keeps them), and resumes interrupted natpg runs
from ``checkpoint.pt`` (SB3 runs restart). Every file the harness writes is written
atomically, and each run holds an exclusive lock on
``OUT/.../seedS/.lock`` while it trains, so an orphaned worker of a killed sweep and a new
sweep never train the same run at once.

The sweep is in four pieces: :mod:`natpg.bench.plan` (the runs, and the checks made before any
run starts), :mod:`natpg.bench.execute` (one run in a worker), the backends that run them
(:mod:`natpg.bench.local_backend`, :mod:`natpg.bench.ray_backend`), and this module, which
drives them and records each invocation in sweep.json (command, date, machine).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from natpg._messages import setting_name
from natpg.bench.execute import RunOutcome, execute_run
from natpg.bench.local_backend import local_backend
from natpg.bench.plan import RunSpec, check_plan, plan_runs, run_dir_for, run_status
from natpg.bench.suites import Suite, default_steps
from natpg.runlog import atomic_write_json, cpu_model, source_revision

__all__ = ["RunSpec", "RunOutcome", "plan_runs", "check_plan", "run_status", "execute_run", "run_sweep", "machine_info",
           "run_dir_for"]


def machine_info() -> dict[str, Any]:
    import torch

    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_model": cpu_model(),
    }
    try:
        import natpg

        info["natpg"] = natpg.__version__
    except Exception:  # pragma: no cover
        pass
    revision = source_revision()
    if revision is not None:
        info["natpg_commit"] = revision
    return info


@dataclass
class SweepResult:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)  # finished with another budget
    wall_time: float = 0.0


def _budget_of(run_dir: Path) -> int | None:
    """The budget (total_steps) a finished run was started with, from its config.json."""
    try:
        return int(json.loads((run_dir / "config.json").read_text())["total_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_invocation(out: Path, entry: dict[str, Any]) -> None:
    path = out / "sweep.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        data = {"invocations": []}
    data.setdefault("invocations", []).append(entry)
    atomic_write_json(path, data)


def run_sweep(
    out: str | Path,
    envs: Iterable[str],
    method_specs: Iterable[str],
    seeds: int | Iterable[int] = 3,
    steps: int | dict[str, int] | None = None,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    skip_failed: bool = False,
    order: str = "seed",
    progress: bool = True,
    suite: Suite | None = None,
    command: str | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> SweepResult:
    """Run every missing (env, method, seed) of the sweep into ``out``; see the module doc."""
    from tqdm.auto import tqdm

    out = Path(out)
    envs, method_specs = list(envs), list(method_specs)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{setting_name('workers')} must be a positive integer, got {workers!r}")
    if backend not in ("local", "ray"):
        raise ValueError(f"{setting_name('backend')} must be local or ray, got {backend!r}")
    if order not in ("seed", "env"):
        raise ValueError(f"{setting_name('order')} must be seed or env, got {order!r}")
    if not seed_list:
        raise ValueError(f"{setting_name('seeds')}: a sweep needs at least one seed")
    check_plan(envs, method_specs, seed_list, steps, preset, overrides or {}, suite)  # before anything is created
    out.mkdir(parents=True, exist_ok=True)
    result = SweepResult()
    runs = plan_runs(out, envs, method_specs, seed_list, steps if steps is not None else (suite.steps_for if suite else None),
                     preset, overrides, order, suite)

    pending = []
    for spec in runs:
        status = run_status(Path(spec.run_dir))
        if status == "done":
            done_steps = _budget_of(Path(spec.run_dir))
            if done_steps is not None and done_steps != spec.total_steps:
                result.conflicts[spec.key] = done_steps
            result.skipped.append(spec.key)
        elif status == "failed" and skip_failed:
            result.skipped.append(spec.key)
        else:
            pending.append(spec)
    if result.conflicts:
        log(f"natpg bench: {len(result.conflicts)} finished run(s) in {out} had another budget than this sweep asks for "
            f"(e.g. {next(iter(result.conflicts))}: {next(iter(result.conflicts.values()))} steps); they are kept and "
            f"not rerun: use another {setting_name('out')}, or delete them to redo them")

    started = _dt.datetime.now(_dt.timezone.utc)
    _record_invocation(out, {
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "started": started.isoformat(timespec="seconds"),
        "suite": suite.name if suite else None,
        "envs": envs, "methods": method_specs, "seeds": seed_list,
        "steps": {e: (steps if isinstance(steps, int) else (steps or {}).get(e)) if steps is not None
                  else (suite.steps_for(e) if suite else default_steps(e)) for e in envs},
        "preset": preset, "overrides": overrides or {}, "backend": backend, "workers": workers, "order": order,
        "machine": machine_info(),
        "runs_planned": len(runs), "runs_pending": len(pending),
    })
    log(f"natpg bench: {len(runs)} runs planned, {len(result.skipped)} already finished, {len(pending)} to run "
        f"on {backend} with {workers} worker(s); results in {out}")

    total_steps = sum(r.total_steps for r in pending)
    bar = tqdm(total=total_steps, unit="step", unit_scale=True, disable=not progress, dynamic_ncols=True,
               desc=f"runs 0/{len(pending)}", file=sys.stderr)
    start = time.perf_counter()
    finished = 0

    def on_done(outcome: RunOutcome, spec: RunSpec) -> None:
        nonlocal finished
        finished += 1
        if outcome.status == "failed":
            result.failed[outcome.key] = (outcome.error or "?").strip().splitlines()[0][:300]
            bar.write(f"FAILED {outcome.key}: {result.failed[outcome.key]}")
        elif outcome.status == "skipped":
            result.skipped.append(outcome.key)
        else:
            result.done.append(outcome.key)
            s = outcome.summary or {}
            fr = s.get("final_return")
            bar.write(f"done {outcome.key}: final return {fr if fr is None else round(fr, 1)}, "
                      f"{s.get('steps_per_second', float('nan')):.0f} steps/s{' (resumed)' if outcome.resumed else ''}")
        bar.set_description(f"runs {finished}/{len(pending)}" + (f" ({len(result.failed)} failed)" if result.failed else ""))
        bar.update(spec.total_steps)

    try:
        if not pending:
            pass
        elif backend == "local":
            local_backend(pending, workers, on_done)
        else:  # "ray", checked above
            from natpg.bench.ray_backend import ray_backend

            ray_backend(pending, workers, ray_address, on_done)
    finally:
        bar.close()
    result.wall_time = time.perf_counter() - start
    log(f"natpg bench: {len(result.done)} runs finished, {len(result.failed)} failed, {len(result.skipped)} skipped "
        f"in {result.wall_time:.0f} s")
    return result
