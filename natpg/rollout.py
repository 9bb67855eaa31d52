"""Rollout collection from a :class:`~natpg.envs.VectorEnv` and GAE with truncation bootstrap."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from natpg.acting import NumpyPolicy, TorchPolicy
from natpg.vector_env import VectorEnv

__all__ = ["Rollout", "RewardScaler", "collect", "gae"]


@dataclass
class Rollout:
    """``steps`` × ``num_envs`` transitions, time-major. Observations are raw (unnormalised)."""

    obs: np.ndarray  # (T, N, *obs_shape): float32 (T, N, obs_dim), or an image's uint8 / bool
    actions: np.ndarray  # (T, N) or (T, N, act_dim), unclipped samples of the policy
    rewards: np.ndarray  # (T, N)
    terminated: np.ndarray  # (T, N) bool: episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray  # (T, N) bool: episode cut by the time limit (bootstrap from next_obs)
    next_obs: np.ndarray  # like obs: the observation that followed each step in its episode
    finished: list[tuple[int, float, int]] = field(default_factory=list)  # (step index, return, length)

    @property
    def num_transitions(self) -> int:
        return self.rewards.size


def collect(env: VectorEnv, policy: NumpyPolicy | TorchPolicy, steps: int, rng: np.random.Generator) -> Rollout:
    """Step ``env`` for ``steps`` rounds (``steps × num_envs`` transitions) with ``policy``.

    The hot loop allocates nothing per step: the sampling noise is drawn once
    (:meth:`NumpyPolicy.draw_noise`), and the policy and the environments write straight into
    rows of the preallocated rollout arrays.
    """
    n = env.num_envs
    obs = np.empty((steps, n, *env.spec.obs_shape), dtype=env.spec.obs_dtype)
    next_obs = np.empty_like(obs)
    rewards = np.empty((steps, n), dtype=np.float64)
    terminated = np.empty((steps, n), dtype=bool)
    truncated = np.empty((steps, n), dtype=bool)
    actions = policy.action_array(steps, n)
    noise = policy.draw_noise(rng, steps, n)
    finished = []
    act, step_into, current = policy.act, env.step_into, env.obs
    for t, (o, z, a, r, term, trunc, final) in enumerate(zip(obs, noise, actions, rewards, terminated, truncated, next_obs)):
        o[...] = current
        ended = step_into(act(o, z, a), r, term, trunc, final)
        if ended:
            finished.extend((t, ret, length) for ret, length in ended)
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
    decay = gamma * gae_lambda
    steps, n = deltas.shape
    if n > 32:  # many envs: one numpy step per time index
        advantages = np.zeros_like(deltas)
        running = np.zeros(deltas.shape[1:])
        for t in range(steps - 1, -1, -1):
            running = deltas[t] + decay * np.where(done[t], 0.0, running)
            advantages[t] = running
        return advantages
    # Few envs (the usual case): the same recursion on Python floats, env by env — ~20x
    # cheaper than numpy calls on length-n rows, and the same IEEE double operations.
    columns = []
    for d, ends in zip(deltas.T.tolist(), done.T.tolist()):
        running = 0.0
        column = [0.0] * steps
        for t in range(steps - 1, -1, -1):
            running = d[t] + decay * (0.0 if ends[t] else running)
            column[t] = running
        columns.append(column)
    return np.array(columns, dtype=deltas.dtype).T.copy()


class RewardScaler:
    """Rewards divided by the running standard deviation of the discounted return, clipped to
    ±``clip`` (the reward half of SB3's ``VecNormalize(norm_reward=True)`` and of Gymnasium's
    ``NormalizeReward``). Training only: episode returns are reported unscaled.

    Not the Gymnasium wrapper: that one scales inside the env, so the reported episode returns
    would be scaled too, and its state would escape natpg's exact-resume capture of the envs.
    Here the per-env discounted returns run through each rollout (reset where an episode
    ends), the running variance takes in all of the rollout's returns, and the whole rollout is
    then scaled by one std, so every critic target of an update is on the same scale.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.gamma, self.clip, self.eps = gamma, clip, eps
        self.returns = np.zeros(num_envs)
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def __call__(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        """Scaled (T, N) rewards; updates the running statistics with this rollout."""
        discounted = np.empty_like(rewards)
        running = self.returns
        for t in range(rewards.shape[0]):
            running = running * self.gamma + rewards[t]
            discounted[t] = running
            running = np.where(terminated[t] | truncated[t], 0.0, running)
        self.returns = running
        batch_mean, batch_var, n = float(discounted.mean()), float(discounted.var()), discounted.size
        delta, total = batch_mean - self.mean, self.count + n
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total
        return np.clip(rewards / np.sqrt(self.var + self.eps), -self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"returns": self.returns.copy(), "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.returns = np.array(state["returns"], dtype=np.float64)
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]
