"""Smoke test of benchmarks/update_cost.py: it must keep running as methods are added
(it iterates over the registry) and write its table; a cell over a limit is reported."""

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "update_cost.py"


def _load():
    spec = importlib.util.spec_from_file_location("update_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_param_count_matches_the_actor():
    from natpg.policies import GaussianActor

    update_cost = _load()
    for width in (8, 64):
        actor = GaussianActor(update_cost.OBS_DIM, update_cost.ACT_DIM, (width, width), "tanh")
        assert update_cost.param_count(width) == sum(p.numel() for p in actor.parameters())


def test_update_cost_writes_table_and_reports_limits(tmp_path):
    update_cost = _load()
    args = ["--methods", "smac,ac-sgd", "--widths", "8", "--samples", "64", "--threads", "1", "--repeats", "2",
            "--out", str(tmp_path), "--name", "uc"]
    assert update_cost.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "uc.csv")))
    assert [r["method"] for r in rows] == ["ac-sgd", "smac"]  # the reference first
    assert all(r["status"] == "ok" and float(r["cpu_median_ms"]) > 0 for r in rows)
    assert float(rows[0]["ratio_to_ac_sgd"]) == 1.0
    assert "python benchmarks/update_cost.py --methods smac,ac-sgd" in (tmp_path / "uc.md").read_text()
    # A memory limit no worker can meet: every cell is skipped, with the reason.
    assert update_cost.main(args + ["--max-memory-gb", "0.001", "--name", "tiny"]) == 0
    text = (tmp_path / "tiny.md").read_text()
    assert text.count("skipped: memory > 0.001 GB") == 2


def test_update_cost_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown method"):
        _load().main(["--methods", "smak", "--widths", "8"])
