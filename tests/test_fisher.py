"""Fisher-vector products against explicitly formed Fishers (float64, tiny networks)."""

import pytest
import torch
from torch.distributions import kl_divergence
from torch.func import functional_call

from natpg.scores import detached
from natpg.scores import fisher_vector_product, flatten, unflatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch


def _params(actor):
    return [p for p in actor.parameters() if p.requires_grad]


def _grad(out, params):
    grads = torch.autograd.grad(out, params, retain_graph=True, allow_unused=True)
    return flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])


def explicit_fisher(actor, obs):
    """F = (1/B) Σ_i E_{a~π(·|s_i)}[s sᵀ], formed explicitly.

    Categorical: the expectation is a finite sum over actions of per-sample autograd scores.
    Gaussian: the analytic expectation Jμᵀ diag(1/σ²) Jμ + Jσᵀ diag(2/σ²) Jσ, with the
    Jacobians of the mean and std built row by row with autograd.
    """
    params = _params(actor)
    n = obs.shape[0]
    if actor.discrete:
        with torch.no_grad():
            probs = actor.distribution(obs).probs
        fisher = 0.0
        for a in range(probs.shape[1]):
            s = dense_scores(actor, obs, torch.full((n,), a, dtype=torch.long))
            fisher = fisher + (s * probs[:, a : a + 1]).T @ s
        return fisher / n
    dist = actor.distribution(obs).base_dist
    mean, std = dist.loc, dist.scale
    fisher = 0.0
    for i in range(n):
        for j in range(mean.shape[1]):
            jm, js = _grad(mean[i, j], params), _grad(std[i, j], params)
            fisher = fisher + torch.outer(jm, jm) / std[i, j] ** 2 + 2.0 * torch.outer(js, js) / std[i, j] ** 2
    return fisher.detach() / n


def kl_hessian(actor, obs):
    """Hessian of θ ↦ mean KL(π_old ‖ π_θ) at θ_old: an independent route to the Fisher."""
    params = _params(actor)
    names = [n for n, p in actor.named_parameters() if p.requires_grad]
    old = detached(actor.distribution(obs))

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.actor = actor

        def forward(self, x):
            return self.actor.distribution(x)

    wrapper = Wrapper()

    def kl(theta):
        tensors = unflatten(theta, params)
        dist = functional_call(wrapper, {f"actor.{n}": t for n, t in zip(names, tensors)}, (obs,))
        return kl_divergence(old, dist).mean()

    theta0 = flatten([p.detach() for p in params])
    return torch.autograd.functional.hessian(kl, theta0)


def dense_fvp(matvec, d):
    return torch.stack([matvec(e) for e in torch.eye(d, dtype=torch.float64)], 1)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_fvp_equals_explicit_fisher_and_kl_hessian(kind):
    actor = tiny_actor(kind)
    obs, _, _ = tiny_batch(actor, n=6)
    d = sum(p.numel() for p in _params(actor))
    explicit = explicit_fisher(actor, obs)
    fvp = dense_fvp(fisher_vector_product(actor, obs), d)
    torch.testing.assert_close(fvp, explicit, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(fvp, kl_hessian(actor, obs), rtol=1e-9, atol=1e-11)
    # Damping adds δI.
    damped = dense_fvp(fisher_vector_product(actor, obs, damping=0.3), d)
    torch.testing.assert_close(damped, explicit + 0.3 * torch.eye(d, dtype=torch.float64), rtol=1e-9, atol=1e-11)


def test_fvp_is_the_expectation_of_empirical_fisher_over_actions():
    """F = E_a[ssᵀ]: the empirical Fisher of many sampled actions converges to the FVP."""
    actor = tiny_actor("categorical")
    obs, _, _ = tiny_batch(actor, n=4)
    reps = 4000
    big_obs = obs.repeat(reps, 1)
    torch.manual_seed(0)
    with torch.no_grad():
        actions = actor.distribution(big_obs).sample()
    from natpg.scores import compute_scores

    scores, _, _ = compute_scores(actor, big_obs, actions)
    S = scores.matrix()
    empirical = S.T @ S / S.shape[0]
    d = S.shape[1]
    exact = dense_fvp(fisher_vector_product(actor, obs), d)
    assert (empirical - exact).abs().max() < 0.05 * exact.abs().max()


def test_fvp_subsample_uses_a_random_subset():
    actor = tiny_actor("gaussian")
    obs, _, _ = tiny_batch(actor, n=10)
    v = torch.randn(sum(p.numel() for p in _params(actor)), dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    sub = fisher_vector_product(actor, obs, subsample=0.5, generator=g)(v)
    idx = torch.randperm(10, generator=torch.Generator().manual_seed(3))[:5]
    torch.testing.assert_close(sub, fisher_vector_product(actor, obs[idx])(v))
    assert not torch.allclose(sub, fisher_vector_product(actor, obs)(v))


@pytest.mark.parametrize(
    "kwargs, match",
    [({"damping": -1.0}, "damping"), ({"damping": float("nan")}, "damping"), ({"subsample": 0.0}, "subsample"), ({"subsample": 1.5}, "subsample")],
)
def test_fvp_validates_arguments(kwargs, match):
    actor = tiny_actor("categorical")
    obs, _, _ = tiny_batch(actor)
    with pytest.raises(ValueError, match=match):
        fisher_vector_product(actor, obs, **kwargs)


def test_fvp_does_not_change_parameters_or_grads():
    actor = tiny_actor("gaussian")
    obs, _, _ = tiny_batch(actor)
    before = flatten([p.detach() for p in _params(actor)]).clone()
    matvec = fisher_vector_product(actor, obs, damping=0.1)
    matvec(torch.ones_like(before))
    assert torch.equal(flatten([p.detach() for p in _params(actor)]), before)
    assert all(p.grad is None for p in _params(actor))


def test_fvp_with_frozen_std_is_the_mean_part_of_the_fisher():
    """A frozen log-std has J_σ = 0: F = (1/B) Σ Jμᵀ diag(1/σ²) Jμ over the trainable parameters,
    which is also the KL Hessian."""
    actor = tiny_actor("gaussian")
    actor.log_std.value.requires_grad_(False)
    obs, _, _ = tiny_batch(actor, n=6)
    params = _params(actor)
    d = sum(p.numel() for p in params)
    dist = actor.distribution(obs).base_dist
    mean, std = dist.loc, dist.scale.detach()
    explicit = sum(torch.outer(j, j) / std[i, k] ** 2
                   for i in range(mean.shape[0]) for k in range(mean.shape[1])
                   for j in [_grad(mean[i, k], params)]) / obs.shape[0]
    fvp = dense_fvp(fisher_vector_product(actor, obs), d)
    torch.testing.assert_close(fvp, explicit.detach(), rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(fvp, kl_hessian(actor, obs), rtol=1e-9, atol=1e-11)

    # Only the log-std trainable: F = 2·I on it (the std's metric 2/σ² times dσ/dlogσ = σ, squared).
    actor.net.requires_grad_(False)
    actor.log_std.value.requires_grad_(True)
    v = torch.arange(1.0, actor.log_std.value.numel() + 1, dtype=torch.float64)
    torch.testing.assert_close(fisher_vector_product(actor, obs, damping=0.5)(v), 2.5 * v)
    # Nothing trainable reaches the distribution (a spare parameter only): F = 0, damping left.
    actor.log_std.value.requires_grad_(False)
    actor.spare = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    u = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(fisher_vector_product(actor, obs, damping=0.5)(u), 0.5 * u)
    torch.testing.assert_close(fisher_vector_product(actor, obs)(u), torch.zeros_like(u))
