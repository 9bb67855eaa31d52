"""Any ActorLike network through every rule (issue 15): per-sample scores on both paths
against a per-sample Python loop, one update of every registered rule on every actor kind,
the ef-exact step against a dense float64 solve, precondition_grads where the rule allows it."""

import pytest
import torch

from natpg import methods
from natpg.methods import PolicyBatch, PreconditionedRule
from natpg.scores import compute_scores, flatten
from tests.actor_kinds import KINDS, make_actor, make_batch
from tests.conftest import assert_scores_match_dense, dense_scores, tiny_actor, tiny_batch

ALL_KINDS = sorted(KINDS)
#: Kinds with a trainable parameter outside nn.Linear (the frozen one trains Linear layers only).
GENERAL_KINDS = [k for k in ALL_KINDS if k != "frozen"]


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters() if p.requires_grad]).clone()



@pytest.mark.parametrize("path", ["auto", "general"])
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_scores_of_any_actor_match_a_per_sample_loop(kind, path):
    actor = make_actor(kind)
    obs, actions, adv = make_batch(kind, actor)
    S = dense_scores(actor, obs, actions)
    scores, _, logp = compute_scores(actor, obs, actions, path=path)
    assert_scores_match_dense(scores, S, adv)
    torch.testing.assert_close(logp, actor.distribution(obs).log_prob(actions))


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_general_path_matches_the_factorised_one_on_natpg_actors(kind):
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor)
    fast, _, _ = compute_scores(actor, obs, actions, path="factorised")
    general, _, _ = compute_scores(actor, obs, actions, path="general")
    assert {b.kind for b in fast.blocks} <= {"linear", "broadcast"}
    assert {b.kind for b in general.blocks} == {"general"}
    assert_scores_match_dense(general, fast.matrix(), adv)


def test_auto_path_mixes_the_two_per_parameter():
    """The fast path keeps every Linear layer it can vouch for; the rest goes to torch.func."""
    kinds = {}
    for kind in ALL_KINDS:
        actor = make_actor(kind)
        obs, actions, _ = make_batch(kind, actor)
        scores, _, _ = compute_scores(actor, obs, actions)
        names = {id(p): n for n, p in actor.named_parameters()}
        kinds[kind] = {names[id(p)]: b.kind for b in scores.blocks for p in b.params}
    assert kinds["cleanrl"] == {**{f"actor_mean.{i}.{w}": "linear" for i in (0, 2, 4) for w in ("weight", "bias")},
                                "actor_logstd": "general"}
    assert kinds["layernorm"]["net.1.weight"] == "general" and kinds["layernorm"]["net.3.weight"] == "linear"
    assert kinds["shared-linear"]["shared.weight"] == "general" and kinds["shared-linear"]["inp.weight"] == "linear"
    assert kinds["conv"] == {"conv.weight": "general", "conv.bias": "general", "head.weight": "linear", "head.bias": "linear"}
    # The tied weight is used outside its Linear layer: the graph check sends it (and its
    # layer's bias, which it cannot be factorised without) to the general path.
    assert kinds["tied"]["enc.weight"] == "general"


@pytest.mark.parametrize("kind", GENERAL_KINDS)
def test_factorised_only_is_a_clear_error_naming_the_fix(kind):
    actor = make_actor(kind)
    obs, actions, _ = make_batch(kind, actor)
    with pytest.raises(ValueError, match="path='auto'"):
        compute_scores(actor, obs, actions, path="factorised")


@pytest.mark.parametrize("name", methods.available())
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_rule_updates_every_actor_kind(name, kind):
    actor = make_actor(kind)
    obs, actions, adv = make_batch(kind, actor, n=16)
    rule = methods.make(name, actor)
    before = _flat(actor)
    frozen = [(p, p.detach().clone()) for p in actor.parameters() if not p.requires_grad]
    info = rule.update(PolicyBatch(obs, actions, adv))  # diagnostics on (trpo included)
    after = _flat(actor)
    assert all(torch.equal(p, value) for p, value in frozen), f"{name} moved a frozen parameter"
    assert torch.isfinite(after).all()
    assert all(v == v for v in info.values()), info  # no NaN diagnostics
    if name != "trpo" or info["ls_accepted"]:
        assert not torch.equal(before, after), f"{name} did not move {kind}"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("name", ["smac", "kfac", "rat"])
def test_shared_trust_region_works_with_any_actor(kind, name):
    actor = make_actor(kind)
    obs, actions, adv = make_batch(kind, actor, n=16)
    info = methods.make(name, actor, max_kl=0.01).update(PolicyBatch(obs, actions, adv))
    assert info["kl"] <= 0.01 + 1e-9
    assert "tr_scale" in info


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("n", [6, 40])  # B < d and B > d
def test_ef_exact_step_equals_dense_solve_from_the_loop(kind, n):
    """ef-exact's step is lr·Sᵀ(λB·I + SSᵀ)⁻¹A with S built by one autograd call per sample."""
    actor = make_actor(kind)
    obs, actions, adv = make_batch(kind, actor, n=n)
    S = dense_scores(actor, obs, actions)
    lr, damping = 0.05, 0.3
    expected = lr * S.T @ torch.linalg.solve(damping * n * torch.eye(n, dtype=S.dtype) + S @ S.T, adv)
    before = _flat(actor)
    methods.make("ef-exact", actor, lr=lr, damping=damping).update(PolicyBatch(obs, actions, adv))
    torch.testing.assert_close(_flat(actor) - before, expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("name", methods.available())
def test_precondition_grads_where_the_rule_allows_it(kind, name):
    """PreconditionedRules follow the .grad habit on any actor and write the same step as
    update(); closure rules say which one call to make instead."""
    actor = make_actor(kind)
    obs, actions, adv = make_batch(kind, actor, n=16)
    rule = methods.make(name, actor)
    if not isinstance(rule, PreconditionedRule):
        with pytest.raises(TypeError, match=r"rule\.update\(PolicyBatch\(obs, actions, advantages\)\)"):
            rule.precondition_grads(obs, actions, adv)
        return
    loss = -(adv * actor.distribution(obs).log_prob(actions)).mean()
    loss.backward()
    rule.precondition_grads(obs, actions, adv)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rule.params)
    if name in ("ac-sgd", "ac-adam", "smac", "smac-vec", "ef-exact", "ac-sgd-matched", "isopo-ntk", "ac-cg"):
        # Deterministic rules: the written direction is update()'s direction (kfac and isopo
        # draw random actions / probes, so their two calls differ).
        written = -flatten([p.grad for p in rule.params])
        twin = make_actor(kind)
        twin_rule = methods.make(name, twin)
        direction, _ = twin_rule.direction(compute_scores(twin, obs, actions)[0], adv, flatten(
            compute_scores(twin, obs, actions)[0].weighted_sum(adv / len(adv))))
        torch.testing.assert_close(written, direction, rtol=1e-6, atol=1e-9)  # ac-cg: CG iterates


def test_smac_single_autograd_needs_only_distribution():
    """Algorithm 1 on an actor with no log_prob method: one autograd step per sample."""
    kind = "cleanrl"
    actor, reference = make_actor(kind), make_actor(kind)
    assert not hasattr(actor, "log_prob")
    obs, actions, adv = make_batch(kind, actor, n=5)
    lr, damping = 0.1, 0.5
    rule = methods.make("smac-single", actor, lr=lr, damping=damping)
    rule.update(PolicyBatch(obs, actions, adv), diagnostics=False)
    for i in range(len(adv)):  # the sequential reference, by hand
        s = dense_scores(reference, obs[i : i + 1], actions[i : i + 1])[0]
        step = lr * adv[i] * s / (damping + s.dot(s))
        with torch.no_grad():
            offset = 0
            for p in reference.parameters():
                p.add_(step[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
    torch.testing.assert_close(_flat(actor), _flat(reference), rtol=1e-10, atol=1e-12)


def test_kfac_has_kronecker_factors_for_linear_and_conv_layers_and_a_diagonal_elsewhere():
    actor = make_actor("conv")
    obs, actions, adv = make_batch("conv", actor, n=16)
    rule = methods.make("kfac", actor)
    rule.update(PolicyBatch(obs, actions, adv))
    assert set(rule.factors) == {"head", "conv"}
    assert set(rule.factors["head"]) == {"A", "G"}
    assert rule.factors["conv"]["A"].shape == (2 * 3 * 3 + 1,) * 2 and rule.factors["conv"]["G"].shape == (3, 3)
    actor = make_actor("layernorm")
    rule = methods.make("kfac", actor)
    rule.update(PolicyBatch(*make_batch("layernorm", actor, n=16)))
    assert set(rule.factors) == {"net.0", "net.1.weight", "net.1.bias", "net.3"}
    assert set(rule.factors["net.1.weight"]) == {"D"} and rule.factors["net.1.weight"]["D"].shape == (6,)


def test_isopo_treats_each_general_parameter_as_a_layer():
    actor = make_actor("layernorm")
    obs, actions, adv = make_batch("layernorm", actor, n=16)
    rule = methods.make("isopo-ntk", actor)
    rule.update(PolicyBatch(obs, actions, adv))
    assert len(rule.ema) == 2 + 2  # two Linear layers, LayerNorm's weight and bias


def test_a_module_without_distribution_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"distribution\(obs\)"):
        methods.make("smac", torch.nn.Linear(3, 2))
