"""The actor-critic training loop (SMAC paper, Section 4.3), readable top to bottom.

Each iteration: roll out T transitions with the current policy, compute GAE advantages
(bootstrapping through time-limit truncation, not through termination), update the actor
once with the chosen rule, fit the critic by MSE with Adam, log one metrics row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from natpg import methods
from natpg.config import TrainConfig
from natpg.envs import VectorEnv
from natpg.methods.base import PolicyBatch
from natpg.policies import Agent, NumpyPolicy
from natpg.rollout import Rollout, collect, gae
from natpg.runlog import RunLog

__all__ = ["TrainResult", "train", "final_return"]


@dataclass
class TrainResult:
    summary: dict[str, Any]
    agent: Agent
    config: TrainConfig
    run_dir: Path | None
    metrics: list[dict[str, Any]] = field(repr=False, default_factory=list)

    @property
    def policy(self):
        return self.agent.actor


def final_return(episodes: list[tuple[int, float, int]], steps: int, window: int) -> tuple[float | None, str]:
    """Mean return of the episodes that ended in the last 10% of ``steps``; if none did,
    of the last ``window`` episodes. ``episodes`` holds (timestep at end, return, length)."""
    late = [ret for end, ret, _ in episodes if end > 0.9 * steps]
    if late:
        return float(np.mean(late)), "episodes ending in the last 10% of steps"
    if episodes:
        return float(np.mean([ret for _, ret, _ in episodes[-window:]])), f"last {window} episodes (none ended in the last 10%)"
    return None, "no episode finished"


def _to_batch(agent: Agent, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten (T, N, ...) time-major arrays to (T·N, ...) tensors of policy inputs."""
    obs_dim = rollout.obs.shape[-1]
    with torch.no_grad():
        x = agent.policy_input(torch.from_numpy(rollout.obs.reshape(-1, obs_dim)))
        next_x = agent.policy_input(torch.from_numpy(rollout.next_obs.reshape(-1, obs_dim)))
    actions = torch.from_numpy(rollout.actions.reshape(-1, *rollout.actions.shape[2:]))
    return x, next_x, actions


def _fit_critic(agent: Agent, optimizer: torch.optim.Optimizer, x: torch.Tensor, returns: torch.Tensor, steps: int) -> float:
    for _ in range(steps):
        loss = torch.mean((agent.critic(x) - returns) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def train(config: TrainConfig, run_dir: str | Path | None = None, progress: bool = False) -> TrainResult:
    """Train ``config.method`` on ``config.env_id``; write the run directory if given."""
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    env = VectorEnv(config.env_id, config.num_envs, config.seed, config.max_episode_steps)
    agent = Agent(env.spec.obs_dim, env.spec.action_space, config.hidden, config.activation, config.normalize_obs)
    rule = methods.make(config.method, agent.actor, **config.method_kwargs)
    rule.exact_cosine, rule.exact_damping = config.exact_cosine, config.exact_damping
    critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=config.critic_lr)

    log = RunLog(run_dir, tensorboard=config.tensorboard)
    log.write_config(config.to_dict())
    log.open_metrics()

    steps_per_env = config.rollout_steps // config.num_envs
    num_updates = config.total_steps // config.rollout_steps
    timesteps = 0
    episodes: list[tuple[int, float, int]] = []  # (timestep at episode end, return, length)
    next_checkpoint = config.checkpoint_every
    start = time.perf_counter()
    bar = tqdm(total=num_updates * config.rollout_steps, unit="step", disable=not progress, dynamic_ncols=True)

    def checkpoint() -> None:
        log.save_checkpoint(
            {
                "agent": agent.state_dict(),
                "rule": rule.state_dict(),
                "critic_optimizer": critic_optimizer.state_dict(),
                "timesteps": timesteps,
                "episodes": episodes,
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": rng.bit_generator.state,
                "config": config.to_dict(),
            }
        )

    try:
        for update in range(num_updates):
            # 1. Roll out T transitions with a frozen numpy copy of the policy.
            rollout = collect(env, NumpyPolicy(agent), steps_per_env, rng)
            for t, ret, length in rollout.finished:
                episodes.append((timesteps + (t + 1) * config.num_envs, ret, length))
            timesteps += config.rollout_steps
            update_start = time.perf_counter()

            # 2. Advantages by GAE; value targets R = A + V.
            x, next_x, actions = _to_batch(agent, rollout)
            with torch.no_grad():
                values = agent.critic(x).numpy().reshape(rollout.rewards.shape)
                next_values = agent.critic(next_x).numpy().reshape(rollout.rewards.shape)
            advantages = gae(rollout.rewards, values, next_values, rollout.terminated, rollout.truncated, config.gamma, config.gae_lambda)
            returns = torch.as_tensor((advantages + values).reshape(-1), dtype=torch.float32)
            actor_advantages = torch.as_tensor(advantages.reshape(-1), dtype=torch.float32)
            if config.normalize_advantages:
                actor_advantages = (actor_advantages - actor_advantages.mean()) / (actor_advantages.std() + 1e-8)

            # 3. One actor update by the chosen rule; 4. critic regression.
            info = rule.update(PolicyBatch(x, actions, actor_advantages))
            critic_loss = _fit_critic(agent, critic_optimizer, x, returns, config.critic_steps)
            # Normaliser statistics change only between updates, so every batch is on-policy.
            agent.obs_norm.update(rollout.obs)

            now = time.perf_counter()
            recent = episodes[-config.return_window :]
            row = {
                "timesteps": timesteps,
                "wall_time": now - start,
                "update_time": now - update_start,
                "steps_per_second": timesteps / (now - start),
                "episode_return_mean": float(np.mean([r for _, r, _ in recent])) if recent else math.nan,
                "episode_length_mean": float(np.mean([n for _, _, n in recent])) if recent else math.nan,
                "episodes": len(episodes),
                "critic_loss": critic_loss,
                **info,
            }
            log.log(row)
            bar.update(config.rollout_steps)
            bar.set_postfix(ret=f"{row['episode_return_mean']:.1f}", sps=f"{row['steps_per_second']:.0f}", refresh=False)
            if timesteps >= next_checkpoint:
                checkpoint()
                next_checkpoint += config.checkpoint_every
    finally:
        bar.close()
        env.close()

    wall = time.perf_counter() - start
    value, basis = final_return(episodes, timesteps, config.return_window)
    summary = {
        "env_id": config.env_id,
        "method": config.method,
        "seed": config.seed,
        "final_return": value,
        "final_return_basis": basis,
        "steps": timesteps,
        "episodes": len(episodes),
        "wall_time": wall,
        "steps_per_second": timesteps / wall if wall > 0 else math.nan,
        "update_time_mean": float(np.mean([r["update_time"] for r in log.rows])) if log.rows else math.nan,
    }
    checkpoint()
    log.write_summary(summary)
    log.close()
    return TrainResult(summary, agent, config, log.run_dir, log.rows)
