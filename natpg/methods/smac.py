"""SMAC: Sherman–Morrison actor-critic (arXiv 2601.18626) — batch-mean and vectorised forms.

The Fisher is approximated by a rank-1 matrix plus damping, ``λI + u uᵀ``, whose inverse
applied to a gradient costs O(d) by Sherman–Morrison (:func:`natpg.linalg.sherman_morrison_solve`).
Three rules share that idea:

- ``smac`` (batch-mean, the paper's Section 5.1, used for all its reported results):
  ``u = ℓ̄`` the mean score of a minibatch of ``batch_size`` samples, one step per minibatch,
  ``Δθ = η [ g/λ − ℓ̄ (ℓ̄ᵀg) / (λ² + λ‖ℓ̄‖²) ]``.
- ``smac-single`` (Algorithm 1, :mod:`natpg.methods.smac_single`): one step per sample,
  sequentially, each at the current parameters.
- ``smac-vec`` (ours): every per-sample step of Algorithm 1 evaluated at the *same*
  parameters and averaged, ``Δθ = η · mean_i A_i s_i / (λ + ‖s_i‖²)``; the per-sample norms
  come from the factorised scores (no per-sample gradients, no Python loop over samples).

Note ``E[s] = 0``, so ‖ℓ̄‖² ≈ tr(F̂)/B is small at large B: the batch-mean step is then close
to SGD with step η/λ (compare with the ``ac-sgd-matched`` control; docs/smac.md).

All three take the same opt-in **adaptive damping** (:class:`DampingControl`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from natpg.linalg import check_positive, sherman_morrison_solve
from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PolicyBatch, PreconditionedRule
from natpg.methods.registry import register
from natpg.policies import Actor
from natpg.fisher import detached
from natpg.scores import ScoreBatch, compute_scores, flatten

__all__ = ["AdaptiveDampingHyperparameters", "DampingControl", "SMAC", "SMACVec"]

#: Adaptive damping leaves λ alone while the realised KL is within this factor of the target.
KL_BAND = 2.0


@dataclass(frozen=True, kw_only=True)
class AdaptiveDampingHyperparameters(hparams.Hyperparameters):
    """The damping λ of the SMAC rules and its opt-in adaptation (:class:`DampingControl`)."""

    damping: float = hparams.damping(0.1, "damping λ of the rank-1 Fisher λI + uuᵀ (the initial λ when adapted)")
    adaptive_damping: bool = hparams.hyperparameter(
        False, help="adapt λ after every update from the realised KL, Levenberg–Marquardt style"
    )
    kl_target: float = hparams.hyperparameter(
        0.01, help=f"KL the adaptation aims at: λ grows above {KL_BAND:g}× it and shrinks below 1/{KL_BAND:g} of it",
        range=hparams.POSITIVE,
    )
    damping_factor: float = hparams.hyperparameter(
        1.5, help="factor λ is multiplied or divided by when adapted (> 1)", range=hparams.POSITIVE
    )
    damping_min: float = hparams.hyperparameter(1e-4, help="lower bound of the adapted λ", range=hparams.POSITIVE)
    damping_max: float = hparams.hyperparameter(1e4, help="upper bound of the adapted λ", range=hparams.POSITIVE)

    def check(self) -> None:
        super().check()
        DampingControl.of(self)  # the relations (factor > 1, min <= damping <= max), in its words


class DampingControl:
    """The damping λ of a SMAC rule, optionally adapted Levenberg–Marquardt style.

    When ``adaptive``, after every update the realised ``KL(π_old ‖ π_new)`` on the batch is
    compared with ``kl_target``: above ``KL_BAND·kl_target`` the step was too long and λ is
    multiplied by ``factor``; below ``kl_target/KL_BAND`` it is divided by ``factor``; λ stays
    within ``[minimum, maximum]``. The new λ applies from the next update (no step is undone).
    Since every SMAC step scales like 1/λ (exactly so for batch-mean SMAC away from ℓ̄),
    this is a trust-region control of the step length in KL. A non-finite KL counts as
    too long.
    """

    def __init__(self, damping: float, adaptive: bool = False, kl_target: float = 0.01, factor: float = 1.5,
                 minimum: float = 1e-4, maximum: float = 1e4):
        self.damping = check_positive("damping", damping)
        if not isinstance(adaptive, bool):
            raise ValueError(f"adaptive_damping must be True or False, got {adaptive!r}")
        self.adaptive = adaptive
        self.kl_target = check_positive("kl_target", kl_target)
        self.factor = check_positive("damping_factor", factor)
        if self.factor <= 1.0:
            raise ValueError(f"damping_factor must be > 1, got {factor!r}")
        self.minimum = check_positive("damping_min", minimum)
        self.maximum = check_positive("damping_max", maximum)
        if not self.minimum <= self.maximum:
            raise ValueError(f"damping_min ({minimum!r}) must be at most damping_max ({maximum!r})")
        if adaptive and not self.minimum <= self.damping <= self.maximum:
            raise ValueError(f"damping {damping!r} must lie in [damping_min, damping_max] = [{minimum!r}, {maximum!r}]")

    @classmethod
    def of(cls, h: AdaptiveDampingHyperparameters) -> "DampingControl":
        return cls(h.damping, h.adaptive_damping, h.kl_target, h.damping_factor, h.damping_min, h.damping_max)

    def before(self, actor: Actor, obs: Tensor) -> Distribution | None:
        """π_old on the batch (detached) when adapting, else None. Call before the step."""
        if not self.adaptive:
            return None
        with torch.no_grad():
            return detached(actor.distribution(obs))

    def after(self, actor: Actor, obs: Tensor, old: Distribution | None) -> dict[str, float]:
        """Adapt λ from the realised KL of the step just taken; returns diagnostics (empty
        when not adapting: the common ``kl`` diagnostic is logged anyway)."""
        if old is None:
            return {}
        with torch.no_grad():
            kl = float(kl_divergence(old, actor.distribution(obs)).mean())
        self.observe(kl)
        return {"adapt_kl": kl, "damping_next": self.damping}

    def observe(self, kl: float) -> None:
        """The control law: λ up by ``factor`` above the band, down below it, within bounds."""
        if not math.isfinite(kl) or kl > KL_BAND * self.kl_target:
            self.damping = min(self.damping * self.factor, self.maximum)
        elif kl < self.kl_target / KL_BAND:
            self.damping = max(self.damping / self.factor, self.minimum)

    def load(self, state: dict[str, Any]) -> None:
        if "damping" in state:
            self.damping = float(state["damping"])


class _SMACRule(PreconditionedRule):
    """Shared by ``smac`` and ``smac-vec``: damping (fixed or adaptive), one optimizer step
    per minibatch of ``batch_size`` samples, a ``steps`` diagnostic."""

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(AdaptiveDampingHyperparameters, hparams.MinibatchHyperparameters):
        pass

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.control = DampingControl.of(self.hp)

    @property
    def damping(self) -> float:
        return self.control.damping

    def _minibatch_direction(self, scores: ScoreBatch, advantages: Tensor) -> tuple[Tensor, dict[str, float]]:
        grad = flatten(scores.weighted_sum(advantages / scores.num_samples))
        return self.direction(scores, advantages, grad)

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        old = self.control.before(self.actor, batch.obs)
        damping = self.control.damping
        totals: dict[str, float] = {}
        minibatches = list(batch.minibatches(self.batch_size))
        for mb in minibatches:
            scores, _, _ = compute_scores(self.actor, mb.obs, mb.actions)
            direction, info = self._minibatch_direction(scores, mb.advantages)
            del scores
            self._write_grads(direction)
            self.optimizer.step()
            for key, value in info.items():
                totals[key] = totals.get(key, 0.0) + value / len(minibatches)
        totals.update(damping=damping, steps=float(len(minibatches)))
        totals.update(self.control.after(self.actor, batch.obs, old))
        return totals

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "damping": self.control.damping}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.control.load(state)


@register
class SMAC(_SMACRule):
    """Batch-mean SMAC: ``Δθ = η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` per minibatch of ``batch_size`` samples
    (None: the whole rollout). ``batch_size=1`` is Algorithm 1 exactly (ℓ̄ = s_i, g = A_i s_i)."""

    name = "smac"
    summary = "Sherman–Morrison rank-1 damped Fisher on the batch-mean score (paper's B-batch variant)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(_SMACRule.Hyperparameters):
        lr: float = hparams.lr(5e-3)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        n = scores.num_samples
        mean_score = flatten(scores.weighted_sum(torch.full((n,), 1.0 / n, dtype=grad.dtype, device=grad.device)))
        return sherman_morrison_solve(mean_score, grad, self.damping), {}


@register
class SMACVec(_SMACRule):
    """Vectorised per-sample SMAC: ``Δθ = η · mean_i A_i s_i / (λ + ‖s_i‖²)``.

    Algorithm 1's per-sample steps, all taken at the same parameters and averaged (so
    ``lr = B·η`` equals the *sum* of those steps, a Jacobi sweep where Algorithm 1 is
    Gauss–Seidel). Cost: the plain gradient's, plus O(B·Σ(in+out)) for the norms.
    Needs the advantages: in :meth:`precondition_grads` the existing ``.grad`` is ignored.
    Defaults from a small CartPole sweep (docs/smac.md); its step scales like η/(λ + ‖s‖²),
    so its ``lr`` is of another order than batch-mean SMAC's.
    """

    name = "smac-vec"
    summary = "per-sample Sherman–Morrison steps at the same θ, averaged in one pass (ours)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(_SMACRule.Hyperparameters):
        lr: float = hparams.lr(1.0, "step size η of the averaged per-sample steps (lr = B·η sums them)")
        damping: float = hparams.damping(10.0, "damping λ of each per-sample step η A_i s_i / (λ + ‖s_i‖²)")

    def _minibatch_direction(self, scores: ScoreBatch, advantages: Tensor) -> tuple[Tensor, dict[str, float]]:
        return self.direction(scores, advantages, None)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor | None):
        if advantages is None:
            raise ValueError(
                "smac-vec weights each sample by its own advantage: pass advantages to "
                "precondition_grads(obs, actions, advantages)"
            )
        scale = 1.0 / (self.damping + scores.sq_norms())
        direction = flatten(scores.weighted_sum(advantages * scale / scores.num_samples))
        return direction, {"step_scale_mean": float(scale.mean())}
