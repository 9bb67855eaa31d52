"""Rollout collection from a :class:`~natpg.envs.VectorEnv` and GAE with truncation bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from natpg.envs import VectorEnv
from natpg.policies import NumpyPolicy

__all__ = ["Rollout", "collect", "gae"]


@dataclass
class Rollout:
    """``steps`` × ``num_envs`` transitions, time-major. Observations are raw (unnormalised)."""

    obs: np.ndarray  # (T, N, obs_dim)
    actions: np.ndarray  # (T, N) or (T, N, act_dim), unclipped samples of the policy
    rewards: np.ndarray  # (T, N)
    terminated: np.ndarray  # (T, N) bool: episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray  # (T, N) bool: episode cut by the time limit (bootstrap from next_obs)
    next_obs: np.ndarray  # (T, N, obs_dim): the observation that followed each step in its episode
    finished: list[tuple[int, float, int]] = field(default_factory=list)  # (step index, return, length)

    @property
    def num_transitions(self) -> int:
        return self.rewards.size


def collect(env: VectorEnv, policy: NumpyPolicy, steps: int, rng: np.random.Generator) -> Rollout:
    """Step ``env`` for ``steps`` rounds (``steps × num_envs`` transitions) with ``policy``."""
    n, obs_dim = env.num_envs, env.spec.obs_dim
    obs = np.empty((steps, n, obs_dim), dtype=np.float32)
    next_obs = np.empty_like(obs)
    rewards = np.empty((steps, n), dtype=np.float64)
    terminated = np.empty((steps, n), dtype=bool)
    truncated = np.empty((steps, n), dtype=bool)
    actions = None
    finished = []
    for t in range(steps):
        obs[t] = env.obs
        action = policy.sample(env.obs, rng)
        if actions is None:
            actions = np.empty((steps, *action.shape), dtype=action.dtype)
        actions[t] = action
        result = env.step(action)
        rewards[t] = result.rewards
        terminated[t] = result.terminated
        truncated[t] = result.truncated
        next_obs[t] = result.final_obs
        finished.extend((t, ret, length) for ret, length in result.finished)
    return Rollout(obs, actions, rewards, terminated, truncated, next_obs, finished)


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """Generalised advantage estimation over time-major (T, N) arrays.

    ``next_values[t]`` is V of the observation that followed step t in the same episode
    (for a truncated step, the episode's final observation). Then

        δ_t = r_t + γ (1 − terminated_t) V_next,t − V_t
        A_t = δ_t + γ λ (1 − done_t) A_{t+1},   done = terminated ∨ truncated

    so a time-limit truncation bootstraps from V(final obs) but does not chain into the
    next episode, and a termination bootstraps from nothing. The last step of the rollout
    bootstraps from V(next_obs) and is the end of the chain.
    """
    done = terminated | truncated
    deltas = rewards + gamma * np.where(terminated, 0.0, next_values) - values
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * gae_lambda * np.where(done[t], 0.0, running)
        advantages[t] = running
    return advantages
