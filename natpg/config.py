"""Every training hyperparameter in one typed dataclass, and its resolution from defaults,
a preset and explicit values (explicit values win).

:func:`validate` checks a configuration completely *before* any environment is created:
every error names the flag, the value and the valid range in one line (the CLI prints it
as ``natpg train: error: ...`` and exits with status 2; the Python API raises ValueError
with the same text).
"""

from __future__ import annotations

import contextlib
import numbers
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from natpg import methods
from natpg._messages import did_you_mean, phrase, setting_name, setting_value
from natpg.methods.hyperparameters import REQUIRED, Range, hyperparameter_class, type_range
from natpg.presets import DEFAULT_PRESET, NO_PRESET, preset_values

__all__ = [
    "TrainConfig", "Range", "resolve_config", "validate", "trainer_field_names", "flag_name", "parse_hidden", "RESUMABLE_FIELDS",
    "check_device",
]


def _help(text: str, **extra: Any) -> Any:
    return {"help": text, **extra}


@dataclass
class TrainConfig:
    """A fully resolved training run. ``method_kwargs`` holds the update rule's own
    hyperparameters (``lr``, ``damping``, ``batch_size``, ...), with its defaults filled in."""

    env_id: str = field(default="CartPole-v1", metadata=_help("Gymnasium id, or module:EnvId"))
    method: str = field(default="smac", metadata=_help("actor-update rule (see `natpg methods`)"))
    total_steps: int = field(default=100_000, metadata=_help("environment steps to train for (rounded up to whole rollouts)"))
    seed: int = field(default=0, metadata=_help("seed of torch, numpy and the environments"))
    rollout_steps: int = field(default=1000, metadata=_help("transitions per update, T (across all envs)"))
    num_envs: int = field(default=1, metadata=_help("vectorised environments"))
    gamma: float = field(default=0.99, metadata=_help("discount factor"))
    gae_lambda: float = field(default=0.9, metadata=_help("GAE trace decay λ_GAE"))
    critic_lr: float = field(default=1e-3, metadata=_help("critic Adam learning rate α"))
    critic_steps: int = field(
        default=10, metadata=_help("critic Adam epochs per rollout: passes over the rollout's MSE (one step each with "
                                   "--critic-batch-size none, the full batch)")
    )
    critic_batch_size: int | None = field(
        default=None, metadata=_help("critic minibatch size: each epoch shuffles the rollout into minibatches of this "
                                     "size, one Adam step each (None: one full-batch step per epoch)")
    )
    hidden: tuple[int, ...] = field(default=(64, 64), metadata=_help("hidden layer sizes of actor and critic"))
    activation: str = field(default="tanh", metadata=_help("hidden activation: tanh, relu, elu, gelu, silu"))
    max_episode_steps: int | None = field(default=None, metadata=_help("episode horizon (None: the env's own)"))
    normalize_obs: bool = field(default=False, metadata=_help("running observation normalisation"))
    normalize_advantages: bool = field(default=False, metadata=_help("standardise advantages per rollout (actor only)"))
    normalize_reward: bool = field(
        default=False, metadata=_help("divide rewards by the running std of the discounted return (training only; "
                                      "episode returns are reported unscaled)")
    )
    log_std_init: float = field(default=0.0, metadata=_help("initial log-std of a Gaussian policy"))
    anneal_lr: bool = field(
        default=False, metadata=_help("anneal the actor's and the critic's learning rates linearly to 0 over the run")
    )
    anneal_kl: bool = field(
        default=False, metadata=_help("anneal the trust-region radius max_kl linearly towards 0 over the run (a rule with "
                                      "a trust region takes steps of that KL whatever its learning rate)")
    )
    return_window: int = field(default=20, metadata=_help("episodes in the recent-return mean of metrics.csv"))
    checkpoint_every: int = field(default=100_000, metadata=_help("steps between checkpoints (and one at the end)"))
    torch_threads: int = field(default=1, metadata=_help("torch intra-op threads (1 is fastest for small MLPs)"))
    device: str = field(
        default="cpu", metadata=_help("where the update runs (scores, solves, critic fit): cpu, cuda or cuda:N; "
                                      "the rollout always acts on the CPU")
    )
    tensorboard: bool = field(default=False, metadata=_help("also log metrics to TensorBoard (needs `tensorboard`)"))
    preset: str | None = field(default=None, metadata=_help("named hyperparameter set, e.g. `paper`"))
    exact_cosine: bool = field(default=False, metadata=_help("log exact_cosine: cosine of each step with the exact damped natural gradient (costly)"))
    exact_damping: float | None = field(default=None, metadata=_help("damping of the exact_cosine reference (None: the rule's damping, else 0.1)"))
    skip_nonfinite: bool = field(
        default=False,
        metadata=_help("drop and count transitions with a NaN/inf observation or reward (ends that episode) instead of stopping"),
    )
    max_nonfinite_updates: int = field(
        default=5, metadata=_help("stop after this many consecutive rejected (non-finite) actor/critic updates")
    )
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


#: Fields a resumed run may change: they do not affect what is computed (``device``: the
#: same arithmetic on another processor, up to rounding; checkpoints hold CPU tensors, so a
#: GPU run may continue on a CPU and the other way round).
RESUMABLE_FIELDS = frozenset({"total_steps", "checkpoint_every", "tensorboard", "device"})

_DEVICE_FORM = re.compile(r"cpu|cuda(:[0-9]+)?")


def check_device(device: Any) -> None:
    """ValueError (one line) unless ``device`` is ``cpu``, or ``cuda`` / ``cuda:N`` naming a
    GPU that torch can see."""
    if not isinstance(device, str) or not _DEVICE_FORM.fullmatch(device):
        raise ValueError(f"{setting_value('device', device, quote=True)}: expected cpu, cuda or cuda:N (N: a GPU index)")
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise ValueError(f"{setting_value('device', device)}: no CUDA device is visible to torch "
                         f"(torch {torch.__version__}); use {setting_value('device', 'cpu')}")
    count = torch.cuda.device_count()
    if int(device.partition(":")[2] or 0) >= count:
        raise ValueError(f"{setting_value('device', device)}: torch sees {count} CUDA device(s), "
                         f"cuda:0 to cuda:{count - 1}")



def flag_name(name: str) -> str:
    """How a message names a trainer field or hyperparameter: its flag on the command line
    (``total_steps`` → ``--steps``), the keyword itself from Python (see natpg._messages)."""
    return setting_name(name)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"64,64"`` → ``(64, 64)``: the hidden sizes as the command line writes them."""
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated integers like 64,64, got {text!r}") from None


def trainer_field_names() -> set[str]:
    return {f.name for f in fields(TrainConfig) if f.name != "method_kwargs"}


_EMPTY = REQUIRED
_POSITIVE_INT = Range("int", 1)
_POSITIVE = Range("float", 0.0, low_open=True)
_UNIT = Range("float", 0.0, 1.0)


def _trainer_ranges() -> dict[str, Range]:
    from natpg.policies import ACTIVATIONS

    return {
        "env_id": Range("str"),
        "method": Range("str"),
        "total_steps": _POSITIVE_INT,
        "seed": Range("int", 0, 2**32 - 1),
        "rollout_steps": _POSITIVE_INT,
        "num_envs": _POSITIVE_INT,
        "gamma": _UNIT,
        "gae_lambda": _UNIT,
        "critic_lr": _POSITIVE,
        "critic_steps": _POSITIVE_INT,
        "critic_batch_size": Range("int", 1, optional=True),
        "log_std_init": Range("float", -20.0, 5.0),
        "activation": Range("str", choices=tuple(ACTIVATIONS)),
        "max_episode_steps": Range("int", 1, optional=True),
        "return_window": _POSITIVE_INT,
        "checkpoint_every": _POSITIVE_INT,
        "torch_threads": Range("int", 1, 1024),
        "device": Range("str"),
        "preset": Range("str", optional=True),
        "exact_damping": Range("float", 0.0, low_open=True, optional=True),
        "max_nonfinite_updates": _POSITIVE_INT,
    }


def _check_method_name(method: Any) -> type:
    if not isinstance(method, str) or method not in methods.available():
        raise ValueError(
            f"{setting_value('method', method, quote=True)}: unknown method{did_you_mean(str(method), methods.available())} "
            f"(available: {', '.join(methods.available())})"
        )
    return methods.get(method)


def _name_the_setting(message: str, names: list[str]) -> str | None:
    """``lr must be ...`` (a rule constructor's words) → ``--lr must be ...`` on the command line
    (unchanged from Python); None when the message does not start with one of ``names``."""
    for name in sorted(names, key=len, reverse=True):
        if re.match(rf"{re.escape(name)}\b", message):
            return flag_name(name) + message[len(name) :]
    return None


def validate_method_hyperparameters(method: str, hyperparameters: dict[str, Any]) -> None:
    """Type, range and consistency checks of a rule's hyperparameters, by building its
    dataclass (:mod:`natpg.methods.hyperparameters`); builds no actor and no environment."""
    cls = _check_method_name(method)
    hp_class = hyperparameter_class(cls)
    accepted = hp_class.defaults()
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown:
        raise ValueError(_unknown_message(unknown, method, accepted))
    missing = sorted(k for k, v in accepted.items() if v is _EMPTY and k not in hyperparameters)
    if missing:
        raise ValueError(f"{setting_value('method', method)} needs {', '.join(flag_name(k) for k in missing)} (no default)")
    try:
        hp_class(**hyperparameters)
    except ValueError as exc:
        message = str(exc)
        raise ValueError(_name_the_setting(message, list(accepted)) or f"{setting_value('method', method)}: {message}") from None


def _unknown_message(unknown: list[str], method: str, accepted: dict[str, Any]) -> str:
    takes = ", ".join(flag_name(k) for k in sorted(accepted))
    parts = []
    for name in unknown:
        owners = [m for m in methods.available() if name in methods.get(m).hyperparameters()]
        if owners:
            parts.append(
                f"{flag_name(name)} is not a hyperparameter of {setting_value('method', method)} (it belongs to {', '.join(owners)})"
            )
        else:
            hint = did_you_mean(name, sorted(trainer_field_names() | set(accepted)), show=flag_name)
            parts.append(f"unknown setting {flag_name(name)}{hint}")
    return "; ".join(parts) + f" ({setting_value('method', method)} takes: {takes})"


def validate(config: TrainConfig) -> None:
    """Raise ValueError naming the flag, the value and the valid range, before any work.

    Checks every trainer field (type and range), the environment id (registered? without
    creating it), the method and its hyperparameters (types, ranges, the rule's own
    constructor checks on a stand-in actor) and the relations between settings.
    """
    from natpg.envs import check_env_id, is_python_env

    if isinstance(config.env_id, str) and not is_python_env(config.env_id):
        check_env_id(config.env_id)  # first: a ``module:EnvId`` module may also register update rules
    ranges = _trainer_ranges()
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in ("method_kwargs", "hidden"):
            continue
        spec = ranges.get(f.name) or type_range(hints[f.name])
        if spec is not None:
            spec.check(flag_name(f.name), getattr(config, f.name))
    check_device(config.device)
    hidden = config.hidden
    if (
        not isinstance(hidden, (tuple, list))
        or not hidden
        or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden)
    ):
        form = phrase("a comma-separated list of positive integers like 64,64",
                      "a tuple of positive integers like (64, 64) (natpg.train also takes the string '64,64')")
        raise ValueError(f"{setting_name('hidden')} must be {form}, got {hidden!r}")
    if config.rollout_steps % config.num_envs:
        raise ValueError(
            f"{setting_value('rollout_steps', config.rollout_steps)} must be a multiple of "
            f"{setting_value('num_envs', config.num_envs)} (each update takes rollout-steps/num-envs steps of every env)"
        )
    if config.critic_batch_size is not None and config.critic_batch_size > config.rollout_steps:
        raise ValueError(
            f"{setting_value('critic_batch_size', config.critic_batch_size)} must be at most "
            f"{setting_value('rollout_steps', config.rollout_steps)}"
        )
    if config.total_steps < config.rollout_steps:
        raise ValueError(
            f"{setting_value('total_steps', config.total_steps)} must be at least "
            f"{setting_value('rollout_steps', config.rollout_steps)} (one update)"
        )
    if not isinstance(config.method_kwargs, dict):
        raise ValueError(f"method_kwargs must be a dict, got {type(config.method_kwargs).__name__}")
    validate_method_hyperparameters(config.method, config.method_kwargs)
    batch_size = config.method_kwargs.get("batch_size")
    if batch_size is not None and batch_size > config.rollout_steps:
        default = methods.get(config.method).hyperparameters().get("batch_size")
        origin = f" (the default of {setting_value('method', config.method)})" if batch_size == default else ""
        raise ValueError(
            f"{setting_value('batch_size', batch_size)}{origin} must be at most "
            f"{setting_value('rollout_steps', config.rollout_steps)} "
            f"(valid: 1..{config.rollout_steps})"
        )
    if config.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ValueError(f"{setting_name('tensorboard')} needs the tensorboard package: pip install 'natpg[tensorboard]'") from None


def resolve_config(env_id: str, method: str = "smac", preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then ``preset`` values for (env, method), then ``overrides``.

    ``preset`` None takes natpg's default recipe (``"natpg"``); ``"none"`` takes the bare
    defaults of the trainer and of the rule.

    ``overrides`` may name trainer fields (``total_steps``, ``rollout_steps``, ...) or the
    method's hyperparameters (``lr``, ``damping``, ...); anything else is an error. The result
    is validated (:func:`validate`): a bad value raises ValueError before any environment exists.
    """
    from natpg.envs import check_env_id, is_python_env

    if not is_python_env(env_id):  # (an env given as a Python object: natpg.train(env=...))
        check_env_id(env_id)  # first: a ``module:EnvId`` module may also register update rules
    rule = _check_method_name(method)
    accepted = rule.hyperparameters()
    trainer_names = trainer_field_names()
    unknown = sorted(k for k in overrides if k not in trainer_names and k not in accepted)
    if unknown:
        raise ValueError(_unknown_message(unknown, method, accepted))
    for key in ("env_id", "method", "preset"):
        if key in overrides:
            raise ValueError(f"pass {key} as its own argument, not among the overrides")
    values: dict[str, Any] = {}
    method_kwargs = {k: v for k, v in accepted.items() if v is not _EMPTY}
    if preset is None:
        preset = DEFAULT_PRESET
    Range("str").check(setting_name("preset"), preset)
    if preset.lower() == NO_PRESET:
        preset = None
    if preset is not None:
        shared, own = preset_values(preset, env_id, method)
        values.update(shared)
        method_kwargs.update({k: v for k, v in own.items() if k in accepted})
    # None is a value like any other: ``batch_size=None`` asks for the whole rollout,
    # ``max_episode_steps=None`` for the env's own horizon.
    for key, value in overrides.items():
        if key in accepted:
            method_kwargs[key] = value
        else:
            values[key] = value
    if isinstance(values.get("hidden"), str):  # the command line's form, "64,64"
        with contextlib.suppress(ValueError):  # else validate() refuses it, naming the forms that work
            values["hidden"] = parse_hidden(values["hidden"])
    if "hidden" in values and isinstance(values["hidden"], (list, tuple)):
        values["hidden"] = tuple(values["hidden"])
    config = TrainConfig(env_id=env_id, method=method, preset=preset, method_kwargs=method_kwargs, **values)
    validate(config)
    return config
