"""natpg.train with pieces given as Python objects (issue 15): env instances and factories,
a user's actor and critic (modules or factories), their checkpoint and exact resume, and
natpg.load of such a run."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, Normal

import natpg
from natpg.policies import NumpyPolicy, TorchPolicy, rollout_policy

TINY = dict(rollout_steps=256, hidden=(16,), critic_steps=2)
WALL = ("wall_time", "update_time", "steps_per_second")


class CategoricalMLP(nn.Module):
    def __init__(self, observation_space, action_space):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(observation_space.shape[0], 16), nn.Tanh(), nn.Linear(16, int(action_space.n)))

    def distribution(self, obs):
        return Categorical(logits=self.net(obs))


class ValueMLP(nn.Module):
    def __init__(self, observation_space, action_space):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(observation_space.shape[0], 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, obs):
        return self.net(obs).squeeze(-1)


class CleanRLGaussian(nn.Module):
    """CleanRL's continuous actor: a plain nn.Parameter log-std."""

    def __init__(self, observation_space, action_space):
        super().__init__()
        act_dim = action_space.shape[0]
        self.actor_mean = nn.Sequential(nn.Linear(observation_space.shape[0], 16), nn.Tanh(), nn.Linear(16, act_dim))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def distribution(self, obs):
        mean = self.actor_mean(obs)
        return Independent(Normal(mean, self.actor_logstd.expand_as(mean).exp()), 1)


def _metrics(rows):
    return [{k: v for k, v in r.items() if k not in WALL} for r in rows]


def test_env_factory_and_instance():
    result = natpg.train(lambda: gym.make("CartPole-v1"), "ac-adam", 512, **TINY)
    assert result.config.env_id == "<python>:<lambda>" and result.summary["steps"] == 512
    result = natpg.train(gym.make("CartPole-v1"), "ac-adam", 512, **TINY)
    assert result.config.env_id == "<python>:CartPole-v1"
    with pytest.raises(ValueError, match="pass a factory instead"):
        natpg.train(gym.make("CartPole-v1"), "ac-adam", 512, num_envs=2, **TINY)
    with pytest.raises(ValueError, match="env or env_id"):
        natpg.train("CartPole-v1", env_id="CartPole-v1")
    assert natpg.train(env_id="CartPole-v1", method="ac-adam", total_steps=256, **TINY).summary["steps"] == 256


def test_user_actor_and_critic_are_used_saved_and_resumed_exactly(tmp_path):
    # anneal_lr=False: a run whose learning rates anneal cannot be resumed with a longer budget
    kw = dict(actor=CategoricalMLP, critic=ValueMLP, seed=3, anneal_lr=False, **TINY)
    full = natpg.train("CartPole-v1", "smac", 768, out=tmp_path / "full", **kw)
    assert type(full.agent.actor) is CategoricalMLP and type(full.agent.critic) is ValueMLP
    assert isinstance(rollout_policy(full.agent, gym.spaces.Discrete(2)), TorchPolicy)
    checkpoint = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    assert checkpoint["custom"] == {"actor": "CategoricalMLP", "critic": "ValueMLP"}
    assert torch.equal(checkpoint["agent"]["actor.net.0.weight"], full.agent.actor.net[0].weight)
    assert torch.equal(checkpoint["agent"]["critic.net.2.bias"], full.agent.critic.net[2].bias)

    natpg.train("CartPole-v1", "smac", 512, out=tmp_path / "split", **kw)
    resumed = natpg.train("CartPole-v1", "smac", 768, out=tmp_path / "split", resume=True, **kw)
    assert _metrics(resumed.metrics) == _metrics(full.metrics)
    assert torch.equal(resumed.agent.actor.net[0].weight, full.agent.actor.net[0].weight)

    with pytest.raises(ValueError, match=r"your actor CategoricalMLP.*actor=\.\.\."):
        natpg.train("CartPole-v1", "smac", 1024, out=tmp_path / "split", resume=True, seed=3, critic=ValueMLP,
                    anneal_lr=False, **TINY)

    with pytest.raises(ValueError, match=r"actor=\.\.\."):
        natpg.load(tmp_path / "full")
    policy = natpg.load(tmp_path / "full", actor=CategoricalMLP)  # the user's critic is not needed to act
    obs = np.array([0.01, -0.02, 0.03, 0.0], np.float32)
    assert policy.predict(obs) == full.policy.predict(obs)
    module = CategoricalMLP(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))  # a module works too
    assert natpg.load(tmp_path / "full", actor=module).predict(obs) == policy.predict(obs)
    report = natpg.evaluate(tmp_path / "full", episodes=2, actor=CategoricalMLP)
    assert report["episodes"] == 2 and report["mean"] > 0


def test_evaluate_a_run_on_an_env_object(tmp_path):
    natpg.train(lambda: gym.make("CartPole-v1"), "ac-adam", 256, out=tmp_path / "run", **TINY)
    with pytest.raises(ValueError, match=r"pass it again"):
        natpg.evaluate(tmp_path / "run", episodes=1)
    first = natpg.evaluate(tmp_path / "run", episodes=2, deterministic=False, env=lambda: gym.make("CartPole-v1"))
    again = natpg.evaluate(tmp_path / "run", episodes=2, deterministic=False, env="CartPole-v1")
    assert first["returns"] == again["returns"]


def test_module_instances_and_gaussian_actor():
    env = gym.make("Pendulum-v1")
    actor = CleanRLGaussian(env.observation_space, env.action_space)
    before = actor.actor_logstd.detach().clone()
    result = natpg.train(env, "trpo", 512, actor=actor, **TINY)
    assert result.agent.actor is actor and not torch.equal(actor.actor_logstd.detach(), before)
    action = result.policy.predict(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2 <= action[0] <= 2


@pytest.mark.parametrize("method", ["trpo", "smac", "kfac"])
def test_frozen_parameters_stay_frozen_through_training(method):
    """A fixed log-std (requires_grad=False): the exact-Fisher step (trpo, the shared trust region
    of smac and kfac) trains the mean and leaves the std alone."""
    env = gym.make("Pendulum-v1")
    actor = CleanRLGaussian(env.observation_space, env.action_space)
    actor.actor_logstd.requires_grad_(False)
    std, mean = actor.actor_logstd.detach().clone(), actor.actor_mean[0].weight.detach().clone()
    result = natpg.train(env, method, 512, actor=actor, **TINY)
    assert torch.equal(actor.actor_logstd.detach(), std)
    assert not torch.equal(actor.actor_mean[0].weight.detach(), mean)
    assert result.summary["status"] == "completed"


def test_natpg_mlps_keep_the_numpy_rollout():
    result = natpg.train("CartPole-v1", "ac-adam", 256, **TINY)
    assert isinstance(rollout_policy(result.agent, gym.spaces.Discrete(2)), NumpyPolicy)


def test_bad_components_are_named():
    with pytest.raises(ValueError, match="distribution"):
        natpg.train("CartPole-v1", "ac-adam", 256, actor=nn.Linear(4, 2), **TINY)
    with pytest.raises(ValueError, match="returned int"):
        natpg.train("CartPole-v1", "ac-adam", 256, actor=lambda o, a: 3, **TINY)
    with pytest.raises(ValueError, match="returned str, not a gymnasium.Env"):
        natpg.train(lambda: "CartPole-v1", "ac-adam", 256, **TINY)
