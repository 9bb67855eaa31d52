"""The allocation-free rollout path gives exactly what the per-step API gives."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from natpg.envs import VectorEnv
from natpg.policies import Agent, NumpyPolicy


@pytest.mark.parametrize("space", [spaces.Box(-1, 1, (3,)), spaces.Discrete(4)], ids=["gaussian", "categorical"])
@pytest.mark.parametrize("normalize,activation", [(False, "tanh"), (True, "relu"), (True, "elu")])
@pytest.mark.parametrize("n", [1, 3])
def test_act_with_pre_drawn_noise_equals_per_step_sample(space, normalize, activation, n):
    torch.manual_seed(0)
    agent = Agent(5, space, (16, 16), activation, normalize)
    agent.obs_norm.update(np.random.default_rng(1).normal(2.0, 3.0, (50, 5)))
    if not agent.actor.discrete:
        with torch.no_grad():
            agent.actor.log_std.value.fill_(-0.5)
    policy = NumpyPolicy(agent)
    obs = np.random.default_rng(2).normal(size=(20, n, 5)).astype(np.float32)
    rng = np.random.default_rng(7)
    per_step = np.stack([policy.sample(o, rng) for o in obs])
    noise = policy.draw_noise(np.random.default_rng(7), len(obs), n)
    actions = policy.action_array(len(obs), n)
    for o, z, a in zip(obs, noise, actions):
        returned = policy.act(o, z, a)
        assert returned is a or np.shares_memory(returned, a)
    np.testing.assert_array_equal(actions, per_step)
    assert actions.dtype == per_step.dtype


def test_step_into_equals_step():
    a, b = VectorEnv("CartPole-v1", 3, seed=5), VectorEnv("CartPole-v1", 3, seed=5)
    rng = np.random.default_rng(0)
    rewards, term, trunc, final = np.empty(3), np.empty(3, bool), np.empty(3, bool), np.empty((3, 4), np.float32)
    finished_a, finished_b = [], []
    for _ in range(300):
        actions = rng.integers(0, 2, size=3)
        result = a.step(actions)
        finished_b += b.step_into(actions, rewards, term, trunc, final)
        finished_a += result.finished
        np.testing.assert_array_equal(result.rewards, rewards)
        np.testing.assert_array_equal(result.terminated, term)
        np.testing.assert_array_equal(result.truncated, trunc)
        np.testing.assert_array_equal(result.final_obs, final)
        np.testing.assert_array_equal(result.next_obs, b.obs)
    assert finished_a == finished_b and len(finished_a) > 5
    assert all(isinstance(ret, float) and isinstance(length, int) for ret, length in finished_a)


def test_box_actions_are_clipped_at_the_env_only():
    # HalfCheetah's control cost uses the action it is given, so an unclipped 5.0 would cost 25x more.
    envs = [VectorEnv("HalfCheetah-v5", 1, seed=0) for _ in range(2)]
    out = [(np.empty(1), np.empty(1, bool), np.empty(1, bool), np.empty((1, 17), np.float32)) for _ in envs]
    big = np.full((1, 6), 5.0, dtype=np.float32)
    envs[0].step_into(big, *out[0])
    envs[1].step_into(np.ones((1, 6), dtype=np.float32), *out[1])
    assert big[0, 0] == 5.0  # the caller's (rollout's) array is not modified
    assert out[0][0][0] == out[1][0][0]
    np.testing.assert_array_equal(out[0][3], out[1][3])
