"""The layer-hook machinery (natpg.scores) against torch.func per-sample gradients.

Reference: ``vmap(grad(log π(a_i|s_i)))`` over the batch through ``functional_call``, an
independent route from the hooks' input activations and output gradients.
"""

import pytest
import torch
from torch import nn
from torch.distributions import Distribution
from torch.func import functional_call, grad, vmap

from natpg.policies import CategoricalActor, GaussianActor
from natpg.scores import compute_scores, flatten, unflatten
from tests.conftest import tiny_actor, tiny_batch


class _LogProb(nn.Module):
    """forward(obs, actions) = log π(actions | obs), so functional_call can reach it."""

    def __init__(self, actor):
        super().__init__()
        self.actor = actor

    def forward(self, obs, actions):
        return self.actor.distribution(obs).log_prob(actions)


def per_sample_grads(actor, obs, actions):
    """S (B×d), columns in actor.parameters() order, by torch.func."""
    wrapper = _LogProb(actor)
    params = {k: v.detach() for k, v in wrapper.named_parameters()}

    def log_prob(p, o, a):
        return functional_call(wrapper, p, (o[None], a[None])).sum()

    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)  # data-dependent checks do not vmap
    try:
        grads = vmap(grad(log_prob), in_dims=(None, 0, 0))(params, obs, actions)
    finally:
        Distribution.set_default_validate_args(validate)
    return torch.cat([grads[k].reshape(obs.shape[0], -1) for k in params], 1)


def _actors():
    deep = CategoricalActor(3, 3, (6, 5, 4), "relu").double()
    wide = GaussianActor(3, 2, (8,), "tanh").double()
    for a in (deep, wide):
        with torch.no_grad():
            for p in a.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return {
        "categorical": tiny_actor("categorical"),
        "gaussian": tiny_actor("gaussian"),
        "categorical-3-layer-relu": deep,
        "gaussian-1-layer": wide,
    }


@pytest.fixture(params=list(_actors()))
def case(request):
    torch.manual_seed(5)
    actor = _actors()[request.param]
    obs, actions, adv = tiny_batch(actor, n=9)
    return actor, obs, actions, adv, per_sample_grads(actor, obs, actions)


def _block_columns(scores):
    """For each block of ``scores``, a boolean mask over the flat parameter vector."""
    sizes = [p.numel() for p in scores.params]
    masks = []
    for block in scores.blocks:
        ids = {id(p) for p in block.params}
        masks.append(torch.cat([torch.full((n,), id(p) in ids) for p, n in zip(scores.params, sizes)]))
    return masks


def test_dense_matrix_and_norms(case):
    actor, obs, actions, _, S = case
    scores, _, logp = compute_scores(actor, obs, actions)
    torch.testing.assert_close(logp, actor.distribution(obs).log_prob(actions).detach())
    torch.testing.assert_close(scores.matrix(), S)
    torch.testing.assert_close(scores.sq_norms(), (S * S).sum(1))
    torch.testing.assert_close(scores.gram(), S @ S.T)


def test_layer_grams_are_per_block_gram_matrices(case):
    actor, obs, actions, _, S = case
    scores, _, _ = compute_scores(actor, obs, actions)
    masks = _block_columns(scores)
    assert torch.stack(masks).sum(0).eq(1).all(), "every parameter in exactly one block"
    grams = scores.layer_grams()
    assert len(grams) == len(scores.blocks)
    for gram, mask in zip(grams, masks):
        torch.testing.assert_close(gram, S[:, mask] @ S[:, mask].T)


def test_weighted_sums_and_products(case):
    actor, obs, actions, adv, S = case
    scores, _, _ = compute_scores(actor, obs, actions)
    torch.testing.assert_close(flatten(scores.weighted_sum(adv)), S.T @ adv)
    # one coefficient vector per block: block k's columns get S_kᵀ c_k
    g = torch.Generator().manual_seed(3)
    coefs = [torch.randn(obs.shape[0], generator=g, dtype=torch.float64) for _ in scores.blocks]
    expected = torch.zeros(S.shape[1], dtype=torch.float64)
    for c, mask in zip(coefs, _block_columns(scores)):
        expected[mask] = S[:, mask].T @ c
    torch.testing.assert_close(flatten(scores.weighted_sum(coefs)), expected)
    with pytest.raises(ValueError, match="one coefficient vector per block"):
        scores.weighted_sum(coefs[:-1])
    v = torch.randn(S.shape[1], generator=g, dtype=torch.float64)
    torch.testing.assert_close(scores.dot(unflatten(v, scores.params)), S @ v)


def test_hooks_leave_no_gradients_and_are_removed():
    actor = tiny_actor("gaussian")
    obs, actions, _ = tiny_batch(actor)
    compute_scores(actor, obs, actions)
    assert all(p.grad is None for p in actor.parameters())
    assert all(not m._forward_hooks for m in actor.modules())
