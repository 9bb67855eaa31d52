"""K-FAC: factor statistics and the damped Kronecker solve against explicit formulas (float64),
failure recovery, state round trip, learning."""

import math

import pytest
import torch
from torch import nn

from natpg import methods
from natpg.methods import kfac as kfac_module
from natpg.methods.base import PolicyBatch
from natpg.scores import flatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters()]).clone()


def _layers(actor):
    return [(f"net.{i}", m) for i, m in enumerate(actor.net) if isinstance(m, nn.Linear)]


def _layer_inputs(actor, obs):
    """Inputs of every linear layer, computed by hand through the Sequential."""
    inputs, x = [], obs
    for m in actor.net:
        if isinstance(m, nn.Linear):
            inputs.append(x)
        x = m(x)
    return [t.detach() for t in inputs]


def _offsets(actor):
    out, start = {}, 0
    for p in actor.parameters():
        out[id(p)] = slice(start, start + p.numel())
        start += p.numel()
    return out


def _expected_factors(actor, obs, sampled):
    """A = mean(ā āᵀ), G = mean(δ δᵀ) with δ_i the per-sample bias gradient (= output gradient)
    of log π(ã_i|s_i) by one autograd call per sample; D = mean of squared log-std scores."""
    S = dense_scores(actor, obs, sampled)
    off = _offsets(actor)
    n = obs.shape[0]
    out = {}
    for (name, layer), a in zip(_layers(actor), _layer_inputs(actor, obs)):
        delta = S[:, off[id(layer.bias)]]
        abar = torch.cat([a, torch.ones(n, 1, dtype=a.dtype)], 1)
        out[name] = {"A": abar.T @ abar / n, "G": delta.T @ delta / n}
    if not actor.discrete:
        ls = S[:, off[id(actor.log_std.value)]]
        out["log_std"] = {"D": (ls * ls).mean(0)}
    return out


def _expected_direction(actor, factors, grad, damping):
    """Per layer (A ⊗ G + λI)⁻¹ vec(∇W̄) by a dense solve of the Kronecker system."""
    off = _offsets(actor)
    natural = grad.clone()
    for name, layer in _layers(actor):
        A, G = factors[name]["A"], factors[name]["G"]
        gbar = torch.cat([grad[off[id(layer.weight)]].view_as(layer.weight), grad[off[id(layer.bias)]][:, None]], 1)
        # Row-major vec(δ āᵀ) = δ ⊗ ā, so E[vec vecᵀ] ≈ G ⊗ A in this ordering.
        K = torch.kron(G, A) + damping * torch.eye(G.shape[0] * A.shape[0], dtype=torch.float64)
        sol = torch.linalg.solve(K, gbar.reshape(-1)).view_as(gbar)
        natural[off[id(layer.weight)]] = sol[:, :-1].reshape(-1)
        natural[off[id(layer.bias)]] = sol[:, -1]
    if not actor.discrete:
        s = off[id(actor.log_std.value)]
        natural[s] = grad[s] / (factors["log_std"]["D"] + damping)
    return natural


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("kl_clip", [1e3, 1e-4])  # unclipped, clipped
def test_kfac_factors_and_step_match_explicit_kronecker_formula(kind, kl_clip):
    actor = tiny_actor(kind)
    twin = tiny_actor(kind)
    twin.load_state_dict(actor.state_dict())
    obs, actions, adv = tiny_batch(actor, n=25)
    lr, damping = 0.3, 0.05
    rule = methods.make("kfac", actor, lr=lr, kl_clip=kl_clip, damping=damping, momentum=0.0)
    torch.manual_seed(11)
    info = rule.update(PolicyBatch(obs, actions, adv), diagnostics=False)
    step = _flat(actor) - _flat(twin)

    torch.manual_seed(11)  # the rule's first random draw is the sampled actions
    with torch.no_grad():
        sampled = twin.distribution(obs).sample()
    expected = _expected_factors(twin, obs, sampled)
    assert set(rule.factors) == set(expected)
    for name, stats in expected.items():
        for key, value in stats.items():
            torch.testing.assert_close(rule.factors[name][key], value, rtol=1e-10, atol=1e-12)

    grad = dense_scores(twin, obs, actions).T @ adv / len(adv)
    natural = _expected_direction(twin, expected, grad, damping)
    scale = min(1.0, math.sqrt(kl_clip / (lr**2 * float(natural @ grad))))
    assert info["kfac_clip_scale"] == pytest.approx(scale, rel=1e-9)
    assert (scale < 1.0) == (kl_clip < 1.0)
    torch.testing.assert_close(step, lr * scale * natural, rtol=1e-8, atol=1e-12)
    assert info["kfac_failures"] == 0.0 and info["kfac_jitter"] == 0.0


def test_kfac_running_average_of_factors():
    actor = tiny_actor("categorical")
    rule = methods.make("kfac", actor, stats_decay=0.7)
    snapshots = []
    for seed in range(2):
        obs, actions, adv = tiny_batch(actor, n=20, seed=seed)
        twin = tiny_actor("categorical")
        twin.load_state_dict(actor.state_dict())
        torch.manual_seed(seed)
        rule.update(PolicyBatch(obs, actions, adv), diagnostics=False)
        torch.manual_seed(seed)
        with torch.no_grad():
            sampled = twin.distribution(obs).sample()
        snapshots.append(_expected_factors(twin, obs, sampled))
    for name in snapshots[0]:
        for key in snapshots[0][name]:
            expected = 0.7 * snapshots[0][name][key] + 0.3 * snapshots[1][name][key]
            torch.testing.assert_close(rule.factors[name][key], expected, rtol=1e-10, atol=1e-12)


def test_kfac_momentum_follows_acktr_convention():
    """θ ← θ + lr(1−m)·buf, buf ← m·buf + u (ACKTR's MomentumOptimizer(lr(1−m), m))."""
    actor = tiny_actor("gaussian")
    rule = methods.make("kfac", actor, lr=0.2, momentum=0.5, kl_clip=1e3)
    obs, actions, adv = tiny_batch(actor, n=20)
    before = _flat(actor)
    torch.manual_seed(0)
    rule.update(PolicyBatch(obs, actions, adv), diagnostics=False)
    first = _flat(actor) - before
    # First step: buf = u, so the step is lr(1−m)·u: (1−m) times the momentum-free step.
    twin = tiny_actor("gaussian")
    ref = methods.make("kfac", twin, lr=0.2, momentum=0.0, kl_clip=1e3)
    torch.manual_seed(0)
    ref.update(PolicyBatch(obs, actions, adv), diagnostics=False)
    torch.testing.assert_close(first, 0.5 * (_flat(twin) - before))


def _failing_eigh(fail_calls):
    calls = {"n": 0}
    real = torch.linalg.eigh

    def eigh(matrix):
        calls["n"] += 1
        if fail_calls is None or calls["n"] in fail_calls:
            raise torch.linalg.LinAlgError("injected eigendecomposition failure")
        return real(matrix)

    return eigh, calls


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_kfac_falls_back_to_plain_gradient_when_eigh_always_fails(kind, monkeypatch):
    eigh, _ = _failing_eigh(None)
    monkeypatch.setattr(kfac_module, "_eigh", eigh)
    actor = tiny_actor(kind)
    twin = tiny_actor(kind)
    twin.load_state_dict(actor.state_dict())
    obs, actions, adv = tiny_batch(actor, n=20)
    rule = methods.make("kfac", actor, lr=0.3, momentum=0.0, kl_clip=1e3, damping=0.05)
    torch.manual_seed(1)
    info = rule.update(PolicyBatch(obs, actions, adv))
    step = _flat(actor) - _flat(twin)
    assert torch.isfinite(_flat(actor)).all()
    assert info["kfac_failures"] == 3.0  # the three linear layers
    assert info["kfac_jitter"] == 30.0  # 3 layers × 2 factors × 5 attempts (no jitter, then 4 growing ones)
    # Linear layers took the plain gradient; the log-std (if any) still its diagonal step.
    grad = dense_scores(twin, obs, actions).T @ adv / len(adv)
    off = _offsets(twin)
    for _, layer in _layers(twin):
        for p in (layer.weight, layer.bias):
            torch.testing.assert_close(step[off[id(p)]], 0.3 * grad[off[id(p)]] * info["kfac_clip_scale"])
    # Later updates keep counting and never produce NaN.
    info2 = rule.update(PolicyBatch(*tiny_batch(actor, n=20, seed=5)))
    assert info2["kfac_failures_total"] == 6.0
    assert torch.isfinite(_flat(actor)).all()


def test_kfac_recovers_with_jitter_after_one_failure(monkeypatch):
    eigh, calls = _failing_eigh({1})
    monkeypatch.setattr(kfac_module, "_eigh", eigh)
    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor, n=20)
    info = methods.make("kfac", actor).update(PolicyBatch(obs, actions, adv))
    assert info["kfac_jitter"] == 1.0 and info["kfac_failures"] == 0.0
    assert calls["n"] == 7  # 3 layers × 2 factors + 1 retry
    assert torch.isfinite(_flat(actor)).all()


def test_kfac_recovers_from_a_corrupted_running_factor():
    actor = tiny_actor("gaussian")
    rule = methods.make("kfac", actor)
    rule.update(PolicyBatch(*tiny_batch(actor, n=20, seed=0)))
    rule.factors["net.2"]["A"][0, 0] = float("nan")
    rule.factors["log_std"]["D"][0] = float("inf")
    info = rule.update(PolicyBatch(*tiny_batch(actor, n=20, seed=1)))
    assert info["kfac_failures"] == 2.0  # both reset from the batch
    assert torch.isfinite(_flat(actor)).all()
    assert all(torch.isfinite(v).all() for stats in rule.factors.values() for v in stats.values())


def test_robust_eigh_on_bad_input():
    e, q, tries = kfac_module.robust_eigh(torch.full((3, 3), float("nan")))
    assert e is None and q is None
    e, q, tries = kfac_module.robust_eigh(torch.diag(torch.tensor([2.0, -1e-12, 1.0])))
    assert tries == 0  # a round-off negative eigenvalue is clamped to 0, the others are kept
    torch.testing.assert_close(e, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(q @ torch.diag(e) @ q.T, torch.diag(torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)),
                               rtol=0, atol=1e-15)


def test_kfac_state_dict_round_trip():
    actor = tiny_actor("gaussian")
    rule = methods.make("kfac", actor)
    torch.manual_seed(0)
    rule.update(PolicyBatch(*tiny_batch(actor, n=20, seed=0)))
    twin = tiny_actor("gaussian")
    twin.load_state_dict(actor.state_dict())
    copy = methods.make("kfac", twin)
    copy.load_state_dict(rule.state_dict())
    assert set(copy.factors) == set(rule.factors)
    batch = PolicyBatch(*tiny_batch(actor, n=20, seed=1))
    torch.manual_seed(1)
    rule.update(batch)
    torch.manual_seed(1)
    copy.update(batch)
    torch.testing.assert_close(_flat(actor), _flat(twin))


@pytest.mark.parametrize("kwargs", [{"momentum": 1.0}, {"stats_decay": 1.0}, {"kl_clip": 0.0}, {"damping": -1.0}, {"momentum": "x"}])
def test_kfac_rejects_bad_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        methods.make("kfac", tiny_actor("categorical"), **kwargs)


def test_kfac_learns_cartpole():
    from natpg.config import resolve_config
    from natpg.trainer import train

    result = train(resolve_config("CartPole-v1", "kfac", total_steps=30_000, seed=0))
    assert result.summary["final_return"] >= 80.0  # a random policy scores ~22
