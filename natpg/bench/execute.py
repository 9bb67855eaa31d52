"""One run of a sweep, as a worker executes it: train into the run directory under its lock,
resume from checkpoint.pt where possible, and turn any failure into error.json and a failed
:class:`RunOutcome` (the sweep goes on). Both backends (:mod:`natpg.bench.local_backend`,
:mod:`natpg.bench.ray_backend`) call :func:`execute_run`, and :func:`crashed` for a worker
that died."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natpg._messages import use_wording
from natpg.bench.plan import RunSpec
from natpg.bench.suites import SB3_METHODS
from natpg.runlog import atomic_write_json, clear_run_files

__all__ = ["RunOutcome", "execute_run", "crashed"]


@dataclass
class RunOutcome:
    key: str
    status: str  # "done", "failed", "skipped"
    summary: dict[str, Any] | None = None
    error: str | None = None
    wall_time: float = 0.0
    resumed: bool = False


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


def crashed(spec: RunSpec, exc: BaseException) -> RunOutcome:
    """The failed outcome of a run whose worker died (``exc``: what the backend saw); its
    error.json is written unless the run had finished."""
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
