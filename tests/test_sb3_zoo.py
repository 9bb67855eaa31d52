"""The RL Zoo baselines (sb3-ppo-zoo, sb3-trpo-zoo) and the mujoco suite that runs them."""

from __future__ import annotations

import csv
import inspect
import json

import numpy as np
import pytest
import torch

from natpg.bench import suites, sweep
from natpg.bench.sb3_runner import sb3_missing
from natpg.bench.zoo_hyperparams import ZOO_HYPERPARAMS, resolve_zoo, zoo_entry

needs_sb3 = pytest.mark.skipif(
    sb3_missing("sb3-ppo-zoo") is not None or sb3_missing("sb3-trpo-zoo") is not None,
    reason="stable-baselines3 / sb3-contrib not installed (pip install 'natpg[sb3]')",
)
TASKS = {"HalfCheetah", "Hopper", "Walker2d", "Swimmer", "Ant", "Humanoid"}
STEPS = 2048  # one TRPO rollout (2 envs × 1024), four PPO rollouts of 512 on Hopper: a few seconds


def test_zoo_table_covers_the_six_tasks_for_both_algorithms():
    for algo in ("ppo", "trpo"):
        assert set(ZOO_HYPERPARAMS[algo]) == TASKS
        for env_id in suites.MUJOCO_STANDARD:
            entry = zoo_entry(algo, env_id)
            assert entry["entry"] == env_id.replace("-v5", "-v4")  # each task has an entry of its own
            kwargs, n_envs, vec_normalize = resolve_zoo(entry)
            assert vec_normalize is not None and n_envs >= 1  # every MuJoCo entry normalises
            assert vec_normalize.get("gamma", 0.99) == kwargs.get("gamma", 0.99)
    # Spot checks against the zoo's files.
    assert zoo_entry("ppo", "HalfCheetah-v5")["learning_rate"] == 2.0633e-05
    assert zoo_entry("ppo", "Swimmer-v5")["n_envs"] == 4
    assert zoo_entry("trpo", "HalfCheetah-v5")["target_kl"] == 0.04
    assert zoo_entry("trpo", "Swimmer-v5")["gamma"] == 0.9999
    with pytest.raises(ValueError, match="no zoo entry"):
        zoo_entry("ppo", "Pusher-v5")


@needs_sb3
def test_every_zoo_hyperparameter_is_a_constructor_argument():
    from sb3_contrib import TRPO
    from stable_baselines3 import PPO

    for algo, cls in (("ppo", PPO), ("trpo", TRPO)):
        accepted = set(inspect.signature(cls).parameters)
        for task in TASKS:
            kwargs, _, _ = resolve_zoo(ZOO_HYPERPARAMS[algo][task])
            assert set(kwargs) <= accepted, (algo, task, set(kwargs) - accepted)


def test_schedules_and_activation_become_python_objects():
    kwargs, n_envs, vec_normalize = resolve_zoo({
        "entry": "X-v4", "normalize": {"norm_obs": True, "norm_reward": False}, "n_envs": 8, "gamma": 0.95,
        "learning_rate": "lin_3e-4", "clip_range": "lin_0.2", "clip_range_vf": 0.5,
        "policy_kwargs": {"activation_fn": "ReLU", "net_arch": [64]},
    })
    lr, clip = kwargs["learning_rate"], kwargs["clip_range"]
    assert callable(lr) and callable(clip)
    assert lr(1.0) == pytest.approx(3e-4) and lr(0.5) == pytest.approx(1.5e-4) and lr(0.0) == 0.0
    assert clip(1.0) == pytest.approx(0.2)
    assert kwargs["clip_range_vf"] == 0.5  # a number stays a number
    assert kwargs["policy_kwargs"]["activation_fn"] is torch.nn.ReLU
    assert n_envs == 8 and vec_normalize == {"norm_obs": True, "norm_reward": False, "gamma": 0.95}
    assert "entry" not in kwargs and "normalize" not in kwargs and "n_envs" not in kwargs
    assert resolve_zoo({"learning_rate": 1e-3})[2] is None  # no normalize: no VecNormalize
    with pytest.raises(ValueError, match="lin_X"):
        resolve_zoo({"learning_rate": "exp_0.1"})
    # The table itself is untouched by resolving it.
    assert ZOO_HYPERPARAMS["ppo"]["Hopper"]["policy_kwargs"]["activation_fn"] == "ReLU"


@needs_sb3
def test_returns_are_recorded_below_vec_normalize():
    from natpg.bench.sb3_runner import EpisodeLog, make_vec_env

    log = EpisodeLog()
    env = make_vec_env("Hopper-v5", None, log, n_envs=2, vec_normalize={"gamma": 0.99})
    env.seed(0)
    env.reset()
    rng = np.random.default_rng(0)
    raw_sums, raw, gaps, vec_steps = np.zeros(2), [], [], 0
    while len(raw) < 6:
        _, reward, done, _ = env.step(rng.uniform(-1, 1, size=(2, 3)).astype(np.float32))
        original = env.get_original_reward()
        raw_sums += original
        gaps.append(np.abs(reward - original).max())
        vec_steps += 1
        for i in np.flatnonzero(done):
            raw.append(raw_sums[i])
            raw_sums[i] = 0.0
    env.close()
    recorded = sorted(r for _, r, _ in log.episodes)
    assert recorded == pytest.approx(sorted(raw))  # the log holds the env's own returns
    assert max(gaps) > 0.1  # while the agent learns from normalised rewards
    assert log.steps == 2 * vec_steps  # steps count every copy of the env


@needs_sb3
@pytest.mark.parametrize("method", ["sb3-ppo-zoo", "sb3-trpo-zoo"])
def test_zoo_run_records_its_hyperparameters_and_a_final_return(tmp_path, monkeypatch, method):
    monkeypatch.setenv("NATPG_BENCH_INPROCESS", "1")
    result = sweep.run_sweep(tmp_path, ["Hopper-v5"], [method], seeds=1, steps=STEPS, workers=1, preset=None,
                             progress=False, log=lambda s: None)
    assert not result.failed, result.failed
    run = sweep.run_dir_for(tmp_path, "Hopper-v5", method, 0)
    config = json.loads((run / "config.json").read_text())
    algo = method.split("-")[1]
    zoo = config["zoo"]
    assert zoo["entry"] == "Hopper-v4" and zoo["version"] and f"{algo}.yml" in zoo["source"]
    expected = dict(ZOO_HYPERPARAMS[algo]["Hopper"])
    expected.pop("entry")
    assert zoo["hyperparameters"] == expected
    assert config["n_envs"] == expected.get("n_envs", 1) and config["vec_normalize"] == {"gamma": expected["gamma"]}
    assert config["hyperparameters"]["n_steps"] == expected["n_steps"]  # the model was built with them
    assert config["hyperparameters"]["gamma"] == expected["gamma"]
    assert config["max_episode_steps"] == 1000 and config["preset"] is None  # the env's own horizon
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and int(rows[-1]["timesteps"]) >= STEPS
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_return"] is not None and np.isfinite(summary["final_return"])
    assert summary["steps"] >= STEPS


def test_mujoco_suite_runs_natpg_defaults_against_the_zoo():
    from natpg import methods
    from natpg.config import resolve_config

    suite = suites.get_suite("mujoco")
    assert suite.envs == ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5")
    assert suite.preset is None and suite.seeds == 5
    assert all(suite.steps_for(e) == 1_000_000 for e in suite.envs)
    natpg_rules = [m for m in suite.resolved_methods() if m not in suites.SB3_METHODS]
    assert natpg_rules == ["trpo", "kfac", "rat", "smac", "isopo-ntk", "ef-exact", "ac-sgd", "ac-adam"]
    assert set(natpg_rules) <= set(methods.available())
    assert {"sb3-ppo-zoo", "sb3-trpo-zoo"} <= set(suite.resolved_methods())
    # the library-default rows live in one place, the paper-sb3 suite, at the same tasks and budget
    assert not {"sb3-ppo", "sb3-trpo"} & set(suite.resolved_methods())
    sb3 = suites.get_suite("paper-sb3")
    shared = set(suite.envs) & set(sb3.envs)  # the paper has no Ant: no library-default row there
    assert set(sb3.resolved_methods()) == {"sb3-ppo", "sb3-trpo"} and set(suite.envs) - shared == {"Ant-v5"}
    assert all(sb3.steps_for(e) == 1_000_000 for e in shared)
    for rule in natpg_rules:  # preset None resolves for every rule: natpg's default recipe, the env's horizon
        config = resolve_config("Hopper-v5", rule, suite.preset, total_steps=1_000_000, seed=0)
        assert config.preset == "natpg" and config.max_episode_steps is None


def test_cli_uses_the_suite_preset_unless_told(tmp_path, monkeypatch):
    from natpg.cli import main

    seen = []

    def fake_sweep(out, envs, methods, **kwargs):
        seen.append(kwargs["preset"])
        return sweep.SweepResult()

    monkeypatch.setattr(sweep, "run_sweep", fake_sweep)
    for argv, preset in ((["--suite", "mujoco"], None), (["--suite", "mujoco", "--preset", "paper"], "paper"),
                         (["--suite", "paper"], "paper"), (["--envs", "CartPole-v1", "--methods", "smac"], None),
                         (["--suite", "paper", "--preset", "none"], "none")):
        assert main(["bench", *argv, "--out", str(tmp_path), "--no-progress"]) == 0
        assert seen[-1] == preset, argv
