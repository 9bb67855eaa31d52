"""natpg's default recipe and the shared trust-region step, checked against dense float64
references (an explicit Fisher, a per-step reward-normalisation loop)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import natpg
from natpg import methods
from natpg.config import resolve_config
from natpg.methods.base import PolicyBatch
from natpg.presets import NATPG_RECIPE
from natpg.rollout import RewardScaler
from natpg.scores import flatten
from tests.conftest import tiny_actor, tiny_batch
from tests.test_fisher import explicit_fisher

TRUST_REGION_RULES = ["ac-sgd", "smac", "smac-vec", "kfac", "ef-exact", "isopo", "isopo-ntk", "rat", "smac-single"]


def _flat(actor):
    return flatten([p.detach() for p in actor.parameters()]).clone()


def _own_step(name, kind, **hp):
    """The rule's own step (no trust region) from the tiny actor's parameters."""
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=16)
    before = _flat(actor)
    methods.make(name, actor, **hp).update(PolicyBatch(obs, actions, adv), diagnostics=False)
    return _flat(actor) - before


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
@pytest.mark.parametrize("name", ["ac-sgd", "smac", "ef-exact"])
def test_trust_region_scales_the_rules_own_direction_to_the_kl_radius(name, kind):
    """The applied step is f·β·d: d the rule's own step, β = sqrt(2δ / dᵀFd) with F the
    explicit (dense, float64) Fisher, f the line search's fraction."""
    max_kl = 1e-3
    direction = _own_step(name, kind, lr=0.05)
    actor = tiny_actor(kind)
    obs, actions, adv = tiny_batch(actor, n=16)
    fisher = explicit_fisher(actor, obs)
    beta = math.sqrt(2 * max_kl / float(direction @ fisher @ direction))
    before = _flat(actor)
    info = methods.make(name, actor, lr=0.05, max_kl=max_kl).update(PolicyBatch(obs, actions, adv))
    assert info["ls_accepted"] == 1.0
    step = _flat(actor) - before
    torch.testing.assert_close(step, info["step_fraction"] * beta * direction, rtol=1e-8, atol=1e-12)
    assert info["tr_scale"] == pytest.approx(beta, rel=1e-8)
    assert info["tr_kl_model"] == pytest.approx(0.5 * float(direction @ fisher @ direction), rel=1e-8)
    assert info["kl"] == pytest.approx(info["ls_kl"], rel=1e-9) and info["ls_kl"] <= max_kl
    # The quadratic model of the accepted step's KL: ½ f² β² dᵀFd = f² δ.
    assert 0.5 * float(step @ fisher @ step) == pytest.approx(info["step_fraction"] ** 2 * max_kl, rel=1e-8)


def test_trust_region_step_does_not_depend_on_the_rules_lr():
    """Only the direction matters: lr 1e-4 and lr 10 give the same trust-region step."""
    steps = []
    for lr in (1e-4, 10.0):
        actor = tiny_actor("gaussian")
        obs, actions, adv = tiny_batch(actor, n=16)
        before = _flat(actor)
        methods.make("smac", actor, lr=lr, damping=0.1, max_kl=1e-3).update(PolicyBatch(obs, actions, adv))
        steps.append(_flat(actor) - before)
    torch.testing.assert_close(steps[0], steps[1], rtol=1e-7, atol=1e-12)


def test_trust_region_keeps_the_parameters_when_no_trial_improves(monkeypatch):
    from natpg.methods import trust_region

    actor = tiny_actor("categorical")
    obs, actions, adv = tiny_batch(actor, n=16)
    before = _flat(actor)
    monkeypatch.setattr(trust_region, "_evaluate", lambda *args: (-1e9, 0.0))
    info = methods.make("smac", actor, max_kl=0.01).update(PolicyBatch(obs, actions, adv))
    assert info["ls_accepted"] == 0.0 and info["backtracks"] == trust_region.BACKTRACK_ITERS
    assert torch.equal(_flat(actor), before)


@pytest.mark.parametrize("name", ["smac", "trpo"])
def test_kl_accept_takes_the_full_step_that_lands_a_little_past_the_radius(name, monkeypatch):
    """With the realised KL read 1.2× too high, the strict test (KL ≤ δ) backtracks the full step;
    ``kl_accept=1.5`` accepts it whole, and the parameters move by the same full step."""
    from natpg.methods import trust_region

    evaluate = trust_region._evaluate
    # trpo's own step goes through the same line_search, which reads _evaluate from this module
    monkeypatch.setattr(trust_region, "_evaluate", lambda *a: (evaluate(*a)[0], 1.2 * evaluate(*a)[1]))
    steps, infos = [], []
    for accept in (1.0, 1.5):
        actor = tiny_actor("gaussian")
        obs, actions, adv = tiny_batch(actor, n=16)
        before = _flat(actor)
        infos.append(methods.make(name, actor, max_kl=1e-3, kl_accept=accept).update(PolicyBatch(obs, actions, adv)))
        steps.append(_flat(actor) - before)
    strict, loose = infos
    assert strict["ls_accepted"] == loose["ls_accepted"] == 1.0
    assert strict["backtracks"] >= 1 and strict["ls_kl"] <= 1e-3
    assert loose["backtracks"] == 0 and loose["step_fraction"] == 1.0 and 1e-3 < loose["ls_kl"] <= 1.5e-3
    torch.testing.assert_close(steps[0], strict["step_fraction"] * steps[1], rtol=1e-7, atol=1e-12)


def test_kl_accept_below_one_or_without_a_trust_region_is_refused():
    with pytest.raises(ValueError, match="kl_accept"):
        methods.make("smac", tiny_actor("gaussian"), max_kl=1e-3, kl_accept=0.9)
    # without max_kl the rule takes its own step: kl_accept would be recorded and change nothing
    with pytest.raises(ValueError, match="kl_accept=1.5 needs a trust region: set max_kl as well"):
        methods.make("ac-adam", tiny_actor("gaussian"), kl_accept=1.5)
    with pytest.raises(ValueError, match="kl_accept=3 needs a trust region"):
        resolve_config("Hopper-v5", "smac", "none", kl_accept=3.0)
    assert methods.make("trpo", tiny_actor("gaussian"), kl_accept=1.5).kl_accept == 1.5  # trpo's own radius


@pytest.mark.parametrize("name", TRUST_REGION_RULES)
def test_every_rule_takes_the_trust_region(name):
    actor = tiny_actor("gaussian")
    obs, actions, adv = tiny_batch(actor, n=16)
    hp = {"batch_size": 8} if name in ("isopo", "isopo-ntk", "rat") else {}
    info = methods.make(name, actor, max_kl=2e-3, **hp).update(PolicyBatch(obs, actions, adv))
    assert {"tr_scale", "ls_accepted", "step_fraction", "backtracks"} <= set(info)
    assert info["ls_accepted"] == 1.0 and info["kl"] <= 2e-3 and info["surrogate_gain"] > 0


def test_a_user_rule_that_does_not_forward_max_kl_still_gets_the_trust_region():
    class Plain(methods.PreconditionedRule):
        name = "test-plain-direction"

        def __init__(self, actor, *, lr: float = 0.1):  # written without **shared
            super().__init__(actor, lr=lr)

        def direction(self, scores, advantages, grad):
            return grad, {}

    actor = tiny_actor("categorical")
    rule = methods.registry.build(Plain, actor, lr=0.1, max_kl=1e-3)
    assert rule.max_kl == 1e-3
    obs, actions, adv = tiny_batch(actor, n=16)
    assert rule.update(PolicyBatch(obs, actions, adv))["kl"] <= 1e-3


def _reference_scaled_rewards(rewards, dones, gamma, eps=1e-8):
    """Per-step reference in float64: running return per env, Welford over all returns seen."""
    n_envs = rewards.shape[1]
    ret = np.zeros(n_envs)
    seen = []
    for t in range(rewards.shape[0]):
        ret = ret * gamma + rewards[t]
        seen.extend(ret.tolist())
        ret = np.where(dones[t], 0.0, ret)
    var = np.var(np.array(seen))  # the running count starts at 1e-4 with var 1: negligible
    return np.clip(rewards / np.sqrt(var + eps), -10, 10)


def test_reward_scaler_divides_by_the_std_of_the_discounted_return():
    rng = np.random.default_rng(0)
    rewards = rng.normal(3.0, 2.0, size=(300, 2))
    dones = rng.random((300, 2)) < 0.02
    scaler = RewardScaler(2, gamma=0.99)
    out = scaler(rewards, dones, np.zeros_like(dones))
    np.testing.assert_allclose(out, _reference_scaled_rewards(rewards, dones, 0.99), rtol=1e-5)
    # State carries over: two halves give the statistics of the whole.
    halves = RewardScaler(2, gamma=0.99)
    halves(rewards[:150], dones[:150], np.zeros_like(dones[:150]))
    halves(rewards[150:], dones[150:], np.zeros_like(dones[150:]))
    assert halves.var == pytest.approx(scaler.var, rel=1e-9) and halves.mean == pytest.approx(scaler.mean, rel=1e-9)


def test_default_recipe_is_the_natpg_preset_and_none_is_the_bare_defaults():
    config = resolve_config("HalfCheetah-v5", "smac")
    assert config.preset == "natpg"
    for key, value in NATPG_RECIPE["shared"].items():
        assert getattr(config, key) == value, key
    assert config.method_kwargs["max_kl"] == 0.01
    bare = resolve_config("HalfCheetah-v5", "smac", "none")
    assert bare.preset is None and bare.rollout_steps == 1000 and not bare.normalize_reward
    assert bare.method_kwargs["max_kl"] is None
    paper = resolve_config("HalfCheetah-v5", "smac", "paper")
    assert paper.method_kwargs["max_kl"] is None and not paper.normalize_reward and paper.critic_batch_size is None


def test_recipe_run_records_its_settings_and_anneals_the_learning_rates(tmp_path):
    result = natpg.train("Pendulum-v1", method="ac-adam", total_steps=2000, seed=0, out=tmp_path, rollout_steps=500,
                         critic_batch_size=100, anneal_lr=True, log_std_init=-0.5)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["preset"] == "natpg" and config["normalize_reward"] and config["anneal_lr"]
    # Entropy of the first update, at the initial parameters: ½ log(2πe) + log σ per action dim.
    assert result.metrics[0]["entropy"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e) - 0.5, rel=1e-5)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    # After 4 of 4 updates the learning rates are annealed to 0, from 3e-4 (actor) and 1e-3 (critic).
    assert state["schedulers"][0]["last_epoch"] == 4
    assert state["critic_optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert state["rule"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert state["reward_scaler"]["count"] > 2000


def test_anneal_kl_shrinks_the_trust_region_radius_linearly_and_resumes_exactly(tmp_path, monkeypatch):
    from test_resume import Killed, assert_same_run, crash_at_rollout

    kw = dict(total_steps=2000, seed=0, rollout_steps=500, checkpoint_every=1000, hidden=(8,), critic_steps=2, anneal_kl=True)
    result = natpg.train("Pendulum-v1", method="trpo", out=tmp_path / "ref", **kw)
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["anneal_kl"]
    # Update k of 4 is taken within the radius 0.01 (1 − k/4); TRPO's line search accepts no more.
    kl = [row["kl"] for row in result.metrics]
    assert [row["max_kl"] for row in result.metrics] == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert len(kl) == 4 and all(0.0 < v <= 0.01 * (1 - k / 4) * (1 + 1e-6) for k, v in enumerate(kl))
    assert max(kl[2:]) < 0.005 < max(kl[:2])  # the late updates are held below the first radius
    undo = crash_at_rollout(monkeypatch, 4)  # 3 updates done, the checkpoint after 2
    with pytest.raises(Killed):
        natpg.train("Pendulum-v1", method="trpo", out=tmp_path / "run", **kw)
    undo()
    natpg.train("Pendulum-v1", method="trpo", out=tmp_path / "run", resume=True, **kw)
    assert_same_run(tmp_path / "ref", tmp_path / "run")


def test_anneal_kl_without_a_trust_region_is_refused(tmp_path):
    with pytest.raises(ValueError, match="trust-region radius"):
        natpg.train("Pendulum-v1", method="ac-adam", total_steps=1000, rollout_steps=500, anneal_kl=True, out=tmp_path)
