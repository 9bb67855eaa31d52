"""Image observations (issue 15): uint8 / bool Box observations, H×W×C or C×H×W, get natpg's
CNN trunk in actor and critic, with no observation normalisation; trained with trpo and smac
on a tiny grid env, then ``natpg.load(run).predict`` on image observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import natpg
from natpg.envs import check_spaces
from natpg.policies import Agent, ImageTrunk, TorchPolicy, is_image_space, rollout_policy


class TinyGrid(gym.Env):
    """A 6×6 grid with two channels (the agent, the goal); 4 moves; reward 1 on the goal."""

    def __init__(self, channels_first: bool = False, dtype=np.uint8):
        shape = (2, 6, 6) if channels_first else (6, 6, 2)
        self.observation_space = spaces.Box(0, 1 if dtype == np.bool_ else 255, shape, dtype)
        self.action_space = spaces.Discrete(4)
        self.channels_first, self.dtype = channels_first, dtype

    def _obs(self):
        grid = np.zeros((6, 6, 2), np.uint8)
        grid[self.pos[0], self.pos[1], 0] = 1
        grid[self.goal[0], self.goal[1], 1] = 1
        if self.channels_first:
            grid = grid.transpose(2, 0, 1)
        return grid.astype(bool) if self.dtype == np.bool_ else grid * 255

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.goal = self.np_random.integers(0, 6, 2), self.np_random.integers(0, 6, 2)
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + [(0, 1), (0, -1), (1, 0), (-1, 0)][int(action)], 0, 5)
        done = bool((self.pos == self.goal).all())
        return self._obs(), float(done), done, False, {}


if "TinyGrid-v0" not in gym.registry:
    gym.register("TinyGrid-v0", entry_point=TinyGrid, max_episode_steps=20)
    gym.register("TinyGridCHWBool-v0", entry_point=TinyGrid, max_episode_steps=20,
                 kwargs=dict(channels_first=True, dtype=np.bool_))


@pytest.mark.parametrize("method", ["trpo", "smac"])
def test_image_env_trains_and_predicts(method, tmp_path):
    result = natpg.train("TinyGrid-v0", method, 2048, rollout_steps=512, normalize_obs=True, out=tmp_path / "run")
    assert result.summary["steps"] == 2048 and result.summary["nonfinite_actor_updates"] == 0
    assert isinstance(result.agent.actor.net[0], ImageTrunk) and isinstance(result.agent.critic.net[0], ImageTrunk)
    assert not result.agent.obs_norm.enabled  # images are not normalised, whatever normalize_obs says
    policy = natpg.load(tmp_path / "run")
    obs = TinyGrid().reset(seed=1)[0]
    action = policy.predict(obs)
    assert action.shape == () and 0 <= int(action) < 4
    batch = np.stack([obs, TinyGrid().reset(seed=2)[0]])
    actions = policy.predict(batch)
    assert actions.shape == (2,) and actions[0] == action
    assert actions.tolist() == result.policy.predict(batch).tolist()


def test_channels_first_bool_images():
    result = natpg.train("TinyGridCHWBool-v0", "kfac", 512, rollout_steps=256)
    trunk = result.agent.actor.net[0]
    assert not trunk.channels_last and trunk.scale == 1.0
    assert isinstance(rollout_policy(result.agent, spaces.Discrete(4)), TorchPolicy)


def test_trunk_layout_and_scaling():
    hwc, chw = spaces.Box(0, 255, (6, 6, 2), np.uint8), spaces.Box(0, 255, (2, 6, 6), np.uint8)
    assert is_image_space(hwc) and is_image_space(chw) and is_image_space(spaces.Box(0, 1, (10, 10, 4), bool))
    assert not is_image_space(spaces.Box(0, 1, (6, 6, 2), np.float32)) and not is_image_space(spaces.Box(0, 255, (6, 6), np.uint8))
    torch.manual_seed(0)
    a, b = ImageTrunk(hwc), ImageTrunk(chw)
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 256, (3, 6, 6, 2)).float()
    assert torch.allclose(a(x), b(x.permute(0, 3, 1, 2)))  # H×W×C is transposed to C×H×W
    assert a.scale == 1 / 255
    assert ImageTrunk(spaces.Box(0, 255, (4, 84, 84), np.uint8)).out_dim == 64 * 7 * 7  # Nature CNN on Atari frames


def test_image_spaces_pass_the_check_and_build_cnn_agents():
    check_spaces("x", spaces.Box(0, 255, (6, 6, 2), np.uint8), spaces.Discrete(3))
    space = spaces.Box(0, 255, (6, 6, 2), np.uint8)
    agent = Agent(72, spaces.Box(-1, 1, (2,), np.float32), (8,), "tanh", True, observation_space=space)
    obs = torch.randint(0, 256, (5, 6, 6, 2), dtype=torch.uint8)
    x = agent.policy_input(obs)
    assert x.dtype == torch.float32 and agent.actor.distribution(x).sample().shape == (5, 2)
    assert agent.value(obs).shape == (5,)


def test_cli_trains_an_image_env(tmp_path, capsys):
    from natpg.cli import main

    status = main(["train", "--env", "test_images:TinyGrid-v0", "--method", "smac", "--steps", "512", "--rollout-steps", "256",
                   "--out", str(tmp_path / "run"), "--no-progress"])
    assert status == 0, capsys.readouterr().err
    assert natpg.load(tmp_path / "run").predict(TinyGrid().reset(seed=0)[0]).shape == ()
