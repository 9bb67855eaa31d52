"""Each rule's hyperparameters are one frozen dataclass: it drives validation, the CLI's
flags, ``natpg methods NAME`` and the bench; rules written the old way keep working."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from conftest import tiny_actor
from natpg import methods
from natpg.cli import build_parser, main
from natpg.config import resolve_config
from natpg.methods import hyperparameters as hparams
from natpg.methods.registry import _REGISTRY
from natpg.methods.smac import SMAC


class _WarmupRule(methods.PreconditionedRule):
    """Adding a rule is one class: a name, a dataclass of hyperparameters, a direction."""

    name = "test-warmup"
    summary = "plain gradient, no step during the first updates"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(0.01)
        warmup: int = hparams.hyperparameter(0, help="updates without a step", range=hparams.Range("int", 0))

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.updates = 0

    def direction(self, scores, advantages, grad):
        self.updates += 1
        return grad * float(self.updates > self.hp.warmup), {}


class _LegacyRule(methods.PreconditionedRule):
    """Written the old way: keyword-only hyperparameters in ``__init__``."""

    name = "test-legacy"

    def __init__(self, actor, *, lr: float = 0.1, warmup: int = 0):
        super().__init__(actor, lr=lr)
        self.warmup = warmup

    def direction(self, scores, advantages, grad):
        return grad, {}


@pytest.fixture
def extra_rules():
    for cls in (_WarmupRule, _LegacyRule):
        methods.register(cls)
    yield
    for cls in (_WarmupRule, _LegacyRule):
        _REGISTRY.pop(cls.name, None)


def test_every_rule_has_a_frozen_dataclass_with_help_for_every_field():
    for name in methods.available():
        hp_class = hparams.hyperparameter_class(methods.get(name))
        assert dataclasses.is_dataclass(hp_class) and hp_class.__dataclass_params__.frozen, name
        for f in dataclasses.fields(hp_class):
            assert f.metadata.get("help"), (name, f.name)
        assert set(hp_class.defaults()) == set(methods.get(name).hyperparameters())


def test_shared_fields_are_declared_once():
    assert "lr" in {f.name for f in dataclasses.fields(hparams.Hyperparameters)}
    assert SMAC.Hyperparameters().max_kl is None and SMAC.Hyperparameters().batch_size is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        SMAC.Hyperparameters().lr = 1.0  # type: ignore[misc]


def test_a_rule_takes_its_dataclass_or_keywords():
    actor = tiny_actor("categorical")
    a = SMAC(actor, SMAC.Hyperparameters(lr=0.02, damping=0.5))
    b = methods.make("smac", actor, lr=0.02, damping=0.5)
    c = SMAC(actor, SMAC.Hyperparameters(lr=0.02), damping=0.5)
    assert a.hp == b.hp == c.hp and b.lr == 0.02 and b.damping == 0.5
    with pytest.raises(ValueError, match="^damping must be a finite positive number, got -1"):
        SMAC.Hyperparameters(damping=-1)
    with pytest.raises(TypeError, match="takes SMAC.Hyperparameters"):
        SMAC(actor, methods.get("ac-sgd").Hyperparameters())


def test_an_integer_hyperparameter_may_be_zero(extra_rules):
    config = resolve_config("CartPole-v1", "test-warmup", "none", warmup=0)
    assert config.method_kwargs["warmup"] == 0
    with pytest.raises(ValueError, match="warmup must be an integer >= 0, got -1"):
        resolve_config("CartPole-v1", "test-warmup", "none", warmup=-1)
    config = resolve_config("CartPole-v1", "test-legacy", "none", warmup=0, max_kl=0.01)
    rule = methods.make("test-legacy", tiny_actor("categorical"), **config.method_kwargs)
    assert rule.warmup == 0 and rule.max_kl == 0.01 and rule.kl_accept == 1.0
    # the shared trust region's settings reach a rule written before they existed, checked as for any rule
    rule = methods.make("test-legacy", tiny_actor("categorical"), max_kl=0.02, kl_accept=1.5)
    assert (rule.max_kl, rule.kl_accept, rule.hp.max_kl, rule.hp.kl_accept) == (0.02, 1.5, 0.02, 1.5)
    with pytest.raises(ValueError, match="kl_accept=1.5 needs a trust region"):
        methods.make("test-legacy", tiny_actor("categorical"), kl_accept=1.5)
    with pytest.raises(ValueError, match=r"max_kl must be a finite positive number \(or None\), got -1"):
        methods.make("test-legacy", tiny_actor("categorical"), max_kl=-1)
    with pytest.raises(ValueError, match="warmup must be an integer, got 0.5"):
        resolve_config("CartPole-v1", "test-legacy", "none", warmup=0.5)


def test_cli_flags_and_method_page_come_from_the_dataclasses(extra_rules, capsys):
    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert "updates without a step" in helps["warmup"] and "0 (test-legacy, test-warmup)" in helps["warmup"]
    assert "damping λ" in helps["damping"] and "10.0 (smac-vec)" in helps["damping"]
    assert main(["methods", "kfac"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("kfac: ") and "--momentum (default 0.9; a finite number in [0, 1))" in page
    assert "SGD momentum" in page
    assert main(["methods", "kfca"]) == 2
    assert "did you mean kfac" in capsys.readouterr().err
