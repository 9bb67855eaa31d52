"""Environment creation, space validation and synchronous vectorised stepping."""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["EnvSpec", "check_env_id", "make_env", "VectorEnv", "describe_space"]

try:  # the clip ufunc itself: np.clip's Python wrapper layers cost ~1.5 µs a call
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - other numpy layouts
    _clip = np.clip


def _import_module_of(env_id: str) -> str:
    """``module:EnvId`` imports ``module`` (which registers EnvId) and returns ``EnvId``."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"--env {env_id!r}: cannot import module {module!r} ({exc})") from None
    return name


def check_env_id(env_id: str) -> str:
    """Return the registered id for ``env_id`` (importing ``module:`` prefixes), or raise a
    ValueError that suggests close names."""
    name = _import_module_of(env_id)
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"--env {env_id!r}: not a registered Gymnasium environment{hint}")
    return name


def describe_space(space: spaces.Space) -> str:
    return f"{type(space).__name__}{getattr(space, 'shape', '')}"


def check_spaces(env_id: str, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    if not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1):
        raise ValueError(
            f"env {env_id!r} has observation space {describe_space(observation_space)}; natpg's MLP policies "
            "support 1-D Box observations only (flatten Dict/Tuple spaces or use a feature wrapper)"
        )
    if isinstance(action_space, spaces.Discrete):
        return
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return
    raise ValueError(
        f"env {env_id!r} has action space {describe_space(action_space)}; natpg supports Discrete and 1-D Box actions"
    )


def make_env(env_id: str, max_episode_steps: int | None = None, **kwargs) -> gym.Env:
    name = check_env_id(env_id)
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    env = gym.make(name, **kwargs)
    check_spaces(env_id, env.observation_space, env.action_space)
    return env


@dataclass
class EnvSpec:
    obs_dim: int
    action_space: spaces.Space


@dataclass
class StepResult:
    next_obs: np.ndarray  # (N, obs_dim): observation to act on next (after any reset)
    rewards: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    final_obs: np.ndarray  # (N, obs_dim): the last observation of an episode that ended, else next_obs
    finished: list[tuple[float, int]] = field(default_factory=list)  # (return, length) of ended episodes


class VectorEnv:
    """N Gymnasium environments stepped in lock-step with same-step autoreset.

    When an episode ends, ``final_obs`` carries its last observation (needed to bootstrap
    a time-limit truncation) and ``next_obs`` is already the first observation of the next
    episode. Actions are clipped to Box bounds here, at the environment only.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id = env_id
        self.envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
        env = self.envs[0]
        self.spec = EnvSpec(int(env.observation_space.shape[0]), env.action_space)
        space = env.action_space
        self._clip = (space.low, space.high) if isinstance(space, spaces.Box) else None
        self.seed = seed
        self.obs = np.zeros((num_envs, self.spec.obs_dim), dtype=np.float32)
        # Python lists: per-step scalar updates on them cost ~20 ns against ~0.5 µs for numpy.
        self.episode_returns = [0.0] * num_envs
        self.episode_lengths = [0] * num_envs
        for i, e in enumerate(self.envs):
            e.action_space.seed(seed + i)
            self.obs[i], _ = e.reset(seed=seed + i)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        rewards = np.empty(n)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        final_obs = np.empty_like(self.obs)
        finished = self.step_into(actions, rewards, terminated, truncated, final_obs)
        return StepResult(self.obs.copy(), rewards, terminated, truncated, final_obs, finished)

    def step_into(
        self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, final_obs: np.ndarray
    ) -> list[tuple[float, int]]:
        """The allocation-free core of :meth:`step` (the rollout's hot loop): writes the (N,)
        rewards, terminated, truncated and (N, obs_dim) final observations into the given
        arrays (rows of a rollout buffer), updates ``self.obs`` in place and returns the
        (return, length) of the episodes that ended (usually an empty list)."""
        if self._clip is not None:
            actions = _clip(actions, *self._clip)
        finished = []
        returns, lengths = self.episode_returns, self.episode_lengths
        for i, env in enumerate(self.envs):
            obs, reward, term, trunc, _ = env.step(actions[i])
            rewards[i] = reward
            terminated[i] = term
            truncated[i] = trunc
            final_obs[i] = obs
            returns[i] += float(reward)
            lengths[i] += 1
            if term or trunc:
                finished.append((returns[i], lengths[i]))
                returns[i] = 0.0
                lengths[i] = 0
                obs, _ = env.reset()
            self.obs[i] = obs
        return finished

    def close(self) -> None:
        for e in self.envs:
            e.close()
