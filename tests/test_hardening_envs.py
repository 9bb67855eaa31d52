"""Faulty and unsupported environments for the hardening and resume tests (no tests here).

Importable as ``test_hardening_envs`` (the tests directory is on ``sys.path`` under pytest;
subprocesses get it through PYTHONPATH), so ``--env test_hardening_envs:NaNObs-v0`` works
from the command line too.
"""

from __future__ import annotations

import threading
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    """CartPole that returns NaN/inf at chosen steps (counted per env instance from creation)."""

    def __init__(self, nan_obs_at=(), nan_reward_at=(), inf_reward_at=(), nan_obs_every=0, huge_reward=False,
                 bad_reset=False, sleep=0.0, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.nan_obs_at, self.nan_reward_at, self.inf_reward_at = set(nan_obs_at), set(nan_reward_at), set(inf_reward_at)
        self.nan_obs_every, self.huge_reward, self.bad_reset, self.sleep = nan_obs_every, huge_reward, bad_reset, sleep
        self.count = 0

    def step(self, action):
        obs, reward, term, trunc, info = super().step(action)
        self.count += 1
        if self.sleep:
            time.sleep(self.sleep)
        if self.count in self.nan_obs_at or (self.nan_obs_every and self.count % self.nan_obs_every == 0):
            obs = obs.copy()
            obs[2] = np.nan
        if self.count in self.nan_reward_at:
            reward = float("nan")
        if self.count in self.inf_reward_at:
            reward = float("inf")
        if self.huge_reward:
            reward = 1e30
        return obs, reward, term, trunc, info

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if self.bad_reset:
            obs = np.full_like(obs, np.inf)
        return obs, info


class UnpicklableCartPole(FaultyCartPole):
    """Holds a lock, so it cannot be pickled: a resume must restart its episodes."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lock = threading.Lock()


class SpaceEnv(gym.Env):
    """An env with arbitrary spaces (never stepped: creation is refused)."""

    def __init__(self, observation_space=None, action_space=None):
        self.observation_space = observation_space or spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = action_space or spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class ShiftedActionEnv(gym.Env):
    """Discrete(3, start=-1): reward 1 for action +1. Checks that natpg maps 0..2 to -1..1."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Discrete(3, start=-1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert action in (-1, 0, 1), action
        return np.zeros(2, np.float32), float(action == 1), False, False, {}


def _register(env_id, entry_point, max_episode_steps=200, **kwargs):
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs)


_register("NaNObs-v0", FaultyCartPole, nan_obs_at=(7,))
_register("NaNReward-v0", FaultyCartPole, nan_reward_at=(12,))
_register("InfReward-v0", FaultyCartPole, inf_reward_at=(30,))
_register("NaNEvery50-v0", FaultyCartPole, nan_obs_every=50)
_register("BadReset-v0", FaultyCartPole, bad_reset=True)
_register("HugeReward-v0", FaultyCartPole, huge_reward=True)
_register("SlowCartPole-v0", FaultyCartPole, max_episode_steps=500, sleep=0.0005)
_register("Unpicklable-v0", UnpicklableCartPole)
_register("ShiftedAction-v0", ShiftedActionEnv, max_episode_steps=20)

_box = spaces.Box(-1, 1, (3,), np.float32)
UNSUPPORTED = {
    "DictObs-v0": ("observation", "Dict", dict(observation_space=spaces.Dict({"a": _box, "b": spaces.Discrete(3)}))),
    "TupleObs-v0": ("observation", "Tuple", dict(observation_space=spaces.Tuple((_box, _box)))),
    "DiscreteObs-v0": ("observation", "Discrete", dict(observation_space=spaces.Discrete(16))),
    # uint8 / bool 3-D images get natpg's CNN; float "images" and 2-D arrays are still refused
    "ImageObs-v0": ("observation", "image", dict(observation_space=spaces.Box(0, 1, (84, 84, 3), np.float32))),
    "GrayImageObs-v0": ("observation", "image", dict(observation_space=spaces.Box(0, 255, (84, 84), np.uint8))),
    "MultiDiscreteAct-v0": ("action", "MultiDiscrete", dict(action_space=spaces.MultiDiscrete([3, 2]))),
    "MultiBinaryAct-v0": ("action", "MultiBinary", dict(action_space=spaces.MultiBinary(4))),
    "TupleAct-v0": ("action", "Tuple", dict(action_space=spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))))),
    "MatrixAct-v0": ("action", "Box", dict(action_space=spaces.Box(-1, 1, (2, 2), np.float32))),
}
for _id, (_, _, _kw) in UNSUPPORTED.items():
    _register(_id, SpaceEnv, **_kw)
