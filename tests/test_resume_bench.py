"""A sweep survives SIGKILL: ``natpg bench`` killed mid-sweep and rerun keeps its finished
runs untouched, leaves no corrupt file, resumes the interrupted run from its checkpoint
(so nothing before that checkpoint is computed twice) and ends with the same results as
an uninterrupted run."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import test_hardening_envs  # noqa: F401 - registers SlowCartPole-v0
from natpg.config import TrainConfig
from natpg.runlog import WALL_TIME_COLUMNS
from natpg.trainer import train

pytest.importorskip("natpg.bench.sweep")

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
ENV.pop("NATPG_BENCH_INPROCESS", None)


def bench_args(out: Path) -> list[str]:
    return ["bench", "--envs", "test_hardening_envs:SlowCartPole-v0", "--methods", "smac", "ac-sgd", "--seeds", "2",
            "--steps", "1200", "--workers", "1", "--preset", "none", "--set", "rollout_steps=200",
            "--set", "checkpoint_every=200", "--set", "hidden=16,16", "--out", str(out), "--no-progress"]


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("config.json"))


def unlocked(run_dir: Path) -> bool:
    """True once no process trains in ``run_dir`` (its trainer lock is free)."""
    with open(run_dir / ".train.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def check_not_corrupt(out: Path) -> None:
    for path in out.rglob("*.json"):
        json.loads(path.read_text())
    for path in out.rglob("checkpoint.pt"):
        state = torch.load(path, weights_only=False)
        assert state["timesteps"] % 200 == 0
    for path in out.rglob("metrics.csv"):
        with open(path) as f:
            rows = list(csv.reader(f))
        assert rows and all(len(r) == len(rows[0]) for r in rows), path
    assert not [p for p in out.rglob(".*.tmp*")], "no temporary file is left behind"


def comparable_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in WALL_TIME_COLUMNS} for r in csv.DictReader(f)]


def test_sigkilled_sweep_reruns_without_losing_or_redoing_work(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "natpg.cli", *bench_args(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            dirs = run_dirs(out) if out.exists() else []
            done = [d for d in dirs if (d / "summary.json").exists()]
            partial = [d for d in dirs if (d / "checkpoint.pt").exists() and not (d / "summary.json").exists()]
            if done and partial:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the whole sweep: its worker dies with it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    (finished,), (interrupted,) = done, partial
    deadline = time.monotonic() + 30
    while not unlocked(interrupted) and time.monotonic() < deadline:  # the orphaned worker is gone
        time.sleep(0.01)
    check_not_corrupt(out)
    kept = {name: (finished / name).read_bytes() for name in ("summary.json", "metrics.csv", "checkpoint.pt")}
    checkpoint_steps = torch.load(interrupted / "checkpoint.pt", weights_only=False)["timesteps"]
    assert 200 <= checkpoint_steps < 1200

    # rerun the same command (here in this process, one run at a time)
    from natpg.cli import main

    monkeypatch.setenv("NATPG_BENCH_INPROCESS", "1")
    assert main(bench_args(out)) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "1 already finished" in text and "(resumed)" in text

    check_not_corrupt(out)
    assert len(run_dirs(out)) == 4 and all((d / "summary.json").exists() for d in run_dirs(out))
    for name, data in kept.items():  # the finished run was left alone
        assert (finished / name).read_bytes() == data, name
    # the interrupted run resumed from its checkpoint: only the steps after it were recomputed
    events = [json.loads(line) for line in open(interrupted / "events.jsonl")]
    assert [(e["event"], e["timesteps"]) for e in events] == [("resume", checkpoint_steps)]
    assert "restored exactly" in events[0]["environment"]
    # ... and its results equal those of an uninterrupted run with the same settings
    config = TrainConfig.from_dict(json.loads((interrupted / "config.json").read_text()))
    reference = train(config, run_dir=tmp_path / "reference")
    assert comparable_metrics(interrupted) == comparable_metrics(tmp_path / "reference")
    summary = json.loads((interrupted / "summary.json").read_text())
    for key in ("final_return", "episodes", "steps", "status"):
        assert summary[key] == reference.summary[key], key
