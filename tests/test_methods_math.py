import copy
import math

import pytest
import torch

from natpg import methods
from natpg.linalg import sherman_morrison_solve
from natpg.methods.base import PolicyBatch
from natpg.scores import flatten
from tests.conftest import dense_scores, tiny_actor, tiny_batch


def test_sherman_morrison_matches_dense_solve():
    g = torch.Generator().manual_seed(0)
    u, b = torch.randn(9, generator=g, dtype=torch.float64), torch.randn(9, generator=g, dtype=torch.float64)
    dense = torch.linalg.solve(0.3 * torch.eye(9, dtype=torch.float64) + torch.outer(u, u), b)
    torch.testing.assert_close(sherman_morrison_solve(u, b, 0.3), dense)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_sherman_morrison_rejects_bad_damping(bad):
    with pytest.raises(ValueError, match="damping"):
        sherman_morrison_solve(torch.ones(3), torch.ones(3), bad)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_smac_batch_mean_step_equals_dense_float64_solve(kind):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor)
    S = dense_scores(actor, obs, actions)
    B, d = S.shape
    g, mean_score = S.T @ adv / B, S.mean(0)
    lr, damping = 0.05, 0.7
    expected = lr * torch.linalg.solve(damping * torch.eye(d, dtype=torch.float64) + torch.outer(mean_score, mean_score), g)
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    rule = methods.make("smac", actor, lr=lr, damping=damping)
    info = rule.update(PolicyBatch(obs, actions, adv))
    after = flatten([p.detach() for p in actor.parameters()])
    torch.testing.assert_close(after - before, expected)
    torch.testing.assert_close(torch.tensor(info["mean_score_norm_sq"], dtype=torch.float64), mean_score.dot(mean_score))
    torch.testing.assert_close(torch.tensor(info["score_norm_sq"], dtype=torch.float64), (S * S).sum(1).mean())


def test_first_order_rules_step_along_gradient():
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor)
    S = dense_scores(actor, obs, actions)
    g = S.T @ adv / S.shape[0]
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    methods.make("ac-sgd", actor, lr=0.1).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(flatten([p.detach() for p in actor.parameters()]) - before, 0.1 * g)
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    S = dense_scores(actor, obs, actions)
    methods.make("ac-sgd-matched", actor, lr=0.1, damping=0.5).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(flatten([p.detach() for p in actor.parameters()]) - before, 0.2 * S.T @ adv / S.shape[0])


def test_smac_minibatches_take_one_step_each():
    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor, n=8)
    rule = methods.make("smac", actor, lr=0.05, damping=0.5, batch_size=4)
    # Two sequential steps: the second at the parameters after the first.
    twin = tiny_actor("categorical")
    twin.load_state_dict(actor.state_dict())
    ref = methods.make("smac", twin, lr=0.05, damping=0.5)
    ref.update(PolicyBatch(obs[:4], actions[:4], adv[:4]))
    ref.update(PolicyBatch(obs[4:], actions[4:], adv[4:]))
    rule.update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(flatten(list(actor.parameters())), flatten(list(twin.parameters())))


def test_registry_errors_are_clear():
    actor = tiny_actor("gaussian")
    with pytest.raises(ValueError, match="did you mean smac"):
        methods.make("smak", actor)
    with pytest.raises(ValueError, match="does not take"):
        methods.make("ac-sgd", actor, damping=1.0)
    with pytest.raises(ValueError, match="lr"):
        methods.make("smac", actor, lr=-1.0)


def test_precondition_grads_in_a_foreign_loop():
    """The .grad habit: loss.backward(); rule.precondition_grads(...); optimizer.step()."""
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor)
    S = dense_scores(actor, obs, actions)
    rule = methods.make("smac", actor, lr=0.05, damping=0.7)
    loss = -(adv * actor.distribution(obs).log_prob(actions)).mean()
    loss.backward()
    rule.precondition_grads(obs, actions, adv)
    d = S.shape[1]
    ls = S.mean(0)
    expected = torch.linalg.solve(0.7 * torch.eye(d, dtype=torch.float64) + torch.outer(ls, ls), S.T @ adv / S.shape[0])
    torch.testing.assert_close(-flatten([p.grad for p in actor.parameters()]), expected)


def test_rules_loaded_from_one_state_do_not_share_buffers():
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor)
    rule = methods.make("ac-adam", actor, lr=0.01)
    rule.update(PolicyBatch(obs, actions, adv))
    state = rule.state_dict()
    twins = []
    for _ in range(2):
        a = tiny_actor("gaussian")
        a.load_state_dict(actor.state_dict())
        r = methods.make("ac-adam", a, lr=0.01)
        r.load_state_dict(state)
        twins.append((a, r))
    twins[0][1].update(PolicyBatch(obs, actions, adv))
    twins[1][1].update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(flatten(list(twins[0][0].parameters())), flatten(list(twins[1][0].parameters())))


# -- the common diagnostics, against float64 references computed another way ---------------------

def _closed_form_kl_and_entropy(old, new, obs):
    """Mean KL(π_old‖π_new) and mean entropy of π_old, written out from the networks' outputs
    (softmax of the logits; the diagonal Gaussian's mean and log-std), not torch.distributions."""
    with torch.no_grad():
        if hasattr(old, "log_std"):
            mu0, mu1 = old.net(obs), new.net(obs)
            log_s0, log_s1 = old.log_std.value, new.log_std.value
            var0, var1 = torch.exp(2 * log_s0), torch.exp(2 * log_s1)
            kl = (log_s1 - log_s0 + (var0 + (mu0 - mu1) ** 2) / (2 * var1) - 0.5).sum(1)
            entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_s0).sum().expand(len(obs))
        else:
            logp0, logp1 = torch.log_softmax(old.net(obs), 1), torch.log_softmax(new.net(obs), 1)
            kl = (logp0.exp() * (logp0 - logp1)).sum(1)
            entropy = -(logp0.exp() * logp0).sum(1)
    return float(kl.mean()), float(entropy.mean())


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("method,hyperparameters", [("smac", dict(lr=0.2, damping=0.3)), ("ac-adam", dict(lr=0.05))])
def test_common_diagnostics_equal_float64_references(kind, method, hyperparameters):
    """score_norm_sq, mean_score_norm_sq, grad_norm, update_norm, grad_cosine, kl, log_prob_mean
    and entropy are the quantities their names say (not merely within their ranges)."""
    actor = tiny_actor(kind)
    old = copy.deepcopy(actor)
    obs, actions, adv = tiny_batch(actor, n=11)
    S = dense_scores(actor, obs, actions)
    grad = S.T @ adv / len(adv)
    with torch.no_grad():
        log_prob = actor.distribution(obs).log_prob(actions)
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    info = methods.make(method, actor, **hyperparameters).update(PolicyBatch(obs, actions, adv))
    step = flatten([p.detach() for p in actor.parameters()]) - before
    kl, entropy = _closed_form_kl_and_entropy(old, actor, obs)
    expected = {
        "score_norm_sq": float((S * S).sum(1).mean()),
        "mean_score_norm_sq": float(S.mean(0) @ S.mean(0)),
        "grad_norm": float(grad.norm()),
        "update_norm": float(step.norm()),
        "grad_cosine": float(step @ grad / (step.norm() * grad.norm())),
        "kl": kl,
        "log_prob_mean": float(log_prob.mean()),
        "entropy": entropy,
    }
    assert 0.05 < abs(expected["grad_cosine"]) < 0.999, "a step that is neither orthogonal nor parallel to the gradient"
    assert expected["kl"] > 1e-6, "a step large enough for the KL to be measured"
    for name, value in expected.items():
        assert info[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
