"""Synchronous vectorised stepping: N environments in lock-step with same-step autoreset.

Robustness (docs/robustness.md): what happens to a NaN/inf observation or reward is decided
by :class:`NonFinitePolicy` (an :class:`EnvironmentFault` naming the env and the step, or —
with ``skip_nonfinite`` — the transition is dropped and counted); the state of every
environment can be captured for an exact resume (:meth:`VectorEnv.get_state`, implemented in
:mod:`natpg.env_state`). The environments themselves are made and checked by :mod:`natpg.envs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from natpg import env_state
from natpg._messages import setting_value
from natpg.envs import EnvSpec, env_from_factory, make_env

__all__ = ["VectorEnv", "StepResult", "NonFinitePolicy", "EnvironmentFault"]

try:  # the clip ufunc itself: np.clip's Python wrapper layers cost ~1.5 µs a call
    from numpy._core.umath import clip as _clip
except ImportError:  # pragma: no cover - other numpy layouts
    _clip = np.clip


class EnvironmentFault(RuntimeError):
    """An environment returned something natpg cannot train on (a NaN or inf observation or
    reward); the message names the env, its copy and the step."""


@dataclass
class StepResult:
    next_obs: np.ndarray  # (N, obs_dim): observation to act on next (after any reset)
    rewards: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    final_obs: np.ndarray  # (N, obs_dim): the last observation of an episode that ended, else next_obs
    finished: list[tuple[float, int]] = field(default_factory=list)  # (return, length) of ended episodes


class NonFinitePolicy:
    """What happens to a NaN or inf observation or reward — decided here and nowhere else.

    By default it is an :class:`EnvironmentFault` naming the env, its copy and the step. With
    ``skip`` (``skip_nonfinite``) every step is screened instead: a bad transition becomes the
    time-limit end of its episode (reward 0 if the reward was bad, the last finite
    observation as the final one, the episode not reported), a bad first observation is
    reset again (up to :attr:`RESET_TRIES` times), and each is counted in ``dropped``.
    """

    RESET_TRIES = 10

    def __init__(self, env_id: str, num_envs: int, skip: bool):
        self.env_id, self.num_envs, self.skip = env_id, num_envs, skip
        self.dropped = 0  # transitions and resets dropped by skip

    def fault(self, i: int, what: str, where: str = "") -> EnvironmentFault:
        advice = "" if self.skip else f"; pass {setting_value('skip_nonfinite', True)} to drop such transitions and continue"
        return EnvironmentFault(f"env {self.env_id!r} (copy {i} of {self.num_envs}) returned {what}{where}{advice}")

    @staticmethod
    def _what(reward: float, obs: np.ndarray) -> str:
        if not math.isfinite(reward):
            return f"a non-finite reward {float(reward)!r}"
        return f"a non-finite observation {_show(obs)}"

    @staticmethod
    def _what_reset(obs: np.ndarray) -> str:
        return f"a non-finite observation from reset(): {_show(obs)}"

    def check_rollout(self, obs: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, first_step: int) -> None:
        """Raise for the first NaN/inf (in environment-step order) in a rollout's time-major
        (T, N, ...) arrays; ``first_step`` is the number of transitions before the rollout.
        One vectorised test when all is finite (the default mode checks whole rollouts)."""
        if np.isfinite(rewards).all() and np.isfinite(next_obs).all() and np.isfinite(obs).all():
            return
        n = self.num_envs
        step_bad = ~np.isfinite(rewards) | ~np.isfinite(next_obs).all(-1)
        reset_bad = ~np.isfinite(obs).all(-1)
        t_step = int(step_bad.any(1).argmax()) if step_bad.any() else None
        t_reset = int(reset_bad.any(1).argmax()) if reset_bad.any() else None
        if t_step is not None and (t_reset is None or t_step < t_reset):
            i = int(step_bad[t_step].argmax())
            what = self._what(rewards[t_step, i], next_obs[t_step, i])
            raise self.fault(i, what, f" at environment step {first_step + t_step * n + i + 1}")
        i = int(reset_bad[t_reset].argmax())
        raise self.fault(i, self._what_reset(obs[t_reset, i]), f" after environment step {first_step + t_reset * n}")

    def reset(self, env: gym.Env, i: int, seed: int | None) -> np.ndarray:
        """``env.reset(seed)``'s observation; a non-finite one is a fault, or with ``skip``
        a reason to reset again (unseeded)."""
        for _ in range(self.RESET_TRIES):
            obs, _ = env.reset(seed=seed)
            if np.isfinite(obs).all():
                return obs
            if not self.skip:
                break
            self.dropped += 1
            seed = None
        raise self.fault(i, self._what_reset(obs))

    def screen(
        self, vec: VectorEnv, prev, rewards, terminated, truncated, final_obs, finished, step: int
    ) -> list[tuple[float, int]]:
        """Check one step's values written by :meth:`VectorEnv.step_into` (``prev``: the
        observations acted on): raise on NaN/inf, or with ``skip`` drop and count the bad
        transitions. Returns the finished episodes that are kept."""
        if np.isfinite(rewards).all() and np.isfinite(final_obs).all() and np.isfinite(vec.obs).all():
            return finished
        ended = [i for i in range(self.num_envs) if terminated[i] or truncated[i]]
        by_env = dict(zip(ended, finished))
        for i in range(self.num_envs):
            step_bad = not math.isfinite(rewards[i]) or not np.isfinite(final_obs[i]).all()
            reset_bad = i in by_env and not np.isfinite(vec.obs[i]).all()
            if not (step_bad or reset_bad):
                continue
            if not self.skip:
                what = self._what(rewards[i], final_obs[i]) if step_bad else self._what_reset(vec.obs[i])
                raise self.fault(i, what, f" at step {step}")
            if step_bad:
                # Drop the transition: it becomes the time-limit end of its episode, with reward
                # 0 if the reward was bad and the last finite observation as the final one
                # (the critic bootstraps from it), and the episode is not reported.
                self.dropped += 1
                if not math.isfinite(rewards[i]):
                    rewards[i] = 0.0
                terminated[i], truncated[i] = False, True
                final_obs[i] = prev[i]
                by_env.pop(i, None)
                vec.episode_returns[i], vec.episode_lengths[i] = 0.0, 0
                if i not in ended:
                    vec.obs[i] = vec.reset_copy(i)
            if not np.isfinite(vec.obs[i]).all():
                self.dropped += 1
                vec.obs[i] = vec.reset_copy(i)
        return [by_env[i] for i in ended if i in by_env]


class VectorEnv:
    """N Gymnasium environments stepped in lock-step with same-step autoreset.

    When an episode ends, ``final_obs`` carries its last observation (needed to bootstrap
    a time-limit truncation) and ``next_obs`` is already the first observation of the next
    episode. Actions are clipped to Box bounds here, at the environment only. NaN/inf
    values go to :attr:`nonfinite` (a :class:`NonFinitePolicy`).
    """

    def __init__(
        self, env_id: str, num_envs: int, seed: int, max_episode_steps: int | None = None, skip_nonfinite: bool = False,
        env_fn=None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id = env_id
        self.nonfinite = NonFinitePolicy(env_id, num_envs, skip_nonfinite)
        self._step_calls = 0  # of step() (evaluation), for fault messages
        if env_fn is not None:  # natpg.train(env=<instance or factory>); env_id is its label
            self.envs = [env_from_factory(env_fn, env_id, max_episode_steps) for _ in range(num_envs)]
        else:
            self.envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
        env = self.envs[0]
        from natpg.policies import is_image_space

        obs_space = env.observation_space
        image = is_image_space(obs_space)
        self.spec = EnvSpec(int(np.prod(obs_space.shape)), env.action_space, tuple(int(d) for d in obs_space.shape),
                            obs_space.dtype.type if image else np.float32)
        space = env.action_space
        # Bounds tiled to the (N, act_dim) action batch: same-shape ufuncs skip numpy's
        # broadcasting set-up, about half the cost of clipping against (act_dim,) bounds.
        self._clip = (
            (np.tile(space.low, (num_envs, 1)), np.tile(space.high, (num_envs, 1))) if isinstance(space, spaces.Box) else None
        )
        self.seed = seed
        self.obs = np.zeros((num_envs, *self.spec.obs_shape), dtype=self.spec.obs_dtype)
        # Python lists: per-step scalar updates on them cost ~20 ns against ~0.5 µs for numpy.
        self.episode_returns = [0.0] * num_envs
        self.episode_lengths = [0] * num_envs
        for i, e in enumerate(self.envs):
            e.action_space.seed(seed + i)
            self.obs[i] = self.reset_copy(i, seed=seed + i)

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    @property
    def skip_nonfinite(self) -> bool:
        return self.nonfinite.skip

    @property
    def nonfinite_transitions(self) -> int:
        """Transitions (and resets) dropped by ``skip_nonfinite`` so far."""
        return self.nonfinite.dropped

    @nonfinite_transitions.setter
    def nonfinite_transitions(self, value: int) -> None:
        self.nonfinite.dropped = value

    def reset_copy(self, i: int, seed: int | None = None) -> np.ndarray:
        """Reset env copy ``i`` and return its first observation (see :meth:`NonFinitePolicy.reset`)."""
        return self.nonfinite.reset(self.envs[i], i, seed)

    def step(self, actions: np.ndarray) -> StepResult:
        n = self.num_envs
        rewards = np.empty(n)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        final_obs = np.empty_like(self.obs)
        finished = self.step_into(actions, rewards, terminated, truncated, final_obs)
        self._step_calls += 1
        if not self.nonfinite.skip:  # (step_into screens itself in skip mode)
            self.nonfinite.screen(self, None, rewards, terminated, truncated, final_obs, finished, self._step_calls)
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
        prev = self.obs.copy() if self.nonfinite.skip else None
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
        if prev is not None:  # skip_nonfinite: screen every step (the default checks whole rollouts)
            finished = self.nonfinite.screen(self, prev, rewards, terminated, truncated, final_obs, finished, self._step_calls)
        return finished

    def check_rollout(self, obs: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, first_step: int) -> None:
        """Raise :class:`EnvironmentFault` for the first NaN/inf of a rollout (see
        :meth:`NonFinitePolicy.check_rollout`)."""
        self.nonfinite.check_rollout(obs, rewards, next_obs, first_step)

    # -- state for exact resume (natpg.env_state) ----------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue stepping exactly from here (:func:`natpg.env_state.capture`)."""
        return env_state.capture(self)

    def set_state(self, state: dict[str, Any], salt: int = 0) -> str:
        """Restore :meth:`get_state`; returns how (:func:`natpg.env_state.restore`)."""
        return env_state.restore(self, state, salt)

    def close(self) -> None:
        for e in self.envs:
            e.close()


def _show(x: np.ndarray) -> str:
    """``[0.1, nan, ...]`` with the positions of the non-finite entries."""
    x = np.asarray(x)
    bad = np.flatnonzero(~np.isfinite(x))
    return f"{np.array2string(x, precision=4, threshold=8)} (non-finite at index {bad.tolist()[:8]})"
