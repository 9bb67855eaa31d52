"""Image observations (issue 15): uint8 / bool Box observations, H×W×C or C×H×W, get natpg's
CNN trunk in actor and critic, with no observation normalisation; trained with trpo and smac
on a tiny grid env, then ``natpg.load(run).predict`` on image observations."""

from __future__ import annotations

import sys

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


def test_a_minatar_id_without_minatar_names_the_extra_to_install(monkeypatch, capsys):
    from natpg.bench import sweep
    from natpg.cli import main
    from natpg.envs import check_env_id

    for key in [k for k in gym.registry if k.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, key)
    monkeypatch.setitem(sys.modules, "minatar", None)  # import minatar fails, installed or not
    with pytest.raises(ValueError, match=r"^env_id='MinAtar/Breakout-v1': .*minatar.*not installed: pip install 'natpg\[minatar\]'$"):
        check_env_id("MinAtar/Breakout-v1")
    with pytest.raises(ValueError, match=r"^envs='MinAtar/Breakout-v1': .*pip install 'natpg\[minatar\]'"):
        sweep.check_plan(["MinAtar/Breakout-v1"], ["kfac"], [0], 2048, None, {})
    assert main(["train", "--env", "MinAtar/Breakout-v1", "--method", "kfac", "--no-progress"]) == 2
    assert "pip install 'natpg[minatar]'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a registered Gymnasium environment"):  # other ids: as before
        check_env_id("Breakout-v1")


def test_minatar_ids_are_registered_from_the_package_once(minatar_stand_in):
    from natpg.envs import check_env_id, make_env

    assert check_env_id("MinAtar/Breakout-v1") == "MinAtar/Breakout-v1"
    env = make_env("MinAtar/Breakout-v1")
    assert env.observation_space.shape == (10, 10, 4) and env.observation_space.dtype == np.bool_
    env.close()
    with pytest.raises(ValueError, match="did you mean MinAtar/Breakout-v1"):
        check_env_id("MinAtar/Breakout-v2")
    assert len(minatar_stand_in) == 1


def test_minatar_breakout_when_minatar_is_installed():
    pytest.importorskip("minatar.gym")
    from natpg.envs import make_env

    env = make_env("MinAtar/Breakout-v1")
    assert env.observation_space.shape == (10, 10, 4) and env.observation_space.dtype == np.bool_
    env.close()


def test_an_atari_id_without_ale_py_names_the_extra_to_install(monkeypatch):
    from natpg.envs import check_env_id

    for key in [k for k in gym.registry if k.startswith("ALE/")]:
        monkeypatch.delitem(gym.registry, key)
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py fails, installed or not
    with pytest.raises(ValueError, match=r"^env_id='ALE/Pong-v5': .*ale-py.*not installed: pip install 'natpg\[atari\]'$"):
        check_env_id("ALE/Pong-v5")


def test_an_atari_id_starts_and_trains_when_ale_py_is_installed():
    """Smoke only: Pong through ale-py, preprocessed to a (4, 84, 84) uint8 stack, one trpo update."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from natpg.envs import make_env

    env = make_env("ALE/Pong-v5")
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    env.close()
    result = natpg.train("ALE/Pong-v5", "trpo", 256, rollout_steps=128, critic_steps=1)
    assert result.summary["steps"] == 256 and result.summary["nonfinite_actor_updates"] == 0
    trunk = result.agent.actor.net[0]
    assert isinstance(trunk, ImageTrunk) and not trunk.channels_last and len(trunk.conv) == 7  # the Nature-DQN stack
    assert all(torch.isfinite(p).all() for p in result.agent.actor.parameters())
