"""Deployment (issue 15): natpg.load(run_dir).predict(obs), result.policy, spaces.json."""

import json
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import natpg
from natpg.deploy import Policy, space_from_dict, space_to_dict

SMALL = dict(total_steps=512, rollout_steps=256, critic_batch_size=64)


def _run_own_path(agent, obs):
    """The trainer's own way to act: normalise, distribution, most likely action."""
    with torch.no_grad():
        dist = agent.actor.distribution(agent.policy_input(torch.as_tensor(obs, dtype=torch.float32)))
    return dist.mode.numpy()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cp"
    result = natpg.train("CartPole-v1", "smac", seed=0, out=out, normalize_obs=True, **SMALL)
    return out, result


def test_load_predicts_with_the_saved_observation_normalisation(cartpole_run):
    out, result = cartpole_run
    _, agent = natpg.load_run(out)
    assert agent.obs_norm.enabled and not torch.allclose(agent.obs_norm.mean, torch.zeros(4, dtype=torch.float64))
    policy = natpg.load(out)
    assert isinstance(policy, Policy)
    obs = np.random.default_rng(0).normal(scale=[1.0, 2.0, 0.1, 2.0], size=(64, 4)).astype(np.float32)
    expected = _run_own_path(agent, obs)
    batch = policy.predict(obs)
    assert batch.shape == (64,) and batch.dtype == np.int64
    np.testing.assert_array_equal(batch, expected)
    single = policy.predict(obs[3])
    assert np.ndim(single) == 0 and int(single) == expected[3]
    # result.policy is the same kind of object, with the same normalisation (issue 15's bug).
    assert isinstance(result.policy, Policy)
    np.testing.assert_array_equal(result.policy.predict(obs), expected)
    with torch.no_grad():
        np.testing.assert_allclose(
            result.policy.distribution(torch.as_tensor(obs)).logits.numpy(),
            agent.actor.distribution(agent.policy_input(torch.as_tensor(obs))).logits.numpy(), rtol=1e-6)
    stochastic = policy.predict(obs, deterministic=False)
    assert stochastic.shape == (64,) and set(np.unique(stochastic)) <= {0, 1}


def test_a_wrong_observation_shape_is_a_clear_error(cartpole_run):
    policy = natpg.load(cartpole_run[0])
    with pytest.raises(ValueError, match=r"fits neither one observation \(4,\) nor a batch \(n, 4\)"):
        policy.predict(np.zeros(5))


def test_the_run_directory_stores_the_spaces(cartpole_run):
    record = json.loads((cartpole_run[0] / "spaces.json").read_text())
    assert record["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    assert space_from_dict(record["observation_space"]) == gym.make("CartPole-v1").observation_space


def test_evaluate_and_load_run_still_work(cartpole_run):
    report = natpg.evaluate(cartpole_run[0], episodes=2)
    assert report["episodes"] == 2 and len(report["returns"]) == 2


def test_box_actions_are_clipped_to_the_bounds(tmp_path):
    out = tmp_path / "pend"
    result = natpg.train("Pendulum-v1", "ac-sgd", seed=0, out=out, log_std_init=1.0, **SMALL)
    policy = natpg.load(out)
    obs = np.random.default_rng(1).normal(size=(200, 3)).astype(np.float32)
    with torch.no_grad():  # push the mean far outside [-2, 2]
        policy.actor.net[-1].bias.fill_(50.0)
    for deterministic in (True, False):
        actions = policy.predict(obs, deterministic=deterministic)
        assert actions.shape == (200, 1) and actions.dtype == np.float32
        assert actions.max() <= 2.0 and actions.min() >= -2.0
    assert policy.predict(obs[0]).shape == (1,)
    assert float(policy.predict(obs[0])[0]) == 2.0
    exported = policy.export().module()
    torch.testing.assert_close(exported(torch.as_tensor(obs)), torch.full((200, 1), 2.0))
    assert isinstance(result.policy, Policy)


_MODULE = '''
import gymnasium as gym

gym.register("{env}", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv", max_episode_steps=50)
'''


def test_a_module_env_loads_without_its_module(tmp_path, monkeypatch):
    """Trained on module:Env-v0; loaded where that module cannot be imported."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "natpg_deploy_envs.py").write_text(textwrap.dedent(_MODULE.format(env="DeployCartPole-v0")))
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    natpg.train("natpg_deploy_envs:DeployCartPole-v0", "smac", seed=0, out=tmp_path / "run", **SMALL)
    # Now the module is gone: not importable, not imported, its env not registered.
    (work / "natpg_deploy_envs.py").unlink()
    monkeypatch.delitem(sys.modules, "natpg_deploy_envs", raising=False)
    monkeypatch.delitem(gym.registry, "DeployCartPole-v0")
    monkeypatch.chdir(tmp_path)
    policy = natpg.load(tmp_path / "run")
    assert policy.predict(np.zeros(4, dtype=np.float32)) in (0, 1)
    config, agent = natpg.load_run(tmp_path / "run")
    assert config.env_id == "natpg_deploy_envs:DeployCartPole-v0"


def test_discrete_start_is_added_back_and_box_bounds_round_trip():
    from natpg.policies import CategoricalActor

    actor = CategoricalActor(2, 3, (4,), "tanh")
    policy = Policy(actor, spaces.Box(-np.inf, np.inf, (2,), np.float32), spaces.Discrete(3, start=-1))
    actions = policy.predict(np.random.default_rng(0).normal(size=(50, 2)), deterministic=False)
    assert set(np.unique(actions)) <= {-1, 0, 1}
    box = spaces.Box(np.array([-np.inf, 0.0]), np.array([1.5, np.inf]), dtype=np.float64)
    assert space_from_dict(json.loads(json.dumps(space_to_dict(box)))) == box


def test_a_policy_exports_with_its_normalisation(cartpole_run, tmp_path):
    policy = natpg.load(cartpole_run[0])
    path = tmp_path / "policy.pt2"
    torch.export.save(policy.export(), path)
    program = torch.export.load(path).module()
    obs = torch.randn(8, 4) * 2
    torch.testing.assert_close(program(obs), policy(obs))
    np.testing.assert_array_equal(policy(obs).numpy(), policy.predict(obs.numpy()))
