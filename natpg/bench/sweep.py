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
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import shlex
import signal
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable

from natpg._messages import did_you_mean, phrase, setting_name, setting_value, use_wording
from natpg.bench.suites import SB3_METHODS, Suite, default_steps, method_label, parse_method_spec, spec_preset
from natpg.runlog import atomic_write_json, clear_run_files, cpu_model, source_revision

__all__ = ["RunSpec", "RunOutcome", "plan_runs", "check_plan", "run_status", "execute_run", "run_sweep", "machine_info"]


@dataclass(frozen=True)
class RunSpec:
    env_id: str
    method_spec: str  # "smac" or "smac:batch_size=1" or "sb3-ppo"
    seed: int
    total_steps: int
    preset: str | None
    run_dir: str
    overrides: tuple[tuple[str, Any], ...] = ()  # extra trainer/method overrides for every run

    @property
    def method(self) -> str:
        return parse_method_spec(self.method_spec)[0]

    @property
    def settings(self) -> dict[str, Any]:
        """The spec's fixed hyperparameters and trainer settings (its ``preset`` is :attr:`preset`)."""
        return {k: v for k, v in parse_method_spec(self.method_spec)[1].items() if k != "preset"}

    @property
    def label(self) -> str:
        return method_label(self.method_spec)

    @property
    def key(self) -> str:
        return f"{self.env_id}/{self.label}/seed{self.seed}"


@dataclass
class RunOutcome:
    key: str
    status: str  # "done", "failed", "skipped"
    summary: dict[str, Any] | None = None
    error: str | None = None
    wall_time: float = 0.0
    resumed: bool = False


def run_dir_for(out: Path, env_id: str, spec: str, seed: int) -> Path:
    return Path(out) / env_id.replace(":", "_").replace("/", "_") / method_label(spec) / f"seed{seed}"


def run_status(run_dir: Path) -> str:
    """``done`` (summary.json), ``failed`` (error.json), ``partial`` (checkpoint or metrics), or ``new``."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").exists():
        return "done"
    if (run_dir / "error.json").exists():
        return "failed"
    if (run_dir / "checkpoint.pt").exists() or (run_dir / "metrics.csv").exists():
        return "partial"
    return "new"


def plan_runs(
    out: Path,
    envs: Iterable[str],
    method_specs: Iterable[str],
    seeds: Iterable[int],
    steps: int | dict[str, int] | Callable[[str], int] | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    order: str = "seed",
    suite: Suite | None = None,
) -> list[RunSpec]:
    """Every (env, method, seed) as a RunSpec, less the cells ``suite`` leaves out
    (:meth:`Suite.includes`). ``order="seed"`` (default) runs every env and method at the first
    seed before any second seed, so a sweep cut short still covers every task; ``order="env"``
    finishes one env (all methods and seeds) before the next. A spec's own ``preset=`` wins over
    ``preset``."""
    if order not in ("seed", "env"):
        raise ValueError(f"{setting_name('order')} must be seed or env, got {order!r}")
    envs, method_specs, seeds = list(envs), list(method_specs), [int(s) for s in seeds]
    extra = tuple(sorted((overrides or {}).items()))

    def budget(env_id: str) -> int:
        if steps is None:
            return default_steps(env_id)
        if isinstance(steps, int):
            return steps
        if isinstance(steps, dict):
            return steps.get(env_id, default_steps(env_id))
        return steps(env_id)

    if order == "seed":
        keys = [(e, m, i) for i in range(len(seeds)) for e in envs for m in method_specs]
    else:
        keys = [(e, m, i) for e in envs for m in method_specs for i in range(len(seeds))]
    return [RunSpec(e, m, seeds[i], int(budget(e)), spec_preset(m, preset), str(run_dir_for(out, e, m, seeds[i])), extra)
            for e, m, i in keys if suite is None or suite.includes(e, m, i)]


#: Settings the sweep gives every natpg run from its own arguments: a method spec or ``--set``
#: may not give them (→ the argument that does, None: every run uses one torch thread).
_SET_BY_THE_SWEEP = {"env_id": "envs", "method": "method_specs", "preset": "preset", "seed": "seeds",
                     "total_steps": "steps", "torch_threads": None}


def _refuse_sweep_setting(key: str, where: str) -> None:
    if key in _SET_BY_THE_SWEEP:
        source = _SET_BY_THE_SWEEP[key]
        how = f"give it with {setting_name(source)}" if source else "every run uses one torch thread"
        raise ValueError(f"{where}: {key} is set by the sweep itself ({how})")


def _check_method_spec(spec: str) -> str | None:
    """The natpg method of a spec (None for an SB3 baseline), once its name and the names of
    its settings are known to exist here."""
    from natpg import methods
    from natpg.bench.sb3_runner import sb3_hyperparameters, sb3_missing
    from natpg.config import trainer_field_names

    name, spec_overrides = parse_method_spec(spec)
    shown = setting_value("method_specs", spec)
    if name in SB3_METHODS:
        why = sb3_missing(name)
        if why:
            raise ValueError(f"{shown}: {why}")
        own, extra = sb3_hyperparameters(name), set()
    elif name in methods.available():
        own, extra = sorted(methods.get(name).hyperparameters()), trainer_field_names() - set(_SET_BY_THE_SWEEP)
    else:
        known = methods.available() + list(SB3_METHODS)
        raise ValueError(f"{shown}: unknown method {name!r}{did_you_mean(name, known)} (available: {', '.join(known)})")
    for key in spec_overrides:
        if key == "preset":  # the spec's own preset, checked per env by check_plan
            continue
        _refuse_sweep_setting(key, shown)
        if key not in own and key not in extra:
            also = "; trainer settings such as rollout_steps are accepted too" if extra else ""
            raise ValueError(
                f"{shown}: {name} takes no setting {key!r}{did_you_mean(key, [*own, *extra])} "
                f"(its hyperparameters: {', '.join(own)}{also})"
            )
    return None if name in SB3_METHODS else name


def _check_overrides(overrides: dict[str, Any], natpg_methods: list[str]) -> None:
    """Every ``--set`` key must be a trainer setting or a hyperparameter of some method in the sweep."""
    from natpg import methods
    from natpg.config import trainer_field_names

    known = set(trainer_field_names()) - set(_SET_BY_THE_SWEEP)
    for name in natpg_methods:
        known |= set(methods.get(name).hyperparameters())
    for key in overrides:
        _refuse_sweep_setting(key, f"{setting_name('overrides')} {key}")
    unknown = sorted(set(overrides) - known)
    if unknown:
        hints = "".join(did_you_mean(key, sorted(known)) for key in unknown)
        raise ValueError(
            f"{setting_name('overrides')} {', '.join(unknown)}: not a trainer setting nor a hyperparameter of any method "
            f"in this sweep{hints}"
        )


def check_plan(
    envs: list[str],
    method_specs: list[str],
    seeds: list[int],
    steps: int | dict[str, int] | None,
    preset: str | None,
    overrides: dict[str, Any],
    suite: Suite | None = None,
) -> None:
    """Refuse, in one line that names the fix, a sweep that cannot run as asked: an unknown env
    or method (with a did-you-mean), a method whose package is missing, a setting in a method
    spec or ``--set`` that nothing takes, an env the preset (the sweep's, or a spec's own) has no
    values for, a bad seed or budget. Creates nothing; the values of hyperparameters are the
    runs' own to check (a run that refuses them fails alone and the sweep goes on). ``suite``:
    an env a spec does not run on in the suite needs no preset values for it."""
    from natpg.config import Range
    from natpg.envs import check_env_id
    from natpg.presets import NO_PRESET, PRESETS, preset_values

    if not envs or not method_specs:
        raise ValueError(f"a sweep needs at least one env and one method ({setting_name('envs')}, {setting_name('method_specs')})")
    for env_id in envs:
        check_env_id(env_id, setting="envs")
    natpg_specs = {spec: name for spec in method_specs if (name := _check_method_spec(spec)) is not None}
    _check_overrides(overrides, list(natpg_specs.values()))
    for spec, name in natpg_specs.items():
        own = spec_preset(spec, preset)
        if own is None or own.lower() == NO_PRESET:
            continue
        where = "" if own == preset else f"{setting_value('method_specs', spec)}: "
        for env_id in envs:
            if suite is not None and not suite.includes(env_id, spec):
                continue
            try:
                preset_values(own, env_id, name)
            except ValueError as exc:
                if own not in PRESETS:
                    raise ValueError(f"{where}{exc}") from None
                raise ValueError(f"{where}{exc}; or leave {env_id} out of {setting_name('envs')}") from None
    seed_range = Range("int", 0, 2**32 - 1)
    for seed in seeds:
        if not seed_range.accepts(seed):
            raise ValueError(f"{setting_name('seeds')}: every seed must be {seed_range.describe()}, got {seed!r}")
    budgets = steps.values() if isinstance(steps, dict) else [] if steps is None else [steps]
    for budget in budgets:
        Range("int", 1).check(setting_name("steps"), budget)


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


# ----------------------------------------------------------------------------- one run


def _train_natpg(spec: RunSpec, run_dir: Path) -> tuple[dict[str, Any], bool]:
    from natpg import methods
    from natpg.config import resolve_config, trainer_field_names
    from natpg.trainer import train

    name, method_overrides = spec.method, spec.settings
    # Sweep-wide overrides: trainer settings apply to every run, a method hyperparameter to the
    # methods that take it (``--set batch_size=250`` leaves ac-adam's hyperparameters alone).
    accepted = set(methods.get(name).hyperparameters()) | trainer_field_names()
    overrides = {**{k: v for k, v in spec.overrides if k in accepted}, **method_overrides}
    config = resolve_config(spec.env_id, name, spec.preset, total_steps=spec.total_steps, seed=spec.seed, torch_threads=1, **overrides)
    # The trainer continues from checkpoint.pt, or starts afresh when there is none yet.
    had_checkpoint = (run_dir / "checkpoint.pt").exists()
    try:
        return train(config, run_dir=run_dir, progress=False, resume=True).summary, had_checkpoint
    except ValueError as exc:
        if not had_checkpoint:
            raise
        # An unusable checkpoint (another config, another budget): start the run again.
        print(f"natpg bench: cannot resume {spec.key} ({type(exc).__name__}: {exc}); restarting it", file=sys.stderr)
    clear_run_files(run_dir)
    return train(config, run_dir=run_dir, progress=False).summary, False


def execute_run(spec: RunSpec) -> RunOutcome:
    """Train one run into its directory; never raises (a failure becomes error.json). Its
    messages name settings as a method spec and ``--set`` do: ``damping``, not ``--damping``."""
    with use_wording(command_line=False):
        return _execute_run(spec)


def _execute_run(spec: RunSpec) -> RunOutcome:
    import torch

    torch.set_num_threads(1)
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    lock = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for an orphaned worker of a killed sweep
        if (run_dir / "summary.json").exists():
            summary = json.loads((run_dir / "summary.json").read_text())
            return RunOutcome(spec.key, "skipped", summary=summary)
        (run_dir / "error.json").unlink(missing_ok=True)
        try:
            if spec.method in SB3_METHODS:
                from natpg.bench.sb3_runner import train_sb3

                clear_run_files(run_dir)  # SB3 runs restart from scratch
                summary, resumed = train_sb3(spec, run_dir), False
            else:
                summary, resumed = _train_natpg(spec, run_dir)
            return RunOutcome(spec.key, "done", summary=summary, wall_time=time.perf_counter() - start, resumed=resumed)
        except Exception as exc:  # noqa: BLE001 - a failing run must not stop the sweep
            err = {
                "env_id": spec.env_id,
                "method": spec.method_spec,
                "seed": spec.seed,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "wall_time": time.perf_counter() - start,
            }
            atomic_write_json(run_dir / "error.json", err)
            return RunOutcome(spec.key, "failed", error=err["error"], wall_time=err["wall_time"])
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _worker_init() -> None:
    """One torch thread per worker; die with the parent (a SIGKILLed sweep leaves no trainers)."""
    import torch

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:  # pragma: no cover
            pass
    if os.getppid() == 1:  # parent already gone
        os._exit(1)


# ----------------------------------------------------------------------------- backends


def _local_backend(pending: list[RunSpec], workers: int, on_done: Callable[[RunOutcome, RunSpec], None]) -> None:
    ctx = get_context("spawn")
    queue = list(pending)
    while queue:
        broken = False
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {}
            # Keep at most `workers` runs in flight so an interrupted sweep leaves few partial runs.
            while (queue or futures) and not broken:
                while queue and len(futures) < workers:
                    spec = queue.pop(0)
                    futures[pool.submit(execute_run, spec)] = spec
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        outcome = _crashed(spec, exc)
                    except Exception as exc:  # noqa: BLE001
                        outcome = _crashed(spec, exc)
                    on_done(outcome, spec)
            if broken:
                # A worker died (killed, out of memory): record the runs in flight, start a new pool.
                for fut, spec in futures.items():
                    on_done(_crashed(spec, RuntimeError("worker process died")), spec)
                futures.clear()


def _crashed(spec: RunSpec, exc: BaseException) -> RunOutcome:
    err = {
        "env_id": spec.env_id, "method": spec.method_spec, "seed": spec.seed,
        "error": f"{type(exc).__name__}: {exc} (the worker process died)",
        "traceback": "".join(traceback.format_exception(exc)),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    if not (Path(spec.run_dir) / "summary.json").exists():
        atomic_write_json(Path(spec.run_dir) / "error.json", err)
    return RunOutcome(spec.key, "failed", error=err["error"])


# ----------------------------------------------------------------------------- the sweep


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
            if workers == 1 and os.environ.get("NATPG_BENCH_INPROCESS") == "1":
                for spec in pending:
                    on_done(execute_run(spec), spec)
            else:
                _local_backend(pending, workers, on_done)
        else:  # "ray", checked above
            from natpg.bench.ray_backend import ray_backend

            ray_backend(pending, workers, ray_address, on_done)
    finally:
        bar.close()
    result.wall_time = time.perf_counter() - start
    log(f"natpg bench: {len(result.done)} runs finished, {len(result.failed)} failed, {len(result.skipped)} skipped "
        f"in {result.wall_time:.0f} s")
    return result
