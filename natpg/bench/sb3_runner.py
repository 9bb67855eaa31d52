"""Reference baselines inside the harness: Stable-Baselines3 PPO and A2C, sb3-contrib TRPO.

``sb3-ppo``, ``sb3-a2c`` and ``sb3-trpo`` run with their library defaults (``MlpPolicy``, the
algorithm's default hyperparameters). ``sb3-ppo-zoo`` and ``sb3-trpo-zoo`` run PPO and TRPO
with RL Baselines3 Zoo's tuned per-task hyperparameters (:mod:`natpg.bench.zoo_hyperparams`):
``VecNormalize`` over ``n_envs`` copies of the env in a ``DummyVecEnv``, the zoo's policy and
algorithm settings. All run on CPU with one torch thread, on the same Gymnasium id, the same
horizon (the preset's ``max_episode_steps``: 1000 for the paper's tasks; the env's own without
a preset), the same number of environment steps (summed over the ``n_envs`` copies) and the
same seed as natpg's runs, and write the same run-directory files:

* ``config.json``: env, method, seed, steps, horizon, the algorithm's hyperparameters, versions,
  and for the zoo rows the zoo entry used, as transcribed and as resolved (``zoo``);
* ``metrics.csv``: one row per rollout (timesteps, wall_time, update_time, steps_per_second,
  episode_return_mean/episode_length_mean over the last 20 episodes, episodes,
  log_prob_mean = mean log-probability of the actions taken in the rollout);
* ``summary.json``: ``final_return`` computed by :func:`natpg.trainer.final_return` (mean
  return of the episodes that ended in the last 10% of the steps), steps/s, update time.

Returns are the environment's own: each copy of the env is recorded below ``VecNormalize``,
so the normalised reward the zoo rows learn from never reaches the metrics.

SB3 rounds the budget up to whole rollouts of ``n_steps × n_envs`` steps (PPO's default:
2048), so ``steps`` may exceed the budget by less than one rollout. Interrupted SB3 runs
restart from scratch.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from natpg.runlog import atomic_write_json, metric_row, package_versions

if TYPE_CHECKING:
    from natpg.bench.plan import RunSpec

__all__ = ["SB3_ALGORITHMS", "ZOO_ALGORITHMS", "EpisodeLog", "make_vec_env", "sb3_missing", "sb3_hyperparameters", "train_sb3"]

#: method name → (module, class)
SB3_ALGORITHMS = {
    "sb3-ppo": ("stable_baselines3", "PPO"),
    "sb3-a2c": ("stable_baselines3", "A2C"),
    "sb3-trpo": ("sb3_contrib", "TRPO"),
    "sb3-ppo-zoo": ("stable_baselines3", "PPO"),
    "sb3-trpo-zoo": ("sb3_contrib", "TRPO"),
}
#: the rows with RL Zoo hyperparameters → the zoo's name of the algorithm (its hyperparams/ALGO.yml)
ZOO_ALGORITHMS = {"sb3-ppo-zoo": "ppo", "sb3-trpo-zoo": "trpo"}
RETURN_WINDOW = 20
LOG_EVERY = 1000  # at most one metrics row per this many steps


def sb3_missing(method: str) -> str | None:
    """Why ``method`` cannot run here, or None."""
    if method not in SB3_ALGORITHMS:
        return f"unknown SB3 baseline {method!r} (available: {', '.join(SB3_ALGORITHMS)})"
    module = SB3_ALGORITHMS[method][0]
    try:
        importlib.import_module(module)
    except ImportError:
        return f"{method} needs {module.replace('_', '-')}: pip install 'natpg[sb3]'"
    return None


def sb3_hyperparameters(method: str) -> list[str]:
    """The keyword arguments a method spec may set for an installed SB3 baseline (its
    algorithm's constructor arguments, bar those the harness sets itself)."""
    module, cls_name = SB3_ALGORITHMS[method]
    algo_cls = getattr(importlib.import_module(module), cls_name)
    set_by_harness = {"self", "policy", "env", "seed", "device", "verbose", "_init_setup_model"}
    return sorted(set(inspect.signature(algo_cls.__init__).parameters) - set_by_harness)


def _horizon(env_id: str, preset: str | None) -> int | None:
    if preset is None:
        return None
    from natpg.presets import preset_values

    try:
        shared, _ = preset_values(preset, env_id, "smac")
    except ValueError:
        return None
    return shared.get("max_episode_steps")


@dataclass
class EpisodeLog:
    """Environment steps taken by all copies of the env together, and every finished episode
    as (steps at its end, return, length): the input of :func:`natpg.trainer.final_return`."""

    steps: int = 0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)


class _Recorder(gym.Wrapper):
    """Counts steps into an :class:`EpisodeLog` and records each episode's return as the env gives it."""

    def __init__(self, env: gym.Env, log: EpisodeLog):
        super().__init__(env)
        self.log = log
        self._ret, self._len = 0.0, 0

    def reset(self, **kwargs):
        self._ret, self._len = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.steps += 1
        self._ret += float(reward)
        self._len += 1
        if terminated or truncated:
            self.log.episodes.append((self.log.steps, self._ret, self._len))
        return obs, reward, terminated, truncated, info


def make_vec_env(env_name: str, horizon: int | None, log: EpisodeLog, n_envs: int = 1,
                 vec_normalize: dict[str, Any] | None = None):
    """``n_envs`` recorded copies of ``env_name`` in a ``DummyVecEnv``, wrapped in
    ``VecNormalize(**vec_normalize)`` when that is given. The recorder sits below VecNormalize,
    so ``log`` holds the unnormalised returns."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    def make_env():
        kwargs = {"max_episode_steps": horizon} if horizon else {}
        return Monitor(_Recorder(gym.make(env_name, **kwargs), log))

    env = DummyVecEnv([make_env] * n_envs)
    return VecNormalize(env, **vec_normalize) if vec_normalize is not None else env


def _zoo_settings(name: str, env_id: str) -> tuple[dict[str, Any], int, dict[str, Any] | None, dict[str, Any] | None]:
    """(algorithm kwargs, n_envs, VecNormalize kwargs, record for config.json) of a method row;
    the library defaults (no kwargs, one env, no VecNormalize) for the non-zoo rows."""
    if name not in ZOO_ALGORITHMS:
        return {}, 1, None, None
    from natpg.bench.zoo_hyperparams import ZOO_SOURCE, ZOO_VERSION, resolve_zoo, zoo_entry

    algo = ZOO_ALGORITHMS[name]
    entry = zoo_entry(algo, env_id)
    kwargs, n_envs, vec_normalize = resolve_zoo(entry)
    record = {
        "source": ZOO_SOURCE.format(algo=algo), "version": ZOO_VERSION, "entry": entry.pop("entry"),
        "hyperparameters": entry, "n_envs": n_envs, "vec_normalize": vec_normalize,
    }
    return kwargs, n_envs, vec_normalize, record


def train_sb3(spec: "RunSpec", run_dir: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    from natpg.envs import check_env_id
    from natpg.trainer import final_return

    name, hp = spec.method, {**spec.settings, **(overrides or {})}
    why = sb3_missing(name)
    if why:
        raise RuntimeError(why)
    module, cls_name = SB3_ALGORITHMS[name]
    algo_cls = getattr(importlib.import_module(module), cls_name)
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    horizon = _horizon(spec.env_id, spec.preset)
    env_name = check_env_id(spec.env_id)
    algo_kwargs, n_envs, vec_normalize, zoo = _zoo_settings(name, spec.env_id)
    log = EpisodeLog()
    episodes = log.episodes
    env = make_vec_env(env_name, horizon, log, n_envs, vec_normalize)
    model = algo_cls("MlpPolicy", env, seed=spec.seed, device="cpu", verbose=0, **{**algo_kwargs, **hp})

    keys = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range", "ent_coef",
            "vf_coef", "max_grad_norm", "target_kl", "cg_max_steps", "cg_damping", "line_search_shrinking_factor",
            "line_search_max_iter", "n_critic_updates", "normalize_advantage", "use_rms_prop", "sub_sampling_factor")
    algo_hp = {}
    for k in keys:
        if hasattr(model, k):
            v = getattr(model, k)
            algo_hp[k] = v if isinstance(v, (int, float, bool, str, type(None))) else repr(v)
    versions = package_versions()
    for mod in ("stable_baselines3", "sb3_contrib"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except ImportError:
            pass
    atomic_write_json(run_dir / "config.json", {
        "env_id": spec.env_id, "method": spec.method_spec, "seed": spec.seed, "total_steps": spec.total_steps,
        "max_episode_steps": horizon or gym.spec(env_name).max_episode_steps, "preset": spec.preset, "library": f"{module}.{cls_name}",
        "policy": "MlpPolicy", "policy_kwargs": repr(model.policy_kwargs), "hyperparameters": algo_hp,
        "n_envs": n_envs, "vec_normalize": vec_normalize, "overrides": hp, "versions": versions,
        **({"zoo": zoo} if zoo is not None else {}),
    })

    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    csv_file = open(run_dir / "metrics.csv", "w", newline="")
    writer: list[csv.DictWriter] = []

    def write(row: dict[str, Any]) -> None:
        rows.append(row)
        if not writer:
            writer.append(csv.DictWriter(csv_file, fieldnames=list(row)))
            writer[0].writeheader()
        writer[0].writerow(metric_row(row))
        csv_file.flush()

    class Logger(BaseCallback):
        """One metrics row per rollout, or per LOG_EVERY steps for short rollouts (A2C: 5 steps)."""

        pending: dict[str, Any] | None = None
        rollout_end = 0.0
        update_times: list[float] = []
        last_logged = 0

        def _flush(self, force: bool = False) -> None:
            if self.pending is None:
                return
            self.update_times.append(time.perf_counter() - self.rollout_end)
            if force or self.pending["timesteps"] - self.last_logged >= LOG_EVERY:
                self.pending["update_time"] = float(np.mean(self.update_times))
                write(self.pending)
                self.last_logged = self.pending["timesteps"]
                self.update_times = []
            self.pending = None

        def _on_rollout_start(self) -> None:
            self._flush()

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            now = time.perf_counter()
            recent = episodes[-RETURN_WINDOW:]
            buf = getattr(self.model, "rollout_buffer", None)
            logp = float(np.mean(buf.log_probs)) if buf is not None else math.nan
            self.pending = {
                "timesteps": self.model.num_timesteps,
                "wall_time": now - start,
                "update_time": math.nan,
                "steps_per_second": self.model.num_timesteps / (now - start),
                "episode_return_mean": float(np.mean([r for _, r, _ in recent])) if recent else math.nan,
                "episode_length_mean": float(np.mean([n for _, _, n in recent])) if recent else math.nan,
                "episodes": len(episodes),
                "log_prob_mean": logp,
            }
            self.rollout_end = now

        def _on_training_end(self) -> None:
            self._flush(force=True)

    try:
        model.learn(total_timesteps=spec.total_steps, callback=Logger(), progress_bar=False)
    finally:
        csv_file.close()
        env.close()
    wall = time.perf_counter() - start
    steps = int(model.num_timesteps)
    value, basis = final_return(episodes, steps, RETURN_WINDOW)
    update_times = [r["update_time"] for r in rows if not math.isnan(r["update_time"])]
    summary = {
        "env_id": spec.env_id,
        "method": spec.method_spec,
        "seed": spec.seed,
        "final_return": value,
        "final_return_basis": basis,
        "steps": steps,
        "episodes": len(episodes),
        "wall_time": wall,
        "steps_per_second": steps / wall if wall > 0 else math.nan,
        "update_time_mean": float(np.mean(update_times)) if update_times else math.nan,
        "updates": len(rows),
        "library": f"{module}.{cls_name}",
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary
