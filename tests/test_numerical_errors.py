"""Numerical failures are told from bugs by type, never by the wording of a message.

A rule that raises :class:`natpg.errors.NumericalError` (whatever its message) or
``torch.linalg.LinAlgError`` has its update rejected and counted; any other exception — even
a ``ValueError("nan")`` — is a bug and propagates out of ``train``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import natpg
from natpg import methods
from natpg.errors import InvalidDistributionError, NonFiniteError, NotPositiveDefiniteError, NumericalError
from natpg.linalg import sherman_morrison_solve, solve_shifted_gram
from natpg.methods.base import PolicyBatch
from natpg.methods.first_order import ACSGD
from natpg.policies import GaussianActor
from natpg.methods.registry import _REGISTRY

TINY = dict(rollout_steps=200, hidden=(8,), critic_steps=2)


class _RaisingRule(ACSGD):
    """AC-SGD whose every step raises ``error`` (set per test)."""

    name = "test-raising"
    error: BaseException = NumericalError("whatever")

    def _step(self, batch):
        raise type(self).error


class _StdUnderflowRule(ACSGD):
    """AC-SGD that drives the Gaussian log-std so low that the standard deviation is 0."""

    name = "test-std-underflow"

    def _step(self, batch):
        with torch.no_grad():
            for name, p in self.actor.named_parameters():
                if "log_std" in name:
                    p.fill_(-1e4)
        return {}


@pytest.fixture
def rules():
    for rule in (_RaisingRule, _StdUnderflowRule):
        methods.register(rule)
    yield
    for rule in (_RaisingRule, _StdUnderflowRule):
        _REGISTRY.pop(rule.name, None)


def _events(run_dir):
    return [json.loads(line) for line in open(run_dir / "events.jsonl")]


@pytest.mark.parametrize("message", ["whatever", "", "nan"])
def test_a_numerical_error_is_counted_whatever_its_message(rules, tmp_path, monkeypatch, message):
    monkeypatch.setattr(_RaisingRule, "error", NumericalError(message))
    result = natpg.train("CartPole-v1", "test-raising", total_steps=400, seed=0, out=tmp_path, **TINY)
    assert result.summary["status"] == "completed" and result.summary["nonfinite_actor_updates"] == 2
    reasons = [e["reasons"][0] for e in _events(tmp_path) if e["event"] == "nonfinite_update"]
    assert reasons == [f"actor update failed numerically (NumericalError: {message})"] * 2


@pytest.mark.parametrize("error", [NonFiniteError("x"), NotPositiveDefiniteError("y"), torch.linalg.LinAlgError("z")])
def test_every_numerical_type_is_counted(rules, tmp_path, monkeypatch, error):
    monkeypatch.setattr(_RaisingRule, "error", error)
    result = natpg.train("CartPole-v1", "test-raising", total_steps=200, seed=0, out=tmp_path, **TINY)
    assert result.summary["nonfinite_actor_updates"] == 1


@pytest.mark.parametrize(
    "error", [ValueError("nan"), ValueError("not positive definite"), RuntimeError("inf or nan: singular"), KeyError("nan")]
)
def test_any_other_exception_is_a_bug_and_propagates_whatever_its_message(rules, tmp_path, monkeypatch, error):
    monkeypatch.setattr(_RaisingRule, "error", error)
    with pytest.raises(type(error)) as info:
        natpg.train("CartPole-v1", "test-raising", total_steps=400, seed=0, out=tmp_path, **TINY)
    assert info.value is error and not isinstance(info.value, NumericalError)


def test_an_invalid_distribution_from_torch_is_numerical(rules, tmp_path):
    """torch.distributions rejects a standard deviation of 0 with a plain ValueError; inside an
    update that is a numerical failure (InvalidDistributionError), and the update is undone."""
    result = natpg.train("Pendulum-v1", "test-std-underflow", total_steps=400, seed=0, out=tmp_path, **TINY)
    assert result.summary["nonfinite_actor_updates"] == 2
    log_std = [p for name, p in result.agent.actor.named_parameters() if "log_std" in name]
    assert log_std and all(float(p.detach().min()) > -10 for p in log_std)  # put back after each rejected update
    reasons = [e["reasons"][0] for e in _events(tmp_path) if e["event"] == "nonfinite_update"]
    assert all(r.startswith("actor update failed numerically (InvalidDistributionError: ") for r in reasons), reasons


def test_isopo_ntk_with_overflowing_scores_is_numerical_and_keeps_its_averages():
    # As --preset paper on HalfCheetah: the actor's outputs stay finite while a layer's per-sample
    # scores overflow float32. Here the first layer's scores are 0 (the output layer is zeroed) and the
    # second layer's inputs are ~1e20, so the first layer's running average moves before the second
    # layer's statistic overflows: the rejected step must leave both averages as they were.
    torch.manual_seed(0)
    actor = GaussianActor(3, 2, (8,), "relu")
    batch = PolicyBatch(torch.randn(16, 3), torch.zeros(16, 2), torch.randn(16))
    rule = methods.make("isopo-ntk", actor, batch_size=16)
    rule.update(batch)  # a finite step first: every layer's average is set
    before = rule.state_dict()["ema"]
    assert len(before) == 2 and all(math.isfinite(v) for v in before)
    with torch.no_grad():
        actor.net[2].weight.zero_()
        actor.net[0].weight.mul_(1e20)
    with pytest.raises(NonFiniteError, match="layer 1's score statistic is inf"):
        rule.update(batch)
    assert rule.state_dict()["ema"] == before


def test_linalg_raises_numerical_errors_that_are_value_errors():
    with pytest.raises(NonFiniteError, match="^g contains NaN or inf"):
        sherman_morrison_solve(torch.ones(3), torch.tensor([1.0, float("nan"), 0.0]), 0.1)
    with pytest.raises(NotPositiveDefiniteError):
        solve_shifted_gram(-torch.eye(3), torch.ones(3), 1e-3, max_jitter_tries=0)
    with pytest.raises(ValueError):  # existing `except ValueError` keeps catching them
        solve_shifted_gram(-torch.eye(3), torch.ones(3), 1e-3, max_jitter_tries=0)
    with pytest.raises(ValueError) as info:  # a wrong argument stays a plain ValueError
        sherman_morrison_solve(torch.ones(3), torch.ones(2), 0.1)
    assert not isinstance(info.value, NumericalError)
