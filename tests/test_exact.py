"""The exact damped empirical-Fisher natural gradient (ef-exact) and the exact_cosine diagnostic."""


import pytest
import torch

from natpg import methods
from natpg.linalg import woodbury_solve
from natpg.methods.base import PolicyBatch
from natpg.scores import compute_scores, damped_natural_gradient, flatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters()]).clone()


def _dense_natural_gradient(S, adv, damping):
    B, d = S.shape
    return torch.linalg.solve(damping * torch.eye(d, dtype=S.dtype) + S.T @ S / B, S.T @ adv / B)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("n", [7, 80])  # B < d and B > d
def test_ef_exact_step_equals_dense_damped_solve(kind, n):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=n)
    S = dense_scores(actor, obs, actions)
    lr, damping = 0.05, 0.3
    expected = lr * _dense_natural_gradient(S, adv, damping)
    torch.testing.assert_close(lr * woodbury_solve(S, adv, damping), expected, rtol=1e-9, atol=1e-12)
    scores, _, _ = compute_scores(actor, obs, actions)
    torch.testing.assert_close(lr * flatten(damped_natural_gradient(scores, adv, damping)), expected, rtol=1e-9, atol=1e-12)
    before = _flat(actor)
    info = methods.make("ef-exact", actor, lr=lr, damping=damping).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor) - before, expected, rtol=1e-9, atol=1e-12)
    assert "exact_cosine" not in info  # opt-in only


def test_ef_exact_precondition_grads_uses_woodbury_on_the_gradient():
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=9)
    S = dense_scores(actor, obs, actions)
    rule = methods.make("ef-exact", actor, lr=1.0, damping=0.2)
    (-(adv * actor.log_prob(obs, actions)).mean()).backward()
    rule.precondition_grads(obs, actions)  # no advantages: only the gradient is known
    torch.testing.assert_close(-flatten([p.grad for p in actor.parameters()]), _dense_natural_gradient(S, adv, 0.2), rtol=1e-8, atol=1e-11)


def test_ef_exact_minibatches_take_sequential_exact_steps():
    actor = tiny_actor("categorical")
    twin = tiny_actor("categorical")
    twin.load_state_dict(actor.state_dict())
    obs, actions, adv = tiny_batch(actor, n=10)
    methods.make("ef-exact", actor, lr=0.1, batch_size=5).update(PolicyBatch(obs, actions, adv))
    ref = methods.make("ef-exact", twin, lr=0.1)
    ref.update(PolicyBatch(obs[:5], actions[:5], adv[:5]))
    ref.update(PolicyBatch(obs[5:], actions[5:], adv[5:]))
    torch.testing.assert_close(_flat(actor), _flat(twin))


def test_damped_natural_gradient_validates():
    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor)
    scores, _, _ = compute_scores(actor, obs, actions)
    with pytest.raises(ValueError, match="damping"):
        damped_natural_gradient(scores, adv, 0.0)
    with pytest.raises(ValueError, match="advantages"):
        damped_natural_gradient(scores, adv[:-1], 0.1)


# -- exact_cosine ----------------------------------------------------------------------------
def _cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


@pytest.mark.parametrize(
    "method, hparams, exact_damping, used_damping",
    [
        ("ef-exact", {"damping": 0.3}, None, 0.3),  # the rule's own damping
        ("ac-sgd", {"lr": 0.01}, None, 0.1),  # no damping: the documented default 0.1
        ("smac", {"damping": 0.5}, 0.05, 0.05),  # explicit override
        ("kfac", {}, None, 0.01),
    ],
)
def test_exact_cosine_diagnostic(method, hparams, exact_damping, used_damping):
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=12)
    S = dense_scores(actor, obs, actions)
    exact = _dense_natural_gradient(S, adv, used_damping)
    rule = methods.make(method, actor, **hparams)
    rule.exact_cosine, rule.exact_damping = True, exact_damping
    before = _flat(actor)
    info = rule.update(PolicyBatch(obs, actions, adv))
    step = _flat(actor) - before
    assert info["exact_cosine"] == pytest.approx(_cos(step, exact), abs=1e-9)
    if method == "ef-exact":
        assert info["exact_cosine"] == pytest.approx(1.0, abs=1e-9)


def test_exact_cosine_through_the_trainer(tmp_path):
    from natpg.config import resolve_config
    from natpg.trainer import train

    # ef-exact's step is the exact damped natural gradient (the trust region only rescales it):
    # the logged cosine is 1 up to the float32 parameters' rounding of the step.
    config = resolve_config("CartPole-v1", "ef-exact", total_steps=2000, rollout_steps=500, exact_cosine=True)
    rows = train(config).metrics
    assert len(rows) == 4 and all(r["exact_cosine"] == pytest.approx(1.0, abs=1e-3) for r in rows)
    assert "exact_cosine" not in train(resolve_config("CartPole-v1", "ac-cg", total_steps=500, rollout_steps=500)).metrics[0]
    with pytest.raises(ValueError, match="^exact_damping must be"):
        resolve_config("CartPole-v1", "ac-cg", exact_damping=-1.0)


def test_ef_exact_learns_cartpole():
    from natpg.config import resolve_config
    from natpg.trainer import train

    result = train(resolve_config("CartPole-v1", "ef-exact", total_steps=30_000, seed=0))
    assert result.summary["final_return"] >= 80.0  # a random policy scores ~22


def test_cosine_is_computed_in_float64_and_clamped():
    """A float32 dot product of parallel vectors can round above 1 (1.0000001 seen on AMD EPYC);
    the reported cosine is computed in float64 and clamped to [-1, 1]."""
    from natpg.methods.base import cosine

    g = torch.Generator().manual_seed(0)
    a32 = torch.randn(5000, generator=g, dtype=torch.float32) * 1e3
    # Parallel vectors: 1 to float64 precision, never above it (whatever the CPU's summation order).
    parallel, antiparallel = cosine(a32, a32 * 3.0), cosine(a32, -a32)
    assert parallel == pytest.approx(1.0, abs=1e-12) and parallel <= 1.0
    assert antiparallel == pytest.approx(-1.0, abs=1e-12) and antiparallel >= -1.0
    assert cosine(a32, torch.zeros_like(a32)) == 0.0
    b32 = torch.randn(5000, generator=g, dtype=torch.float32)
    a64, b64 = a32.double(), b32.double()
    assert cosine(a32, b32) == pytest.approx(float(a64 @ b64 / (a64.norm() * b64.norm())), abs=1e-14)
