"""Named hyperparameter sets. ``paper`` is the SMAC paper's Table 2 (arXiv 2601.18626).

A preset gives, per environment, the settings shared by every method (horizon, rollout,
discounting, critic learning rate) and, per method it covers, that method's own values.
A method the preset does not cover gets the shared settings and its own defaults.
"""

from __future__ import annotations

import difflib
from typing import Any

__all__ = ["PRESETS", "preset_values", "paper_env_key"]

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
                "ac-adam": {"lr": adam_lr},
                "ac-sgd": {"lr": sgd_lr},
                "ac-cg": {"lr": cg_lr},
                # The step-size control: AC-SGD at SMAC's effective step η/λ.
                "ac-sgd-matched": {"lr": smac_lr, "damping": smac_damping},
            },
        }
    return table


PRESETS: dict[str, dict[str, dict[str, Any]]] = {"paper": _paper()}


def paper_env_key(env_id: str) -> str:
    """``HalfCheetah-v5`` → ``HalfCheetah``; ``module:Name-v0`` → ``Name``."""
    return env_id.rpartition(":")[2].split("-v")[0]


def preset_values(preset: str, env_id: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(shared trainer settings, method hyperparameters) of ``preset`` for this env and method."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, PRESETS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"--preset {preset!r}: unknown preset{hint} (available: {', '.join(sorted(PRESETS))})")
    table = PRESETS[preset]
    key = paper_env_key(env_id)
    if key not in table:
        raise ValueError(
            f"--preset {preset!r} has no values for env {env_id!r} (it covers: {', '.join(table)})"
        )
    entry = table[key]
    return dict(entry["shared"]), dict(entry["methods"].get(method, {}))
