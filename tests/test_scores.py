import pytest
import torch

from natpg.scores import compute_scores, flatten
from tests.conftest import assert_layer_grams_match_dense, dense_scores, tiny_actor, tiny_batch


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_factorised_scores_match_dense(kind):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor)
    S = dense_scores(actor, obs, actions)
    scores, _, logp = compute_scores(actor, obs, actions)
    torch.testing.assert_close(scores.matrix(), S)
    torch.testing.assert_close(scores.sq_norms(), (S * S).sum(1))
    torch.testing.assert_close(scores.gram(), S @ S.T)
    torch.testing.assert_close(flatten(scores.weighted_sum(adv)), S.T @ adv)
    v = torch.randn(S.shape[1], dtype=torch.float64)
    vs = [t.clone() for t in _split(v, scores.params)]
    torch.testing.assert_close(scores.dot(vs), S @ v)
    assert_layer_grams_match_dense(scores, S)


def _split(v, params):
    out, o = [], 0
    for p in params:
        out.append(v[o : o + p.numel()].view_as(p))
        o += p.numel()
    return out


def test_a_parameter_outside_the_fast_path_takes_the_general_one():
    """An extra parameter the distribution never uses: zero scores from torch.func, no error;
    forcing the factorised path is an error that names the fix."""
    actor = tiny_actor("gaussian")
    actor.extra = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    obs, actions, _ = tiny_batch(actor)
    scores, _, _ = compute_scores(actor, obs, actions)
    extra = [b for b in scores.blocks if b.params[0] is actor.extra]
    assert len(extra) == 1 and extra[0].kind == "general" and not extra[0].delta.any()
    with pytest.raises(ValueError, match="path='auto'"):
        compute_scores(actor, obs, actions, path="factorised")


def test_a_layer_with_a_frozen_weight_and_a_trainable_bias():
    """The bias alone is not a factorised layer (its rank-1 formulas need the weight): it
    takes the general path and its scores are right."""
    actor = tiny_actor("categorical")
    actor.net[0].weight.requires_grad_(False)
    obs, actions, _ = tiny_batch(actor)
    scores, _, _ = compute_scores(actor, obs, actions)
    assert [b.kind for b in scores.blocks if b.params[0] is actor.net[0].bias] == ["general"]
    torch.testing.assert_close(scores.matrix(), dense_scores(actor, obs, actions))
