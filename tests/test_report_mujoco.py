"""natpg report on a MuJoCo field sweep written by hand (no training): returns.csv, the partial
marker, steps to our thresholds, the per-task curves and the anchors table."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from natpg.bench import report
from natpg.bench.report import anchors, plots, thresholds

ENVS = ("HalfCheetah-v5", "Ant-v5")
TRPO = "trpo@normalize_obs=false"  # a variant label, kept as the sweep directory names it
METHODS = (TRPO, "sb3-ppo-zoo")
STEPS = 100_000
#: env → method → seed → final return; Ant's sb3-ppo-zoo seed 1 is stopped by the trainer (below).
FINAL = {
    "HalfCheetah-v5": {TRPO: {0: 1600.0, 1: 3400.0}, "sb3-ppo-zoo": {0: 1200.0, 1: 900.5}},
    "Ant-v5": {TRPO: {0: 1100.0, 1: 700.0}, "sb3-ppo-zoo": {0: 2600.0, 1: 10.0}},
}
WALL = {0: 100.0, 1: 140.0}


def _write_run(root: Path, env: str, method: str, seed: int, final: float, status: str = "completed") -> None:
    d = root / env / method / f"seed{seed}"
    d.mkdir(parents=True)
    preset = "natpg" if not method.startswith("sb3-") else None
    (d / "config.json").write_text(json.dumps({"env_id": env, "method": method, "seed": seed, "total_steps": STEPS,
                                               "preset": preset}))
    # A return that climbs linearly from 0 at step 1000 to `final` at the last step, one row per 1000 steps.
    rows = ["timesteps,episode_return_mean,log_prob_mean"]
    rows += [f"{t},{final * t / STEPS},-1.0" for t in range(1000, STEPS + 1, 1000)]
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    summary = {"env_id": env, "method": method, "seed": seed, "final_return": final, "steps": STEPS, "status": status,
               "wall_time": WALL[seed], "steps_per_second": STEPS / WALL[seed]}
    if status != "completed":
        summary["message"] = "stopped at step 40000: 5 consecutive non-finite updates"
    (d / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def field_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mujoco")
    for env in ENVS:
        for method in METHODS:
            for seed, final in FINAL[env][method].items():
                stopped = (env, method, seed) == ("Ant-v5", "sb3-ppo-zoo", 1)
                _write_run(root, env, method, seed, final, "stopped_nonfinite" if stopped else "completed")
    out = root / "report"
    report.write_report([root], out)
    return out


def test_returns_csv_is_one_row_per_env_and_method_over_the_completed_seeds(field_report):
    with open(field_report / "returns.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["env", "method", "seeds", "mean", "std", "wall_time_mean", "steps_per_second_mean"]
        rows = {(r["env"], r["method"]): r for r in reader}
    assert set(rows) == {(e, m) for e in ENVS for m in METHODS}
    for (env, method), row in rows.items():
        finals = [v for s, v in FINAL[env][method].items() if (env, method, s) != ("Ant-v5", "sb3-ppo-zoo", 1)]
        walls = [WALL[s] for s in FINAL[env][method] if (env, method, s) != ("Ant-v5", "sb3-ppo-zoo", 1)]
        assert int(row["seeds"]) == len(finals)
        assert float(row["mean"]) == pytest.approx(statistics.mean(finals))
        if len(finals) >= 2:
            assert float(row["std"]) == pytest.approx(statistics.stdev(finals))  # sample std, ddof = 1
        else:
            assert row["std"] == ""
        assert float(row["wall_time_mean"]) == pytest.approx(statistics.mean(walls))
        assert float(row["steps_per_second_mean"]) == pytest.approx(statistics.mean(STEPS / w for w in walls))
    assert float(rows[("HalfCheetah-v5", TRPO)]["std"]) == pytest.approx(1272.792206, rel=1e-6)


def test_returns_md_marks_the_partial_row_and_counts_the_stopped_run(field_report):
    md = (field_report / "returns.md").read_text()
    partial = [line for line in md.splitlines() if "partial" in line and line.startswith("|")]
    assert len(partial) == 1 and "Ant-v5" in partial[0] and "`sb3-ppo-zoo`" in partial[0]
    assert "1 (partial: 1 of 2)" in partial[0] and "1 failed" in partial[0]
    assert f"| HalfCheetah-v5 | `{TRPO}` | 2 | 2500 ± 1273 |" in md  # the label as in the sweep directory
    assert "ddof = 1" in md


def test_thresholds_are_ours_for_the_field_tasks(field_report):
    with open(field_report / "thresholds.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["env"], float(r["threshold"])) for r in rows} == {
        (env, t) for env in ENVS for t in thresholds.FIELD_THRESHOLDS[env][0]}
    # trpo's seed 0 on HalfCheetah climbs linearly to 1600 at 100k: the binned return (bin k holds steps
    # (1000k, 1000(k+1)]: one row) first reaches 1500 in the bin ending at 94k.
    hit = next(r for r in rows if (r["env"], r["method"], r["seed"], float(r["threshold"])) == ("HalfCheetah-v5", TRPO, "0", 1500.0))
    assert int(hit["steps_to_threshold"]) == 94_000
    never = next(r for r in rows if (r["env"], r["method"], r["seed"], float(r["threshold"])) == ("HalfCheetah-v5", TRPO, "0", 3000.0))
    assert never["steps_to_threshold"] == ""
    assert "ours, not from any paper" in (field_report / "thresholds.md").read_text()


def test_one_curve_figure_per_task(field_report):
    for env in ENVS:
        png = field_report / f"curves_{env}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![curves_{env}](curves_{env}.png)" in (field_report / "report.md").read_text()


def test_anchors_table_puts_our_best_rows_beside_the_published_numbers(field_report):
    md = (field_report / "anchors.md").read_text()
    cheetah = next(line for line in md.splitlines() if line.startswith("| HalfCheetah-v5"))
    assert f"2500 ± 1273 `{TRPO}` (2 seeds)" in cheetah and "1050 ± 212 `sb3-ppo-zoo` (2 seeds)" in cheetah
    assert "5784 ± 1244" in cheetah and "1803 ± 46" in cheetah  # Tianshou PPO, sb3-contrib TRPO
    ant = next(line for line in md.splitlines() if line.startswith("| Ant-v5"))
    assert f"900 ± 283 `{TRPO}` (2 seeds)" in ant and "2600 `sb3-ppo-zoo` (1 seed, partial)" in ant
    for words in ("protocols differ from ours", "v5", "v3", "v4", "best point of the curve", "deterministic",
                  "training episodes", "10 seeds"):
        assert words in md, words


def test_the_package_carries_the_anchors_with_their_sources():
    rows, protocols = anchors.load_anchors()
    assert set(protocols) == {"tianshou", "sb3contrib", "zoo", "cleanrl"}
    assert "10 seeds" in protocols["tianshou"] and "v4" in protocols["cleanrl"]
    assert anchors.Anchor("tianshou", "TRPO", "Hopper", 2046.0, 1038.0) in rows
    assert anchors.Anchor("zoo", "PPO", "Ant", 1327.0, None) in rows
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / anchors.ANCHORS_FILE
    if shared.exists():  # the package's copy is the project's file, comments and all
        assert resources.files("natpg.bench").joinpath(anchors.ANCHORS_FILE).read_text() == shared.read_text()


def test_sixteen_methods_get_sixteen_distinct_styles_and_the_title_counts_seeds():
    labels = [f"rule{i}" for i in range(12)] + ["sb3-ppo-zoo", "sb3-trpo-zoo", "sb3-ppo", "sb3-trpo"]
    styles = plots.line_styles(labels)
    assert len(set(styles.values())) == 16
    assert plots.seeds_phrase([3, 3]) == "mean ± std over 3 seeds"
    assert plots.seeds_phrase([1]) == "1 seed (no band)"
    assert plots.seeds_phrase([2, 3]).startswith("mean ± std over 2–3 seeds")


def test_step_size_table_pools_the_updates_of_every_seed(tmp_path):
    from natpg.bench.report import Run
    from natpg.bench.report.tables import step_size_table

    nan = float("nan")

    def run(seed, kl, accepted, scale, length, cos):
        r = Run("Hopper-v5", "smac", seed, tmp_path, "done")
        r._metrics = {"kl": np.array(kl), "ls_accepted": np.array(accepted), "tr_scale": np.array(scale),
                      "update_norm": np.array(length), "grad_cosine": np.array(cos)}
        return r

    # seed 1's first update was rejected (ls_accepted 0: the parameters went back, length 0 and
    # cosine 0): it takes no part in the step-length and cosine medians
    md, text = step_size_table([run(0, [0.001, 0.004], [1.0, 1.0], [2.0, 4.0], [0.1, 0.5], [0.9, 0.2]),
                                run(1, [0.009, nan], [0.0, 1.0], [1.0, 3.0], [0.0, 0.2], [0.0, 0.75])])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1 and rows[0]["method"] == "smac" and rows[0]["seeds"] == "2" and rows[0]["updates"] == "3"
    assert float(rows[0]["kl_median"]) == pytest.approx(0.004) and float(rows[0]["kl_max"]) == pytest.approx(0.009)
    assert float(rows[0]["accepted_fraction"]) == pytest.approx(0.75) and float(rows[0]["tr_scale_median"]) == pytest.approx(2.5)
    assert "| Hopper-v5 | `smac` | 2 | 3 |" in md
    assert rows[0]["backtracked_fraction"] == "nan" and "| 0.750 | – | – | 2.50 |" in md  # no line-search columns
    # step length and cosine: medians (not means: 0.267, 0.617) over the steps taken {0.1, 0.5, 0.2}
    # and {0.9, 0.2, 0.75} (with the rejected update they would be 0.15 and 0.475)
    assert float(rows[0]["update_norm_median"]) == pytest.approx(0.2) and float(rows[0]["grad_cosine_median"]) == pytest.approx(0.75)
    assert md.rstrip().endswith("| 2.50 | 0.200 | 0.75 |")
    thinned = run(2, [0.001, 0.002], [1.0, 1.0], [1.0, 1.0], [nan, 0.3], [nan, 0.4])  # packing thins rows to NaN
    (row,) = list(csv.DictReader(io.StringIO(step_size_table([thinned])[1])))
    assert float(row["update_norm_median"]) == pytest.approx(0.3) and float(row["grad_cosine_median"]) == pytest.approx(0.4)
    bare = Run("Hopper-v5", "smac", 0, tmp_path, "done")
    bare._metrics = {"kl": np.array([0.001])}
    assert step_size_table([bare])[0].rstrip().endswith("| – | – |")  # runs from before these diagnostics


def test_step_size_table_measures_the_line_search_against_the_quadratic_model(tmp_path):
    """backtracked: share of the accepted steps (f > 0) shorter than the full one; KL ÷ f²δ: the
    realised KL of the accepted step over f²δ, δ the run's max_kl, or the update's own with
    --anneal-kl (a max_kl column). Rejected and thinned-out rows (NaN) take no part."""
    from natpg.bench.report import Run
    from natpg.bench.report.tables import step_size_table

    nan = float("nan")
    fixed = Run("Hopper-v5", "smac", 0, tmp_path, "done", config={"method_kwargs": {"max_kl": 0.01}})
    fixed._metrics = {"kl": np.array([0.0099, 0.0064, 0.0, 0.0063]), "ls_accepted": np.array([1.0, 1.0, 0.0, 1.0]),
                      "backtracks": np.array([0.0, 1.0, 10.0, nan]), "step_fraction": np.array([1.0, 0.8, 0.0, nan]),
                      "ls_kl": np.array([0.0099, 0.0064, 0.0, nan])}
    annealed = Run("Hopper-v5", "smac", 1, tmp_path, "done", config={"method_kwargs": {"max_kl": 0.01}})
    annealed._metrics = {"kl": np.array([0.0025]), "ls_accepted": np.array([1.0]), "backtracks": np.array([2.0]),
                         "step_fraction": np.array([0.64]), "ls_kl": np.array([0.0025 * 1.02]),
                         "max_kl": np.array([0.0025 / 0.64 ** 2])}
    _, text = step_size_table([fixed, annealed])
    (row,) = list(csv.DictReader(io.StringIO(text)))
    assert float(row["backtracked_fraction"]) == pytest.approx(2 / 3)
    # ratios 0.99 (full step), 1.0 (0.0064 / (0.64 · 0.01)), 1.02 (annealed radius): median 1.0
    assert float(row["kl_over_model_median"]) == pytest.approx(1.0)
    alone = step_size_table([annealed])[1]
    assert float(next(csv.DictReader(io.StringIO(alone)))["kl_over_model_median"]) == pytest.approx(1.02)
    # trpo's own step is lr · β · x: at lr 0.5 the model's KL of the full step is 0.25 δ
    trpo = Run("Hopper-v5", "trpo", 0, tmp_path, "done",
               config={"method": "trpo", "method_kwargs": {"max_kl": 0.01, "lr": 0.5}})
    trpo._metrics = {"kl": np.array([0.00225]), "ls_accepted": np.array([1.0]), "backtracks": np.array([0.0]),
                     "step_fraction": np.array([1.0]), "ls_kl": np.array([0.00225])}
    (row,) = list(csv.DictReader(io.StringIO(step_size_table([trpo])[1])))
    assert float(row["kl_over_model_median"]) == pytest.approx(0.9)


def test_field_targets_judge_means_per_task_and_count_the_tasks_met():
    from natpg.bench.report.runs import FinalReturns
    from natpg.bench.report.targets import field_targets, met_counts, targets_section

    def g(env, label, returns, wall):
        return FinalReturns(env, label, returns=list(returns), by_seed=dict(enumerate(returns)),
                            wall_times=[wall] * len(returns))

    rows = [  # (env, label, final returns over seeds 0-2, wall time per run)
        ("Hopper-v5", "trpo", (3000, 3100, 2900), 100.0),
        ("Hopper-v5", "rat", (1000, 1100, 900), 50.0),
        ("Hopper-v5", "sb3-ppo-zoo", (2000, 2100, 1900), 400.0),
        ("Hopper-v5", "sb3-trpo-zoo", (2500, 2600, 2400), 330.0),  # a third: 110 s, above trpo's 100 s
        ("Walker2d-v5", "trpo", (1000, 1100, 900), 100.0),
        ("Walker2d-v5", "rat", (4000, 4100, 3900), 200.0),  # the best rule: its wall time is the one judged
        ("Walker2d-v5", "sb3-ppo-zoo", (2000, 2100, 1900), 900.0),
        ("Walker2d-v5", "sb3-trpo-zoo", (3000, 3100, 2900), 500.0),  # a third: 167 s, below rat's 200 s
        ("HalfCheetah-v5", "trpo", (3000, 3100, 2900), 100.0),  # above sb3-trpo-zoo, below sb3-ppo-zoo
        ("HalfCheetah-v5", "sb3-ppo-zoo", (5000, 5100, 4900), 1600.0),
        ("HalfCheetah-v5", "sb3-trpo-zoo", (2000, 2100, 1900), 700.0),
        ("Swimmer-v5", "rat", (300, 310, 290), math.nan),  # no trpo run, and no wall time recorded
        ("Swimmer-v5", "sb3-ppo-zoo", (200, 210, 190), 400.0),
        ("Swimmer-v5", "sb3-trpo-zoo", (100, 110, 90), 900.0),
        ("Ant-v5", "trpo", (1000, 1100, 900), 100.0),  # no zoo row: not judged
    ]
    groups = {(env, label): g(env, label, r, w) for env, label, r, w in rows}
    found = {t.env: t for t in field_targets(groups, 3)}
    assert set(found) == {"Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5"}
    hop, walker, cheetah, swim = (found[e] for e in ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5"))
    assert (hop.best_ge_zoo, hop.trpo_ge_zoo, hop.wall) == (True, True, True)
    assert (walker.best_ge_zoo, walker.trpo_ge_zoo, walker.wall) == (True, False, False)
    assert (cheetah.best_ge_zoo, cheetah.trpo_ge_zoo, cheetah.wall) == (False, True, True)
    assert (swim.best_ge_zoo, swim.trpo_ge_zoo, swim.wall) == (True, None, None)
    assert walker.cells[0].startswith("yes: `rat` 4000") and "higher (p" in walker.cells[0]
    assert walker.cells[1].startswith("no: 1000; 3000, lower (p")
    assert swim.cells[1].startswith("–") and swim.cells[2].startswith("–")
    assert met_counts(list(found.values())) == {"best": "3 of 4", "trpo": "2 of 3", "wall": "2 of 3"}
    md = targets_section(groups, 3)
    assert "Met on: best rule ≥ both zoo rows 3 of 4 tasks; `trpo` ≥ `sb3-trpo-zoo` 2 of 3; wall time ≤ ⅓ 2 of 3" in md
    assert targets_section({k: v for k, v in groups.items() if k[0] == "Ant-v5"}, 3) is None


def test_page_facts_give_the_wall_time_ratio_and_the_episode_length(tmp_path):
    from natpg.bench.report.page import facts
    from natpg.bench.report.write import build_report

    for method, wall, episodes in (("trpo", 200.0, 100), ("sb3-trpo-zoo", 700.0, 400), ("rat", math.nan, 100)):
        _write_run(tmp_path, "Hopper-v5", method, 0, 1000.0)
        path = tmp_path / "Hopper-v5" / method / "seed0" / "summary.json"
        summary = json.loads(path.read_text())
        path.write_text(json.dumps({**summary, "wall_time": wall, "episodes": episodes}))
    f = facts("t", build_report([tmp_path]))
    assert f["t.wall_ratio.Hopper-v5.trpo.sb3-trpo-zoo"] == "3.5×"  # 700 s over 200 s
    assert f["t.wall_ratio.Hopper-v5.sb3-trpo-zoo.trpo"] == "0.3×"
    assert f["t.run_wall.Hopper-v5.sb3-trpo-zoo.seed0"] == "700"
    assert "t.wall_ratio.Hopper-v5.rat.trpo" not in f and "t.wall_ratio.Hopper-v5.trpo.rat" not in f  # no wall time
    assert f["t.episode_length.Hopper-v5.trpo"] == "1000" and f["t.episode_length.Hopper-v5.sb3-trpo-zoo"] == "250"
