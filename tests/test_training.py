"""End-to-end training: learning on small budgets, determinism, run directory, CLI, checkpoints."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import natpg
from natpg.runlog import WALL_TIME_COLUMNS

RANDOM_CARTPOLE = 22.0  # mean return of the uniform random policy


# (method, budget, threshold) with default hyperparameters. Measured final returns, seeds 0/1/2,
# 2026-11-21: smac 230/185/233, ac-adam 238/235/210, ac-sgd-matched 221/212/163 at 60k;
# ac-sgd ~60 at 100k. Thresholds sit below those and well above the random policy.
LEARNING = [("smac", 60_000, 100.0), ("ac-sgd", 100_000, 40.0), ("ac-adam", 60_000, 100.0), ("ac-sgd-matched", 60_000, 100.0)]


@pytest.mark.parametrize("method,budget,threshold", LEARNING)
def test_each_method_learns_cartpole(method, budget, threshold):
    result = natpg.train("CartPole-v1", method=method, total_steps=budget, seed=0)
    assert result.summary["final_return"] > threshold > 1.5 * RANDOM_CARTPOLE


def _read_metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_metrics(tmp_path):
    for name in ("a", "b"):
        natpg.train("Pendulum-v1", method="smac", total_steps=4000, seed=3, out=tmp_path / name, rollout_steps=500, num_envs=2)
    a, b = _read_metrics(tmp_path / "a" / "metrics.csv"), _read_metrics(tmp_path / "b" / "metrics.csv")
    assert len(a) == len(b) == 8
    for ra, rb in zip(a, b):
        for col in ra:
            if col not in WALL_TIME_COLUMNS:
                assert ra[col] == rb[col], col
    c = natpg.train("Pendulum-v1", method="smac", total_steps=4000, seed=4, rollout_steps=500, num_envs=2)
    assert [r["log_prob_mean"] for r in c.metrics] != [float(r["log_prob_mean"]) for r in a]


def test_run_directory_contents(tmp_path):
    result = natpg.train("CartPole-v1", method="smac", total_steps=3000, seed=0, out=tmp_path, hidden=(16,), normalize_obs=True,
                         rollout_steps=1000)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["hidden"] == [16] and config["method_kwargs"]["damping"] == 0.1 and "torch" in config["versions"]
    rows = _read_metrics(tmp_path / "metrics.csv")
    assert len(rows) == 3
    for col in ("timesteps", "wall_time", "episode_return_mean", "episodes", "log_prob_mean", "entropy",
                "score_norm_sq", "update_norm", "critic_loss", "mean_score_norm_sq", "grad_cosine", "kl"):
        assert col in rows[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3000 and summary["final_return"] == result.summary["final_return"]
    assert {"wall_time", "steps_per_second"} <= set(summary)
    assert (tmp_path / "checkpoint.pt").exists()
    # Provenance: the commit natpg ran from, when it runs from a git checkout (an editable install).
    pkg = Path(natpg.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(pkg), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (pkg.parent / "pyproject.toml").exists():
        dirty = subprocess.run(["git", "-C", str(pkg), "status", "--porcelain", "--", str(pkg)], capture_output=True, text=True).stdout.strip()
        assert config["versions"]["natpg_commit"] == head.stdout.strip() + ("+dirty" if dirty else "")
    else:
        assert "natpg_commit" not in config["versions"]


def test_checkpoint_round_trip_restores_policy_and_normaliser(tmp_path):
    result = natpg.train("Pendulum-v1", method="ac-adam", total_steps=2000, seed=0, out=tmp_path, normalize_obs=True,
                         rollout_steps=1000)
    config, agent = natpg.load_run(tmp_path)
    assert config.method == "ac-adam"
    for (k, v), (k2, v2) in zip(result.agent.state_dict().items(), agent.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert float(agent.obs_norm.count) > 1000
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert {"rule", "critic_optimizer", "torch_rng", "numpy_rng", "timesteps"} <= set(state)
    assert state["rule"]["optimizer"]["state"], "Adam moments are saved"
    obs = torch.randn(5, 3)
    torch.testing.assert_close(result.agent.value(obs), agent.value(obs))


def test_cli_train_then_eval(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "natpg.cli", "train", "--env", "CartPole-v1", "--method", "smac", "--preset", "paper",
           "--steps", "2000", "--seed", "1", "--out", str(run), "--hidden", "32,32", "--damping", "0.5", "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "final return" in out and "steps/s" in out
    config = json.loads((run / "config.json").read_text())
    # preset values, with explicit flags winning
    assert config["max_episode_steps"] == 1000 and config["hidden"] == [32, 32]
    kwargs = config["method_kwargs"]
    assert (kwargs["lr"], kwargs["damping"], kwargs["batch_size"]) == (5e-3, 0.5, 1000)
    ev = subprocess.run([sys.executable, "-m", "natpg.cli", "eval", "--run", str(run), "--episodes", "3"],
                        capture_output=True, text=True, check=True).stdout
    assert "±" in ev and "3 episodes" in ev
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr


def test_cli_bad_input_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "natpg.cli", "train", "--env", "CartPole-v1", "--method", "smak",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean smac" in r.stderr and "Traceback" not in r.stderr


def test_user_registered_env_via_module_prefix(tmp_path, monkeypatch):
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyPendulum-v0', entry_point='gymnasium.envs.classic_control:PendulumEnv', max_episode_steps=50)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = natpg.train("my_envs:MyPendulum-v0", method="ac-sgd", total_steps=1000, seed=0, rollout_steps=1000)
    assert result.summary["episodes"] == 20


def test_none_is_an_explicit_override():
    from natpg.config import resolve_config

    config = resolve_config("CartPole-v1", "smac", "paper", batch_size=None, max_episode_steps=None)
    assert config.method_kwargs["batch_size"] is None and config.max_episode_steps is None
    with pytest.raises(ValueError, match="^total_steps must be an integer"):
        resolve_config("CartPole-v1", "smac", total_steps=None)


def test_paper_preset_gives_smac_single_table2_values():
    from natpg.config import resolve_config

    config = resolve_config("HalfCheetah-v5", "smac-single", "paper")
    assert (config.method_kwargs["lr"], config.method_kwargs["damping"]) == (5e-3, 1.0)


def test_cli_says_when_a_preset_does_not_cover_the_method(tmp_path):
    cmd = [sys.executable, "-m", "natpg.cli", "train", "--env", "CartPole-v1", "--preset", "paper", "--steps", "1000",
           "--no-progress"]
    covered = subprocess.run(cmd + ["--method", "smac", "--out", str(tmp_path / "a")], capture_output=True, text=True, check=True)
    uncovered = subprocess.run(cmd + ["--method", "kfac", "--out", str(tmp_path / "b")], capture_output=True, text=True, check=True)
    assert "no values of its own" not in covered.stderr
    assert "no values of its own for --method kfac" in uncovered.stderr


def test_steps_not_a_multiple_of_the_rollout_round_up_to_whole_rollouts(tmp_path, capsys):
    result = natpg.train("CartPole-v1", method="smac", total_steps=2500, seed=0, rollout_steps=1000, out=tmp_path)
    assert result.summary["steps"] == 3000 and len(result.metrics) == 3
    assert "total_steps=2500 is not a multiple of rollout_steps=1000; training 3000 steps" in capsys.readouterr().err
