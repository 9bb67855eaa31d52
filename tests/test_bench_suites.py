"""The suites that replaced the sweep scripts benchmarks/fig1_ablation.py, smac_adaptive_damping.py,
baselines.py, isopo_rat.py and kfac_conv.py: each resolves and builds, runs what the committed results under
benchmarks/results/ were made with, and runs end to end through ``natpg bench`` and ``natpg report``."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest

from natpg.bench import suites, sweep
from natpg.config import resolve_config
from natpg.train_state import TrainState

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FOLDED = ("fig1", "adaptive-damping", "baselines-cartpole", "baselines-halfcheetah", "isopo-rat-cartpole",
          "isopo-rat-halfcheetah", "kfac-conv")


def _planned(name: str, tmp_path: Path) -> list[sweep.RunSpec]:
    suite = suites.get_suite(name)
    return sweep.plan_runs(tmp_path, suite.envs, suite.resolved_methods(), range(suite.seeds), suite.steps_for,
                           suite.preset, suite=suite)


def _config(run: sweep.RunSpec) -> dict:
    """The run's settings as the trainer records them in config.json (what ``natpg bench`` resolves)."""
    config = resolve_config(run.env_id, run.method, run.preset, total_steps=run.total_steps, seed=run.seed,
                            torch_threads=1, **run.settings)
    return json.loads(json.dumps(dataclasses.asdict(config)))


@pytest.mark.parametrize("name", FOLDED)
def test_folded_suite_resolves_and_every_rule_builds_with_its_settings(name, tmp_path, request):
    if name == "kfac-conv":
        request.getfixturevalue("minatar_stand_in")  # MinAtar/Breakout-v1 without the minatar package
    suite = suites.get_suite(name)
    sweep.check_plan(list(suite.envs), suite.resolved_methods(), list(range(suite.seeds)), None, suite.preset, {}, suite)
    runs = _planned(name, tmp_path)
    assert {r.method_spec for r in runs} == set(suite.resolved_methods())  # no spec restricted away entirely
    for run in {(r.env_id, r.method_spec): r for r in runs}.values():
        config = resolve_config(run.env_id, run.method, run.preset, total_steps=run.total_steps, seed=run.seed, **run.settings)
        for key, value in run.settings.items():  # the spec's settings reach the rule (or the trainer)
            assert config.method_kwargs.get(key, getattr(config, key, None)) == value, (run.key, key)
        state = TrainState.create(config)  # makes the env (no step) and the actor, builds the rule
        try:
            assert state.rule.name == run.method
        finally:
            state.env.close()


def test_a_suite_leaves_out_the_cells_it_restricts(tmp_path):
    fig1 = _planned("fig1", tmp_path)
    slow = [(r.env_id, r.seed) for r in fig1 if r.method_spec == "smac:batch_size=1"]
    assert slow == [("HalfCheetah-v5", 0), ("Hopper-v5", 0)]  # the generic-path B=1: first seed only
    assert len(fig1) == 2 * (7 * 3 + 1)
    damping = _planned("adaptive-damping", tmp_path)
    cartpole = {r.method_spec for r in damping if r.env_id == "CartPole-v1"}
    assert cartpole == {"smac", "smac:adaptive_damping=true+kl_target=0.01"}
    assert len(damping) == 3 * (7 + 2)
    # --seed-start 5 --seeds 2: the restriction counts the sweep's seeds, not seed numbers
    later = sweep.plan_runs(tmp_path, ["Hopper-v5"], ["smac:batch_size=1", "ac-sgd"], [5, 6], 10, "paper",
                            suite=suites.get_suite("fig1"))
    assert [(r.method_spec, r.seed) for r in later] == [("smac:batch_size=1", 5), ("ac-sgd", 5), ("ac-sgd", 6)]
    with pytest.raises(ValueError, match="nope restricted but not among its methods"):
        suites.Suite("x", "", ("CartPole-v1",), ("smac",), method_seeds={"nope": 1})


def test_a_method_spec_may_name_its_own_preset(tmp_path):
    runs = sweep.plan_runs(tmp_path, ["HalfCheetah-v5"], ["rat:preset=rat-authors", "rat:preset=none", "rat"], [0],
                           100_000, "paper")
    assert [(r.label, r.preset, r.settings) for r in runs] == [
        ("rat@preset=rat-authors", "rat-authors", {}), ("rat@preset=none", "none", {}), ("rat", "paper", {})]
    assert _config(runs[0])["num_envs"] == 8 and _config(runs[1])["preset"] is None
    with pytest.raises(ValueError, match=r"^method_specs='rat:preset=rat-authors': .*no values for env 'CartPole-v1'"):
        sweep.check_plan(["CartPole-v1"], ["rat:preset=rat-authors"], [0], 10, "paper", {})
    with pytest.raises(ValueError, match=r"^method_specs='rat:preset=papr': .*unknown preset; did you mean paper"):
        sweep.check_plan(["CartPole-v1"], ["rat:preset=papr"], [0], 10, None, {})
    # A spec that runs only where its preset has values (the suite's restriction) is fine.
    only = suites.Suite("x", "", ("CartPole-v1", "HalfCheetah-v5"), ("smac", "rat:preset=rat-authors"),
                        method_envs={"rat:preset=rat-authors": ("HalfCheetah-v5",)})
    sweep.check_plan(list(only.envs), list(only.methods), [0], 10, "paper", {}, only)


def _matches(committed: dict, ours: dict) -> bool:
    """Every setting the committed run recorded has the same value in ours (settings added to
    natpg since then are not in the committed record)."""
    return all(key in ours and (_matches(value, ours[key]) if isinstance(value, dict) else ours[key] == value)
               for key, value in committed.items())


def _same_runs(committed: list[tuple[str, int, dict]], planned: list[sweep.RunSpec], view=_config) -> None:
    """One planned run per committed run, (env, seed) equal and settings matching (compared with
    ``view`` of the planned run), and no other. A committed ``steps`` (the steps the run took:
    whole rollouts) must fit the planned budget."""
    unmatched = list(planned)
    for env_id, seed, settings in committed:
        settings = dict(settings)
        taken = settings.pop("steps", None)
        hits = [r for r in unmatched if r.env_id == env_id and r.seed == seed and _matches(settings, view(r))
                and (taken is None or r.total_steps - view(r)["rollout_steps"] < taken <= r.total_steps)]
        assert len(hits) == 1, (env_id, seed, settings, [r.key for r in hits])
        unmatched.remove(hits[0])
    assert not unmatched, [r.key for r in unmatched]


@pytest.mark.parametrize("name,directory", [("fig1", "fig1"), ("adaptive-damping", "smac_adaptive_damping")])
def test_the_suite_runs_the_committed_runs_of_its_script(name, directory, tmp_path):
    committed = []
    for path in sorted((RESULTS / directory / "raw").glob("*/*/seed*/config.json")):
        config = json.loads(path.read_text())
        for key in ("argv", "versions"):
            config.pop(key)
        committed.append((config["env_id"], config["seed"], config))
    assert len(committed) == len(_planned(name, tmp_path))
    _same_runs(committed, _planned(name, tmp_path))


@pytest.mark.parametrize("task", ["cartpole", "halfcheetah"])
def test_the_baselines_suites_run_the_committed_runs(task, tmp_path):
    committed = []
    for path in sorted((RESULTS / "baselines").glob(f"{'CartPole' if task == 'cartpole' else 'HalfCheetah'}*_seed*.json")):
        record = json.loads(path.read_text())
        committed.append((record["env_id"], record["seed"], {"method": record["method"], "steps": record["steps"],
                                                             "method_kwargs": record["method_kwargs"]}))
    assert len(committed) == (12 if task == "cartpole" else 4)
    _same_runs(committed, _planned(f"baselines-{task}", tmp_path))


def _as_printed(run: sweep.RunSpec) -> dict:
    """The run's config with its rule's hyperparameters as isopo_rat.py printed them (``probes=None``)."""
    config = _config(run)
    return {**config, "hp": {k: str(tuple(v) if isinstance(v, list) else v) for k, v in config["method_kwargs"].items()}}


@pytest.mark.parametrize("task", ["cartpole", "halfcheetah"])
def test_the_isopo_rat_suites_run_the_committed_runs(task, tmp_path):
    with open(RESULTS / "isopo_rat" / "runs.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["env"].lower().startswith(task)]
    committed = [(row["env"], int(row["seed"]), {
        "method": row["method"], "steps": int(row["steps"]),
        "hp": dict(item.split("=", 1) for item in row["hyperparameters"].split()),
        **({"num_envs": 8, "hidden": [256, 256]} if row["preset"] == "rat-authors" else {}),
    }) for row in rows]
    assert len(committed) == (9 if task == "cartpole" else 5)
    _same_runs(committed, _planned(f"isopo-rat-{task}", tmp_path), view=_as_printed)


def test_the_kfac_conv_suite_runs_the_committed_runs(tmp_path, minatar_stand_in):
    with open(RESULTS / "kfac_conv" / "runs.csv", newline="") as f:
        committed = [(row["env"], int(row["seed"]), {"method": "kfac", "steps": int(row["steps"]),
                                                     "method_kwargs": {"conv_factors": row["variant"]}})
                     for row in csv.DictReader(f)]
    assert len(committed) == 4
    _same_runs(committed, _planned("kfac-conv", tmp_path))


def test_the_kfac_conv_suite_runs_end_to_end_through_bench_and_report(tmp_path, monkeypatch, capsys, minatar_stand_in):
    """``natpg bench --suite kfac-conv`` for two updates a run, then ``natpg report``."""
    from natpg.cli import main

    monkeypatch.setenv("NATPG_BENCH_INPROCESS", "1")
    out = tmp_path / "sweep"
    argv = ["bench", "--suite", "kfac-conv", "--seeds", "1", "--steps", "2048", "--workers", "1", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    runs = out / "MinAtar_Breakout-v1"
    assert sorted(p.name for p in runs.iterdir()) == ["kfac", "kfac@conv_factors=diagonal"]
    for label, factors in (("kfac", "kronecker"), ("kfac@conv_factors=diagonal", "diagonal")):
        config = json.loads((runs / label / "seed0" / "config.json").read_text())
        assert config["method_kwargs"]["conv_factors"] == factors and config["preset"] == "natpg"
    assert main(["report", str(out), "--no-plots"]) == 0
    returns = (out / "report" / "returns.md").read_text()
    assert "`kfac`" in returns and "`kfac@conv_factors=diagonal`" in returns


def test_a_folded_suite_runs_end_to_end_through_bench_and_report(tmp_path, monkeypatch, capsys):
    """``natpg bench --suite adaptive-damping`` on CartPole for two updates, then ``natpg report``."""
    from natpg.cli import main

    monkeypatch.setenv("NATPG_BENCH_INPROCESS", "1")
    out = tmp_path / "sweep"
    argv = ["bench", "--suite", "adaptive-damping", "--envs", "CartPole-v1", "--seeds", "1", "--steps", "2000",
            "--workers", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 runs planned" in err  # the HalfCheetah-only variants are left out on CartPole
    adaptive = out / "CartPole-v1" / "smac@adaptive_damping=True+kl_target=0.01" / "seed0"
    config = json.loads((adaptive / "config.json").read_text())
    assert config["preset"] == "paper" and config["method_kwargs"]["adaptive_damping"] is True
    assert config["method_kwargs"]["lr"] == 5e-3 and config["total_steps"] == 2000  # the paper's SMAC η, --steps
    assert json.loads((out / "sweep.json").read_text())["invocations"][0]["suite"] == "adaptive-damping"
    assert main(["report", str(out), "--no-plots"]) == 0
    returns = (out / "report" / "returns.md").read_text()
    assert "`smac`" in returns and "`smac@adaptive_damping=True+kl_target=0.01`" in returns
    damping = (out / "report" / "damping.md").read_text()
    assert "| CartPole-v1 | `smac@adaptive_damping=True+kl_target=0.01` |" in damping
    assert "## Adaptive damping" in (out / "report" / "report.md").read_text()


def test_every_suite_the_docs_cite_exists():
    root = Path(__file__).resolve().parents[1]
    text = "".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    cited = set(re.findall(r"natpg bench --suite ([\w-]+)", text))
    assert {"fig1", "adaptive-damping", "baselines-cartpole", "isopo-rat-halfcheetah", "kfac-conv"} <= cited
    assert cited <= set(suites.SUITES), cited - set(suites.SUITES)
