"""The actor-critic training loop (SMAC paper, Section 4.3), readable top to bottom.

Each iteration: roll out T transitions with the current policy, compute GAE advantages
(bootstrapping through time-limit truncation, not through termination), update the actor
once with the chosen rule, fit the critic by MSE with Adam, log one metrics row.

What the loop carries between iterations, and what a checkpoint holds, is a
:class:`~natpg.train_state.TrainState`. Robustness (docs/robustness.md): an actor or critic
update that goes non-finite (or raises a :class:`~natpg.errors.NumericalError`) is not
applied and is counted; ``max_nonfinite_updates`` in a row stop the run with a checkpoint of
the last finite state. Checkpoints, taken at update boundaries, hold everything needed to
continue exactly; Ctrl-C or SIGTERM leaves the last update boundary as one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from natpg import methods
from natpg._messages import phrase, setting_value
from natpg.acting import rollout_policy
from natpg.config import TrainConfig, flag_name, validate
from natpg.critic_fit import fit_critic
from natpg.deploy import env_spaces, spaces_record
from natpg.errors import NumericalError
from natpg.methods.base import PolicyBatch
from natpg.policies import Agent
from natpg.rollout import Rollout, collect, gae
from natpg.runlog import RunLog
from natpg.train_state import Components, TrainState, anneal_factor, clone_state

__all__ = ["TrainResult", "TrainingStopped", "Terminated", "train", "final_return"]


@dataclass
class TrainResult:
    summary: dict[str, Any]
    agent: Agent
    config: TrainConfig
    run_dir: Path | None
    metrics: list[dict[str, Any]] = field(repr=False, default_factory=list)
    #: (observation space, action space) of the environment, as it declares them.
    spaces: tuple | None = field(repr=False, default=None)

    @property
    def policy(self):
        """The trained policy, ready to act: ``result.policy.predict(obs)`` (a
        :class:`natpg.deploy.Policy`, with the saved observation normalisation)."""
        from natpg.deploy import Policy

        if self.spaces is None:
            raise ValueError("this TrainResult has no spaces: load the policy with natpg.load(run_dir)")
        return Policy(self.agent.actor, *self.spaces, obs_norm=self.agent.obs_norm)


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
    """Flatten (T, N, ...) time-major arrays to (T·N, ...) tensors of policy inputs, on the
    agent's device (raw observations move there before normalisation: uint8 images stay small)."""
    obs_shape, device = rollout.obs.shape[2:], agent.device
    with torch.no_grad():
        x = agent.policy_input(torch.from_numpy(rollout.obs.reshape(-1, *obs_shape)).to(device))
        next_x = agent.policy_input(torch.from_numpy(rollout.next_obs.reshape(-1, *obs_shape)).to(device))
    actions = torch.from_numpy(rollout.actions.reshape(-1, *rollout.actions.shape[2:])).to(device)
    return x, next_x, actions


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during training (exit status 143); handled like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """Within the block, SIGTERM raises :class:`Terminated` (in the main thread only, where
    Python delivers signals), so that the loop can leave a resumable checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class TrainingStopped(RuntimeError):
    """The run stopped before its last step: ``max_nonfinite_updates`` consecutive updates
    were rejected as non-finite. The run directory holds a checkpoint of the last finite
    parameters and a summary with ``status`` ``stopped_nonfinite``."""

    def __init__(self, message: str, summary: dict[str, Any], run_dir: Path | None):
        super().__init__(message)
        self.summary = summary
        self.run_dir = run_dir


def _notice(message: str) -> None:
    print(f"natpg: {message}", file=sys.stderr, flush=True)


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


#: What a rule raises when its numbers went bad (as opposed to a bug, which propagates).
NUMERICAL_FAILURES = (NumericalError, torch.linalg.LinAlgError)


class _Snapshot:
    """Parameters and optimiser state before an update, to put back if it goes non-finite."""

    def __init__(self, module: torch.nn.Module, stateful: Any):
        self.module, self.stateful = module, stateful
        self.params = clone_state(module.state_dict())
        self.state = clone_state(stateful.state_dict())

    def restore(self) -> None:
        self.module.load_state_dict(self.params)
        self.stateful.load_state_dict(copy.deepcopy(self.state))


def _guarded_actor_update(rule: methods.UpdateRule, actor: torch.nn.Module, batch: PolicyBatch) -> tuple[dict[str, float], str | None]:
    """``rule.update(batch)``, never applied if it makes a parameter or a diagnostic
    non-finite (or fails numerically): then the parameters and the rule's state are put back
    and the reason is returned."""
    snapshot = _Snapshot(actor, rule)
    try:
        info = rule.update(batch)
    except NUMERICAL_FAILURES as exc:
        if _all_finite(actor.parameters()):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"actor update failed numerically ({type(exc).__name__}: {first[:160]})"
        else:
            reason = "actor update made parameters non-finite"
        snapshot.restore()
        return {}, reason
    bad = [k for k, v in info.items() if isinstance(v, float) and not math.isfinite(v)]
    if not _all_finite(actor.parameters()):
        reason = "actor update made parameters non-finite"
    elif bad:
        reason = f"actor update gave non-finite {', '.join(bad)}"
    else:
        return info, None
    snapshot.restore()
    return info, reason


def _guarded_critic_fit(
    agent: Agent, optimizer: torch.optim.Optimizer, x: torch.Tensor, returns: torch.Tensor, epochs: int,
    batch_size: int | None, generator: torch.Generator,
) -> tuple[float, str | None]:
    snapshot = _Snapshot(agent.critic, optimizer)
    if not bool(torch.isfinite(returns).all()):
        return math.nan, "critic targets are non-finite (critic left unchanged)"
    loss = fit_critic(agent.critic, optimizer, x, returns, epochs, batch_size, generator)
    if math.isfinite(loss) and _all_finite(agent.critic.parameters()):
        return loss, None
    snapshot.restore()
    return loss, "critic update went non-finite"


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    progress: bool = False,
    *,
    resume: bool = False,
    overwrite: bool = False,
    components: Components | None = None,
) -> TrainResult:
    """Train ``config.method`` on ``config.env_id``; write the run directory if given.
    ``components``: an environment factory, actor or critic given as Python objects.

    The configuration is validated first (ValueError before any environment exists). An
    existing run directory is an error unless ``overwrite`` (replace it) or ``resume``
    (continue from its checkpoint.pt; a directory with no checkpoint yet starts afresh).
    A resumed run whose environment state could be captured continues exactly: its metrics
    and summary equal those of an uninterrupted run with the same seed. Raises
    :class:`TrainingStopped` after ``max_nonfinite_updates`` consecutive non-finite updates.
    """
    validate(config)  # before anything is created or written
    if resume and overwrite:
        raise ValueError(f"{setting_value('resume', True)} and {setting_value('overwrite', True)} exclude each other")
    if resume and run_dir is None:
        raise ValueError(f"{setting_value('resume', True)} needs a run directory ({phrase('--resume DIR', 'out=DIR')})")
    log = RunLog(run_dir, tensorboard=config.tensorboard, mode="resume" if resume else "overwrite" if overwrite else "new")
    try:
        checkpoint = log.load_checkpoint() if resume else None
        if checkpoint is not None:
            TrainState.check_checkpoint(checkpoint, config, log.run_dir)
        elif resume and log.has_run_files():
            _notice(f"{log.run_dir} has no checkpoint yet: starting it from step 0")
            log.clear()
        with _sigterm_interrupts():
            return _train(config, log, checkpoint, progress, components)
    finally:
        log.close()


def _train(config: TrainConfig, log: RunLog, checkpoint: dict[str, Any] | None, progress: bool,
           components: Components | None = None) -> TrainResult:
    state = TrainState.create(config, components)
    T, N = config.rollout_steps, config.num_envs
    if checkpoint is None and state.num_updates * T != config.total_steps:
        _notice(f"{setting_value('total_steps', config.total_steps)} is not a multiple of {setting_value('rollout_steps', T)}; "
                f"training {state.num_updates * T} steps ({state.num_updates} whole rollouts)")
    if checkpoint is not None:  # resume at the update boundary where the checkpoint was taken
        how = state.load_checkpoint(checkpoint)
        log.event("resume", timesteps=state.timesteps, environment=how)
        _notice(f"resuming {log.run_dir} at step {state.timesteps} of {state.num_updates * T}; environment {how}")
    log.write_config(config.to_dict())
    log.write_spaces(spaces_record(*env_spaces(state.env)))
    log.open_metrics(state.rows, purge_step=state.timesteps + 1 if checkpoint is not None else None)
    log.remove_summary()  # present again only once the run has ended

    start = time.perf_counter() - state.elapsed
    bar = tqdm(total=state.num_updates * T, initial=state.timesteps, unit="step", disable=not progress, dynamic_ncols=True)
    boundary = (state.timesteps, state.to_checkpoint(time.perf_counter() - start))  # written if the run is interrupted
    max_kl = getattr(state.rule, "max_kl", None)  # anneal_kl: the radius of the first update
    try:
        for k in range(state.timesteps // T, state.num_updates):
            if config.anneal_kl and max_kl is not None:
                state.rule.max_kl = max_kl * anneal_factor(k, state.num_updates)
            # 1. Roll out T transitions with a frozen numpy copy of natpg's MLP policy (any
            # other actor acts through torch, without gradients).
            rollout = collect(state.env, rollout_policy(state.agent, state.env.spec.action_space), T // N, state.rng)
            state.env.check_rollout(rollout.obs, rollout.rewards, rollout.next_obs, state.timesteps)  # NaN/inf: a clear error
            state.episodes += [(state.timesteps + (t + 1) * N, ret, length) for t, ret, length in rollout.finished]
            state.timesteps += T
            state.counts["nonfinite_transitions"] = state.env.nonfinite_transitions
            update_start = time.perf_counter()

            # 2. Advantages by GAE (on scaled rewards with normalize_reward); value targets R = A + V.
            x, next_x, actions = _to_batch(state.agent, rollout)
            with torch.no_grad():
                values = state.agent.critic(x).cpu().numpy().reshape(rollout.rewards.shape)
                next_values = state.agent.critic(next_x).cpu().numpy().reshape(rollout.rewards.shape)
            rewards = rollout.rewards
            if state.reward_scaler is not None:
                rewards = state.reward_scaler(rollout.rewards, rollout.terminated, rollout.truncated)
            advantages = gae(rewards, values, next_values, rollout.terminated, rollout.truncated, config.gamma, config.gae_lambda)
            returns = torch.as_tensor((advantages + values).reshape(-1), dtype=torch.float32, device=x.device)
            actor_advantages = torch.as_tensor(advantages.reshape(-1), dtype=torch.float32, device=x.device)
            if config.normalize_advantages:
                actor_advantages = (actor_advantages - actor_advantages.mean()) / (actor_advantages.std() + 1e-8)

            # 3. One actor update by the chosen rule; 4. critic regression. An update that
            # goes non-finite is not applied (parameters stay at their last finite values).
            info, actor_fault = _guarded_actor_update(state.rule, state.agent.actor, PolicyBatch(x, actions, actor_advantages))
            critic_loss, critic_fault = _guarded_critic_fit(
                state.agent, state.critic_optimizer, x, returns, config.critic_steps, config.critic_batch_size,
                state.critic_generator,
            )
            with warnings.catch_warnings():
                # A trust-region step, or a rejected non-finite update, moves the actor without its
                # optimizer's step(), which torch reports as a misordered schedule; the order is right.
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
                for scheduler in state.schedulers:
                    scheduler.step()
            faults = state.record_faults(actor_fault, critic_fault)
            # Normaliser statistics change only between updates, so every batch is on-policy.
            state.agent.obs_norm.update(rollout.obs)

            now = time.perf_counter()
            row = _metrics_row(state, now - start, now - update_start, critic_loss, info)
            state.rows.append(row)
            log.log(row)
            bar.update(T)
            bar.set_postfix(ret=f"{row['episode_return_mean']:.1f}", sps=f"{row['steps_per_second']:.0f}", refresh=False)
            if faults:
                log.event("nonfinite_update", timesteps=state.timesteps, reasons=faults, consecutive=state.consecutive_bad)
            if state.consecutive_bad >= config.max_nonfinite_updates:
                _stop(state, log, faults, start)
            if state.timesteps >= state.next_checkpoint:
                state.next_checkpoint += config.checkpoint_every
                log.save_checkpoint(state.to_checkpoint(time.perf_counter() - start))
            boundary = (state.timesteps, state.to_checkpoint(time.perf_counter() - start))
    except KeyboardInterrupt as exc:
        _leave_resumable_checkpoint(log, *boundary, "SIGTERM" if isinstance(exc, Terminated) else "SIGINT")
        raise
    finally:
        bar.close()
        state.env.close()

    summary = _summary(state, "completed", time.perf_counter() - start)
    log.save_checkpoint(state.to_checkpoint(time.perf_counter() - start))
    log.write_summary(summary)
    return TrainResult(summary, state.agent, config, log.run_dir, log.rows, spaces=env_spaces(state.env))


def _metrics_row(
    state: TrainState, wall: float, update_time: float, critic_loss: float, info: dict[str, float]
) -> dict[str, Any]:
    """One row of metrics.csv (wall_time, update_time and steps_per_second depend on the machine)."""
    recent = state.episodes[-state.config.return_window :]
    return {
        "timesteps": state.timesteps,
        "wall_time": wall,
        "update_time": update_time,
        "steps_per_second": state.timesteps / wall,
        "episode_return_mean": float(np.mean([r for _, r, _ in recent])) if recent else math.nan,
        "episode_length_mean": float(np.mean([n for _, _, n in recent])) if recent else math.nan,
        "episodes": len(state.episodes),
        "critic_loss": critic_loss,
        **state.counts,
        **info,
        **({"max_kl": state.rule.max_kl} if state.config.anneal_kl else {}),  # the radius of this update
    }


def _summary(state: TrainState, status: str, wall: float, message: str | None = None) -> dict[str, Any]:
    """summary.json: how the run ended and its final return (:func:`final_return`)."""
    config = state.config
    value, basis = final_return(state.episodes, state.timesteps, config.return_window)
    summary = {
        "env_id": config.env_id,
        "method": config.method,
        "seed": config.seed,
        "status": status,
        "final_return": value,
        "final_return_basis": basis,
        "steps": state.timesteps,
        "episodes": len(state.episodes),
        "wall_time": wall,
        "steps_per_second": state.timesteps / wall if wall > 0 else math.nan,
        "update_time_mean": float(np.mean([r["update_time"] for r in state.rows])) if state.rows else math.nan,
        **state.counts,
    }
    if message:
        summary["message"] = message
    return summary


def _stop(state: TrainState, log: RunLog, faults: list[str], start: float) -> None:
    """``max_nonfinite_updates`` in a row: checkpoint the last finite state, write the summary
    and raise :class:`TrainingStopped` with advice."""
    config = state.config
    where = f"checkpoint and summary are in {log.run_dir}" if log.run_dir is not None else "no run directory was given"
    message = (
        f"stopped at step {state.timesteps}: {state.consecutive_bad} consecutive non-finite updates "
        f"({setting_value('max_nonfinite_updates', config.max_nonfinite_updates)}; last: {'; '.join(faults)}). "
        f"The parameters are the last finite ones; {where}. "
        f"Try a smaller {flag_name('lr')} or {flag_name('critic_lr')}, a larger {flag_name('damping')}, "
        f"{setting_value('normalize_advantages', True)} or {setting_value('normalize_obs', True)}"
    )
    log.save_checkpoint(state.to_checkpoint(time.perf_counter() - start))
    summary = _summary(state, "stopped_nonfinite", time.perf_counter() - start, message)
    log.write_summary(summary)
    log.event("stopped", timesteps=state.timesteps, message=message)
    raise TrainingStopped(message, summary, log.run_dir)


def _leave_resumable_checkpoint(log: RunLog, timesteps: int, checkpoint: dict[str, Any], signal_name: str) -> None:
    """Ctrl-C / SIGTERM: write the last update boundary, so that ``--resume`` continues exactly."""
    if log.run_dir is None:
        return
    log.save_checkpoint(checkpoint)
    log.event("interrupted", timesteps=timesteps, signal=signal_name)
    _notice(f"interrupted: checkpoint at step {timesteps} written to {log.run_dir}; "
            f"continue with natpg train --resume {log.run_dir}")
