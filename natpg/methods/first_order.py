"""First-order baselines: advantage actor-critic with SGD or Adam (the paper's AC-SGD, AC-Adam)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from natpg.linalg import check_positive
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.scores import ScoreBatch


@register
class ACSGD(PreconditionedRule):
    """Plain policy gradient, SGD step ``lr``."""

    name = "ac-sgd"
    summary = "advantage actor-critic, SGD on the policy gradient"

    def __init__(self, actor, *, lr: float = 7e-3, batch_size: int | None = None, **shared: Any):
        super().__init__(actor, lr=lr, batch_size=batch_size, **shared)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        return grad, {}


@register
class ACAdam(ACSGD):
    """Plain policy gradient, Adam step ``lr`` (betas 0.9/0.999, eps 1e-8)."""

    name = "ac-adam"
    summary = "advantage actor-critic, Adam on the policy gradient"

    def __init__(self, actor, *, lr: float = 1e-3, batch_size: int | None = None, **shared: Any):
        super().__init__(actor, lr=lr, batch_size=batch_size, **shared)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.params, lr=self.lr)


@register
class ACSGDMatched(ACSGD):
    """The step-size control for SMAC: SGD with step ``lr / damping``, given SMAC's own η
    (``lr``) and λ (``damping``). Batch-mean SMAC equals this except along ℓ̄, so the gap
    between the two is what the rank-1 curvature buys."""

    name = "ac-sgd-matched"
    summary = "AC-SGD at SMAC's effective step η/λ (the step-size control)"

    def __init__(self, actor, *, lr: float = 5e-3, damping: float = 0.1, batch_size: int | None = None, **shared: Any):
        self.damping = check_positive("damping", damping)
        super().__init__(actor, lr=lr, batch_size=batch_size, **shared)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.params, lr=self.lr / self.damping)
