"""metrics.csv holds floats at 4 significant digits and integers as integers; nothing that
needs more reads it back (exact resume restores the rows from checkpoint.pt)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

import natpg
from natpg.runlog import METRIC_DIGITS, metric_cell


@pytest.mark.parametrize("value,text", [
    (0.12345678912, "0.1235"), (1234567.891, "1.235e+06"), (-4.308938980102539, "-4.309"), (1.0, "1"),
    (2.5e-9, "2.5e-09"), (math.nan, "nan"), (math.inf, "inf"), (np.float32(0.1), "0.1"), (np.float64(1 / 3), "0.3333"),
])
def test_a_float_is_written_at_four_significant_digits(value, text):
    assert METRIC_DIGITS == 4 and metric_cell(value) == text


@pytest.mark.parametrize("value", [1_000_000, np.int64(1_000_000), 0, -3])
def test_an_integer_stays_an_integer(value):
    assert metric_cell(value) == int(value) and str(metric_cell(value)) == str(int(value))


def test_non_numbers_pass_through():
    assert metric_cell(True) is True and metric_cell("x") == "x" and metric_cell(None) is None


def test_a_run_writes_its_metrics_rounded_and_keeps_them_whole_in_memory(tmp_path):
    result = natpg.train("CartPole-v1", method="smac", total_steps=2000, seed=0, out=tmp_path, rollout_steps=500,
                         hidden=(8,))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.metrics) == 4
    for written, kept in zip(rows, result.metrics):
        assert written["timesteps"] == str(kept["timesteps"])  # an integer, never 2e+03
        for key, value in kept.items():
            if isinstance(value, float) and math.isfinite(value):
                digits = written[key].lstrip("-").split("e")[0].replace(".", "").lstrip("0")
                assert len(digits) <= METRIC_DIGITS, (key, written[key])
                assert float(written[key]) == pytest.approx(value, rel=5e-4, abs=1e-300), key
