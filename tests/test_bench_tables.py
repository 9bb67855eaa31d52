"""The report's tables for the suites that replaced benchmarks/fig1_ablation.py,
smac_adaptive_damping.py, baselines.py and isopo_rat.py: from the committed raw runs of the first
two they give the numbers those scripts published, and ``natpg report`` writes them with their figures."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from natpg.bench.report import Run, load_runs
from natpg.bench.report.damping import damping_table, plot_damping
from natpg.bench.report.seeds import seeds_table
from natpg.bench.report.update_time import largest_batch_smac, plot_return_vs_update_time, update_time_table

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _published(name: str) -> list[dict[str, str]]:
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


def test_update_time_table_gives_the_published_figure1_costs(tmp_path):
    runs = load_runs([RESULTS / "fig1" / "raw"])  # labels are the script's: B1000, single, ...
    md, text = update_time_table(runs, reference="B1000")
    ours = {(r["env"], r["method"]): r for r in _rows(text)}
    published = _published("fig1/fig1.csv")
    assert len(ours) == len(published) == 16
    for row in published:
        mine = ours[(row["env"], row["variant"].replace("=", ""))]
        assert int(mine["runs"]) == int(row["seeds"])
        assert float(mine["update_time_ms"]) == pytest.approx(float(row["update_ms"]), abs=0.05)
        ms, ref = float(mine["update_time_ms"]), float(ours[(row["env"], "B1000")]["update_time_ms"])
        assert float(mine["ratio_to_reference"]) == pytest.approx(ms / ref)
        # the script divided the rounded times: 1630.7 / 22.9 = 71.21 where ours is 71.31
        assert round(round(ms, 1) / round(ref, 1), 2) == float(row["update_time_vs_B1000"])
    assert "÷ B1000" in md
    assert plot_return_vs_update_time(runs, tmp_path / "r.png").stat().st_size > 10_000


def test_the_reference_is_the_largest_batch_smac():
    assert largest_batch_smac({"smac@batch_size=10", "smac@batch_size=1000", "smac@batch_size=100", "ac-sgd"}) \
        == "smac@batch_size=1000"
    assert largest_batch_smac({"smac-single", "smac"}) == "smac"
    assert largest_batch_smac({"smac@batch_size=100", "smac", "smac-vec"}) == "smac"  # the whole rollout
    assert largest_batch_smac({"ac-sgd"}) is None
    assert update_time_table([]) is None


def test_damping_table_gives_the_published_adaptive_damping_numbers(tmp_path):
    runs = load_runs([RESULTS / "smac_adaptive_damping" / "raw"])
    md, text = damping_table(runs)
    ours: dict[tuple[str, str], list[dict[str, str]]] = {}
    for row in _rows(text):
        ours.setdefault((row["env"], row["method"]), []).append(row)
    published = _published("smac_adaptive_damping/smac_adaptive_damping.csv")
    assert len(ours) == len(published) == 9
    for row in published:
        label = row["variant"].replace(" ", "_").replace("λ", "lambda")
        mine = ours[(row["env"], label)]
        finals = [float(r["final_return"]) for r in mine if r["status"] == "done"]
        assert len(finals) == int(row["completed"])
        if finals:
            assert round(float(np.mean(finals)), 1) == float(row["final_return_mean"])
            assert round(float(np.std(finals)), 1) == float(row["final_return_std"])
        assert f"{np.mean([float(r['median_kl']) for r in mine]):.2e}" == row["median_kl"]
        lams = [float(r["final_damping"]) for r in mine]
        assert (", ".join(f"{x:.3g}" for x in lams) if np.isfinite(lams).all() else "nan") in row["final_damping"]
    assert "seed 0 at 25k, seed 1 at 25k, seed 2 at 25k" in md  # smac-single at fixed λ diverged on every seed
    assert plot_damping(runs, tmp_path / "d.png").stat().st_size > 10_000
    fixed_only = [r for r in runs if "adaptive" not in r.label]
    assert damping_table(fixed_only) is None and plot_damping(fixed_only, tmp_path / "none.png") is None


def _run(label: str, seed: int, returns: list[float], status: str = "done", final: float | None = None) -> Run:
    steps = np.arange(1, len(returns) + 1) * 1000.0
    summary = {"final_return": final if final is not None else returns[-1], "update_time_mean": 0.01, "wall_time": 2.0}
    run = Run("CartPole-v1", label, seed, Path("."), status, summary if status == "done" else {"update_time_mean": 0.02},
              config={"method_kwargs": {"lr": 0.1}})
    run._metrics = {"timesteps": steps, "episode_return_mean": np.asarray(returns, dtype=float)}
    return run


def test_seeds_table_gives_each_seeds_final_best_and_first_step_at_the_target():
    runs = [_run("trpo", 1, [20, 150, 210, 190], final=180.5), _run("trpo", 0, [np.nan, 30, 90, 500]),
            _run("trpo", 2, [20, 40], status="failed"), _run("kfac", 0, [10, 20, 30])]
    md, text = seeds_table(runs)
    assert "| CartPole-v1 | `trpo` | 500.0 / 180.5 / failed | 340.2 | 500.0 / 210.0 / 40.0 | 4k / 3k / never | 13.3 | 2.0 |" in md
    assert "| CartPole-v1 | `kfac` | 30.0 | 30.0 | 30.0 | never |" in md
    rows = _rows(text)
    assert [(r["method"], r["seed"], r["first_step_at_target"]) for r in rows[:3]] == [
        ("trpo", "0", "4000.0"), ("trpo", "1", "3000.0"), ("trpo", "2", "")]
    assert rows[0]["hyperparameters"] == '{"lr": 0.1}'
    _, halfcheetah = seeds_table([Run("HalfCheetah-v5", "isopo", 0, Path("."), "done", {"final_return": 1.0})])
    assert _rows(halfcheetah)[0]["first_step_at_target"] == ""


def _suite_tree(root: Path) -> list[Path]:
    """The committed raw runs as ``natpg bench`` names them: fig1 with the fig1 suite's labels (the
    script named B = 1000 ``B1000``), and CartPole's fixed and adaptive damping."""
    fig1 = {"single": "smac-single", "single-lr1e-3": "smac-single@lr=0.001", "ac-sgd": "ac-sgd",
            "ac-sgd-matched": "ac-sgd-matched", **{f"B{n}": f"smac@batch_size={n}" for n in (1, 10, 100, 1000)}}
    for env in ("HalfCheetah-v5", "Hopper-v5"):
        (root / "fig1" / env).mkdir(parents=True)
        for old, new in fig1.items():
            (root / "fig1" / env / new).symlink_to(RESULTS / "fig1" / "raw" / env / old)
    (root / "damping" / "CartPole-v1").mkdir(parents=True)
    for label in ("smac_fixed_lambda", "smac_adaptive_lambda"):
        committed = RESULTS / "smac_adaptive_damping" / "raw" / "CartPole-v1" / label
        (root / "damping" / "CartPole-v1" / label).symlink_to(committed)
    return [root / "fig1", root / "damping"]


def test_the_report_writes_the_seed_damping_and_update_time_tables_with_their_figures(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from natpg.bench.report import damping, paper, plots, update_time, write

    drawn: dict[str, tuple] = {}

    def spy(data, ylabel, title, path, note="", styles=None, **kwargs):
        drawn[path.name] = (data, styles)
        return plots.plot_grid(data, ylabel, title, path, note, styles, **kwargs)

    for module in (write, paper, damping, update_time):
        monkeypatch.setattr(module, "plot_grid", spy)
    dirs = _suite_tree(tmp_path / "runs")
    out = tmp_path / "report"
    write.write_report(dirs, out)

    report = (out / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    for before, after in (("## Steps to threshold", "## Per seed"), ("## Step sizes", "## Adaptive damping"),
                          ("## Batch-size ablation (Figure 1)", "## Batch-size ablation: update time")):
        assert headings.index(after) == headings.index(before) + 1
    for name in ("damping", "return_vs_update_time"):
        assert f"![{name}]({name}.png)" in report and (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert report.index("![damping]") < report.index("## Runs")  # under its own table
    assert report.index("## Batch-size ablation: update time") < report.index("![return_vs_update_time]")

    cost = {(r["env"], r["method"]): r for r in _rows((out / "update_time.csv").read_text())}
    assert len(cost) == 16 and {m for _, m in cost} >= {"ac-sgd", "smac-single"}
    assert float(cost[("Hopper-v5", "smac@batch_size=1000")]["ratio_to_reference"]) == 1.0
    assert "÷ smac@batch_size=1000" in (out / "update_time.md").read_text()
    assert "| CartPole-v1 | `smac_adaptive_lambda` |" in (out / "damping.md").read_text()
    seeds = _rows((out / "seeds.csv").read_text())
    assert len(seeds) == 44 + 6 and {r["env"] for r in seeds} == {"HalfCheetah-v5", "Hopper-v5", "CartPole-v1"}

    # One colour and line style per method in every figure; the new ones over completed seeds.
    assert set(drawn) >= {"damping.png", "return_vs_update_time.png", "ablation_batch_size.png", "learning_curves.png"}
    assert len({id(styles) for _, styles in drawn.values()}) == 1
    lam = drawn["damping.png"][0]["CartPole-v1"]
    assert set(lam) == {"smac_fixed_lambda", "smac_adaptive_lambda"} and lam["smac_fixed_lambda"].seeds == 3
    assert np.allclose(lam["smac_fixed_lambda"].mean, np.log10(0.1)) and np.allclose(lam["smac_fixed_lambda"].std, 0)
    spent = drawn["return_vs_update_time.png"][0]
    assert "ac-sgd" not in spent["Hopper-v5"]  # the ablation's variants only, as in its figure
    assert "smac-single" not in spent["HalfCheetah-v5"]  # every run diverged
    assert spent["Hopper-v5"]["smac-single"].seeds == 3
    b10 = spent["Hopper-v5"]["smac@batch_size=10"]  # 1 of 3 diverged
    assert b10.seeds == 2 and np.all(np.diff(b10.x) > 0)  # x: time spent so far, rising


def test_no_update_time_without_the_ablation(tmp_path):
    from natpg.bench.report import build_report

    rep = build_report([_suite_tree(tmp_path)[1]])
    assert {"seeds", "damping"} <= set(rep.sections) and not {"ablation", "update_time"} & set(rep.sections)
