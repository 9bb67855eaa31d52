"""Named hyperparameter sets. ``paper`` is the SMAC paper's Table 2 (arXiv 2601.18626).

A preset gives, per environment, the settings shared by every method (horizon, rollout,
discounting, critic learning rate) and, per method it covers, that method's own values.
A method the preset does not cover gets the shared settings and its own defaults.
"""

from __future__ import annotations

import copy
from typing import Any

from natpg._messages import did_you_mean, setting_value

__all__ = ["PRESETS", "DEFAULT_PRESET", "NO_PRESET", "NATPG_RECIPE", "preset_values", "paper_env_key"]

#: What ``natpg train`` and ``natpg.train`` use when no preset is named; ``none`` asks for none.
DEFAULT_PRESET = "natpg"
NO_PRESET = "none"

# Paper Table 2. Keys are the paper's task names; γ = 0.99, λ_GAE = 0.9, T = 1000 everywhere.
# Columns: SMAC η, SMAC λ, AC-Adam η, AC-SGD η, AC-CG η, critic α.
_PAPER_TABLE2 = {
    "Acrobot": (5e-2, 0.1, 6e-4, 2e-1, 6e-1, 1e-3),
    "CartPole": (5e-3, 0.1, 7e-5, 7e-3, 8e-2, 1e-3),
    "Pendulum": (6e-3, 0.1, 7e-4, 5e-2, 3e-2, 1e-3),
    "HalfCheetah": (5e-3, 1.0, 1e-2, 1e-3, 1e-2, 1e-4),
    "Hopper": (1e-2, 1.0, 1e-4, 1e-3, 1e-2, 1e-4),
    "Swimmer": (3e-2, 1.0, 1e-4, 1e-3, 1e-2, 1e-4),
    "Walker2d": (3e-2, 1.0, 1e-5, 1e-4, 1e-2, 1e-5),
    "Humanoid": (1e-4, 0.01, 3e-4, 1e-3, 9e-1, 1e-3),
    "Pusher": (1.5e-3, 0.01, 2.5e-3, 1e-1, 9e-1, 1e-3),
}

#: The nine paper tasks as Gymnasium ids.
PAPER_ENVS = [
    "CartPole-v1", "Acrobot-v1", "Pendulum-v1",
    "HalfCheetah-v5", "Hopper-v5", "Swimmer-v5", "Walker2d-v5", "Humanoid-v5", "Pusher-v5",
]


def _paper() -> dict[str, dict[str, Any]]:
    table = {}
    for env, (smac_lr, smac_damping, adam_lr, sgd_lr, cg_lr, critic_lr) in _PAPER_TABLE2.items():
        table[env] = {
            "shared": {
                "rollout_steps": 1000,
                "num_envs": 1,
                "gamma": 0.99,
                "gae_lambda": 0.9,
                "critic_lr": critic_lr,
                # Not in Table 2: Algorithm 1 shows one critic step; one Adam step per rollout
                # barely fits the critic (CartPole 200k: ~290 vs ~700 with 10). See docs.
                "critic_steps": 10,
                "max_episode_steps": 1000,
                "hidden": (64, 64),
                "activation": "tanh",
                "normalize_obs": False,
                "normalize_advantages": False,
            },
            "methods": {
                "smac": {"lr": smac_lr, "damping": smac_damping, "batch_size": 1000},
                # Algorithm 1 with Table 2's η and λ, as in the paper's Figure 1 ablation.
                "smac-single": {"lr": smac_lr, "damping": smac_damping},
                "ac-adam": {"lr": adam_lr},
                "ac-sgd": {"lr": sgd_lr},
                "ac-cg": {"lr": cg_lr},
                # The step-size control: AC-SGD at SMAC's effective step η/λ.
                "ac-sgd-matched": {"lr": smac_lr, "damping": smac_damping},
            },
        }
    return table


# RAT (arXiv 2605.18591), the authors' settings: 32 envs × 256 steps, 4 epochs × 8 minibatches
# of 1024, λ = 0.1, SGD lr 0.05 adapted to KL 0.008 within [1e-4, 0.05], 2×256 ReLU actor and
# critic, observation normalisation, γ = 0.999, λ_GAE = 0.95. Scaled to this machine: 8 envs
# (2048 per rollout) and minibatches of 256, keeping 4 epochs × 8 minibatches per rollout.
# Not given by the authors (ours): critic 10 full-batch Adam steps at 1e-3, step clip 1.0.
_RAT_AUTHORS_METHOD = {
    "lr": 0.05, "lr_min": 1e-4, "lr_max": 0.05, "kl_target": 0.008, "damping": 0.1,
    "epochs": 4, "ratio_clip": 10.0, "max_step": 1.0,
}
#: The authors reported HalfCheetah, Swimmer, Ant and Humanoid; Hopper and Walker2d get the same settings.
RAT_AUTHORS_ENVS = ["HalfCheetah", "Swimmer", "Ant", "Humanoid", "Hopper", "Walker2d"]


def _rat_authors() -> dict[str, dict[str, Any]]:
    shared = {
        "rollout_steps": 2048,
        "num_envs": 8,
        "gamma": 0.999,
        "gae_lambda": 0.95,
        "critic_lr": 1e-3,
        "critic_steps": 10,
        "max_episode_steps": 1000,
        "hidden": (256, 256),
        "activation": "relu",
        "normalize_obs": True,
        "normalize_advantages": False,  # RAT centres and RMS-normalises its advantages itself
    }
    rat = {**_RAT_AUTHORS_METHOD, "batch_size": 256}
    return {env: {"shared": dict(shared), "methods": {"rat": dict(rat)}} for env in RAT_AUTHORS_ENVS}


def _rat_t1000() -> dict[str, dict[str, Any]]:
    """The ``paper`` preset (every env, every method) plus RAT at T = 1000: the authors'
    method settings with 8 minibatches of 125, for side-by-side runs with SMAC."""
    table = _paper()
    for entry in table.values():
        entry["methods"]["rat"] = {**_RAT_AUTHORS_METHOD, "batch_size": 125}
    return table


#: Key of a preset entry that applies to every environment.
ANY_ENV = "*"

# natpg's default recipe (docs/choosing.md). The same on every task: normalised observations,
# rewards scaled by the running std of the discounted return, standardised advantages, GAE
# λ 0.95, T = 1024, log-std initialised at -0.5, a critic fitted by 20 full-batch Adam steps
# at 1e-3 per rollout, learning rates annealed linearly to 0, and every rule's direction taken
# as a trust-region step of KL radius δ = 0.01 (natpg.methods.trust_region). TRPO keeps its
# own (identical) line search; AC-Adam is the first-order baseline with its own step size.
# Chosen by measurement: T, log-std and the critic against the first recipe (T = 2048, log-std
# 0, 10 epochs of minibatch-128 critic steps) at 1M steps, 3 seeds (benchmarks/results/
# recipe-1m, docs/choosing.md); the other ingredients one at a time at 200k
# (benchmarks/results/recipe-ablation).
NATPG_RECIPE = {
    "shared": {
        "rollout_steps": 1024,
        "num_envs": 1,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "critic_lr": 1e-3,
        "critic_steps": 20,
        "critic_batch_size": None,
        "hidden": (64, 64),
        "activation": "tanh",
        "normalize_obs": True,
        "normalize_reward": True,
        "normalize_advantages": True,
        "log_std_init": -0.5,
        "anneal_lr": True,
    },
    "methods": {
        "trpo": {"max_kl": 0.01, "damping": 0.1},
        "ac-adam": {"lr": 3e-4, "batch_size": 64},
        # ISOPO's minibatch steps compound within an update: at their own lr (0.15 / 0.3) the
        # raw step of isopo-ntk grew to ~700x the trust-region step on HalfCheetah and went
        # non-finite at 958k steps (benchmarks/results/mujoco, seed 0). A small lr keeps the
        # intermediate steps tame; the trust region sets the length of the step anyway.
        "isopo": {"max_kl": 0.01, "lr": 0.01},
        "isopo-ntk": {"max_kl": 0.01, "lr": 0.01},
        **{m: {"max_kl": 0.01} for m in (
            "ac-sgd", "ac-sgd-matched", "ac-cg", "smac", "smac-vec", "smac-single", "kfac", "ef-exact", "rat",
        )},
    },
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    DEFAULT_PRESET: {ANY_ENV: NATPG_RECIPE},
    "paper": _paper(),
    "rat-authors": _rat_authors(),
    "rat-t1000": _rat_t1000(),
}


def paper_env_key(env_id: str) -> str:
    """``HalfCheetah-v5`` → ``HalfCheetah``; ``module:Name-v0`` → ``Name``."""
    return env_id.rpartition(":")[2].split("-v")[0]


def preset_values(preset: str, env_id: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shared trainer settings, method hyperparameters) of ``preset`` for this env and method."""
    if preset not in PRESETS:
        raise ValueError(
            f"{setting_value('preset', preset, quote=True)}: unknown preset{did_you_mean(preset, PRESETS)} "
            f"(available: {', '.join(sorted(PRESETS))})"
        )
    table = PRESETS[preset]
    key = paper_env_key(env_id) if ANY_ENV not in table else ANY_ENV
    if key not in table:
        raise ValueError(
            f"{setting_value('preset', preset, quote=True)} has no values for env {env_id!r} (it covers: {', '.join(table)}); "
            f"preset {DEFAULT_PRESET!r} (the default) covers every env, {NO_PRESET!r} takes the bare defaults"
        )
    entry = table[key]
    return dict(entry["shared"]), copy.deepcopy(entry["methods"].get(method, {}))
