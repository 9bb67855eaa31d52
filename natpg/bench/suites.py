"""Named benchmark suites: which tasks, which methods, how many steps.

A *method spec* is a registered method name, optionally with fixed hyperparameters:
``smac``, ``smac:batch_size=1``, ``ac-sgd:lr=0.01``. Names starting with ``sb3-`` are the
Stable-Baselines3 reference baselines run by :mod:`natpg.bench.sb3_runner`.

Budgets (the paper states none; these are ours, and they are written in docs/results.md):

* MuJoCo tasks: 1,000,000 environment steps (1,000 updates of T = 1,000).
* Classic control (CartPole, Acrobot, Pendulum): 500,000 steps (500 updates). At 200k steps
  SMAC on CartPole reaches ~700 of 1,000 (README); 500k gives 2.5 times that, costs about a
  third of a MuJoCo run, and keeps the nine-task suite inside a day on two cores.

A suite's ``preset`` is the hyperparameter preset its natpg runs resolve (``natpg bench
--suite`` uses it unless ``--preset`` is given); ``None`` is natpg's default recipe (preset
``natpg``) and the env's own horizon, for natpg rules and SB3 rows alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from natpg.presets import PAPER_ENVS

__all__ = [
    "Suite", "SUITES", "PAPER_METHODS", "SB3_METHODS", "SB3_ZOO_METHODS", "MUJOCO_FIELD_METHODS",
    "CLASSIC_CONTROL", "MUJOCO", "MUJOCO_STANDARD",
    "parse_method_spec", "method_label", "default_steps", "get_suite", "registered_methods",
]

CLASSIC_CONTROL = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1")
MUJOCO = ("HalfCheetah-v5", "Hopper-v5", "Swimmer-v5", "Walker2d-v5", "Humanoid-v5", "Pusher-v5")
#: The six tasks every published MuJoCo 1M-step table reports (issue 14); Ant in place of Pusher.
MUJOCO_STANDARD = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5")
MUJOCO_STEPS = 1_000_000
CLASSIC_STEPS = 500_000

#: The paper's Table 1 methods plus the step-size control (AC-SGD at SMAC's η/λ).
PAPER_METHODS = ("ac-sgd", "ac-adam", "ac-cg", "smac", "ac-sgd-matched")
#: Stable-Baselines3 / sb3-contrib PPO and TRPO with RL Baselines3 Zoo's tuned MuJoCo hyperparameters.
SB3_ZOO_METHODS = ("sb3-ppo-zoo", "sb3-trpo-zoo")
#: Reference baselines from Stable-Baselines3 / sb3-contrib: library defaults, then the zoo's.
SB3_METHODS = ("sb3-ppo", "sb3-a2c", "sb3-trpo", *SB3_ZOO_METHODS)
#: natpg's rules at their defaults against the strongest public SB3 configurations (issue 14).
#: ``ac-sgd`` is the plain gradient under the same trust region (the step-size control).
MUJOCO_FIELD_METHODS = (
    "trpo", "kfac", "rat", "smac", "isopo-ntk", "ef-exact", "ac-sgd", "ac-adam",
    *SB3_ZOO_METHODS, "sb3-ppo", "sb3-trpo",
)


def default_steps(env_id: str) -> int:
    """The suite budget for ``env_id``: 500k for classic control, 1M otherwise."""
    return CLASSIC_STEPS if env_id in CLASSIC_CONTROL else MUJOCO_STEPS


def registered_methods() -> list[str]:
    from natpg import methods

    return methods.available()


_SPEC = re.compile(r"^([A-Za-z0-9_.\-]+)(?::(.*))?$")


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:
        return tuple(_parse_value(t) for t in text.split(",") if t)
    return text


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"smac:batch_size=1,damping=0.5"`` → ``("smac", {"batch_size": 1, "damping": 0.5})``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"bad method spec {spec!r}: expected NAME or NAME:key=value[;key=value]")
    name, rest = m.group(1), m.group(2)
    overrides: dict[str, Any] = {}
    if rest:
        for part in re.split(r"[;+]", rest) if ";" in rest or "+" in rest else rest.split(","):
            if not part:
                continue
            key, eq, value = part.partition("=")
            if not eq:
                raise ValueError(f"bad method spec {spec!r}: {part!r} is not key=value")
            overrides[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return name, overrides


def method_label(spec: str) -> str:
    """A directory-safe label of a method spec: ``smac:batch_size=1`` → ``smac@batch_size=1``."""
    name, overrides = parse_method_spec(spec)
    if not overrides:
        return name
    parts = "+".join(f"{k}={v if not isinstance(v, tuple) else '-'.join(map(str, v))}" for k, v in sorted(overrides.items()))
    return f"{name}@{parts}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    envs: tuple[str, ...]
    methods: tuple[str, ...] | None  # None: every registered method at sweep time
    seeds: int = 3
    steps: dict[str, int] = field(default_factory=dict)  # per env; missing → default_steps
    preset: str | None = "paper"

    def resolved_methods(self) -> list[str]:
        return list(self.methods) if self.methods is not None else registered_methods()

    def steps_for(self, env_id: str) -> int:
        return self.steps.get(env_id, default_steps(env_id))


SUITES: dict[str, Suite] = {
    "paper": Suite(
        "paper",
        "the paper's nine tasks (horizon 1000, paper Table 2 presets) × AC-SGD, AC-Adam, AC-CG, SMAC and the "
        "step-size control AC-SGD at η/λ; 1M steps on MuJoCo, 500k on classic control",
        tuple(PAPER_ENVS),
        PAPER_METHODS,
        seeds=5,
    ),
    "paper-sb3": Suite(
        "paper-sb3",
        "SB3 PPO and sb3-contrib TRPO (library defaults) on the six MuJoCo tasks, horizon 1000, 1M steps",
        MUJOCO,
        ("sb3-ppo", "sb3-trpo"),
        seeds=5,
    ),
    "mujoco": Suite(
        "mujoco",
        "natpg's rules at their own defaults (trpo, kfac, rat, smac, isopo-ntk, ef-exact, ac-sgd, ac-adam) against "
        "SB3 PPO and sb3-contrib TRPO with RL Zoo's tuned hyperparameters (and with library defaults) on HalfCheetah, "
        "Hopper, Walker2d, Swimmer, Ant and Humanoid, the env's own horizon (1000), 1M steps",
        MUJOCO_STANDARD,
        MUJOCO_FIELD_METHODS,
        seeds=5,
        preset=None,
    ),
    "smoke": Suite(
        "smoke",
        "every registered method with its defaults (natpg's recipe) on CartPole-v1 and Pendulum-v1, 1 seed, "
        "20k steps (a few minutes)",
        ("CartPole-v1", "Pendulum-v1"),
        None,
        seeds=1,
        steps={"CartPole-v1": 20_480, "Pendulum-v1": 20_480},
        preset=None,
    ),
    "all-methods": Suite(
        "all-methods",
        "every registered method on the paper's nine tasks, paper budgets",
        tuple(PAPER_ENVS),
        None,
        seeds=3,
    ),
    "ablation-batch": Suite(
        "ablation-batch",
        "the paper's Figure 1: SMAC single-sample (smac-single, Algorithm 1) against batch-mean B=10, 100, 1000, "
        "with the vectorised per-sample rule smac-vec, 200k steps",
        ("CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"),
        # smac:batch_size=1 is the same algebra as smac-single through the generic batch path,
        # about 20 times slower per update (benchmarks/results/fig1/fig1.md), so the suite runs only smac-single.
        ("smac-single", "smac:batch_size=10", "smac:batch_size=100", "smac", "smac-vec"),
        seeds=3,
        steps={"CartPole-v1": 200_000, "Pendulum-v1": 200_000, "HalfCheetah-v5": 200_000},
    ),
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r} (available: {', '.join(SUITES)})")
    return SUITES[name]
