"""Conjugate gradient, Woodbury, AC-CG and TRPO against dense float64 solves."""

import math

import pytest
import torch
from torch.distributions import kl_divergence

from natpg import methods
from natpg.methods import trust_region
from natpg.linalg import conjugate_gradient, woodbury_solve
from natpg.methods.base import PolicyBatch
from natpg.scores import detached, flatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch
from tests.test_fisher import explicit_fisher


def _spd(d, seed=0, cond=50.0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.logspace(0, math.log10(cond), d, dtype=torch.float64)) @ q.T


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters()]).clone()


# -- linear algebra --------------------------------------------------------------------------
def test_conjugate_gradient_matches_dense_solve():
    A = _spd(12)
    b = torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, b, max_iter=50, tol=1e-28)
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-10)
    # A few iterations: not the solution yet, but a descent on the A-norm error.
    x3 = conjugate_gradient(lambda v: A @ v, b, max_iter=3)
    exact = torch.linalg.solve(A, b)
    err = lambda y: float((y - exact) @ A @ (y - exact))  # noqa: E731
    assert err(x3) < err(torch.zeros_like(b))
    assert err(x3) > err(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"matvec": "not callable"}, "matvec"),
        ({"b": torch.ones(2, 2)}, "b must be 1-D"),
        ({"b": torch.tensor([1.0, float("nan")])}, "b contains NaN"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": True}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"tol": "x"}, "tol"),
        ({"matvec": lambda v: torch.ones(3)}, "matvec must return"),
    ],
)
def test_conjugate_gradient_validates_inputs(kwargs, match):
    args = {"matvec": lambda v: v, "b": torch.ones(2), "max_iter": 5, "tol": 1e-10, **kwargs}
    with pytest.raises(ValueError, match=match):
        conjugate_gradient(args["matvec"], args["b"], args["max_iter"], args["tol"])


def test_woodbury_matches_dense_solve():
    g = torch.Generator().manual_seed(2)
    for B, d in [(5, 20), (30, 8)]:  # wide and tall S
        S = torch.randn(B, d, generator=g, dtype=torch.float64)
        y = torch.randn(B, generator=g, dtype=torch.float64)
        dense = torch.linalg.solve(0.3 * torch.eye(d, dtype=torch.float64) + S.T @ S / B, S.T @ y / B)
        torch.testing.assert_close(woodbury_solve(S, y, 0.3), dense, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(
    "S, y, damping, match",
    [
        (torch.ones(3), torch.ones(3), 0.1, "S must be a 2-D"),
        (torch.ones(3, 2), torch.ones(4), 0.1, "rows"),
        (torch.ones(3, 2), torch.ones(3), 0.0, "damping"),
        (torch.ones(3, 2), torch.ones(3), float("inf"), "damping"),
        (torch.full((3, 2), float("nan")), torch.ones(3), 0.1, "S contains NaN"),
        (torch.ones(3, 2), torch.ones(3, 1), 0.1, "y must be 1-D"),
    ],
)
def test_woodbury_validates_inputs(S, y, damping, match):
    with pytest.raises(ValueError, match=match):
        woodbury_solve(S, y, damping)


# -- ac-cg -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_ac_cg_step_is_eta_times_dense_damped_natural_gradient(kind):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=9)
    S = dense_scores(actor, obs, actions)
    g = S.T @ adv / S.shape[0]
    F = explicit_fisher(actor, obs)
    d = F.shape[0]
    lr, damping = 0.05, 0.2
    expected = lr * torch.linalg.solve(F + damping * torch.eye(d, dtype=torch.float64), g)
    before = _flat(actor)
    rule = methods.make("ac-cg", actor, lr=lr, damping=damping, cg_iters=4 * d)
    info = rule.update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor) - before, expected, rtol=1e-6, atol=1e-9)
    assert info["cg_residual"] < 1e-5
    assert set(info) >= {"cg_residual", "quad_kl", "kl", "grad_cosine"}


def test_ac_cg_precondition_grads_in_a_foreign_loop():
    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor)
    rule = methods.make("ac-cg", actor, lr=1.0, damping=0.5, cg_iters=200)
    loss = -(adv * actor.log_prob(obs, actions)).mean()
    loss.backward()
    rule.precondition_grads(obs, actions)
    F = explicit_fisher(actor, obs)
    g = dense_scores(actor, obs, actions).T @ adv / len(adv)
    expected = torch.linalg.solve(F + 0.5 * torch.eye(F.shape[0], dtype=torch.float64), g)
    torch.testing.assert_close(-flatten([p.grad for p in actor.parameters()]), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kwargs", [{"damping": 0.0}, {"cg_iters": 0}, {"fisher_subsample": 0.0}, {"lr": -1.0}])
def test_ac_cg_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        methods.make("ac-cg", tiny_actor("categorical"), **kwargs)


# -- trpo ------------------------------------------------------------------------------------
def _surrogate_and_kl(actor, old_dist, old_logp, batch):
    with torch.no_grad():
        dist = actor.distribution(batch.obs)
        ratio = torch.exp(dist.log_prob(batch.actions) - old_logp)
        return float((ratio * batch.advantages).mean()), float(kl_divergence(old_dist, dist).mean())


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("lr", [1.0, 8.0])  # 8: the first trials overshoot the KL radius
def test_trpo_never_violates_kl_or_worsens_surrogate(kind, lr):
    actor = tiny_actor(kind)
    rule = methods.make("trpo", actor, lr=lr, max_kl=0.01, damping=0.1)
    accepted = 0
    for seed in range(6):
        obs, actions, adv = tiny_batch(actor, n=32, seed=seed)
        batch = PolicyBatch(obs, actions, adv)
        with torch.no_grad():
            old_dist = detached(actor.distribution(obs))
            old_logp = old_dist.log_prob(actions)
        before = _flat(actor)
        info = rule.update(batch)
        surrogate, kl = _surrogate_and_kl(actor, old_dist, old_logp, batch)
        assert kl <= 0.01 + 1e-12
        if info["ls_accepted"]:
            accepted += 1
            assert surrogate > float(adv.mean())
            assert info["surrogate_gain"] > 0
            assert info["ls_kl"] <= 0.01
        else:
            assert torch.equal(_flat(actor), before)
    assert accepted >= 4
    if lr == 8.0:
        assert rule.update(PolicyBatch(*tiny_batch(actor, n=32, seed=9)))["backtracks"] >= 1


def test_trpo_full_step_reaches_the_kl_radius_to_second_order():
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=40)
    F = explicit_fisher(actor, obs)
    before = _flat(actor)
    rule = methods.make("trpo", actor, max_kl=1e-6, damping=1e-3, cg_iters=200)
    info = rule.update(PolicyBatch(obs, actions, adv))
    assert info["ls_accepted"] == 1.0 and info["backtracks"] == 0.0
    step = _flat(actor) - before
    # The full step sits on the damped quadratic KL radius: ½ Δᵀ(F + δI)Δ = max_kl ...
    assert 0.5 * float(step @ (F @ step) + 1e-3 * step @ step) == pytest.approx(1e-6, rel=1e-6)
    # ... and the realised KL of this small step is its quadratic model ½ ΔᵀFΔ.
    assert info["ls_kl"] == pytest.approx(0.5 * float(step @ F @ step), rel=0.02)


def test_trpo_rejects_and_restores_when_no_trial_passes():
    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor, n=16)
    before = _flat(actor)
    # 1000× the KL-radius step with a single trial: the KL bound must fail.
    rule = methods.make("trpo", actor, lr=1000.0, backtrack_iters=1)
    info = rule.update(PolicyBatch(obs, actions, adv))
    assert info["ls_accepted"] == 0.0 and info["rejected_updates"] == 1.0
    assert torch.equal(_flat(actor), before)


def test_trpo_rejects_a_step_that_worsens_the_surrogate(monkeypatch):
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=16)
    rule = methods.make("trpo", actor)
    before = _flat(actor)
    # Every trial is within the KL bound but (as reported) worse on the surrogate.
    monkeypatch.setattr(trust_region, "_evaluate", lambda *args: (-1e9, 0.0))
    info = rule.update(PolicyBatch(obs, actions, adv))
    assert info["ls_accepted"] == 0.0
    assert info["backtracks"] == rule.backtrack_iters
    assert torch.equal(_flat(actor), before)


@pytest.mark.parametrize("kwargs", [{"max_kl": 0.0}, {"backtrack_ratio": 1.0}, {"backtrack_iters": 0}, {"damping": -1.0}])
def test_trpo_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        methods.make("trpo", tiny_actor("categorical"), **kwargs)


# -- learning --------------------------------------------------------------------------------
@pytest.mark.parametrize("method, steps, threshold", [("ac-cg", 30_000, 80.0), ("trpo", 20_000, 80.0)])
def test_cg_methods_learn_cartpole(method, steps, threshold):
    from natpg.config import resolve_config
    from natpg.trainer import train

    config = resolve_config("CartPole-v1", method, total_steps=steps, seed=0)
    result = train(config)
    assert result.summary["final_return"] >= threshold  # a random policy scores ~22


def test_paper_preset_sets_ac_cg_step_per_table2():
    from natpg.config import resolve_config

    # SMAC paper, Table 2, AC-CG η (the paper's "Walker" is Walker2d).
    table2 = {"Acrobot-v1": 6e-1, "CartPole-v1": 8e-2, "Pendulum-v1": 3e-2, "HalfCheetah-v5": 1e-2, "Hopper-v5": 1e-2,
              "Swimmer-v5": 1e-2, "Walker2d-v5": 1e-2, "Humanoid-v5": 9e-1, "Pusher-v5": 9e-1}
    for env, lr in table2.items():
        assert resolve_config(env, "ac-cg", "paper").method_kwargs["lr"] == lr
