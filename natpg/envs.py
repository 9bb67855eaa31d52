"""Environment creation and space validation: Gymnasium ids (``module:EnvId`` imports its
module), :func:`make_env` with natpg's wrappers, environments given as Python objects or
factories, and the checks of what natpg's policies can act on (:class:`EnvSpec` describes it).

Robustness (docs/robustness.md): an unknown id is refused with close names, an unsupported
space with a message naming the space. Stepping N copies, and what happens to a NaN/inf, is
:mod:`natpg.vector_env`; the exact-resume state of environments is :mod:`natpg.env_state`.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from natpg._messages import did_you_mean, setting_name, setting_value
from natpg._moved import moved_names

__all__ = [
    "EnvSpec", "EnvironmentFault", "NonFinitePolicy", "check_env_id", "make_env", "VectorEnv", "describe_space", "check_spaces",
    "PYTHON_ENV", "is_python_env", "python_env_label", "env_factory", "env_from_factory",
]

# Stepping lives in natpg.vector_env (which imports this module); its names stay importable
# from here.
__getattr__ = moved_names(__name__, dict.fromkeys(
    ["VectorEnv", "StepResult", "NonFinitePolicy", "EnvironmentFault"], "natpg.vector_env"))

#: The prefix of the ``env_id`` recorded for an environment given as a Python object or
#: factory (``natpg.train(env=...)``): ``<python>:CartPole-v1``. Such an id names the env in
#: config.json and summaries; it cannot be made again from the id alone.
PYTHON_ENV = "<python>:"


def is_python_env(env_id: Any) -> bool:
    return isinstance(env_id, str) and env_id.startswith(PYTHON_ENV)


def python_env_label(env: Any) -> str:
    """The recorded id of a ``gymnasium.Env`` instance or factory: its registered id if it has
    one, else its class (instance) or function name (factory), behind :data:`PYTHON_ENV`."""
    if isinstance(env, gym.Env):
        spec = getattr(env, "spec", None)
        name = spec.id if spec is not None and spec.id else type(env.unwrapped).__name__
    else:
        name = getattr(env, "__name__", type(env).__name__)
    return PYTHON_ENV + name


def env_factory(env: Any, num_envs: int):
    """A factory of ``num_envs`` environments from a ``gymnasium.Env`` instance (only for
    ``num_envs=1``: an instance cannot be copied safely) or a factory (returned as it is)."""
    if isinstance(env, gym.Env):
        if num_envs != 1:
            raise ValueError(
                f"an environment instance is one environment, but {setting_value('num_envs', num_envs)}; "
                "pass a factory instead (a function returning a new env, e.g. lambda: MyEnv())"
            )
        return lambda: env
    if callable(env):
        return env
    raise ValueError(f"env must be a Gymnasium id, a gymnasium.Env or a function returning one, got {type(env).__name__}")


def _on_sys_path(folder: str) -> bool:
    return any(os.path.abspath(entry or os.curdir) == folder for entry in sys.path)


def _import_module_of(env_id: str, setting: str) -> str:
    """``module:EnvId`` imports ``module`` (which registers EnvId) and returns ``EnvId``.

    A module that is not importable otherwise is looked for in the current directory, as
    ``python -m`` would: ``natpg train --env mymodule:MyEnv-v0`` works from the folder that
    holds ``mymodule.py``. The folder goes to the end of ``sys.path``, so it never hides an
    installed package, and stays there for the entry points gymnasium imports later.
    """
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    top = module.partition(".")[0]
    here = os.getcwd()
    shown = setting_value(setting, env_id, quote=True)
    try:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != top or _on_sys_path(here):
                raise
            sys.path.append(here)
            importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not (module == exc.name or module.startswith(f"{exc.name}.")):  # found, but it imports a missing one
            raise ValueError(f"{shown}: cannot import module {module!r}: it needs {exc.name!r}, which is not installed") from None
        raise ValueError(
            f"{shown}: cannot import module {module!r}: no module named {exc.name!r} in the current directory ({here}) "
            f"nor on sys.path; run natpg from the folder that holds {top}.py (or {top}/), or add that folder to PYTHONPATH"
        ) from None
    except ImportError as exc:
        raise ValueError(f"{shown}: cannot import module {module!r} ({exc})") from None
    return name


#: The ids of MinAtar's games (``MinAtar/Breakout-v1``, ...), from the optional ``minatar``
#: package. Its Gymnasium plugin entry point is not loaded by gymnasium >= 1.0, so natpg
#: registers them itself the first time such an id is asked for.
MINATAR_PREFIX = "MinAtar/"


def _register_minatar(shown: str) -> None:
    """Register MinAtar's ids with gymnasium, or say how to install it."""
    try:
        from minatar.gym import register_envs
    except ModuleNotFoundError as exc:
        if exc.name not in ("minatar", "minatar.gym"):
            raise
        raise ValueError(
            f"{shown}: MinAtar's environments need the minatar package (>= 1.0.15), which is not installed: "
            "pip install 'natpg[minatar]'"
        ) from None
    register_envs()


#: The ids of the Arcade Learning Environment's Atari games (``ALE/Pong-v5``, ...), from the
#: optional ``ale-py`` package (ROMs included from 0.9). natpg registers them the first time
#: such an id is asked for, and :func:`make_env` gives them the standard preprocessing
#: (:func:`_atari_preprocessed`).
ALE_PREFIX = "ALE/"


def _register_ale(shown: str) -> None:
    """Register ale-py's ids with gymnasium, or say how to install it (and OpenCV, which
    Gymnasium's ``AtariPreprocessing`` resizes with)."""
    try:
        import ale_py
        import cv2  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("ale_py", "cv2"):
            raise
        package = "ale-py (>= 0.9)" if exc.name == "ale_py" else "opencv-python-headless"
        raise ValueError(
            f"{shown}: Atari environments need the ale-py and OpenCV packages, and {package} is not installed: "
            "pip install 'natpg[atari]'"
        ) from None
    gym.register_envs(ale_py)


def _atari_preprocessed(env: gym.Env) -> gym.Env:
    """The standard Atari preprocessing, with Gymnasium's own wrappers: up to 30 no-ops at
    reset, grayscale, 84×84, then the last 4 frames stacked, so the observation is a (4, 84, 84)
    uint8 Box (natpg's image trunk reads it channels-first). Frames are skipped once: the v5 ids
    already repeat each action 4 times (with sticky actions), so ``AtariPreprocessing`` skips
    none of its own unless the env was made with ``frameskip=1``."""
    frame_skip = 4 if env.spec is not None and env.spec.kwargs.get("frameskip") == 1 else 1
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=frame_skip, screen_size=84, grayscale_obs=True)
    return gym.wrappers.FrameStackObservation(env, 4)


def check_env_id(env_id: str, setting: str = "env_id") -> str:
    """Return the registered id for ``env_id`` (importing ``module:`` prefixes), or raise a
    ValueError that suggests close names, naming the ``setting`` that gave the id (``envs``
    for natpg bench). Creates no environment.

    Optional game families are registered here the first time one of their ids is asked for:
    ``MinAtar/...`` from the ``minatar`` package and ``ALE/...`` (Atari, preprocessed by
    :func:`make_env`) from ``ale-py``; without the package the error names the extra to
    install, ``pip install 'natpg[minatar]'`` or ``pip install 'natpg[atari]'``."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"{setting_name(setting)} must be a Gymnasium id such as CartPole-v1, got {env_id!r}")
    if is_python_env(env_id):
        raise ValueError(
            f"{setting_value(setting, env_id, quote=True)}: this run's environment was given as a Python object or factory; "
            "it cannot be made from its id: pass it again (env=... of natpg.train or natpg.evaluate)"
        )
    name = _import_module_of(env_id, setting)
    if name.startswith(MINATAR_PREFIX) and not any(key.startswith(MINATAR_PREFIX) for key in gym.registry):
        _register_minatar(setting_value(setting, env_id, quote=True))
    if name.startswith(ALE_PREFIX) and not any(key.startswith(ALE_PREFIX) for key in gym.registry):
        _register_ale(setting_value(setting, env_id, quote=True))
    if name not in gym.registry:
        hint = did_you_mean(name, gym.registry)
        raise ValueError(f"{setting_value(setting, env_id, quote=True)}: not a registered Gymnasium environment{hint}")
    return name


def describe_space(space: spaces.Space) -> str:
    text = str(space)
    return text if len(text) <= 120 else text[:117] + "..."


_SUPPORTED = (
    "natpg's policies support 1-D Box observations (MLP), uint8 or bool images H×W×C or C×H×W (CNN), "
    "and Discrete or 1-D Box actions"
)


def check_spaces(env_id: str, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Refuse, with a message naming the space, what natpg's actors cannot handle."""
    from natpg.policies import is_image_space

    obs = observation_space
    if isinstance(obs, spaces.Box) and len(obs.shape) >= 2 and not is_image_space(obs):
        raise ValueError(
            f"env {env_id!r} has image-like observations {describe_space(obs)} ({len(obs.shape)}-D, {obs.dtype}); {_SUPPORTED}: "
            "give images as a 3-D uint8 or bool Box, wrap the env with a feature extractor, or FlattenObservation for small arrays"
        )
    if is_image_space(obs):
        obs = spaces.Box(0, 1, (1,), np.float32)  # checked; the action checks below still apply
    if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
        kind = type(obs).__name__
        fix = (
            "wrap it with gymnasium.wrappers.FlattenObservation (one-hot for discrete parts)"
            if isinstance(obs, (spaces.Dict, spaces.Tuple, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary))
            else "wrap it to give a 1-D float vector"
        )
        raise ValueError(f"env {env_id!r} has a {kind} observation space {describe_space(obs)}; {_SUPPORTED}: {fix}")
    if obs.shape[0] < 1:
        raise ValueError(f"env {env_id!r} has an empty observation space {describe_space(obs)}")
    act = action_space
    if isinstance(act, spaces.Discrete):
        if int(act.n) < 1:
            raise ValueError(f"env {env_id!r} has an empty action space {describe_space(act)}")
        return
    if isinstance(act, spaces.Box) and len(act.shape) == 1 and act.shape[0] >= 1:
        if not np.issubdtype(act.dtype, np.floating):
            raise ValueError(f"env {env_id!r} has an integer Box action space {describe_space(act)}; {_SUPPORTED} (float Box)")
        return
    raise ValueError(
        f"env {env_id!r} has a {type(act).__name__} action space {describe_space(act)}; {_SUPPORTED} "
        "(MultiDiscrete, MultiBinary, Tuple, Dict and multi-dimensional Box actions are not supported)"
    )


class _ShiftDiscrete(gym.ActionWrapper):
    """Discrete(n, start=s): the policy picks 0..n-1, the env gets s..s+n-1."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._start = int(env.action_space.start)
        self.action_space = spaces.Discrete(int(env.action_space.n))

    def action(self, action):
        return int(action) + self._start


_MUJOCO_WARNINGS_SEEN: set[str] = set()


def _route_mujoco_warnings() -> None:
    """MuJoCo prints its warnings to stderr and appends them to MUJOCO_LOG.TXT in the current
    directory (one line per environment created, e.g. gymnasium's deprecated `settotalmass`).
    Route them to Python's warnings instead, once per distinct message."""
    try:
        import mujoco
    except ImportError:
        return

    def handler(message: str) -> None:
        if message not in _MUJOCO_WARNINGS_SEEN:
            _MUJOCO_WARNINGS_SEEN.add(message)
            warnings.warn(f"MuJoCo: {message.strip()}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)


def env_from_factory(factory, label: str, max_episode_steps: int | None) -> gym.Env:
    """One env from a user's factory, checked and wrapped as :func:`make_env` does."""
    env = factory()
    if not isinstance(env, gym.Env):
        raise ValueError(f"the env factory {label!r} returned {type(env).__name__}, not a gymnasium.Env")
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    return _checked(env, label)


def _checked(env: gym.Env, label: str) -> gym.Env:
    """``env`` if natpg can train on its spaces (closed and refused otherwise), with a
    Discrete action space shifted to start at 0."""
    try:
        check_spaces(label, env.observation_space, env.action_space)
    except ValueError:
        env.close()
        raise
    if isinstance(env.action_space, spaces.Discrete) and int(env.action_space.start) != 0:
        env = _ShiftDiscrete(env)
    return env


def make_env(env_id: str, max_episode_steps: int | None = None, **kwargs) -> gym.Env:
    name = check_env_id(env_id)
    if not _MUJOCO_WARNINGS_SEEN and "mujoco" in str(gym.spec(name).entry_point):
        _route_mujoco_warnings()
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        env = gym.make(name, **kwargs)
    except (gym.error.Error, ImportError) as exc:
        raise ValueError(f"{setting_value('env_id', env_id, quote=True)} cannot be created: {exc}") from None
    if name.startswith(ALE_PREFIX):
        env = _atari_preprocessed(env)
    return _checked(env, env_id)


@dataclass
class EnvSpec:
    obs_dim: int  # the number of entries of one observation (H·W·C for an image)
    action_space: spaces.Space
    obs_shape: tuple[int, ...] = ()  # () means (obs_dim,)
    obs_dtype: Any = np.float32  # what a rollout stores: float32, or an image's uint8 / bool

    def __post_init__(self):
        if not self.obs_shape:
            self.obs_shape = (self.obs_dim,)
