"""Crash-safe exact resume: a run killed at any point and resumed with ``--resume`` gives the
same metrics.csv and summary.json as an uninterrupted run with the same seed (wall-clock
columns aside), for every update rule, classic control and MuJoCo; where the environment
state cannot be captured, the episodes in progress restart and the resume says so.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import natpg
import natpg.trainer
import test_hardening_envs  # noqa: F401 - registers the test environments
from natpg import methods
from natpg.runlog import WALL_TIME_COLUMNS

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
WALL_SUMMARY = {"wall_time", "steps_per_second", "update_time_mean"}


def metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if k not in WALL_TIME_COLUMNS} for r in rows]


def summary(run_dir):
    s = json.loads((Path(run_dir) / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in WALL_SUMMARY}


def assert_same_run(a, b):
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == len(mb)
    for i, (ra, rb) in enumerate(zip(ma, mb)):
        assert ra == rb, (i, {k: (ra[k], rb.get(k)) for k in ra if ra[k] != rb.get(k)})
    assert summary(a) == summary(b)


class Killed(BaseException):
    """A hard kill mid-run (SIGKILL, power loss): the trainer gets no chance to write anything.
    Unlike KeyboardInterrupt / SIGTERM, after which it writes the last update boundary."""


def crash_at_rollout(monkeypatch, n, exception=None):
    """Make the n-th rollout of the next run raise ``exception`` (default: a hard kill)."""
    calls = {"n": 0}
    original = natpg.trainer.collect

    def collect(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise (exception or Killed)()
        return original(*args, **kwargs)

    monkeypatch.setattr(natpg.trainer, "collect", collect)
    return lambda: monkeypatch.setattr(natpg.trainer, "collect", original)


@pytest.mark.parametrize("method", methods.available())
def test_every_rule_resumes_exactly_after_a_crash(method, tmp_path, monkeypatch):
    kw = dict(total_steps=1000, seed=2, rollout_steps=250, checkpoint_every=500, hidden=(8,), critic_steps=2)
    natpg.train("Pendulum-v1", method, out=tmp_path / "ref", **kw)
    undo = crash_at_rollout(monkeypatch, 4)  # updates 1-3 done, checkpoint after 2, row 3 logged
    with pytest.raises(Killed):
        natpg.train("Pendulum-v1", method, out=tmp_path / "run", **kw)
    undo()
    assert len(metrics(tmp_path / "run")) == 3 and not (tmp_path / "run" / "summary.json").exists()
    natpg.train("Pendulum-v1", method, out=tmp_path / "run", resume=True, **kw)
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_mujoco_resumes_exactly_with_time_limits_and_several_envs(tmp_path, monkeypatch, capsys):
    # a 40-step horizon: the TimeLimit counters and MjData of episodes in progress must be restored
    kw = dict(total_steps=800, seed=1, rollout_steps=200, num_envs=2, checkpoint_every=400, hidden=(8,),
              critic_steps=2, max_episode_steps=40, normalize_obs=True)
    natpg.train("Hopper-v5", "kfac", out=tmp_path / "ref", **kw)
    undo = crash_at_rollout(monkeypatch, 4)
    with pytest.raises(Killed):
        natpg.train("Hopper-v5", "kfac", out=tmp_path / "run", **kw)
    undo()
    natpg.train("Hopper-v5", "kfac", out=tmp_path / "run", resume=True, **kw)
    assert "environment state restored exactly" in capsys.readouterr().err
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_run(tmp_path, capsys):
    env_id = "test_hardening_envs:SlowCartPole-v0"  # 0.5 ms a step: the kill lands mid-run
    args = dict(total_steps=2400, seed=3, rollout_steps=200, checkpoint_every=400, hidden=(8,), critic_steps=2)
    natpg.train(env_id, "smac", out=tmp_path / "ref", **args)

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "natpg.cli", "train", "--env", env_id, "--method", "smac", "--steps", "2400",
           "--seed", "3", "--rollout-steps", "200", "--checkpoint-every", "400", "--hidden", "8",
           "--critic-steps", "2", "--out", str(run), "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        # wait for a checkpoint, then for one more metrics row after it (work that must be redone)
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "checkpoint.pt").exists() and (run / "metrics.csv").exists():
                if len((run / "metrics.csv").read_text().splitlines()) >= 4:  # header + 3 rows
                    break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()
    killed_rows = len(metrics(run))
    assert 3 <= killed_rows < 12

    from natpg.cli import main  # the resume runs here: a different process from the killed one

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "environment state restored exactly" in err
    assert_same_run(tmp_path / "ref", run)
    events = [json.loads(line) for line in open(run / "events.jsonl")]
    assert [e["event"] for e in events] == ["resume"] and events[0]["timesteps"] % 400 == 0


def test_unpicklable_env_restarts_its_episodes_and_says_so(tmp_path, monkeypatch, capsys):
    env_id = "test_hardening_envs:Unpicklable-v0"
    kw = dict(total_steps=800, seed=0, rollout_steps=200, checkpoint_every=200, hidden=(8,), critic_steps=2)
    outcomes = []
    for name in ("a", "b"):
        undo = crash_at_rollout(monkeypatch, 3)
        with pytest.raises(Killed):
            natpg.train(env_id, "smac", out=tmp_path / name, **kw)
        undo()
        result = natpg.train(env_id, "smac", out=tmp_path / name, resume=True, **kw)
        outcomes.append(result.summary)
        err = capsys.readouterr().err
        assert "the 1 episode(s) in progress were restarted" in err and "UnpicklableCartPole cannot be pickled" in err
    assert outcomes[0]["steps"] == 800 and outcomes[0]["status"] == "completed"
    assert_same_run(tmp_path / "a", tmp_path / "b")  # the restart itself is seeded
    event = json.loads(open(tmp_path / "a" / "events.jsonl").readline())
    assert event["event"] == "resume" and "restarted" in event["environment"]


def test_resume_without_a_checkpoint_starts_afresh(tmp_path, monkeypatch, capsys):
    kw = dict(total_steps=600, seed=0, rollout_steps=200, checkpoint_every=10_000, hidden=(8,), critic_steps=2)
    natpg.train("CartPole-v1", "smac", out=tmp_path / "ref", **kw)
    undo = crash_at_rollout(monkeypatch, 2)  # killed before its first checkpoint
    with pytest.raises(Killed):
        natpg.train("CartPole-v1", "smac", out=tmp_path / "run", **kw)
    undo()
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "metrics.csv").exists()
    (tmp_path / "run" / ".checkpoint.pt.tmp99999").write_bytes(b"half a file")  # a write cut by the kill
    natpg.train("CartPole-v1", "smac", out=tmp_path / "run", resume=True, **kw)
    assert "has no checkpoint yet: starting it from step 0" in capsys.readouterr().err
    assert not (tmp_path / "run" / ".checkpoint.pt.tmp99999").exists()
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_extending_a_finished_run_equals_a_longer_run(tmp_path):
    kw = dict(seed=4, rollout_steps=200, checkpoint_every=200, hidden=(8,), critic_steps=2, anneal_lr=False)
    natpg.train("Acrobot-v1", "ac-adam", total_steps=800, out=tmp_path / "long", **kw)
    natpg.train("Acrobot-v1", "ac-adam", total_steps=400, out=tmp_path / "run", **kw)
    again = natpg.train("Acrobot-v1", "ac-adam", total_steps=400, out=tmp_path / "run", resume=True, **kw)
    assert again.summary["steps"] == 400 and len(again.metrics) == 2  # finished: nothing recomputed
    natpg.train("Acrobot-v1", "ac-adam", total_steps=800, out=tmp_path / "run", resume=True, **kw)
    assert_same_run(tmp_path / "long", tmp_path / "run")


def test_an_annealed_run_is_not_extended(tmp_path):
    """With anneal_lr the schedule ends at the run's own budget: a longer budget is refused."""
    kw = dict(seed=4, rollout_steps=200, hidden=(8,), critic_steps=2, anneal_lr=True)
    natpg.train("Acrobot-v1", "ac-adam", total_steps=400, out=tmp_path / "run", **kw)
    with pytest.raises(ValueError, match=r"anneal to 0 at its own 400 steps \(anneal_lr=True\)"):
        natpg.train("Acrobot-v1", "ac-adam", total_steps=800, out=tmp_path / "run", resume=True, **kw)


def test_resume_refuses_changed_settings(tmp_path, capsys):
    from natpg.cli import main

    kw = dict(total_steps=400, seed=0, rollout_steps=200, hidden=(8,), critic_steps=2, anneal_lr=False)
    natpg.train("CartPole-v1", "smac", out=tmp_path / "run", **kw)
    with pytest.raises(ValueError, match=r"different settings: lr=0.1 \(the run has 0.005\); only checkpoint_every, device, tensorboard, total_steps may"):
        natpg.train("CartPole-v1", "smac", out=tmp_path / "run", resume=True, lr=0.1, **kw)
    with pytest.raises(ValueError, match=r"^total_steps=200 is below the 400 steps"):
        natpg.train("CartPole-v1", "smac", out=tmp_path / "run", resume=True, **{**kw, "total_steps": 200})
    cases = [
        (["--resume", str(tmp_path / "run"), "--seed", "1"], "--seed 1 (the run has 0)"),
        (["--resume", str(tmp_path / "run"), "--overwrite"], "--resume continues a run and --overwrite replaces it"),
        (["--resume", str(tmp_path / "nothing")], f"--resume {tmp_path / 'nothing'}: no such run directory"),
        (["--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other")], "name different run directories"),
        (["--resume", str(tmp_path / "run"), "--momentum", "0.5"], "--momentum is not a setting of this run"),
    ]
    for args, expected in cases:
        assert main(["train", "--no-progress", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
    # the same settings given again, and a longer --steps, are fine
    assert main(["train", "--no-progress", "--resume", str(tmp_path / "run"), "--seed", "0", "--steps", "600"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 600


def test_a_run_from_before_a_new_hyperparameter_resumes_at_its_default(tmp_path):
    """A checkpoint written before a hyperparameter existed (here ``kl_accept``, absent from its
    saved config) had that hyperparameter's default: resuming with the default continues the run
    exactly; resuming with another value is refused, naming the default as the run's."""
    kw = dict(seed=0, rollout_steps=200, hidden=(8,), critic_steps=2, anneal_lr=False)
    natpg.train("CartPole-v1", "smac", total_steps=400, out=tmp_path / "whole", **kw)
    natpg.train("CartPole-v1", "smac", total_steps=200, out=tmp_path / "run", **kw)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["config"]["method_kwargs"].pop("kl_accept") == 1.0 and state["config"]["method_kwargs"]["max_kl"]
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"different settings: kl_accept=1.5 \(the run has 1.0\)"):
        natpg.train("CartPole-v1", "smac", total_steps=400, out=tmp_path / "run", resume=True, kl_accept=1.5, **kw)
    natpg.train("CartPole-v1", "smac", total_steps=400, out=tmp_path / "run", resume=True, **kw)
    assert_same_run(tmp_path / "whole", tmp_path / "run")


def test_checkpoint_holds_the_full_training_state(tmp_path):
    import torch

    natpg.train("CartPole-v1", "ac-adam", total_steps=400, seed=0, out=tmp_path, rollout_steps=200, hidden=(8,))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert {"agent", "rule", "critic_optimizer", "torch_rng", "numpy_rng", "env", "rows", "counts", "episodes",
            "timesteps", "next_checkpoint", "config"} <= set(state)
    assert state["env"]["envs"][0]["kind"] == "pickle" and len(state["rows"]) == 2


def test_a_checkpoint_without_resume_state_is_refused_clearly(tmp_path):
    import torch

    natpg.train("CartPole-v1", "smac", total_steps=200, seed=0, out=tmp_path, rollout_steps=200, hidden=(8,))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    old = {k: state[k] for k in ("agent", "rule", "critic_optimizer", "timesteps", "episodes", "config")}  # pre-resume format
    torch.save(old, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="written by an older natpg without resume state; start the run afresh with overwrite=True"):
        natpg.train("CartPole-v1", "smac", total_steps=400, seed=0, out=tmp_path, rollout_steps=200, hidden=(8,), resume=True)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, natpg.trainer.Terminated], ids=["SIGINT", "SIGTERM"])
def test_interrupt_leaves_the_last_update_boundary_to_resume_exactly(tmp_path, monkeypatch, capsys, interrupt):
    """Ctrl-C / SIGTERM between checkpoints: the last update boundary is written, and the
    resumed run equals the uninterrupted one (before, --resume started from step 0)."""
    kw = dict(total_steps=1000, seed=3, rollout_steps=200, checkpoint_every=10_000, hidden=(8,), critic_steps=2)
    natpg.train("CartPole-v1", "smac", out=tmp_path / "ref", **kw)
    undo = crash_at_rollout(monkeypatch, 4, interrupt)  # during the 4th rollout: 3 updates done
    with pytest.raises(interrupt):
        natpg.train("CartPole-v1", "smac", out=tmp_path / "run", **kw)
    undo()
    err = capsys.readouterr().err
    assert "checkpoint at step 600" in err and "--resume" in err
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["timesteps"] == 600 and len(state["rows"]) == 3
    natpg.train("CartPole-v1", "smac", out=tmp_path / "run", resume=True, **kw)
    assert_same_run(tmp_path / "ref", tmp_path / "run")
