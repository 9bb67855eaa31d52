"""natpg bench / natpg report: the harness on the smoke suite with tiny budgets, both backends."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from natpg import methods
from natpg.bench import report, suites, sweep
from natpg.bench.report import paper, thresholds
from natpg.bench.report.runs import binned_curve
from natpg.bench.report.tables import fmt
from natpg.bench.sb3_runner import sb3_missing

STEPS = 500  # two updates of T = 250 (the paper preset with a shorter rollout, to keep the tests fast)
FAST = {"rollout_steps": 250, "max_episode_steps": 200, "batch_size": 250}
FAILING = "smac:damping=-1"  # the rule rejects a negative damping: the run must fail, the sweep go on


def _smoke_specs() -> list[str]:
    specs = list(suites.get_suite("smoke").resolved_methods())
    specs += [m for m in ("sb3-ppo", "sb3-trpo") if sb3_missing(m) is None]
    return specs + ["smac:batch_size=125", FAILING]  # a batch-size variant for the Figure-1 ablation


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    envs = suites.get_suite("smoke").envs
    result = sweep.run_sweep(out, envs, _smoke_specs(), seeds=1, steps=STEPS, workers=2, overrides=FAST, preset="paper",
                             progress=False, log=lambda s: None)
    return out, envs, result


def test_smoke_suite_is_every_registered_method_on_two_tasks():
    smoke = suites.get_suite("smoke")
    assert smoke.resolved_methods() == methods.available()
    assert len(smoke.envs) == 2
    paper = suites.get_suite("paper")
    assert set(paper.methods) == {"ac-sgd", "ac-adam", "ac-cg", "smac", "ac-sgd-matched"}
    assert len(paper.envs) == 9
    # each task at the budget of PAPER_BUDGETS; HalfCheetah's text: SMAC matches AC-CG's final return "after only
    # 1.7 million timesteps", three times faster than AC-CG, so the run is longer than 1.7M
    assert all(paper.steps_for(env) == suites.PAPER_BUDGETS[env].steps for env in paper.envs)
    assert paper.steps_for("HalfCheetah-v5") > 1_700_000 and paper.steps_for("CartPole-v1") >= 300_000


def test_local_sweep_runs_everything_and_records_the_failure(smoke_sweep):
    out, envs, result = smoke_sweep
    ok_specs = [s for s in _smoke_specs() if s != FAILING]
    assert len(result.done) == len(envs) * len(ok_specs)
    assert set(result.failed) == {f"{env}/{suites.method_label(FAILING)}/seed0" for env in envs}
    for env in envs:
        for spec in ok_specs:
            run = sweep.run_dir_for(out, env, spec, 0)
            summary = json.loads((run / "summary.json").read_text())
            assert summary["steps"] >= STEPS and summary["steps_per_second"] > 0
            assert (run / "metrics.csv").exists() and (run / "config.json").exists()
        err = json.loads((sweep.run_dir_for(out, env, FAILING, 0) / "error.json").read_text())
        assert "damping" in err["error"] and "Traceback" in err["traceback"]
        assert not (sweep.run_dir_for(out, env, FAILING, 0) / "summary.json").exists()
    log = json.loads((out / "sweep.json").read_text())
    assert log["invocations"][0]["runs_planned"] == len(envs) * len(_smoke_specs())


def test_rerun_skips_finished_runs_and_redoes_an_interrupted_one(smoke_sweep):
    out, envs, _ = smoke_sweep
    interrupted = sweep.run_dir_for(out, envs[0], "smac", 0)
    expected = json.loads((interrupted / "summary.json").read_text())
    (interrupted / "summary.json").unlink()  # as if killed after its last checkpoint
    finished = sweep.run_dir_for(out, envs[1], "ac-sgd", 0) / "summary.json"
    before = finished.stat().st_mtime_ns
    result = sweep.run_sweep(out, envs, ["smac", "ac-sgd", FAILING], seeds=1, steps=STEPS, workers=1,
                             overrides=FAST, preset="paper", skip_failed=True, progress=False, log=lambda s: None)
    assert result.done == [f"{envs[0]}/smac/seed0"]
    assert not result.failed  # --skip-failed keeps the recorded failures
    assert len(result.skipped) == 2 * 3 - 1
    resumed = json.loads((interrupted / "summary.json").read_text())
    assert resumed["final_return"] == expected["final_return"] and resumed["steps"] == expected["steps"]
    assert finished.stat().st_mtime_ns == before
    # The same directory with another budget: finished runs are kept, not silently taken as that budget.
    other = sweep.run_sweep(out, envs[:1], ["ac-sgd"], seeds=1, steps=2 * STEPS, workers=1, overrides=FAST,
                            preset="paper", progress=False, log=lambda s: None)
    assert other.conflicts == {f"{envs[0]}/ac-sgd/seed0": STEPS} and not other.done


def test_report_writes_tables_and_plots(smoke_sweep, tmp_path):
    out, envs, _ = smoke_sweep
    files = report.write_report([out], tmp_path / "report")
    names = {f.name for f in files}
    assert {"table1.md", "table1.csv", "thresholds.md", "timing.md", "status.md", "report.md"} <= names
    assert {"learning_curves.png", "log_prob.png", "ablation.md", "ablation_batch_size.png"} <= names
    assert "smac@batch_size=125" in (tmp_path / "report" / "ablation.md").read_text()
    for f in files:
        assert f.stat().st_size > 0
    t1 = (tmp_path / "report" / "table1.md").read_text()
    for env in envs:
        assert env in t1
    assert "paper smac" in t1 and "of 500k)" in t1  # runs shorter than CartPole's budget say so in the cell
    assert "973.4 ± 29.8" in t1  # the paper's CartPole SMAC beside ours
    assert "failed" in (tmp_path / "report" / "status.md").read_text()
    rows = (tmp_path / "report" / "table1.csv").read_text().splitlines()
    assert rows[0].startswith("env,method,seeds,mean,std")


@pytest.mark.skipif(sb3_missing("sb3-ppo") is not None, reason="stable-baselines3 not installed (pip install 'natpg[sb3]')")
def test_sb3_baseline_records_the_same_summary(smoke_sweep):
    out, envs, _ = smoke_sweep
    run = sweep.run_dir_for(out, envs[1], "sb3-ppo", 0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_return"] is not None and summary["final_return_basis"]
    assert summary["steps"] >= STEPS
    config = json.loads((run / "config.json").read_text())
    assert config["max_episode_steps"] == 1000 and config["library"] == "stable_baselines3.PPO"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"timesteps", "episode_return_mean", "log_prob_mean", "update_time"} <= set(header)


def test_ray_backend_runs_the_smoke_suite(tmp_path):
    ray = pytest.importorskip("ray", reason="ray not installed (pip install 'natpg[ray]')")
    envs = suites.get_suite("smoke").envs
    specs = suites.get_suite("smoke").resolved_methods() + [FAILING]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = sweep.run_sweep(tmp_path, envs, specs, seeds=1, steps=STEPS, workers=2, backend="ray", overrides=FAST,
                                 progress=False, log=lambda s: None)
    finally:
        ray.shutdown()
    assert len(result.done) == len(envs) * (len(specs) - 1)
    assert len(result.failed) == len(envs)
    # Same seeds, same code: the Ray runs reproduce the local ones exactly.
    local = sweep.run_sweep(tmp_path / "local", envs[:1], ["smac"], seeds=1, steps=STEPS, workers=1, overrides=FAST,
                            progress=False, log=lambda s: None)
    assert local.done
    a = json.loads((sweep.run_dir_for(tmp_path, envs[0], "smac", 0) / "summary.json").read_text())
    b = json.loads((sweep.run_dir_for(tmp_path / "local", envs[0], "smac", 0) / "summary.json").read_text())
    assert a["final_return"] == b["final_return"]


def test_cli_bench_and_report(tmp_path, monkeypatch, capsys):
    from natpg.cli import main

    monkeypatch.setenv("NATPG_BENCH_INPROCESS", "1")
    out = tmp_path / "sweep"
    argv = ["bench", "--envs", "CartPole-v1", "--methods", "ac-sgd,smac", "--seeds", "1", "--steps", str(STEPS),
            "--workers", "1", "--out", str(out), "--no-progress", "--set", "rollout_steps=250", "--set", "batch_size=250"]
    assert main(argv) == 0
    assert main(argv) == 0  # second time: everything skipped
    assert "2 already finished" in capsys.readouterr().err
    template = tmp_path / "templates" / "results.md"
    template.parent.mkdir()
    template.write_text("<!-- natpg report template\npage: ../results.md\nsweep: ../sweep -> ../sweep/report\n-->\n\n"
                        "# Results\n\nSMAC on CartPole: {{sweep.return.CartPole-v1.smac}} over "
                        "{{ sweep.seeds.CartPole-v1.smac }} seed.\n\n{{sweep.table1}}\n")
    assert main(["report", "--no-plots", "--page", str(template)]) == 0
    text = (tmp_path / "results.md").read_text()
    assert (out / "report" / "table1.md").read_text().strip() in text and "{{" not in text
    smac = json.loads((out / "CartPole-v1" / "smac" / "seed0" / "summary.json").read_text())["final_return"]
    assert f"SMAC on CartPole: {fmt(smac)} over 1 seed." in text and text.startswith("<!-- Generated from templates/")
    template.write_text(template.read_text() + "{{sweep.return.CartPole-v1.nope}}\n")
    assert main(["report", "--no-plots", "--page", str(template)]) == 2  # a placeholder with no value
    assert "sweep.return.CartPole-v1.nope" in capsys.readouterr().err
    assert (tmp_path / "results.md").read_text() == text  # the page is left as it was
    assert main(["bench", "--envs", "CartPole-v1", "--methods", "nope", "--seeds", "1", "--steps", "500",
                 "--out", str(out)]) == 2  # an unknown method stops the sweep before it starts
    assert "--methods nope: unknown method 'nope'" in capsys.readouterr().err
    assert main(["bench", "--out", str(out)]) == 2  # neither a suite nor envs+methods


def test_method_specs_and_labels():
    assert suites.parse_method_spec("smac") == ("smac", {})
    assert suites.parse_method_spec("smac:batch_size=1") == ("smac", {"batch_size": 1})
    assert suites.parse_method_spec("ac-sgd:lr=0.01;batch_size=100") == ("ac-sgd", {"lr": 0.01, "batch_size": 100})
    assert suites.method_label("smac:batch_size=1") == "smac@batch_size=1"
    # preset=none names the bare defaults as written; any other None keeps the labels of committed runs
    assert suites.method_label("rat:preset=none") == suites.method_label("rat:preset=None") == "rat@preset=none"
    assert suites.method_label("trpo:critic_batch_size=none") == "trpo@critic_batch_size=None"
    assert suites.method_label("trpo:normalize_obs=false") == "trpo@normalize_obs=False"
    with pytest.raises(ValueError):
        suites.parse_method_spec("smac:batch_size")


BAD_PLANS = [
    # (arguments that replace the good plan's, what the one line of error says)
    (["--methods", "smak"], "--methods smak: unknown method 'smak'; did you mean smac? (available: ac-adam"),
    (["--methods", "smac", "sb3-ppoo"], "--methods sb3-ppoo: unknown method 'sb3-ppoo'; did you mean sb3-ppo"),
    (["--methods", "smac:dampin=0.5"], "--methods smac:dampin=0.5: smac takes no setting 'dampin'; did you mean damping"),
    (["--methods", "smac:seed=3"], "--methods smac:seed=3: seed is set by the sweep itself (give it with --seeds)"),
    (["--methods", "smac:batch_size"], "bad method spec 'smac:batch_size'"),
    (["--envs", "CartPol-v1"], "--envs 'CartPol-v1': not a registered Gymnasium environment; did you mean CartPole-v1"),
    (["--envs", "CartPole-v1", "MountainCar-v0", "--preset", "paper"],
     "--preset 'paper' has no values for env 'MountainCar-v0' (it covers: Acrobot, CartPole, Pendulum, HalfCheetah, "
     "Hopper, Swimmer, Walker2d, Humanoid, Pusher); preset 'natpg' (the default) covers every env, 'none' takes the "
     "bare defaults; or leave MountainCar-v0 out of --envs"),
    (["--preset", "papr"], "--preset 'papr': unknown preset; did you mean paper?"),
    (["--set", "lrr=0.1"], "--set lrr: not a trainer setting nor a hyperparameter of any method in this sweep; did you mean lr?"),
    (["--set", "total_steps=10"], "--set total_steps: total_steps is set by the sweep itself (give it with --steps)"),
    (["--seed-start", "-1"], "--seed-start must be an integer >= 0, got -1"),
    (["--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--workers", "0"], "--workers must be a positive integer, got 0"),
]


@pytest.mark.parametrize("bad,says", BAD_PLANS, ids=[" ".join(b) for b, _ in BAD_PLANS])
def test_bench_checks_its_whole_plan_before_it_creates_anything(tmp_path, capsys, bad, says):
    from natpg.cli import main

    out = tmp_path / "sweep"
    plan = {"--envs": ["CartPole-v1"], "--methods": ["smac"], "--seeds": ["1"], "--steps": ["500"]}
    plan.update({bad[0]: bad[1:]})
    argv = ["bench", *[word for flag, values in plan.items() for word in (flag, *values)], "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("natpg bench: error: ") and err.count("\n") == 1 and says in err, err
    assert not out.exists(), "nothing is created for a plan that cannot run"


def test_a_preset_that_does_not_cover_an_env_is_a_clear_error_with_the_way_out(tmp_path):
    with pytest.raises(ValueError, match=r"no values for env 'MountainCar-v0'.*'natpg' \(the default\) covers every env"):
        sweep.run_sweep(tmp_path / "a", ["MountainCar-v0"], ["smac"], seeds=1, steps=500, preset="paper", progress=False)
    with pytest.raises(ValueError, match=r"^envs='CartPol-v1': not a registered Gymnasium environment; did you mean CartPole-v1"):
        sweep.run_sweep(tmp_path / "b", ["CartPol-v1"], ["smac"], seeds=1, steps=500, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    sweep.check_plan(["MountainCar-v0"], ["smac"], [0], 500, None, {})  # the way out works
    if sb3_missing("sb3-ppo") is None:  # SB3 baselines take no preset values: any env is fine for them
        sweep.check_plan(["MountainCar-v0"], ["sb3-ppo"], [0], 500, "paper", {})


def test_plan_order_seed_major_covers_every_task_first(tmp_path):
    runs = sweep.plan_runs(tmp_path, ["A-v0", "B-v0"], ["x", "y"], [0, 1], steps=5)
    assert [(r.env_id, r.method_spec, r.seed) for r in runs[:4]] == [("A-v0", "x", 0), ("A-v0", "y", 0), ("B-v0", "x", 0), ("B-v0", "y", 0)]
    runs = sweep.plan_runs(tmp_path, ["A-v0", "B-v0"], ["x"], [0, 1], steps=5, order="env")
    assert [(r.env_id, r.seed) for r in runs] == [("A-v0", 0), ("A-v0", 1), ("B-v0", 0), ("B-v0", 1)]


def test_binned_curve_is_bin_means_then_ewm():
    x = np.arange(1, 1001, dtype=float)  # one value per step, 10 per bin
    y = np.repeat(np.arange(100, dtype=float), 10)
    s = binned_curve(x, y, 1000.0)
    expected, prev = [], None
    for k in range(100):
        prev = float(k) if prev is None else 0.1 * k + 0.9 * prev
        expected.append(prev)
    np.testing.assert_allclose(s, expected)
    # Sparse logging: empty bins carry the last value forward; bins before the first value are NaN.
    s = binned_curve(np.array([500.0, 1000.0]), np.array([1.0, 3.0]), 1000.0, bins=4)
    assert math.isnan(s[0]) and s[1] == 1.0 and s[2] == 1.0 and s[3] == pytest.approx(0.1 * 3 + 0.9 * 1)


def test_paper_table1_is_packaged():
    t = paper.paper_table1()
    assert len(t) == 9 and t["HalfCheetah-v5"]["smac"] == (863.8, 38.7) and t["Walker2d-v5"]["ac-cg"] == (229.8, 23.9)
    assert set(thresholds.THRESHOLDS) == set(t)


def test_run_the_trainer_stopped_early_is_a_failure_not_a_table_entry(tmp_path):
    def put(label: str, summary: dict) -> None:
        d = tmp_path / "CartPole-v1" / label / "seed0"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"env_id": "CartPole-v1", "total_steps": 1000}))
        (d / "summary.json").write_text(json.dumps({"final_return": 10.0, "steps": 1000, **summary}))

    put("smac", {"status": "completed"})
    put("ac-sgd", {"status": "stopped_nonfinite", "message": "stopped at step 400: 5 consecutive non-finite updates"})
    runs = {r.label: r for r in report.load_runs([tmp_path])}
    assert runs["smac"].status == "done"
    assert runs["ac-sgd"].status == "failed" and "stopped at step 400" in runs["ac-sgd"].error
    t1, _ = paper.table1(list(runs.values()))
    assert "10.0 (1; 1k of 500k)" in t1 and t1.count("(1") == 1  # only the completed run enters Table 1


def test_rank1_table_is_the_fraction_of_the_mean_score_component_smac_removes(tmp_path):
    d = tmp_path / "Hopper-v5" / "smac" / "seed0"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"env_id": "Hopper-v5", "method_kwargs": {"damping": 1.0}}))
    (d / "summary.json").write_text(json.dumps({"final_return": 5.0, "status": "completed"}))
    # ‖ℓ̄‖² = 1, 3, 9 → fractions 1/2, 3/4, 9/10: median 0.75, max 0.9; cosine median 0.98
    (d / "metrics.csv").write_text("timesteps,mean_score_norm_sq,grad_cosine\n1,1,0.99\n2,3,0.98\n3,9,0.5\n")
    md = paper.rank1_table(report.load_runs([tmp_path]))
    row = next(line for line in md.splitlines() if line.startswith("| Hopper-v5"))
    assert row.split(" | ")[1:6] == ["1.0", "3", "0.750", "0.900", "0.9800"]
