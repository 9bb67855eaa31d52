"""What the training loop carries from one update to the next, and what a checkpoint holds.

:class:`TrainState` is the one place that knows the contents of checkpoint.pt: it builds the
training objects from a :class:`~natpg.config.TrainConfig` (in a fixed order, so that a seed
gives one initial state), writes them with the loop's progress to a checkpoint dict
(:meth:`TrainState.to_checkpoint`) and reads one back (:meth:`TrainState.load_checkpoint`).
A checkpoint taken at an update boundary continues the run exactly: parameters, rule and
optimiser state, learning-rate schedules, reward scaler, every RNG, the environments' state,
the episodes, the metrics rows and the counters.

Checkpoint format 2 (:data:`CHECKPOINT_FORMAT`) is the dict natpg has written since exact
resume was added; ``schedulers`` and ``critic_rng`` came later and are optional on load.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from natpg import methods
from natpg._messages import setting_value
from natpg.config import RESUMABLE_FIELDS, TrainConfig, flag_name
from natpg.critic_fit import make_critic_optimizer
from natpg.policies import Agent
from natpg.rollout import RewardScaler
from natpg.vector_env import VectorEnv

__all__ = ["TrainState", "Components", "CHECKPOINT_FORMAT", "COUNTERS", "anneal_factor"]

#: The checkpoint layout written by :meth:`TrainState.to_checkpoint`; older ones are refused.
CHECKPOINT_FORMAT = 2

#: The cumulative fault counters of metrics.csv and summary.json (docs/robustness.md).
COUNTERS = ("nonfinite_actor_updates", "nonfinite_critic_updates", "nonfinite_transitions")


def clone_state(obj: Any, device: str | torch.device | None = None) -> Any:
    """A deep copy of a state dict: tensors cloned (onto ``device`` if given, else where they
    are), containers rebuilt. ~5x cheaper than copy.deepcopy (Tensor.__deepcopy__ per tensor),
    which cost ~0.5 ms an update."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone() if device is None else obj.detach().to(device, copy=True)
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((k, clone_state(v, device)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module's state_dict: versions, read-only in load_state_dict
            out._metadata = obj._metadata
        return out
    if type(obj) in (list, tuple):
        return type(obj)(clone_state(v, device) for v in obj)
    if obj is None or type(obj) in (int, float, str, bool):
        return obj
    return copy.deepcopy(obj)


def anneal_factor(k: int, num_updates: int) -> float:
    """The linear schedule of ``anneal_lr`` and ``anneal_kl``: 1 at the first update, towards 0 at the last."""
    return 1.0 - k / num_updates


@dataclass(frozen=True)
class Components:
    """What ``natpg.train`` was given as Python objects rather than by name: an environment
    factory (``config.env_id`` is then its label, ``<python>:Name``), and the actor and critic
    (modules, or factories ``f(observation_space, action_space)``). None: natpg's own. A
    resumed run is given the same again; the checkpoint holds their state_dicts."""

    env_fn: Callable[[], Any] | None = None
    actor: Any = None
    critic: Any = None


@dataclass(eq=False)
class TrainState:
    """The training objects and the loop's progress at an update boundary."""

    config: TrainConfig
    env: VectorEnv
    agent: Agent  # actor, critic, observation normaliser
    rule: methods.UpdateRule
    critic_optimizer: torch.optim.Optimizer
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]  # anneal_lr: the critic's, then the rule's
    reward_scaler: RewardScaler | None  # normalize_reward
    critic_generator: torch.Generator  # the critic's minibatch shuffles
    rng: np.random.Generator  # the rollouts' action sampling
    timesteps: int = 0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (timestep at episode end, return, length)
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.csv so far
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    consecutive_bad: int = 0  # iterations in a row with a rejected update
    next_checkpoint: int = 0  # the step at which the next periodic checkpoint is due
    elapsed: float = 0.0  # wall time spent before this process (a resumed run)

    @property
    def num_updates(self) -> int:
        """Whole rollouts only: a budget that is not a multiple of T is rounded up (as SB3 does)."""
        return -(-self.config.total_steps // self.config.rollout_steps)

    @classmethod
    def create(cls, config: TrainConfig, components: Components | None = None) -> TrainState:
        """Fresh training objects for ``config``, seeded by ``config.seed`` (a user's modules
        are taken as given: their initial weights are theirs)."""
        parts = components or Components()
        torch.set_num_threads(config.torch_threads)
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        env = VectorEnv(config.env_id, config.num_envs, config.seed, config.max_episode_steps, skip_nonfinite=config.skip_nonfinite,
                        env_fn=parts.env_fn)
        try:
            agent = Agent(env.spec.obs_dim, env.spec.action_space, config.hidden, config.activation, config.normalize_obs,
                          config.log_std_init, observation_space=env.envs[0].observation_space, actor=parts.actor,
                          critic=parts.critic)
            agent.to(config.device)  # the update runs there; the rollout acts through a CPU copy
        except BaseException:
            env.close()
            raise
        rule = methods.make(config.method, agent.actor, **config.method_kwargs)
        rule.exact_cosine, rule.exact_damping = config.exact_cosine, config.exact_damping
        critic_optimizer = make_critic_optimizer(agent.critic, config.critic_lr)
        reward_scaler = RewardScaler(config.num_envs, config.gamma) if config.normalize_reward else None
        critic_generator = torch.Generator().manual_seed(config.seed)
        if config.anneal_kl and getattr(rule, "max_kl", None) is None:
            env.close()
            raise ValueError(f"{setting_value('anneal_kl', True)} anneals a trust-region radius, and this {config.method} has "
                             f"none (give it {flag_name('max_kl')}, or use the default recipe)")
        state = cls(config, env, agent, rule, critic_optimizer, [], reward_scaler, critic_generator, rng,
                    next_checkpoint=config.checkpoint_every)
        if config.anneal_lr:
            # Linear annealing of the learning rates (the critic's, and the rule's optimizer
            # where it has one) from their initial value towards 0 at the last update.
            optimizers = [critic_optimizer] + [o for o in [getattr(rule, "optimizer", None)] if isinstance(o, torch.optim.Optimizer)]
            num_updates = state.num_updates
            state.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda k: anneal_factor(k, num_updates)) for o in optimizers]
        return state

    def record_faults(self, actor_fault: str | None, critic_fault: str | None) -> list[str]:
        """Count the rejected updates of one iteration; returns their reasons."""
        self.counts["nonfinite_actor_updates"] += actor_fault is not None
        self.counts["nonfinite_critic_updates"] += critic_fault is not None
        faults = [f for f in (actor_fault, critic_fault) if f]
        self.consecutive_bad = self.consecutive_bad + 1 if faults else 0
        return faults

    # -- the checkpoint dict -------------------------------------------------------------------
    def to_checkpoint(self, elapsed: float) -> dict[str, Any]:
        """Everything needed to continue exactly from this update boundary (copies, so that
        the dict stays valid while training goes on, every tensor on the CPU, so that it loads
        on any machine); ``elapsed``: the run's wall time."""
        device = self.agent.device
        # K-FAC samples actions on the update's device: on a GPU that draws from its RNG.
        cuda_rng = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
        return clone_state(
            {
                "format": CHECKPOINT_FORMAT,
                "agent": self.agent.state_dict(),
                "custom": dict(self.agent.custom),
                "rule": self.rule.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "schedulers": [s.state_dict() for s in self.schedulers],
                "reward_scaler": None if self.reward_scaler is None else self.reward_scaler.state_dict(),
                "critic_rng": self.critic_generator.get_state(),
                "timesteps": self.timesteps,
                "episodes": list(self.episodes),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": self.rng.bit_generator.state,
                "env": self.env.get_state(),
                "rows": list(self.rows),
                "counts": dict(self.counts),
                "consecutive_bad": self.consecutive_bad,
                "next_checkpoint": self.next_checkpoint,
                "elapsed": elapsed,
                "config": self.config.to_dict(),
                **cuda_rng,
            },
            device="cpu",
        )

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> str:
        """Continue from ``checkpoint`` (checked by :meth:`check_checkpoint`); returns how the
        environments were restored (exactly, or which episodes restarted)."""
        saved = checkpoint.get("custom", {"actor": None, "critic": None})
        for part in ("actor", "critic"):
            was, now = saved.get(part), self.agent.custom[part]
            if was != now:
                given = f"your {part} {was}" if was else f"natpg's own {part}"
                passed = f"a {now}" if now else "none"
                raise ValueError(f"this run was trained with {given}, but {passed} was passed: "
                                 f"resume with the same {part}=... as the run was started with")
        self.agent.load_state_dict(checkpoint["agent"])
        self.rule.load_state_dict(checkpoint["rule"])
        self.critic_optimizer.load_state_dict(checkpoint["critic_optimizer"])
        for scheduler, saved in zip(self.schedulers, checkpoint.get("schedulers", [])):
            scheduler.load_state_dict(saved)
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(checkpoint["reward_scaler"])
        if "critic_rng" in checkpoint:
            self.critic_generator.set_state(checkpoint["critic_rng"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if "cuda_rng" in checkpoint and self.agent.device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], self.agent.device)
        self.rng.bit_generator.state = checkpoint["numpy_rng"]
        self.timesteps = checkpoint["timesteps"]
        self.episodes, self.rows = list(checkpoint["episodes"]), list(checkpoint["rows"])
        self.counts.update(checkpoint["counts"])
        self.consecutive_bad = checkpoint["consecutive_bad"]
        self.next_checkpoint = checkpoint["next_checkpoint"]
        self.elapsed = checkpoint["elapsed"]
        return self.env.set_state(checkpoint["env"], salt=self.timesteps)

    @staticmethod
    def check_checkpoint(checkpoint: dict[str, Any], config: TrainConfig, run_dir: Path | None) -> None:
        """A ValueError unless ``config`` can continue ``checkpoint``: a format with resume
        state, the settings the run was started with (bar RESUMABLE_FIELDS), a budget no
        smaller than the steps already done."""
        if checkpoint.get("format", 1) < CHECKPOINT_FORMAT:
            raise ValueError(
                f"the checkpoint in {run_dir} was written by an older natpg without resume state; "
                f"start the run afresh with {setting_value('overwrite', True)}"
            )
        now, saved, defaults = config.to_dict(), checkpoint["config"], TrainConfig().to_dict()
        diffs = []
        for key, value in now.items():
            if key in RESUMABLE_FIELDS:
                continue
            old = saved.get(key, defaults.get(key))
            if key == "method_kwargs":
                # a hyperparameter added after the run started: the run had its default
                old = {**methods.get(config.method).hyperparameters(), **(old or {})}
                for k in sorted(set(value) | set(old)):
                    if value.get(k) != old.get(k):
                        diffs.append(f"{setting_value(k, value.get(k), quote=True)} (the run has {old.get(k)!r})")
            elif value != old:
                diffs.append(f"{setting_value(key, value, quote=True)} (the run has {old!r})")
        if diffs:
            allowed = ", ".join(sorted(flag_name(k) for k in RESUMABLE_FIELDS))
            raise ValueError(f"cannot resume {run_dir} with different settings: {'; '.join(diffs)}; only {allowed} may change")
        if checkpoint["timesteps"] > config.total_steps:
            raise ValueError(
                f"{setting_value('total_steps', config.total_steps)} is below the {checkpoint['timesteps']} steps the run has already done"
            )
        if (config.anneal_lr or config.anneal_kl) and config.total_steps != saved.get("total_steps", config.total_steps):
            # The annealing schedule runs to 0 at the run's last update: a longer run is a
            # different schedule from its first update on, so it cannot continue this one.
            raise ValueError(
                f"cannot resume {run_dir} with {setting_value('total_steps', config.total_steps)}: its "
                f"{'learning rates anneal' if config.anneal_lr else 'trust-region radius anneals'} to 0 at its own "
                f"{saved.get('total_steps')} steps "
                f"({setting_value('anneal_lr' if config.anneal_lr else 'anneal_kl', True)}); start a new run for a longer budget"
            )
