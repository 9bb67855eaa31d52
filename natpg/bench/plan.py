"""What a sweep will run, checked before anything runs: one :class:`RunSpec` per (env, method,
seed), its run directory and status, and :func:`check_plan`, which refuses a sweep that
cannot run as asked in one line that names the fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from natpg._messages import did_you_mean, setting_name, setting_value
from natpg.bench.suites import SB3_METHODS, Suite, default_steps, method_label, parse_method_spec, spec_preset

__all__ = ["RunSpec", "run_dir_for", "run_status", "plan_runs", "check_plan"]


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
