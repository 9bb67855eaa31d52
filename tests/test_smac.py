"""SMAC in all its forms: Sherman–Morrison, Algorithm 1 (smac-single), batch-mean smac,
smac-vec, adaptive damping and the step-size control. Math is checked against dense
float64 solves built from per-sample autograd scores (tests/conftest.py)."""

import csv
import math

import pytest
import torch

from natpg import methods
from natpg.cli import main as cli_main
from natpg.config import resolve_config
from natpg.linalg import check_finite, sherman_morrison_solve, sherman_morrison_solve_batched
from natpg.methods import smac_single
from natpg.methods.base import PolicyBatch
from natpg.methods.smac import KL_BAND, DampingControl
from natpg.policies import GaussianActor
from natpg.scores import flatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch

F64 = torch.float64


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters()]).clone()


def _apply(actor, step):
    with torch.no_grad():
        offset = 0
        for p in actor.parameters():
            p.add_(step[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def _dense_sm(u, g, damping):
    return torch.linalg.solve(damping * torch.eye(u.numel(), dtype=F64) + torch.outer(u, u), g)


# -- item 1: Sherman–Morrison ----------------------------------------------------------------


@pytest.mark.parametrize("d,damping", [(1, 0.5), (9, 1e-3), (50, 1.0), (200, 1e3)])
def test_sherman_morrison_matches_dense_float64(d, damping):
    gen = torch.Generator().manual_seed(d)
    u, g = torch.randn(d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
    torch.testing.assert_close(sherman_morrison_solve(u, g, damping), _dense_sm(u, g, damping))
    # g ∥ u: the single-sample SMAC identity (λI + uuᵀ)⁻¹ u a = a u / (λ + ‖u‖²).
    torch.testing.assert_close(sherman_morrison_solve(u, 2.5 * u, damping), 2.5 * u / (damping + u.dot(u)))


def test_sherman_morrison_batched_matches_each_pair():
    gen = torch.Generator().manual_seed(3)
    u, g = torch.randn(6, 11, generator=gen, dtype=F64), torch.randn(6, 11, generator=gen, dtype=F64)
    out = sherman_morrison_solve_batched(u, g, 0.3)
    for i in range(6):
        torch.testing.assert_close(out[i], _dense_sm(u[i], g[i], 0.3))


def test_sherman_morrison_is_linear_in_d():
    """d = 4·10⁶: a dense solve would need 128 TB; the O(d) formula takes milliseconds."""
    d = 4_000_000
    u = torch.full((d,), 1e-3, dtype=F64)
    g = torch.ones(d, dtype=F64)
    x = sherman_morrison_solve(u, g, 2.0)
    # u = c·1, g = 1: x = 1/λ − c·(c d)/(λ(λ + c² d)).
    c, lam = 1e-3, 2.0
    expected = 1 / lam - c * (c * d) / (lam * (lam + c * c * d))
    torch.testing.assert_close(x[[0, d // 2, d - 1]], torch.full((3,), expected, dtype=F64))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), None, "0.5", True, torch.tensor([1.0, 2.0])])
def test_sherman_morrison_rejects_bad_damping(bad):
    with pytest.raises(ValueError, match="damping must be a finite positive number"):
        sherman_morrison_solve(torch.ones(3), torch.ones(3), bad)
    with pytest.raises(ValueError, match="damping must be a finite positive number"):
        sherman_morrison_solve_batched(torch.ones(2, 3), torch.ones(2, 3), bad)


@pytest.mark.parametrize("which,value", [("u", float("nan")), ("g", float("inf")), ("u", -float("inf"))])
def test_sherman_morrison_rejects_non_finite_inputs(which, value):
    u, g = torch.ones(5), torch.ones(5)
    (u if which == "u" else g)[2] = value
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        sherman_morrison_solve(u, g, 1.0)
    with pytest.raises(ValueError, match=f"{which} contains NaN or inf"):
        sherman_morrison_solve_batched(u[None], g[None], 1.0)


def test_sherman_morrison_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same length"):
        sherman_morrison_solve(torch.ones(3), torch.ones(4), 1.0)
    with pytest.raises(ValueError, match="1-D"):
        sherman_morrison_solve(torch.ones(2, 3), torch.ones(2, 3), 1.0)
    with pytest.raises(ValueError, match="torch.Tensor"):
        sherman_morrison_solve([1.0, 2.0], torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="same dtype"):
        sherman_morrison_solve(torch.ones(3), torch.ones(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        sherman_morrison_solve_batched(torch.ones(2, 3), torch.ones(3, 3), 1.0)


def test_check_finite_fast_path_is_exact():
    # Finite entries whose float32 sum overflows must not be rejected.
    check_finite("x", torch.tensor([3e38, 3e38], dtype=torch.float32))
    check_finite("x", torch.empty(0))
    for bad in ([1.0, float("inf"), -float("inf")], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="x contains NaN or inf"):
            check_finite("x", torch.tensor(bad))


# -- item 2: smac-single, Algorithm 1 ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["mlp", "autograd"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_smac_single_one_step_is_the_closed_form(kind, backend):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=1)
    s = dense_scores(actor, obs, actions)[0]
    lr, damping = 0.2, 0.7
    closed_form = lr * adv[0] * s / (damping + s.dot(s))
    torch.testing.assert_close(closed_form, lr * _dense_sm(s, adv[0] * s, damping))
    before = _flat(actor)
    methods.make("smac-single", actor, lr=lr, damping=damping, backend=backend).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor) - before, closed_form)


def _algorithm1_reference(actor, obs, actions, adv, lr, damping):
    """Dense Algorithm 1: the score of each sample at the parameters left by the previous step."""
    norms = []
    for i in range(obs.shape[0]):
        s = dense_scores(actor, obs[i : i + 1], actions[i : i + 1])[0]
        norms.append(float(s.dot(s)))
        _apply(actor, lr * _dense_sm(s, adv[i] * s, damping))
    return norms


@pytest.mark.parametrize("backend", ["mlp", "autograd"])
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_smac_single_takes_each_step_at_the_current_parameters(kind, backend):
    lr, damping, n = 0.3, 0.5, 6
    actor, reference = tiny_actor(kind), tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=n)
    start = _flat(actor)
    norms = _algorithm1_reference(reference, obs, actions, adv, lr, damping)
    rule = methods.make("smac-single", actor, lr=lr, damping=damping, backend=backend)
    info = rule.update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor), _flat(reference))
    assert info["steps"] == n and info["sweep_score_norm_sq"] == pytest.approx(sum(norms) / n)
    # Parameters change between samples: the same steps all taken at the starting θ
    # (a Jacobi sweep) land somewhere measurably different.
    S = dense_scores(tiny_actor(kind), obs, actions)
    jacobi = start + lr * (S * (adv / (damping + (S * S).sum(1)))[:, None]).sum(0)
    assert (jacobi - _flat(actor)).norm() > 1e-3 * (_flat(actor) - start).norm()


def test_smac_batch_size_one_is_algorithm_1():
    """Batch-mean SMAC with B = 1 (ℓ̄ = s_i, g = A_i s_i) is Algorithm 1 exactly."""
    a, b = tiny_actor("gaussian"), tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(a, n=5)
    methods.make("smac", a, lr=0.2, damping=0.4, batch_size=1).update(PolicyBatch(obs, actions, adv))
    info = methods.make("smac-single", b, lr=0.2, damping=0.4).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(a), _flat(b))
    assert info["steps"] == 5


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_smac_single_backends_agree_in_float32_including_torch_layers(activation, monkeypatch):
    def run(backend, torch_min_numel):
        monkeypatch.setattr(smac_single, "_TORCH_MIN_NUMEL", torch_min_numel)
        torch.manual_seed(0)
        actor = GaussianActor(5, 3, (16, 12), activation)
        gen = torch.Generator().manual_seed(1)
        obs = torch.randn(40, 5, generator=gen)
        with torch.no_grad():
            actions = actor.distribution(obs).sample()
        methods.make("smac-single", actor, lr=0.05, damping=0.3, backend=backend).update(
            PolicyBatch(obs, actions, torch.randn(40, generator=gen)), diagnostics=False
        )
        return _flat(actor)

    reference = run("autograd", 1 << 17)
    torch.testing.assert_close(run("mlp", 1 << 17), reference, rtol=1e-4, atol=1e-5)  # numpy layers
    torch.testing.assert_close(run("mlp", 0), reference, rtol=1e-4, atol=1e-5)  # torch layers


def test_smac_single_backend_choice():
    gelu = GaussianActor(3, 2, (4,), "gelu").double()
    with pytest.raises(ValueError, match="backend 'mlp' supports"):
        methods.make("smac-single", gelu, backend="mlp")
    with pytest.raises(ValueError, match="backend must be one of"):
        methods.make("smac-single", gelu, backend="jax")
    # auto falls back to autograd for an actor the hand-written kernel does not cover.
    obs, actions, adv = tiny_batch(gelu, n=3, obs_dim=3)
    reference = GaussianActor(3, 2, (4,), "gelu").double()
    reference.load_state_dict(gelu.state_dict())
    methods.make("smac-single", gelu, lr=0.1, damping=0.5).update(PolicyBatch(obs, actions, adv))
    _algorithm1_reference(reference, obs, actions, adv, 0.1, 0.5)
    torch.testing.assert_close(_flat(gelu), _flat(reference))


# -- item 3: smac-vec --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_smac_vec_is_the_mean_of_per_sample_steps_at_fixed_parameters(kind):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=9)
    S = dense_scores(actor, obs, actions)
    lr, damping = 0.4, 0.6
    expected = lr * torch.stack([_dense_sm(s, a * s, damping) for s, a in zip(S, adv)]).mean(0)
    before = _flat(actor)
    info = methods.make("smac-vec", actor, lr=lr, damping=damping).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor) - before, expected)
    assert info["step_scale_mean"] == pytest.approx(float((1 / (damping + (S * S).sum(1))).mean()))


def test_smac_vec_needs_advantages_in_a_foreign_loop():
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor)
    rule = methods.make("smac-vec", actor)
    (-(adv * actor.log_prob(obs, actions)).mean()).backward()
    with pytest.raises(ValueError, match="pass advantages"):
        rule.precondition_grads(obs, actions)
    rule.precondition_grads(obs, actions, adv)  # with them it works


# -- item 4: batch-mean SMAC with B < T ---------------------------------------------------------


def test_smac_batch_size_gives_one_step_per_minibatch():
    actor, twin = tiny_actor("gaussian"), tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=10)
    info = methods.make("smac", actor, lr=0.1, damping=0.5, batch_size=4).update(PolicyBatch(obs, actions, adv))
    assert info["steps"] == 3  # 4 + 4 + 2
    for start, stop in ((0, 4), (4, 8), (8, 10)):
        S = dense_scores(twin, obs[start:stop], actions[start:stop])
        _apply(twin, 0.1 * _dense_sm(S.mean(0), S.T @ adv[start:stop] / S.shape[0], 0.5))
    torch.testing.assert_close(_flat(actor), _flat(twin))


DIAGNOSTICS = ("score_norm_sq", "mean_score_norm_sq", "grad_cosine", "kl", "update_norm", "damping", "steps")


@pytest.mark.parametrize("method,extra", [("smac", ["--batch-size", "250"]), ("smac-vec", ["--batch-size", "250"]), ("smac-single", [])])
def test_cli_batch_size_and_diagnostics_in_metrics(tmp_path, method, extra):
    out = tmp_path / "run"
    argv = ["train", "--env", "CartPole-v1", "--method", method, "--steps", "2000", "--rollout-steps", "1000",
            "--hidden", "16", "--out", str(out), "--no-progress", *extra]
    assert cli_main(argv) == 0
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        for col in DIAGNOSTICS:  # their values: test_methods_math.test_common_diagnostics_equal_float64_references
            assert col in row and math.isfinite(float(row[col])), col
        assert float(row["steps"]) == (4 if extra else 1000)
    # not adaptive here: every row reports the rule's default damping
    assert {float(row["damping"]) for row in rows} == {methods.get(method).hyperparameters()["damping"]}


def test_cli_rejects_batch_size_above_rollout(capsys):
    argv = ["train", "--env", "CartPole-v1", "--method", "smac", "--steps", "2000", "--rollout-steps", "1000", "--batch-size", "1001"]
    assert cli_main(argv) == 2
    assert "--batch-size 1001 must be at most --rollout-steps 1000" in capsys.readouterr().err


# -- item 6: adaptive damping ------------------------------------------------------------------


def test_damping_control_rule():
    control = DampingControl(1.0, adaptive=True, kl_target=0.01, factor=2.0, minimum=0.25, maximum=4.0)
    for kl, expected in [(KL_BAND * 0.01 * 1.01, 2.0), (0.01, 2.0), (float("nan"), 4.0), (1.0, 4.0),
                         (0.01 / KL_BAND * 0.99, 2.0), (0.0, 1.0), (0.0, 0.5), (0.0, 0.25), (0.0, 0.25)]:
        control.observe(kl)
        assert control.damping == expected, kl


@pytest.mark.parametrize("kwargs,match", [
    (dict(damping_factor=1.0), "damping_factor must be > 1"),
    (dict(damping_min=2.0, damping_max=1.0), "damping_min"),
    (dict(kl_target=0.0), "kl_target"),
    (dict(adaptive_damping="yes"), "adaptive_damping"),
    (dict(damping=1e5), r"must lie in \[damping_min, damping_max\]"),
])
def test_adaptive_damping_validation(kwargs, match):
    kwargs = {"adaptive_damping": True, **kwargs}
    for name in ("smac", "smac-vec", "smac-single"):
        with pytest.raises(ValueError, match=match):
            methods.make(name, tiny_actor("gaussian"), **kwargs)


@pytest.mark.parametrize("name", ["smac", "smac-vec", "smac-single"])
def test_adaptive_damping_follows_realised_kl(name):
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=20)
    batch = PolicyBatch(obs, actions, adv)
    big = methods.make(name, actor, lr=1.0, damping=0.5, adaptive_damping=True, kl_target=1e-4, damping_factor=2.0)
    info = big.update(batch)
    assert info["adapt_kl"] > 2e-4 and big.damping == 1.0 and info["damping_next"] == 1.0
    assert info["kl"] == pytest.approx(info["adapt_kl"])  # the same realised KL as the common diagnostic
    small = methods.make(name, actor, lr=1e-6, damping=0.5, adaptive_damping=True, kl_target=1e-2, damping_factor=2.0)
    small.update(batch)
    assert small.damping == 0.25
    # The adapted λ is part of the rule's state (resume), and fixed λ stays fixed.
    fresh = methods.make(name, actor, lr=1.0, damping=0.5, adaptive_damping=True)
    fresh.load_state_dict(big.state_dict())
    assert fresh.damping == 1.0
    fixed = methods.make(name, actor, lr=1.0, damping=0.5)
    fixed.update(batch)
    assert fixed.damping == 0.5


# -- item 7: the step-size control -------------------------------------------------------------


def test_batch_mean_smac_differs_from_its_step_size_control_only_along_mean_score():
    a, b = tiny_actor("categorical"), tiny_actor("categorical")
    obs, actions, adv = tiny_batch(a, n=8)
    S = dense_scores(a, obs, actions)
    start = _flat(a)
    methods.make("smac", a, lr=0.1, damping=0.5).update(PolicyBatch(obs, actions, adv))
    methods.make("ac-sgd-matched", b, lr=0.1, damping=0.5).update(PolicyBatch(obs, actions, adv))
    gap = (_flat(a) - start) - (_flat(b) - start)
    mean_score = S.mean(0)
    # gap = −η ℓ̄ (ℓ̄ᵀg) / (λ(λ + ‖ℓ̄‖²)): parallel to ℓ̄.
    g = S.T @ adv / S.shape[0]
    torch.testing.assert_close(gap, -0.1 * mean_score * mean_score.dot(g) / (0.5 * (0.5 + mean_score.dot(mean_score))))


def test_paper_preset_gives_the_control_smacs_step_size():
    for env, (lr, damping) in {"HalfCheetah-v5": (5e-3, 1.0), "CartPole-v1": (5e-3, 0.1), "Hopper-v5": (1e-2, 1.0)}.items():
        smac = resolve_config(env, "smac", "paper").method_kwargs
        control = resolve_config(env, "ac-sgd-matched", "paper").method_kwargs
        assert (smac["lr"], smac["damping"]) == (control["lr"], control["damping"]) == (lr, damping)


def test_smac_vec_learns_cartpole_with_its_defaults():
    """Measured 2026-11-21 (60k steps, defaults lr 1, λ 10): seeds 0/1/2 reach 165/130/121;
    the uniform random policy gets ~22."""
    import natpg

    result = natpg.train("CartPole-v1", method="smac-vec", total_steps=60_000, seed=0)
    assert result.summary["final_return"] > 60.0
