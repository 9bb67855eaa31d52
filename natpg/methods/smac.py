"""SMAC: Sherman–Morrison actor-critic (arXiv 2601.18626), batch-mean form (Section 5.1).

The Fisher is approximated by ``λI + ℓ̄ℓ̄ᵀ`` with ℓ̄ the mean score of the batch; its
inverse applied to the policy gradient costs O(d) by Sherman–Morrison:

    Δθ = η [ g/λ − ℓ̄ (ℓ̄ᵀg) / (λ² + λ‖ℓ̄‖²) ]

Note ``E[s] = 0``, so ‖ℓ̄‖² ≈ tr(F̂)/B is small at large B: the step is then close to SGD
with step η/λ (compare with the ``ac-sgd-matched`` control).
"""

from __future__ import annotations

import torch
from torch import Tensor

from natpg.linalg import check_positive, sherman_morrison_solve
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.scores import ScoreBatch, flatten


@register
class SMAC(PreconditionedRule):
    name = "smac"
    summary = "Sherman–Morrison rank-1 damped Fisher on the batch-mean score (paper's B-batch variant)"

    def __init__(self, actor, *, lr: float = 5e-3, damping: float = 0.1, batch_size: int | None = None):
        super().__init__(actor, lr=lr, batch_size=batch_size)
        self.damping = check_positive("damping", damping)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        n = scores.num_samples
        mean_score = flatten(scores.weighted_sum(torch.full((n,), 1.0 / n, dtype=grad.dtype)))
        return sherman_morrison_solve(mean_score, grad, self.damping), {"damping": self.damping}
