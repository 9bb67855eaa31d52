"""First-order baselines: advantage actor-critic with SGD or Adam (the paper's AC-SGD, AC-Adam)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.scores import ScoreBatch


@register
class ACSGD(PreconditionedRule):
    """Plain policy gradient, SGD step ``lr``."""

    name = "ac-sgd"
    summary = "advantage actor-critic, SGD on the policy gradient"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(7e-3)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        return grad, {}


@register
class ACAdam(ACSGD):
    """Plain policy gradient, Adam step ``lr`` (betas 0.9/0.999, eps 1e-8)."""

    name = "ac-adam"
    summary = "advantage actor-critic, Adam on the policy gradient"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(1e-3, "Adam step size")

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.params, lr=self.lr)


@register
class ACSGDMatched(ACSGD):
    """The step-size control for SMAC: SGD with step ``lr / damping``, given SMAC's own η
    (``lr``) and λ (``damping``). Batch-mean SMAC equals this except along ℓ̄, so the gap
    between the two is what the rank-1 curvature buys."""

    name = "ac-sgd-matched"
    summary = "AC-SGD at SMAC's effective step η/λ (the step-size control)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(5e-3, "SMAC's step size η (the SGD step is η/λ)")
        damping: float = hparams.damping(0.1, "SMAC's damping λ (the SGD step is η/λ)")

    @property
    def damping(self) -> float:
        return float(self.hp.damping)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.params, lr=self.lr / self.damping)
