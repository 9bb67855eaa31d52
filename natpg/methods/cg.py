"""Natural gradient by conjugate gradient: the paper's AC-CG (fixed step) and TRPO (KL radius
and backtracking line search).

Both solve ``(F + δI) x = g`` with :func:`natpg.linalg.conjugate_gradient`, never forming F:
each CG iteration costs one Fisher-vector product (:func:`natpg.fisher.fisher_vector_product`,
the Gauss–Newton form through the distribution parameters, exact for categorical and Gaussian
policies: the true Fisher, not the empirical one).

- ``ac-cg`` steps ``η x`` (SMAC paper's AC-CG baseline; η per env in its Table 2).
- ``trpo`` scales ``x`` to the KL radius, ``β = sqrt(2 δ_KL / xᵀ(F+δI)x)``, then backtracks
  ``β ← 0.8 β`` until the realised mean KL(π_old‖π_new) on the batch is at most ``max_kl`` *and*
  the surrogate ``mean(ratio · A)`` strictly improves. If no trial passes, the parameters are
  restored and the update is reported as rejected (``ls_accepted`` = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from natpg.linalg import conjugate_gradient
from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PolicyBatch, PreconditionedRule, UpdateRule
from natpg.methods.registry import register
from natpg.methods.trust_region import kl_radius_scale, line_search, rejected
from natpg.fisher import detached, fisher_vector_product
from natpg.scores import ScoreBatch, flatten

__all__ = ["ACCG", "TRPO"]


_CG_ITERS_HELP = "conjugate-gradient iterations per solve (one Fisher-vector product each)"
_SUBSAMPLE_HELP = "fraction of the batch the Fisher-vector products are computed on, in (0, 1]"
_FRACTION = hparams.Range("float", 0.0, 1.0, low_open=True)


def _cg_solve(actor, obs: Tensor, grad: Tensor, damping: float, cg_iters: int, subsample: float):
    """x ≈ (F + δI)⁻¹ g by CG; also (F + δI) x, for the quadratic KL and the residual."""
    matvec = fisher_vector_product(actor, obs, damping=damping, subsample=subsample)
    # Stop early once the residual is within ~100 ulp of ‖g‖ (no precision left to gain).
    rel = 100.0 * torch.finfo(grad.dtype).eps
    x = conjugate_gradient(matvec, grad, max_iter=cg_iters, tol=rel**2 * float(torch.dot(grad, grad)))
    fx = matvec(x)
    gnorm = grad.norm()
    residual = float((fx - grad).norm() / gnorm) if gnorm > 0 else 0.0
    return x, fx, residual


@register
class ACCG(PreconditionedRule):
    """AC-CG: ``Δθ = η (F + δI)⁻¹ g`` by ``cg_iters`` conjugate-gradient iterations."""

    name = "ac-cg"
    summary = "natural gradient (F+δI)⁻¹g by conjugate gradient on the true Fisher, fixed step η (paper's AC-CG)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(8e-2)
        damping: float = hparams.damping(0.1, "damping δ of the solve (F + δI) x = g")
        cg_iters: int = hparams.hyperparameter(10, help=_CG_ITERS_HELP, range=hparams.POSITIVE_INT)
        fisher_subsample: float = hparams.hyperparameter(1.0, help=_SUBSAMPLE_HELP, range=_FRACTION)

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.damping = float(self.hp.damping)
        self.cg_iters = self.hp.cg_iters
        self.fisher_subsample = float(self.hp.fisher_subsample)

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        x, fx, residual = _cg_solve(self.actor, scores.obs, grad, self.damping, self.cg_iters, self.fisher_subsample)
        # Quadratic model of the KL of the step η x: ½ η² xᵀ(F+δI)x.
        return x, {"cg_residual": residual, "quad_kl": 0.5 * self.lr**2 * float(torch.dot(x, fx))}


@register
class TRPO(UpdateRule):
    """TRPO (Schulman et al. 2015) as in sb3-contrib: CG direction on the damped Fisher, step
    scaled to the KL radius ``max_kl``, backtracking line search on KL and surrogate.

    ``lr`` is the fraction of the full KL-radius step tried first (1 = standard TRPO).
    """

    name = "trpo"
    shared_trust_region = False  # max_kl is TRPO's own radius
    summary = "TRPO: CG natural direction scaled to a KL radius, backtracking on KL and surrogate"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.Hyperparameters):
        lr: float = hparams.lr(1.0, "fraction of the full KL-radius step tried first (1: standard TRPO)")
        max_kl: float = hparams.hyperparameter(
            0.01, help="KL radius δ of TRPO's own step (TRPO does not take the shared trust region)", range=hparams.POSITIVE
        )
        damping: float = hparams.damping(1e-3, "damping δ of the solve (F + δI) x = g")
        cg_iters: int = hparams.hyperparameter(15, help=_CG_ITERS_HELP, range=hparams.POSITIVE_INT)
        backtrack_iters: int = hparams.hyperparameter(10, help="line-search trials before the update is rejected",
                                                 range=hparams.POSITIVE_INT)
        backtrack_ratio: float = hparams.hyperparameter(0.8, help="factor the step shrinks by between line-search trials",
                                                   range=hparams.Range("float", 0.0, 1.0, low_open=True, high_open=True))
        fisher_subsample: float = hparams.hyperparameter(1.0, help=_SUBSAMPLE_HELP, range=_FRACTION)

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.damping = float(self.hp.damping)
        self.cg_iters = self.hp.cg_iters
        self.backtrack_iters = self.hp.backtrack_iters
        self.backtrack_ratio = float(self.hp.backtrack_ratio)
        self.fisher_subsample = float(self.hp.fisher_subsample)
        self.rejected_updates = 0

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        dist = self.actor.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        old_dist, old_logp = detached(dist), logp.detach()
        surrogate = (torch.exp(logp - old_logp) * batch.advantages).mean()
        grad = flatten(torch.autograd.grad(surrogate, self.params))
        old_surrogate = float(surrogate.detach())
        info = {"cg_residual": 0.0, "expected_gain": 0.0}
        if bool(torch.isfinite(grad).all()) and float(grad.norm()) > 0.0:
            x, fx, residual = _cg_solve(self.actor, batch.obs, grad, self.damping, self.cg_iters, self.fisher_subsample)
            info["cg_residual"] = residual
            beta = kl_radius_scale(float(torch.dot(x, fx)), self.max_kl)
            if beta is not None:
                full_step = self.lr * beta * x
                old = flatten([p.detach() for p in self.params]).clone()
                search = line_search(self.actor, self.params, batch, old, full_step, self.max_kl * self.kl_accept, old_dist,
                                     old_logp, old_surrogate, self.backtrack_iters, self.backtrack_ratio)
                info.update(search, expected_gain=search["step_fraction"] * float(torch.dot(grad, full_step)))
        if not info.get("ls_accepted"):
            self.rejected_updates += 1
            info.update(rejected(self.backtrack_iters))
        info["rejected_updates"] = float(self.rejected_updates)
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"rejected_updates": self.rejected_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rejected_updates = int(state.get("rejected_updates", 0))
