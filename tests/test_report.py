"""natpg report's reading of results: the verdict rule, line styles, figure titles, budgets from the
paper's text, runs at several budgets, and results pages that cannot drift from their data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from natpg.bench import suites
from natpg.bench.report import load_runs, page, paper, plots
from natpg.bench.report.runs import Curve
from natpg.bench.report.write import build_report
from natpg.bench.report.stats import MIN_SEEDS, RULE, Sample, reproduction, steps_text, versus, welch

ROOT = Path(__file__).resolve().parents[1]
PAPER_TEXT = ROOT.parent / "shared" / "papers" / "smac-rank1-inverse-fisher.md"


# ----------------------------------------------------------------------------- the verdict rule


def test_welch_matches_closed_forms():
    # two seeds each, equal stds: df = 2, and P(|T| > t) = 1 - t / sqrt(2 + t²) for 2 degrees of freedom
    t, df, p = welch(Sample(1.0, 1.0, 2), Sample(0.0, 1.0, 2))
    assert t == pytest.approx(1.0) and df == pytest.approx(2.0) and p == pytest.approx(1 - 1 / math.sqrt(3))
    # unequal variances: the Welch–Satterthwaite degrees of freedom
    t, df, p = welch(Sample(10.0, 2.0, 5), Sample(12.0, 3.0, 5))
    assert t == pytest.approx(-2 / math.sqrt(0.8 + 1.8))
    assert df == pytest.approx(2.6 ** 2 / (0.8 ** 2 / 4 + 1.8 ** 2 / 4))
    # df = 1 is Cauchy, P(|T| > t) = 1 - 2 atan(t) / π: two seeds against a point mass (no spread, huge n)
    t, df, p = welch(Sample(3.0, 1.0, 2), Sample(0.0, 0.0, 10**9))
    assert df == pytest.approx(1.0) and p == pytest.approx(1 - 2 * math.atan(t) / math.pi)
    assert welch(Sample(5.0, 0.0, 3), Sample(5.0, 0.0, 3))[2] == 1.0
    assert welch(Sample(5.0, 0.0, 3), Sample(4.0, 0.0, 3))[2] == 0.0


def test_the_critical_value_sits_at_five_percent():
    # t_{0.975, 4} = 2.776445: with n = 5 against a point mass, a gap of 2.776445 standard errors is p = 0.05
    se = 1.0 / math.sqrt(5)
    below = welch(Sample(2.7 * se, 1.0, 5), Sample(0.0, 0.0, 10**12))[2]
    above = welch(Sample(2.85 * se, 1.0, 5), Sample(0.0, 0.0, 10**12))[2]
    assert below > 0.05 > above


def test_reproduction_verdicts_with_known_answers():
    paper_halfcheetah = Sample(863.8, 38.7, 5)
    assert reproduction(Sample(122.7, 122.4, 3), paper_halfcheetah).word == "does not reproduce"
    assert reproduction(Sample(850.0, 40.0, 5), paper_halfcheetah).word == "reproduces"  # no significant gap
    assert reproduction(Sample(1500.0, 40.0, 5), paper_halfcheetah).word == "reproduces"  # significantly higher
    short = reproduction(Sample(122.7, 122.4, 3), paper_halfcheetah, budget=1_000_000, paper_budget=5_000_000)
    assert short.word == "inconclusive" and short.text() == "inconclusive (1M of 5M steps)" and short.p is None
    few = reproduction(Sample(100.0, 1.0, MIN_SEEDS - 1), paper_halfcheetah)
    assert few.word == "inconclusive" and "2 seeds" in few.text()
    assert reproduction(Sample(122.7, 122.4, 3), paper_halfcheetah, 5_000_000, 5_000_000).word == "does not reproduce"


def test_a_single_seed_gap_is_not_called_higher():
    # the case: a 0.8-point gap over one seed each was reported as "smac higher"
    v = versus(Sample(33.0, None, 1), Sample(32.2, None, 1))
    assert v.word == "inconclusive" and "higher" not in v.text()
    assert versus(Sample(33.0, 0.6, 3), Sample(32.9, 0.5, 3)).word == "no significant difference"
    assert versus(Sample(-455.5, 15.7, 3), Sample(-3140.0, 405.0, 3)).word == "higher"
    assert versus(Sample(135.3, 51.4, 3), Sample(291.3, 22.6, 3)).word == "lower"


def test_the_rule_is_stated_with_its_constants():
    assert "Welch" in RULE and "5%" in RULE and f"fewer than {MIN_SEEDS}" in RULE and "5 seeds" in RULE


def test_budgets_in_words():
    assert [steps_text(s) for s in (1_000_000, 1_001_472, 500_000, 5_000_000, 1_500_000, 20_480)] == \
        ["1M", "1M", "500k", "5M", "1.5M", "20.5k"]


# ----------------------------------------------------------------------------- budgets from the paper's text


def test_every_paper_task_has_a_budget_and_the_suite_runs_it():
    suite = suites.get_suite("paper")
    assert set(suites.PAPER_BUDGETS) == set(suite.envs)
    for env, budget in suites.PAPER_BUDGETS.items():
        assert suite.steps_for(env) == budget.steps and budget.quote and budget.reading
    # the text fixes HalfCheetah ("three times faster ... after only 1.7 million timesteps") and bounds Pendulum
    assert suites.PAPER_BUDGETS["HalfCheetah-v5"].from_text and suites.PAPER_BUDGETS["HalfCheetah-v5"].steps >= 5_000_000
    assert suites.PAPER_BUDGETS["Pendulum-v1"].steps > 1_500_000


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason="the paper's text is not in this checkout's shared/papers")
def test_the_budget_quotes_are_the_papers_words():
    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text.replace("$", "")).strip()

    text = norm(PAPER_TEXT.read_text())
    for env, budget in suites.PAPER_BUDGETS.items():
        assert norm(budget.quote) in text, env


# ----------------------------------------------------------------------------- runs and tables


def _run(root: Path, env: str, label: str, seed: int, final: float, steps: int) -> None:
    d = root / env / label / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"env_id": env, "total_steps": steps, "preset": "paper"}))
    (d / "summary.json").write_text(json.dumps({"final_return": final, "steps": steps, "status": "completed"}))


def test_runs_at_two_budgets_are_told_apart_and_the_short_ones_say_so(tmp_path):
    for seed, final in enumerate((100.0, 140.0, 120.0)):
        _run(tmp_path / "short", "HalfCheetah-v5", "smac", seed, final, 1_000_000)
        _run(tmp_path / "long", "HalfCheetah-v5", "smac", seed, final + 800.0, 5_000_000)
    runs = load_runs([tmp_path / "short", tmp_path / "long"])
    assert sorted({r.label for r in runs}) == ["smac", "smac@steps=1000000"] and len(runs) == 6
    md, _ = paper.table1(runs)
    assert "920.0 ± 20.0 (3)" in md and "120.0 ± 20.0 (3; 1M of 5M)" in md
    main, short = md.split("second, shorter budget")  # the 1M runs sit in their own table, named by budget
    assert "920.0" in main and "120.0" not in main and "| env | smac at 1M |" in short and "120.0" in short
    verdicts = paper.verdicts(runs)
    assert verdicts[("HalfCheetah-v5", "smac")].word == "reproduces"  # 920 ± 20 against 863.8 ± 38.7
    md = paper.verdicts_table(runs)
    assert "| HalfCheetah-v5 | 5M | 5M | reproduces (p = " in md


def test_methods_at_different_budgets_are_never_compared(tmp_path):
    for seed, final in enumerate((900.0, 950.0, 1000.0)):
        _run(tmp_path / "s", "HalfCheetah-v5", "smac", seed, final, 5_000_000)
        _run(tmp_path / "s", "HalfCheetah-v5", "ac-sgd-matched", seed, final - 800.0, 1_000_000)
        _run(tmp_path / "s", "HalfCheetah-v5", "ac-cg", seed, final - 800.0, 5_000_000)
    verdicts = paper.comparisons(load_runs([tmp_path / "s"]), "smac", ("ac-sgd-matched", "ac-cg"))
    assert verdicts[("HalfCheetah-v5", "ac-sgd-matched")].text() == "inconclusive (5M vs 1M steps)"
    assert verdicts[("HalfCheetah-v5", "ac-cg")].word == "higher"


# ----------------------------------------------------------------------------- figures


def test_any_number_of_methods_gets_distinct_colour_and_style_pairs():
    labels = [f"rule{i:02d}" for i in range(70)]
    styles = plots.line_styles(labels)
    assert len(set(styles.values())) == 70
    ordered = [styles[label] for label in sorted(labels)]
    for (c1, s1), (c2, s2) in zip(ordered, ordered[1:]):
        assert c1 != c2 and s1 != s2  # neighbours in the legend differ in both
    assert plots.line_styles(reversed(labels)) == styles  # by label order, not by the order given
    # the look-alike pairs of tab10 never share a style among the first ten
    first = plots.line_styles(labels[:10])
    by_colour = {colour: style for colour, style in first.values()}
    for a, b in (("#d62728", "#e377c2"), ("#1f77b4", "#17becf"), ("#2ca02c", "#bcbd22"), ("#ff7f0e", "#8c564b")):
        assert by_colour[a] != by_colour[b]


def _curve(seeds: int) -> Curve:
    x = np.linspace(1, 100, 10)
    return Curve(x, x.copy(), np.full(10, 5.0) if seeds > 1 else np.full(10, np.nan), seeds)


@pytest.mark.parametrize("seeds,phrase,bands", [
    ({"a": 1, "b": 1}, "1 seed (no band)", 0),
    ({"a": 3, "b": 3}, "mean ± std over 3 seeds", 2),
    ({"a": 1, "b": 3}, "mean ± std over 1–3 seeds (per method in the legend; no band with 1 seed)", 1),
])
def test_figure_titles_state_the_seeds_present_and_bands_need_two(seeds, phrase, bands):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    fig = plots.figure({"CartPole-v1": {label: _curve(n) for label, n in seeds.items()}}, "return", "CartPole")
    try:
        title = fig._suptitle.get_text()
        assert title.splitlines()[1] == phrase
        assert ("mean ± std" in title) == (max(seeds.values()) >= 2)
        ax = fig.axes[0]
        assert ax.get_title() == "CartPole-v1"  # one panel, and the title does not name its env
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == bands
        legend = fig.legends[0]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box, axes_box = legend.get_window_extent(renderer), ax.get_tightbbox(renderer)
        assert box.x0 >= axes_box.x1  # the legend is right of the axes and its labels, covering nothing
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- pages


TEMPLATES = sorted((ROOT / "docs" / "templates").glob("*.md"))


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_a_committed_page_is_its_template_rendered_with_the_committed_data(template):
    path, text, files = page.render_page(template, write=False)
    assert not files
    assert path.read_text() == text, (f"{path} differs from {template} rendered with the data: run "
                                      f"natpg report --page {template.relative_to(ROOT)}")
    assert "{{" not in text


def typed_numbers(body: str) -> list[str]:
    """Numbers in a template's prose. Left out: code (commands, settings), placeholders, links,
    quotations of the paper, names with digits (v5, seed-0, sb3) and references (Table 2,
    Figures 2–5, issue 17, seeds 3–4), and table rows (configuration transcribed into a table)."""
    body = re.sub(r"```.*?```", "", body, flags=re.S)
    body = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("|"))
    body = re.sub(r"`[^`]*`|\{\{[^}]*\}\}|\]\([^)]*\)|!\[[^\]]*\]|“[^”]*”", "", body)
    body = re.sub(r"\b(?:Tables?|Figures?|Section|Algorithm|issue|seeds?|items?)\s+\d+(?:[–-]\d+)?", "", body)
    body = re.sub(r"[A-Za-z][\w-]*\d[\w.-]*", "", body)
    return re.findall(r"\d+(?:[.,]\d+)*", body)


def test_no_number_is_typed_into_a_results_page():
    assert typed_numbers("SMAC ends at 123 ± 100 on HalfCheetah-v5 (Table 1)") == ["123", "100"]
    for name in ("results.md", "mujoco.md"):
        body = page.read_template(ROOT / "docs" / "templates" / name).body
        assert not typed_numbers(body), f"{name}: numbers typed into the template: {typed_numbers(body)[:10]}"


def test_an_unknown_placeholder_stops_the_page(tmp_path):
    _run(tmp_path / "sweep", "CartPole-v1", "smac", 0, 10.0, 1000)
    template = tmp_path / "t.md"
    template.write_text("<!-- natpg report template\npage: out.md\ns: sweep -> sweep/report\n-->\n\n"
                        "{{s.return.CartPole-v1.smac}} {{s.return.CartPole-v1.ac-cg}}\n")
    with pytest.raises(ValueError, match=r"s\.return\.CartPole-v1\.ac-cg"):
        page.render_page(template, write=False)
    template.write_text(template.read_text().replace(" {{s.return.CartPole-v1.ac-cg}}", ""))
    path, text, _ = page.render_page(template, plots=False)
    assert path.read_text() == text and text.endswith("10.0\n") and (tmp_path / "sweep" / "report" / "table1.md").exists()


def test_page_facts_name_the_best_rows_their_wall_times_and_the_published_numbers(tmp_path):
    for seed, (ours, theirs) in enumerate(((3000.0, 2000.0), (3400.0, 2600.0))):
        _run(tmp_path / "s", "Hopper-v5", "trpo", seed, ours, 1_000_000)
        _run(tmp_path / "s", "Hopper-v5", "sb3-trpo-zoo", seed, theirs, 1_000_000)
        _run(tmp_path / "s", "Hopper-v5", "smac", seed, ours - 1000.0, 1_000_000)
    for seed, wall in enumerate((100.0, 140.0)):
        path = tmp_path / "s" / "Hopper-v5" / "trpo" / f"seed{seed}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "wall_time": wall}))
    _run(tmp_path / "s", "Hopper-v5", "kfac", 0, 900.0, 1_000_000)
    facts = page.facts("m", build_report([tmp_path / "s"]))
    assert facts["m.seed_range.Hopper-v5"] == "1–2"
    assert facts["m.cell.Hopper-v5.kfac"] == "900.0 (1 seed, partial)"
    _run(tmp_path / "s", "Ant-v5", "kfac", 0, 1000.0, 1_000_000)
    facts = page.facts("m", build_report([tmp_path / "s"]))
    assert facts["m.cell.Ant-v5.trpo"] == "not run yet" and "m.return.Ant-v5.trpo" not in facts
    assert facts["m.timed.Ant-v5.trpo"] == "not run yet" and facts["m.versus.Ant-v5.trpo.kfac"] == "–"
    assert facts["m.timed.Hopper-v5.trpo"] == "3200 ± 283, 120 s"
    assert facts["m.cell.Hopper-v5.trpo"] == facts["m.return.Hopper-v5.trpo"] == "3200 ± 283"
    assert sorted(facts["m.labels.Hopper-v5"].split(", ")) == ["`kfac`", "`sb3-trpo-zoo`", "`smac`", "`trpo`"]
    assert facts["m.best.Hopper-v5"] == "3200 ± 283 `trpo` (2 seeds)"
    assert facts["m.best_sb3.Hopper-v5"] == "2300 ± 424 `sb3-trpo-zoo` (2 seeds)"
    assert facts["m.best_timed.Hopper-v5"] == "3200 ± 283 `trpo` (2 seeds), 120 s"
    assert facts["m.best_sb3_timed.Hopper-v5"] == facts["m.best_sb3.Hopper-v5"]  # no wall time recorded
    assert facts["m.best_vs_best.Hopper-v5"] == facts["m.versus.Hopper-v5.trpo.sb3-trpo-zoo"] == "inconclusive (2 seeds vs 2 seeds)"
    assert facts["m.wall_time.Hopper-v5.trpo"] == "120"
    assert facts["m.anchor.Hopper-v5.sb3contrib.trpo"] == "3372 ± 215"  # natpg/bench/mujoco_1m_anchors.csv
    # a failed seed is said in the cell, and a label whose runs all failed adds no seed count
    for label, seed in (("kfac", 1), ("rat", 0)):
        failed = tmp_path / "s" / "Hopper-v5" / label / f"seed{seed}"
        failed.mkdir(parents=True)
        (failed / "config.json").write_text(json.dumps({"env_id": "Hopper-v5", "total_steps": 1_000_000}))
        (failed / "error.json").write_text(json.dumps({"error": "NonFiniteError"}))
    facts = page.facts("m", build_report([tmp_path / "s"]))
    assert facts["m.cell.Hopper-v5.kfac"] == "900.0 (1 seed, partial; 1 failed)"
    assert facts["m.cell.Hopper-v5.rat"] == "– (1 failed)" and facts["m.seed_range.Hopper-v5"] == "1–2"


def test_an_env_id_with_a_namespace_or_module_makes_a_flat_file_name():
    from natpg.bench.report.write import file_stem

    assert file_stem("MinAtar/Breakout-v1") == "MinAtar_Breakout-v1"
    assert file_stem("mymodule:MyEnv-v0") == "mymodule_MyEnv-v0"
    assert file_stem("Hopper-v5") == "Hopper-v5"


def test_two_sets_of_one_page_are_compared_by_the_rule(tmp_path):
    for seed, (new, old) in enumerate(((3000.0, 900.0), (3300.0, 1000.0), (3100.0, 1100.0))):
        _run(tmp_path / "new", "Hopper-v5", "trpo", seed, new, 1_000_000)
        _run(tmp_path / "old", "Hopper-v5", "trpo", seed, old, 1_000_000)
    _run(tmp_path / "old", "Hopper-v5", "kfac", 0, 500.0, 1_000_000)
    template = tmp_path / "t.md"
    template.write_text("<!-- natpg report template\npage: out.md\nnew: new\nold: old\n-->\n\n"
                        "{{versus.new.old.Hopper-v5.trpo}}; {{versus.old.new.Hopper-v5.trpo}}\n")
    _, text, _ = page.render_page(template, write=False)
    higher, lower = text.strip().splitlines()[-1].split("; ")
    assert higher.startswith("higher (p") and lower.startswith("lower (p")
    template.write_text(template.read_text().replace("\n\n{{", "\n\n{{new.versus.Hopper-v5.trpo.trpo}}, {{old.versus.Hopper-v5.kfac.trpo}}; {{"))
    with pytest.raises(ValueError, match="new.versus.Hopper-v5.trpo.trpo"):  # a label against itself: no such value
        page.render_page(template, write=False)
    template.write_text(template.read_text().replace("{{new.versus.Hopper-v5.trpo.trpo}}, ", ""))
    _, text, _ = page.render_page(template, write=False)  # kfac has one seed in the old set: no test
    assert text.strip().splitlines()[-1].startswith("inconclusive")
    template.write_text("<!-- natpg report template\npage: out.md\nnew: new\nold: old\n-->\n\n"
                        "{{versus.new.old.Hopper-v5.trpo}}; {{versus.old.new.Hopper-v5.kfac}}\n")
    with pytest.raises(ValueError, match="versus.old.new.Hopper-v5.kfac"):  # kfac ran in one set only
        page.render_page(template, write=False)


def test_a_method_whose_every_run_failed_says_so_in_its_return_cell(tmp_path):
    _run(tmp_path / "s", "Hopper-v5", "trpo", 0, 3000.0, 1_000_000)
    for seed in (0, 1):
        d = tmp_path / "s" / "Hopper-v5" / "isopo-ntk" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"env_id": "Hopper-v5", "total_steps": 1_000_000}))
        (d / "summary.json").write_text(json.dumps({"final_return": -5.0, "steps": 5000, "status": "stopped_nonfinite"}))
    template = tmp_path / "t.md"
    template.write_text("<!-- natpg report template\npage: out.md\ns: s\n-->\n\n"
                        "{{s.return.Hopper-v5.isopo-ntk}}; {{s.return.Hopper-v5.trpo}}\n")
    _, text, _ = page.render_page(template, write=False)
    assert text.strip().splitlines()[-1] == "– (2 failed); 3000"


def test_packed_metrics_read_back_at_four_digits_and_unfinished_runs_stay_text(tmp_path):
    from natpg.bench.report.runs import pack_runs

    # timesteps and 0.5·i survive exactly; i/3, written at 6 digits by an older natpg, is rounded to 4.
    rows = "timesteps,episode_return_mean,kl\n" + "".join(f"{1000 * i},{0.5 * i:.6g},{i / 3:.6g}\n" for i in range(1, 400))
    for seed in (0, 1):
        _run(tmp_path / "s", "Hopper-v5", "trpo", seed, 10.0, 400_000)
        (tmp_path / "s" / "Hopper-v5" / "trpo" / f"seed{seed}" / "metrics.csv").write_text(rows)
    unfinished = tmp_path / "s" / "Hopper-v5" / "trpo" / "seed1"
    (unfinished / "checkpoint.pt").write_bytes(b"resumable")
    before = [r.metrics() for r in load_runs([tmp_path / "s"])]
    assert pack_runs([tmp_path / "s"]) == 1 and pack_runs([tmp_path / "s"]) == 0
    packed = tmp_path / "s" / "Hopper-v5" / "trpo" / "seed0"
    assert not (packed / "metrics.csv").exists() and (packed / "metrics.csv.xz").stat().st_size < len(rows) / 2
    assert (unfinished / "metrics.csv").exists() and not (unfinished / "metrics.csv.xz").exists()
    after = [r.metrics() for r in load_runs([tmp_path / "s"])]
    for a, b in zip(before, after):
        assert a.keys() == b.keys()
        assert np.array_equal(a["timesteps"], b["timesteps"]) and np.array_equal(a["episode_return_mean"], b["episode_return_mean"])
    np.testing.assert_allclose(after[0]["kl"], before[0]["kl"], rtol=5e-4)
    assert not np.array_equal(after[0]["kl"], before[0]["kl"]) and np.array_equal(after[1]["kl"], before[1]["kl"])
    assert after[0]["kl"][0] == 0.3333


def test_packing_keeps_curve_and_step_size_columns_on_every_row_and_thins_the_other_diagnostics(tmp_path):
    import lzma

    from natpg.bench.report.runs import pack_runs
    from natpg.runlog import PACKED_DIAGNOSTIC_ROWS

    n = 3 * PACKED_DIAGNOSTIC_ROWS + 1  # every 4th row keeps its diagnostics, and the last
    rows = "timesteps,episode_return_mean,kl,entropy,grad_cosine\n" + "".join(
        f"{1000 * i},{i / 7:.6g},{i / 3:.6g},{i / 9:.6g},{1 / i:.6g}\n" for i in range(1, n + 1))
    _run(tmp_path / "s", "Hopper-v5", "trpo", 0, 10.0, 1000 * n)
    _run(tmp_path / "s", "Hopper-v5", "smac", 0, 10.0, 1000 * n)  # its rank-1 table pools grad_cosine
    (tmp_path / "s" / "Hopper-v5" / "smac" / "seed0" / "metrics.csv").write_text(rows)
    failed = tmp_path / "s" / "Hopper-v5" / "trpo" / "seed1"
    failed.mkdir()
    (failed / "config.json").write_text(json.dumps({"env_id": "Hopper-v5", "total_steps": 1000 * n}))
    (failed / "error.json").write_text(json.dumps({"error": "NonFiniteError"}))
    for seed in (0, 1):
        (tmp_path / "s" / "Hopper-v5" / "trpo" / f"seed{seed}" / "metrics.csv").write_text(rows)
    import fcntl

    with open(failed / ".train.lock", "w") as lock:  # a failed run being resumed: its trainer writes on
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert pack_runs([tmp_path / "s"]) == 2 and (failed / "metrics.csv").exists()
    assert pack_runs([tmp_path / "s"]) == 1 and pack_runs([tmp_path / "s"]) == 0
    smac = next(r for r in load_runs([tmp_path / "s"]) if r.label == "smac").metrics()
    np.testing.assert_allclose(smac["grad_cosine"], 1 / np.arange(1, n + 1), rtol=5e-4)
    def trpo(seed=0):
        return next(r for r in load_runs([tmp_path / "s"]) if r.label == "trpo" and r.seed == seed).metrics()

    m = trpo()
    assert np.isfinite(m["grad_cosine"]).sum() == n // 4 + 1
    i = np.arange(1, n + 1)
    np.testing.assert_allclose(m["episode_return_mean"], i / 7, rtol=5e-4)
    np.testing.assert_allclose(m["kl"], i / 3, rtol=5e-4)
    kept = np.isfinite(m["entropy"])
    assert kept.sum() == n // 4 + 1 and kept[3] and not kept[:3].any() and kept[-1]
    np.testing.assert_allclose(m["entropy"][kept], i[kept] / 9, rtol=5e-3)
    assert m["entropy"][-1] == float(f"{n / 9:.3g}")
    # a copy packed whole by an older natpg is repacked the same way, once
    packed = tmp_path / "s" / "Hopper-v5" / "trpo" / "seed0" / "metrics.csv.xz"
    packed.write_bytes(lzma.compress(rows.replace("\n", "\r\n").encode()))
    assert pack_runs([tmp_path / "s"]) == 1 and pack_runs([tmp_path / "s"]) == 0
    assert np.array_equal(np.isfinite(trpo()["entropy"]), kept)
