"""The Python API: ``natpg.train(...)``, ``natpg.load(...)``, ``natpg.evaluate(...)``, ``natpg.load_run(...)``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from natpg._messages import setting_name
from natpg.acting import rollout_policy
from natpg.config import Range, TrainConfig, resolve_config
from natpg.deploy import env_spaces, load, read_spaces
from natpg.envs import env_factory, python_env_label
from natpg.policies import Agent
from natpg.runlog import read_checkpoint
from natpg.train_state import Components
from natpg.trainer import TrainResult
from natpg.trainer import train as _train
from natpg.vector_env import VectorEnv

__all__ = ["train", "evaluate", "load_run", "load"]


def train(
    env: Any = None,
    method: str = "smac",
    total_steps: int = 100_000,
    seed: int = 0,
    *,
    actor: Any = None,
    critic: Any = None,
    preset: str | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    **hyperparameters: Any,
) -> TrainResult:
    """Train ``method`` on the Gymnasium environment ``env``.

    ``env``: a registered id (``"CartPole-v1"``, ``"module:MyEnv-v0"``), a ``gymnasium.Env``
    instance (with ``num_envs=1``; natpg closes it at the end) or a factory, a function
    returning a new env (called ``num_envs`` times). An env given as an object is recorded as
    ``<python>:Name`` in config.json; ``natpg.evaluate`` cannot rebuild it, but
    ``natpg.load(run)`` needs no env.

    ``actor`` / ``critic``: your own networks instead of natpg's MLPs (or CNNs, for uint8/bool
    image observations): an ``nn.Module``, or a factory ``f(observation_space, action_space)``
    returning one. The actor needs ``distribution(obs) -> torch.distributions.Distribution``
    (:class:`natpg.policies.ActorLike`); the critic maps a (B, *obs_shape) float batch to (B,)
    values. They see raw observations as float32 (normalised with ``normalize_obs=True``), act
    in the rollout through ``actor.distribution(obs).sample()`` under ``torch.inference_mode``,
    and are saved in the checkpoint; to resume, pass the same ``actor``/``critic`` again.

    ``hyperparameters`` take the CLI's names in snake_case: trainer settings
    (``rollout_steps=1000``, ``hidden=(64, 64)``, ``critic_lr``, ``gamma``, ...) and the
    method's own (``lr``, ``damping``, ``batch_size``, ...). Explicit values override the
    ``preset``. With ``out`` a run directory is written (config.json, metrics.csv,
    summary.json, checkpoint.pt); an existing one is an error unless ``overwrite=True``
    (replace it) or ``resume=True`` (continue it from its checkpoint, which must have been
    made with the same settings except ``total_steps``; without a checkpoint it starts
    afresh). Returns the summary, the trained agent and the metrics.

    Bad input raises ValueError (naming the setting, the value and the valid range) before
    any environment is created; :class:`natpg.trainer.TrainingStopped` is raised when
    updates keep going non-finite, and :class:`natpg.envs.EnvironmentFault` when the
    environment returns NaN/inf (unless ``skip_nonfinite=True``).
    """
    if "env_id" in hyperparameters:  # the name of the first argument before natpg 0.2
        if env is not None:
            raise ValueError("pass the environment once: env or env_id, not both")
        env = hyperparameters.pop("env_id")
    if env is None:
        raise ValueError("natpg.train needs an environment: a Gymnasium id, a gymnasium.Env or a function returning one")
    env_fn = None
    if not isinstance(env, str):
        env_fn = env_factory(env, int(hyperparameters.get("num_envs", 1)))
        env_id = python_env_label(env)
    else:
        env_id = env
    config = resolve_config(env_id, method, preset, total_steps=total_steps, seed=seed, **hyperparameters)
    components = Components(env_fn, actor, critic) if (env_fn or actor is not None or critic is not None) else None
    return _train(config, run_dir=out, progress=progress, resume=resume, overwrite=overwrite, components=components)


def load_run(run_dir: str | Path, *, actor: Any = None, critic: Any = None) -> tuple[TrainConfig, Agent]:
    """The config and trained agent (actor, critic, normaliser) of a run directory. For
    acting, :func:`natpg.load` gives a ready :class:`~natpg.deploy.Policy`. A run trained
    with your own ``actor`` / ``critic`` needs them (or their factories) again."""
    config, agent, _ = _load(run_dir, actor=actor, critic=critic)
    return config, agent


def _load(run_dir: str | Path, actor: Any = None, critic: Any = None) -> tuple[TrainConfig, Agent, tuple[Any, Any]]:
    """(config, agent, (observation space, action space)) of a run directory. The spaces come
    from its spaces.json; only a run written before that file existed rebuilds the env."""
    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / "config.json", run_dir / "checkpoint.pt"
    for p in (config_path, ckpt_path):
        if not p.exists():
            raise ValueError(f"{run_dir} is not a natpg run directory: {p.name} is missing")
    try:
        config = TrainConfig.from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{config_path} is unreadable ({type(exc).__name__}: {exc})") from None
    stored = read_spaces(run_dir)
    if stored is None:
        env = VectorEnv(config.env_id, 1, 0, config.max_episode_steps)
        stored = env_spaces(env)
        env.close()
    observation_space, action_space = stored
    policy_actions = spaces.Discrete(int(action_space.n)) if isinstance(action_space, spaces.Discrete) else action_space
    state = read_checkpoint(ckpt_path)
    saved = state.get("custom") or {}
    if saved.get("actor") and actor is None:
        raise ValueError(f"{run_dir} was trained with your own actor ({saved['actor']}): pass it again, "
                         f"natpg.load({str(run_dir)!r}, actor=...) (a module of the same architecture, or its factory)")
    skip_critic = bool(saved.get("critic")) and critic is None  # not needed to act
    agent = Agent(int(np.prod(observation_space.shape)), policy_actions, config.hidden, config.activation, config.normalize_obs,
                  config.log_std_init, observation_space=observation_space, actor=actor,
                  critic=_StateOnly() if skip_critic else critic)
    weights = state["agent"]
    if skip_critic:
        weights = {k: v for k, v in weights.items() if not k.startswith("critic.")}
    agent.load_state_dict(weights)
    return config, agent, stored


class _StateOnly(torch.nn.Module):
    """A stand-in for a user's critic that was not passed to :func:`load_run`: acting needs
    only the actor (calling this critic is an error)."""


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int = 10_000, deterministic: bool = True, *,
             env: Any = None, actor: Any = None) -> dict[str, Any]:
    """Run ``episodes`` full episodes with the saved policy (mean action / most likely
    action unless ``deterministic=False``); returns mean, std and the returns. ``env``: the
    environment (id, instance or factory) when the run's own cannot be made from its id (a run
    given an env object); ``actor``: the run's own actor, if it was trained with one."""
    Range("int", 1).check(setting_name("episodes"), episodes)
    Range("int", 0, 2**32 - 1).check(setting_name("seed"), seed)
    config, agent = load_run(run_dir, actor=actor)
    if env is None or isinstance(env, str):
        vec = VectorEnv(env or config.env_id, 1, seed, config.max_episode_steps)
    else:
        vec = VectorEnv(python_env_label(env), 1, seed, config.max_episode_steps, env_fn=env_factory(env, 1))
    policy = rollout_policy(agent, vec.spec.action_space)
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    with torch.random.fork_rng(devices=[]):  # a torch-acting policy samples from torch's RNG
        torch.manual_seed(seed)
        while len(returns) < episodes:
            result = vec.step(policy.sample(vec.obs, rng, deterministic=deterministic))
            returns.extend(ret for ret, _ in result.finished)
    vec.close()
    arr = np.array(returns[:episodes])
    return {"env_id": config.env_id, "method": config.method, "episodes": episodes,
            "mean": float(arr.mean()), "std": float(arr.std()), "returns": arr.tolist()}
