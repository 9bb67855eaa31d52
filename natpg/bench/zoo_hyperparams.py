"""RL Baselines3 Zoo's tuned hyperparameters for SB3 PPO and sb3-contrib TRPO on MuJoCo.

Transcribed by hand (values only) from the ``rl-zoo3`` 2.9.2 wheel on PyPI,
files ``rl_zoo3/hyperparams/ppo.yml`` and ``rl_zoo3/hyperparams/trpo.yml``
(DLR-RM/rl-baselines3-zoo). rl-zoo3 is not a dependency: the table below is the
whole of what natpg uses from it.

The zoo keys its MuJoCo entries by the v4 ids; natpg runs the v5 ids. Each task below
names the zoo entry it was read from (``entry``), after resolving the YAML anchors
(``<<: *mujoco-defaults``). Every one of the six tasks has an entry of its own in both
files; what each entry inherits is noted beside it.

Fields keep the zoo's meaning and spelling:

* ``normalize``: wrap the vector env in ``VecNormalize``. ``True`` means its defaults
  (``norm_obs=True, norm_reward=True``) with the algorithm's ``gamma`` when the entry sets
  one, as the zoo's ExperimentManager does; a dict gives VecNormalize's keyword arguments.
* ``n_envs``: copies of the env in a ``DummyVecEnv`` (the zoo's default vector env).
* ``n_timesteps``: the budget the zoo trained the entry for. Recorded, not used: the
  harness runs every method at the suite's budget (1M steps).
* ``policy_kwargs``: as the zoo's string, with ``activation_fn`` named by its class in
  ``torch.nn`` (``"ReLU"`` for the zoo's ``nn.ReLU``) so the table stays JSON.
* ``learning_rate`` / ``clip_range`` / ``clip_range_vf``: a number, or a zoo schedule
  string ``"lin_X"`` (X decaying linearly to 0 over training).
* anything else: a keyword argument of the algorithm's constructor.

A key the entry does not set takes the library default (SB3 2.x / sb3-contrib 2.x).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

__all__ = ["ZOO_SOURCE", "ZOO_VERSION", "ZOO_HYPERPARAMS", "zoo_task", "zoo_entry", "linear_schedule", "resolve_zoo"]

ZOO_VERSION = "2.9.2"
ZOO_SOURCE = f"rl-zoo3 {ZOO_VERSION} (PyPI wheel), rl_zoo3/hyperparams/{{algo}}.yml, DLR-RM/rl-baselines3-zoo"

# The Optuna-tuned PPO entries (HalfCheetah, Hopper, Humanoid) share this policy.
_PPO_TUNED_POLICY = {"log_std_init": -2, "ortho_init": False, "activation_fn": "ReLU",
                     "net_arch": {"pi": [256, 256], "vf": [256, 256]}}

# trpo.yml: `Ant-v4: &mujoco-defaults` = `<<: *pybullet-defaults` (the HalfCheetahBulletEnv-v0
# entry) with n_timesteps 1e6; every MuJoCo TRPO entry starts from it.
_TRPO_MUJOCO_DEFAULTS = {
    "normalize": True, "n_envs": 2, "n_timesteps": 1_000_000, "policy": "MlpPolicy",
    "batch_size": 128, "n_steps": 1024, "gamma": 0.99, "gae_lambda": 0.95, "sub_sampling_factor": 1,
    "cg_max_steps": 25, "cg_damping": 0.1, "n_critic_updates": 20, "learning_rate": 1e-3,
}

#: algo → task (the id without its version) → zoo entry, anchors resolved.
ZOO_HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "HalfCheetah": {  # tuned
            "entry": "HalfCheetah-v4",
            "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 1_000_000,
            "batch_size": 64, "n_steps": 512, "gamma": 0.98, "learning_rate": 2.0633e-05, "ent_coef": 0.000401762,
            "clip_range": 0.1, "n_epochs": 20, "gae_lambda": 0.92, "max_grad_norm": 0.8, "vf_coef": 0.58096,
            "policy_kwargs": _PPO_TUNED_POLICY,
        },
        "Hopper": {  # tuned
            "entry": "Hopper-v4",
            "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 1_000_000,
            "batch_size": 32, "n_steps": 512, "gamma": 0.999, "learning_rate": 9.80828e-05, "ent_coef": 0.00229519,
            "clip_range": 0.2, "n_epochs": 5, "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671,
            "policy_kwargs": _PPO_TUNED_POLICY,
        },
        "Walker2d": {  # tuned; sets no policy_kwargs (SB3's default 64-64 tanh policy)
            "entry": "Walker2d-v4",
            "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 1_000_000,
            "batch_size": 32, "n_steps": 512, "gamma": 0.99, "learning_rate": 5.05041e-05, "ent_coef": 0.000585045,
            "clip_range": 0.1, "n_epochs": 20, "gae_lambda": 0.95, "max_grad_norm": 1, "vf_coef": 0.871923,
        },
        "Swimmer": {  # tuned: `<<: *mujoco-defaults` (the Ant-v4 entry) plus these
            "entry": "Swimmer-v4",
            "normalize": True, "policy": "MlpPolicy", "n_timesteps": 1_000_000,
            "gamma": 0.9999, "n_envs": 4, "n_steps": 1024, "batch_size": 256, "learning_rate": 6e-4,
            "gae_lambda": 0.98,
        },
        "Ant": {  # the `&mujoco-defaults` anchor: VecNormalize over SB3's defaults (the tuned entry is commented out)
            "entry": "Ant-v4",
            "normalize": True, "policy": "MlpPolicy", "n_timesteps": 1_000_000,
        },
        "Humanoid": {  # tuned, for 1e7 steps
            "entry": "Humanoid-v4",
            "normalize": True, "n_envs": 1, "policy": "MlpPolicy", "n_timesteps": 10_000_000,
            "batch_size": 256, "n_steps": 512, "gamma": 0.95, "learning_rate": 3.56987e-05, "ent_coef": 0.00238306,
            "clip_range": 0.3, "n_epochs": 5, "gae_lambda": 0.9, "max_grad_norm": 2, "vf_coef": 0.431892,
            "policy_kwargs": _PPO_TUNED_POLICY,
        },
    },
    "trpo": {
        "HalfCheetah": {"entry": "HalfCheetah-v4", **_TRPO_MUJOCO_DEFAULTS, "target_kl": 0.04},  # tuned
        "Hopper": {"entry": "Hopper-v4", **_TRPO_MUJOCO_DEFAULTS},  # tuned
        "Walker2d": {"entry": "Walker2d-v4", **_TRPO_MUJOCO_DEFAULTS},  # tuned
        "Swimmer": {"entry": "Swimmer-v4", **_TRPO_MUJOCO_DEFAULTS, "gamma": 0.9999},  # tuned
        "Ant": {"entry": "Ant-v4", **_TRPO_MUJOCO_DEFAULTS},  # tuned (the anchor itself)
        "Humanoid": {"entry": "Humanoid-v4", **_TRPO_MUJOCO_DEFAULTS, "n_timesteps": 2_000_000},  # not marked tuned
    },
}

_SCHEDULED = ("learning_rate", "clip_range", "clip_range_vf")
_NOT_ALGO_KWARGS = ("entry", "normalize", "n_envs", "n_timesteps", "policy")


def zoo_task(env_id: str) -> str:
    """``"HalfCheetah-v5"`` → ``"HalfCheetah"``: the key of the zoo table."""
    return env_id.split(":")[-1].rsplit("-v", 1)[0]


def zoo_entry(algo: str, env_id: str) -> dict[str, Any]:
    """A copy of the zoo's entry for ``algo`` (``ppo`` or ``trpo``) on ``env_id``, JSON as transcribed."""
    if algo not in ZOO_HYPERPARAMS:
        raise ValueError(f"no zoo hyperparameters for {algo!r} (available: {', '.join(ZOO_HYPERPARAMS)})")
    table = ZOO_HYPERPARAMS[algo]
    task = zoo_task(env_id)
    if task not in table:
        raise ValueError(f"sb3-{algo}-zoo has no zoo entry for {env_id!r}; it covers {', '.join(f'{t}-v5' for t in table)}")
    return copy.deepcopy(table[task])


def linear_schedule(initial_value: float) -> Callable[[float], float]:
    """The zoo's ``lin_X``: X × progress_remaining (SB3 passes 1 at the start, 0 at the end)."""
    initial_value = float(initial_value)

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial_value

    schedule.__qualname__ = f"linear_schedule({initial_value})"
    return schedule


def _schedule(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    kind, _, number = value.partition("_")
    if kind != "lin" or not number:
        raise ValueError(f"zoo {key}={value!r}: expected a number or lin_X")
    return linear_schedule(float(number))


def resolve_zoo(entry: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any] | None]:
    """A zoo entry → (algorithm keyword arguments, n_envs, VecNormalize keyword arguments or None).

    Schedules become callables and ``activation_fn`` the ``torch.nn`` class; ``normalize`` takes
    the entry's ``gamma`` as the zoo does (VecNormalize discounts the reward it normalises by it).
    """
    import torch

    kwargs = {k: _schedule(k, v) if k in _SCHEDULED else copy.deepcopy(v)
              for k, v in entry.items() if k not in _NOT_ALGO_KWARGS}
    policy_kwargs = kwargs.get("policy_kwargs")
    if policy_kwargs and isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = getattr(torch.nn, policy_kwargs["activation_fn"])
    normalize = entry.get("normalize", False)
    if normalize is False:
        vec_normalize = None
    else:
        vec_normalize = dict(normalize) if isinstance(normalize, dict) else {}
        if "gamma" in entry:
            vec_normalize["gamma"] = entry["gamma"]
    return kwargs, int(entry.get("n_envs", 1)), vec_normalize
