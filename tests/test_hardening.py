"""Bad input, unsupported spaces, NaN/inf from environments and updates, run-directory safety.

Every bad input must give one clear line naming the flag, the value and the valid range
(CLI: ``natpg train: error: ...``, exit 2, no traceback; API: ValueError with the same text)
before any environment is created.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import natpg
import test_hardening_envs as fault_envs
from natpg import methods
from natpg.config import TrainConfig, resolve_config, validate
from natpg.envs import EnvironmentFault, VectorEnv
from natpg.methods.first_order import ACSGD
from natpg.methods.registry import _REGISTRY
from natpg.trainer import TrainingStopped
from natpg.trainer import train as run_training

from natpg.presets import NATPG_RECIPE

T = NATPG_RECIPE["shared"]["rollout_steps"]  # the default recipe's rollout length, named in messages

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
TINY = dict(rollout_steps=200, hidden=(8,), critic_steps=2)


def cli(*args):
    """The CLI in a fresh process (what a user sees, tracebacks included)."""
    return subprocess.run([sys.executable, "-m", "natpg.cli", *args], capture_output=True, text=True, env=ENV)


@pytest.fixture
def run_cli(capsys):
    """The CLI in this process (fast): (exit status, stderr)."""
    from natpg.cli import main

    def run(*args):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
        return status, capsys.readouterr().err

    return run


@pytest.fixture
def no_env_creation(monkeypatch):
    """Fail the test if anything tries to create an environment."""
    def forbidden(*args, **kwargs):
        raise AssertionError("an environment was created before validation finished")

    monkeypatch.setattr(gym, "make", forbidden)


# -- 1. invalid configuration: one clear line, before any environment ------------------------

BAD_CONFIGS = [
    # (overrides, words the message must contain)
    (dict(lr=-1.0), ["--lr", "-1.0", "positive"]),
    (dict(lr=0.0), ["--lr", "0.0", "positive"]),
    (dict(lr=float("nan")), ["--lr", "nan", "finite"]),
    (dict(lr=float("inf")), ["--lr", "inf", "finite"]),
    (dict(damping=0.0), ["--damping", "0.0", "positive"]),
    (dict(damping=-0.1), ["--damping", "-0.1", "positive"]),
    (dict(damping=float("nan")), ["--damping", "nan", "finite"]),
    (dict(critic_lr=0.0), ["--critic-lr", "0.0", "> 0"]),
    (dict(critic_lr=float("inf")), ["--critic-lr", "inf", "> 0"]),
    (dict(gamma=1.5), ["--gamma", "1.5", "[0, 1]"]),
    (dict(gae_lambda=-0.1), ["--gae-lambda", "-0.1", "[0, 1]"]),
    (dict(gamma=float("nan")), ["--gamma", "nan", "[0, 1]"]),
    (dict(batch_size=5000), ["--batch-size", "5000", "--rollout-steps", f"1..{T}"]),
    (dict(batch_size=0), ["--batch-size", "0", "positive integer"]),
    (dict(batch_size=2.5), ["--batch-size", "2.5", "integer"]),
    (dict(hidden=(0,)), ["--hidden", "(0,)", "positive integers"]),
    (dict(hidden=()), ["--hidden", "()", "positive integers"]),
    (dict(num_envs=0), ["--num-envs", "0", ">= 1"]),
    (dict(rollout_steps=1001, num_envs=2), ["--rollout-steps", "1001", "multiple of --num-envs 2"]),
    (dict(total_steps=10), ["--steps", "10", f"--rollout-steps {T}"]),
    (dict(total_steps=True), ["--steps", "True", "integer"]),
    (dict(seed=-1), ["--seed", "-1", "[0, 4294967295]"]),
    (dict(critic_steps=0), ["--critic-steps", "0", ">= 1"]),
    (dict(checkpoint_every=0), ["--checkpoint-every", "0", ">= 1"]),
    (dict(max_episode_steps=0), ["--max-episode-steps", "0", ">= 1"]),
    (dict(activation="sigmoid"), ["--activation", "sigmoid", "tanh"]),
    (dict(normalize_obs="yes"), ["--normalize-obs", "yes", "true or false"]),
    (dict(max_nonfinite_updates=0), ["--max-nonfinite-updates", "0", ">= 1"]),
    (dict(torch_threads=0), ["--torch-threads", "0", "[1, 1024]"]),
    (dict(lrr=0.1), ["--lrr", "did you mean --lr"]),
    (dict(momentum=0.9), ["--momentum", "not a hyperparameter of --method smac", "kfac"]),
]


@pytest.mark.parametrize("overrides,words", BAD_CONFIGS, ids=[str(c[0]) for c in BAD_CONFIGS])
def test_bad_config_is_a_clear_value_error_before_any_env(overrides, words, no_env_creation, wording):
    with pytest.raises(ValueError) as info:
        resolve_config("CartPole-v1", "smac", **overrides)
    message = str(info.value)
    assert "\n" not in message
    wording.assert_says(message, words)


@pytest.mark.parametrize(
    "env_id,method,preset,words",
    [
        ("CartPol-v1", "smac", None, ["--env", "CartPol-v1", "did you mean CartPole-v1"]),
        ("CartPole-v1", "smak", None, ["--method", "smak", "did you mean smac", "available:"]),
        ("CartPole-v1", "smac", "papr", ["--preset", "papr", "did you mean paper"]),
        ("MountainCar-v0", "smac", "paper", ["--preset", "no values for env 'MountainCar-v0'", "CartPole"]),
        ("no_such_module:Env-v0", "smac", None, ["--env", "cannot import module 'no_such_module'"]),
    ],
)
def test_unknown_names_suggest_close_ones(env_id, method, preset, words, no_env_creation, wording):
    with pytest.raises(ValueError) as info:
        resolve_config(env_id, method, preset)
    wording.assert_says(str(info.value), words)


def test_every_rule_constructor_check_runs_before_any_env(no_env_creation, wording):
    """Range checks that live in a rule's constructor (not in type hints) and relations
    between hyperparameters still come before any environment, worded with the flag."""
    cases = [
        ("kfac", dict(momentum=1.5), ["--momentum", "1.5", "[0, 1)"]),
        ("trpo", dict(backtrack_ratio=1.0), ["--backtrack-ratio", "1.0"]),
        ("rat", dict(ratio_clip=0.5), ["--ratio-clip", "0.5"]),
        ("rat", dict(lr=0.5), ["--lr", "0.5", "lr_max"]),
        ("isopo", dict(ema_decay=1.0), ["--ema-decay", "1.0", "[0, 1)"]),
        ("rat", dict(rollout_steps=200), ["--batch-size 250 (the default of --method rat)", "--rollout-steps 200"]),
    ]
    for method, overrides, words in cases:
        if method not in methods.available():
            continue
        with pytest.raises(ValueError) as info:
            resolve_config("CartPole-v1", method, **overrides)
        wording.assert_says(str(info.value), words)


def test_defaults_and_paper_preset_of_every_rule_pass_validation(no_env_creation):
    for method in methods.available():
        resolve_config("CartPole-v1", method)
        resolve_config("HalfCheetah-v5", method, "paper")


def test_validation_does_not_touch_the_global_torch_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    resolve_config("CartPole-v1", "kfac")
    assert torch.equal(torch.rand(3), expected)


def test_trainer_validates_a_hand_built_config(no_env_creation, tmp_path):
    with pytest.raises(ValueError, match="^damping must be a finite positive number, got -2"):
        run_training(TrainConfig(method_kwargs={"lr": 0.1, "damping": -2.0}), run_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists(), "nothing is written for an invalid config"
    with pytest.raises(ValueError, match="^gamma must be"):
        validate(TrainConfig(gamma=2.0, method_kwargs=resolve_config("CartPole-v1").method_kwargs))


CLI_BAD = [
    (["--lr", "-1"], "natpg train: error: --lr must be a finite positive number, got -1.0"),
    (["--damping", "nan"], "natpg train: error: --damping must be a finite positive number, got nan"),
    (["--critic-lr", "inf"], "natpg train: error: --critic-lr must be a finite number > 0, got inf"),
    (["--method", "smak"], "did you mean smac?"),
    (["--env", "CartPol-v1"], "did you mean CartPole-v1"),
    (["--preset", "paper", "--env", "MountainCar-v0"], "has no values for env 'MountainCar-v0'"),
    (["--batch-size", "5000", "--rollout-steps", "1000"], "--batch-size 5000 must be at most --rollout-steps 1000"),
    (["--hidden", "0"], "--hidden must be a comma-separated list of positive integers"),
    (["--hidden", "64,,64"], "argument --hidden: expected comma-separated integers"),
    (["--num-envs", "0"], "--num-envs must be an integer >= 1, got 0"),
    (["--steps", "1.5"], "argument --steps: expected an integer, got '1.5'"),
    (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    (["--lrr", "0.1"], "unrecognized arguments: --lrr 0.1 (--lrr → did you mean --lr"),
    (["--momentum", "0.9"], "--momentum is not a hyperparameter of --method smac"),
]


@pytest.mark.parametrize("args,expected", CLI_BAD, ids=[" ".join(a) for a, _ in CLI_BAD])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, expected, run_cli, no_env_creation):
    status, err = run_cli("train", "--out", str(tmp_path / "run"), "--no-progress", *args)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("natpg train: error:"), err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_cli_bad_input_in_a_fresh_process_has_no_traceback(tmp_path):
    r = cli("train", "--env", "CartPole-v1", "--damping", "-1", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and r.stderr == "natpg train: error: --damping must be a finite positive number, got -1.0\n"


def test_cli_accepts_scientific_integers(tmp_path, run_cli):
    status, err = run_cli("train", "--env", "CartPole-v1", "--steps", "4e2", "--rollout-steps", "2e2", "--hidden", "8",
                          "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 400


# -- 2. unsupported spaces ---------------------------------------------------------------------


@pytest.mark.parametrize("env_name", sorted(fault_envs.UNSUPPORTED))
def test_unsupported_spaces_are_named(env_name):
    which, kind, _ = fault_envs.UNSUPPORTED[env_name]
    with pytest.raises(ValueError) as info:
        natpg.train(f"test_hardening_envs:{env_name}", "smac", total_steps=200, **TINY)
    message = str(info.value)
    assert f"test_hardening_envs:{env_name}" in message and kind in message and which in message, message
    assert "support 1-D Box observations" in message and "Discrete or 1-D Box actions" in message


def test_discrete_action_space_with_a_start_offset_works():
    result = natpg.train("test_hardening_envs:ShiftedAction-v0", "ac-adam", total_steps=400, seed=0, lr=0.05, **TINY)
    assert result.summary["episodes"] == 20  # the env asserts every action it gets is in {-1, 0, 1}


# -- 3a. NaN/inf from the environment ---------------------------------------------------------


@pytest.mark.parametrize(
    "env_name,words",
    [
        ("NaNObs-v0", ["non-finite observation", "nan", "index [2]", "environment step 7"]),
        ("NaNReward-v0", ["non-finite reward nan", "environment step 12"]),
        ("InfReward-v0", ["non-finite reward inf", "environment step 30"]),
        ("BadReset-v0", ["non-finite observation from reset()", "inf"]),
    ],
)
def test_nonfinite_env_values_are_a_clear_error(env_name, words):
    with pytest.raises(EnvironmentFault) as info:
        natpg.train(f"test_hardening_envs:{env_name}", "smac", total_steps=400, **TINY)
    message = str(info.value)
    assert f"env 'test_hardening_envs:{env_name}' (copy 0 of 1)" in message and "pass skip_nonfinite=True" in message
    for word in words:
        assert word in message, (word, message)


def test_nonfinite_step_index_with_several_envs():
    # each copy returns NaN at its own 7th step: copy 0 is first, at transition 7*2 - 1 = 13
    with pytest.raises(EnvironmentFault, match=r"\(copy 0 of 2\).*environment step 13"):
        natpg.train("test_hardening_envs:NaNObs-v0", "smac", total_steps=400, num_envs=2, **TINY)


def test_skip_nonfinite_drops_and_counts_transitions(tmp_path):
    result = natpg.train("test_hardening_envs:NaNEvery50-v0", "smac", total_steps=1000, seed=0, out=tmp_path,
                         skip_nonfinite=True, **TINY)
    assert result.summary["status"] == "completed"
    assert result.summary["nonfinite_transitions"] == 1000 // 50
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["nonfinite_transitions"]) for r in rows] == [4, 8, 12, 16, 20]
    for name, value in rows[-1].items():
        assert value == "" or math.isfinite(float(value)), name  # nothing NaN reached the update
    # episodes cut by a dropped transition are not reported: all reported lengths are real
    assert all(r["episode_return_mean"] != "" for r in rows[1:])


def test_vector_env_skip_mode_rewrites_the_bad_transition():
    env = VectorEnv("test_hardening_envs:NaNEvery50-v0", 1, 0, skip_nonfinite=True)
    prev_obs = None
    for step in range(1, 51):
        prev_obs = env.obs.copy()
        result = env.step(np.array([step % 2]))
    assert result.truncated[0] and not result.terminated[0]  # ends the episode as a time limit
    np.testing.assert_array_equal(result.final_obs[0], prev_obs[0])  # bootstrap from the last finite obs
    assert np.isfinite(result.next_obs).all() and env.nonfinite_transitions == 1
    assert result.finished == [] and env.episode_lengths == [0]


# -- 3b. non-finite updates are never applied ---------------------------------------------------


class _PoisonedRule(ACSGD):
    """AC-SGD that writes NaN into the parameters on chosen updates (counted from 1)."""

    name = "test-poisoned"
    poison_at: set[int] = set()

    def __init__(self, actor, *, lr: float = 1e-2, batch_size: int | None = None):
        super().__init__(actor, lr=lr, batch_size=batch_size)
        self.calls = 0

    def _step(self, batch):
        self.calls += 1
        info = super()._step(batch)
        if self.calls in self.poison_at or (0 in self.poison_at):
            with torch.no_grad():
                self.params[0].fill_(float("nan"))
        return info


@pytest.fixture
def poisoned_rule():
    methods.register(_PoisonedRule)
    yield _PoisonedRule
    _REGISTRY.pop(_PoisonedRule.name, None)


def test_nonfinite_actor_update_is_not_applied_and_counted(poisoned_rule, tmp_path, monkeypatch):
    monkeypatch.setattr(_PoisonedRule, "poison_at", {2})
    seen = []
    original = _PoisonedRule._step

    def spy(self, batch):
        before = [p.detach().clone() for p in self.params]
        info = original(self, batch)
        seen.append(before)
        return info

    monkeypatch.setattr(_PoisonedRule, "_step", spy)
    result = natpg.train("CartPole-v1", "test-poisoned", total_steps=800, seed=0, out=tmp_path, **TINY)
    assert result.summary["status"] == "completed" and result.summary["nonfinite_actor_updates"] == 1
    # the third update started from exactly the parameters the second one started from
    for a, b in zip(seen[1], seen[2]):
        assert torch.equal(a, b)
    assert all(torch.isfinite(p).all() for p in result.agent.actor.parameters())
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["nonfinite_actor_updates"]) for r in rows] == [0, 1, 1, 1]
    events = [json.loads(line) for line in open(tmp_path / "events.jsonl")]
    assert events[0]["event"] == "nonfinite_update" and "parameters non-finite" in events[0]["reasons"][0]


def test_k_consecutive_nonfinite_updates_stop_with_a_usable_checkpoint(poisoned_rule, tmp_path, monkeypatch):
    monkeypatch.setattr(_PoisonedRule, "poison_at", {0})  # every update
    with pytest.raises(TrainingStopped) as info:
        natpg.train("CartPole-v1", "test-poisoned", total_steps=2000, seed=0, out=tmp_path, max_nonfinite_updates=3, **TINY)
    assert "3 consecutive non-finite updates" in str(info.value) and str(tmp_path) in str(info.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped_nonfinite" and summary["steps"] == 600 and summary["nonfinite_actor_updates"] == 3
    config, agent = natpg.load_run(tmp_path)  # the checkpoint loads, with the initial (last finite) parameters
    assert all(torch.isfinite(p).all() for p in agent.parameters())


def test_diverging_run_stops_cleanly_from_the_cli(tmp_path, run_cli):
    """A natural fault: rewards of 1e30 overflow float32 advantages and critic targets."""
    run = tmp_path / "run"
    status, err = run_cli("train", "--env", "test_hardening_envs:HugeReward-v0", "--steps", "4000", "--rollout-steps",
                          "200", "--hidden", "8", "--preset", "none", "--out", str(run), "--no-progress")
    assert status == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "5 consecutive non-finite updates" in lines[0], err
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped_nonfinite"
    status, err = run_cli("eval", "--run", str(run), "--episodes", "1")  # the checkpoint is usable
    assert status == 0, err


def test_nonfinite_env_from_the_cli_is_one_line_exit_1(tmp_path, run_cli):
    status, err = run_cli("train", "--env", "test_hardening_envs:NaNReward-v0", "--steps", "400", "--rollout-steps",
                          "200", "--hidden", "8", "--out", str(tmp_path / "run"), "--no-progress")
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert "non-finite reward nan at environment step 12" in err


# -- 5. a run directory is never silently overwritten -------------------------------------------


def test_run_directory_is_never_silently_overwritten(tmp_path):
    out = tmp_path / "run"
    natpg.train("CartPole-v1", "smac", total_steps=200, seed=0, out=out, **TINY)
    before = (out / "metrics.csv").read_text()
    with pytest.raises(ValueError, match="already exists.*pass overwrite=True to replace it, or resume=True to continue it"):
        natpg.train("CartPole-v1", "smac", total_steps=200, seed=1, out=out, **TINY)
    assert (out / "metrics.csv").read_text() == before
    natpg.train("CartPole-v1", "smac", total_steps=400, seed=1, out=out, overwrite=True, **TINY)
    assert json.loads((out / "summary.json").read_text())["seed"] == 1


def test_overwrite_refuses_a_directory_natpg_did_not_write(tmp_path, run_cli):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"refusing to overwrite .* \(overwrite=True\): .*thesis.tex.*choose another out"):
        natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path, overwrite=True, **TINY)
    assert (tmp_path / "thesis.tex").read_text() == "precious"
    status, err = run_cli("train", "--out", str(tmp_path), "--steps", "200", "--rollout-steps", "200", "--no-progress")
    assert status == 2 and "already exists and is not empty" in err


def test_out_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path / "f", **TINY)


def test_a_run_directory_in_use_is_refused(tmp_path):
    from natpg.runlog import RunLog

    first = RunLog(tmp_path / "run", mode="new")
    try:
        with pytest.raises(ValueError, match="in use by another natpg process"):
            RunLog(tmp_path / "run", mode="resume")
    finally:
        first.close()
    RunLog(tmp_path / "run", mode="resume").close()  # free again once closed


def test_eval_of_a_bad_run_directory_is_one_line(tmp_path, run_cli):
    status, err = run_cli("eval", "--run", str(tmp_path / "missing"))
    assert status == 2 and "is not a natpg run directory: config.json is missing" in err
    run = tmp_path / "run"
    natpg.train("CartPole-v1", "smac", total_steps=200, out=run, **TINY)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    status, err = run_cli("eval", "--run", str(run))
    assert status == 2 and "is unreadable" in err and len(err.strip().splitlines()) == 1
    status, err = run_cli("eval", "--run", str(run), "--episodes", "0")
    assert status == 2 and "--episodes must be an integer >= 1, got 0" in err
