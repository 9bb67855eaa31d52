"""The exact damped empirical-Fisher natural gradient: the reference solver.

    w* = (λI + SᵀS/B)⁻¹ SᵀA/B = Sᵀ (λB·I + SSᵀ)⁻¹ A        (Woodbury)

The B×B system is solved by Cholesky (:func:`natpg.linalg.solve_shifted_gram`, the solver
inside :func:`natpg.linalg.woodbury_solve`), with the Gram matrix SSᵀ built from the
factorised scores — per layer ``(δδᵀ) ⊙ (aaᵀ + 1)`` — so S (B×d) is never formed:
O(B²·Σ(in+out) + B³) per update. Since the actions are sampled from π, SᵀS/B is an unbiased
estimate of the true Fisher. The step is ``η w*``.

Any rule can report how close its step is to this one: ``TrainConfig.exact_cosine``
(``--exact-cosine``) logs ``exact_cosine`` per update.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from natpg.linalg import solve_shifted_gram
from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.fisher import damped_natural_gradient
from natpg.scores import ScoreBatch, flatten, unflatten


@register
class ExactEmpiricalFisher(PreconditionedRule):
    """``Δθ = η (λI + SᵀS/B)⁻¹ SᵀA/B`` exactly, one step per ``batch_size`` samples."""

    name = "ef-exact"
    summary = "exact damped empirical-Fisher natural gradient via the B×B Woodbury/Cholesky solve (reference)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(0.1)
        damping: float = hparams.damping(0.1, "damping λ of the empirical Fisher, (λI + SᵀS/B)")

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.damping = float(self.hp.damping)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        if advantages is not None:
            return flatten(damped_natural_gradient(scores, advantages, self.damping)), {}
        # Only the gradient is known (precondition_grads in a foreign loop): Woodbury on g,
        # (λI + SᵀS/B)⁻¹ g = (g − Sᵀ (λB·I + SSᵀ)⁻¹ S g) / λ.
        n = scores.num_samples
        sg = scores.dot(unflatten(grad, scores.params))
        x = solve_shifted_gram(scores.gram(), sg, self.damping * n)
        return (grad - flatten(scores.weighted_sum(x))) / self.damping, {}
