"""Every training hyperparameter in one typed dataclass, and its resolution from defaults,
a preset and explicit values (explicit values win)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from natpg import methods
from natpg.presets import preset_values

__all__ = ["TrainConfig", "resolve_config", "trainer_field_names"]


def _help(text: str, **extra: Any) -> Any:
    return {"help": text, **extra}


@dataclass
class TrainConfig:
    """A fully resolved training run. ``method_kwargs`` holds the update rule's own
    hyperparameters (``lr``, ``damping``, ``batch_size``, ...), with its defaults filled in."""

    env_id: str = field(default="CartPole-v1", metadata=_help("Gymnasium id, or module:EnvId"))
    method: str = field(default="smac", metadata=_help("actor-update rule (see `natpg methods`)"))
    total_steps: int = field(default=100_000, metadata=_help("environment steps to train for"))
    seed: int = field(default=0, metadata=_help("seed of torch, numpy and the environments"))
    rollout_steps: int = field(default=1000, metadata=_help("transitions per update, T (across all envs)"))
    num_envs: int = field(default=1, metadata=_help("vectorised environments"))
    gamma: float = field(default=0.99, metadata=_help("discount factor"))
    gae_lambda: float = field(default=0.9, metadata=_help("GAE trace decay λ_GAE"))
    critic_lr: float = field(default=1e-3, metadata=_help("critic Adam learning rate α"))
    critic_steps: int = field(default=10, metadata=_help("critic Adam steps per rollout on the full-batch MSE"))
    hidden: tuple[int, ...] = field(default=(64, 64), metadata=_help("hidden layer sizes of actor and critic"))
    activation: str = field(default="tanh", metadata=_help("hidden activation: tanh, relu, elu, gelu, silu"))
    max_episode_steps: int | None = field(default=None, metadata=_help("episode horizon (None: the env's own)"))
    normalize_obs: bool = field(default=False, metadata=_help("running observation normalisation"))
    normalize_advantages: bool = field(default=False, metadata=_help("standardise advantages per rollout (actor only)"))
    return_window: int = field(default=20, metadata=_help("episodes in the recent-return mean of metrics.csv"))
    checkpoint_every: int = field(default=100_000, metadata=_help("steps between checkpoints (and one at the end)"))
    torch_threads: int = field(default=1, metadata=_help("torch intra-op threads (1 is fastest for small MLPs)"))
    tensorboard: bool = field(default=False, metadata=_help("also log metrics to TensorBoard (needs `tensorboard`)"))
    preset: str | None = field(default=None, metadata=_help("named hyperparameter set, e.g. `paper`"))
    exact_cosine: bool = field(default=False, metadata=_help("log exact_cosine: cosine of each step with the exact damped natural gradient (costly)"))
    exact_damping: float | None = field(default=None, metadata=_help("damping of the exact_cosine reference (None: the rule's damping, else 0.1)"))
    method_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["hidden"] = tuple(d["hidden"])
        return cls(**{k: v for k, v in d.items() if k in trainer_field_names() | {"method_kwargs"}})


def trainer_field_names() -> set[str]:
    return {f.name for f in fields(TrainConfig) if f.name != "method_kwargs"}


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _unit_interval(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1], got {value!r}")


def validate(config: TrainConfig) -> None:
    """Raise ValueError naming the flag, the value and the valid range, before any work."""
    for name in ("total_steps", "rollout_steps", "num_envs", "critic_steps", "return_window", "checkpoint_every", "torch_threads"):
        _positive_int(name, getattr(config, name))
    for name in ("gamma", "gae_lambda"):
        _unit_interval(name, getattr(config, name))
    if not math.isfinite(float(config.critic_lr)) or config.critic_lr <= 0:
        raise ValueError(f"--critic-lr must be a finite positive number, got {config.critic_lr!r}")
    if config.max_episode_steps is not None:
        _positive_int("max_episode_steps", config.max_episode_steps)
    if config.exact_damping is not None and (
        not isinstance(config.exact_damping, (int, float)) or not math.isfinite(config.exact_damping) or config.exact_damping <= 0
    ):
        raise ValueError(f"--exact-damping must be a finite positive number, got {config.exact_damping!r}")
    if not config.hidden or any(not isinstance(h, int) or h < 1 for h in config.hidden):
        raise ValueError(f"--hidden must be a comma-separated list of positive integers, got {config.hidden!r}")
    if config.rollout_steps % config.num_envs:
        raise ValueError(
            f"--rollout-steps {config.rollout_steps} must be a multiple of --num-envs {config.num_envs}"
        )
    if config.total_steps < config.rollout_steps:
        raise ValueError(f"--steps {config.total_steps} must be at least --rollout-steps {config.rollout_steps}")
    batch_size = config.method_kwargs.get("batch_size")
    if batch_size is not None and batch_size > config.rollout_steps:
        raise ValueError(
            f"--batch-size {batch_size} must be at most --rollout-steps {config.rollout_steps} (valid: 1..{config.rollout_steps})"
        )


def resolve_config(env_id: str, method: str = "smac", preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then ``preset`` values for (env, method), then ``overrides``.

    ``overrides`` may name trainer fields (``total_steps``, ``rollout_steps``, ...) or the
    method's hyperparameters (``lr``, ``damping``, ...); anything else is an error.
    """
    rule = methods.get(method)
    accepted = rule.hyperparameters()
    trainer_names = trainer_field_names()
    unknown = sorted(k for k in overrides if k not in trainer_names and k not in accepted)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {', '.join(unknown)} for method {method!r} "
            f"(method takes: {', '.join(sorted(accepted))})"
        )
    values: dict[str, Any] = {}
    method_kwargs = {k: v for k, v in accepted.items()}
    if preset is not None:
        shared, own = preset_values(preset, env_id, method)
        values.update(shared)
        method_kwargs.update({k: v for k, v in own.items() if k in accepted})
    for key, value in overrides.items():
        if value is None:
            continue
        if key in accepted:
            method_kwargs[key] = value
        else:
            values[key] = value
    if "hidden" in values:
        values["hidden"] = tuple(values["hidden"])
    config = TrainConfig(env_id=env_id, method=method, preset=preset, method_kwargs=method_kwargs, **values)
    validate(config)
    return config
