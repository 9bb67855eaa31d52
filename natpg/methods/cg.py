"""Natural gradient by conjugate gradient: the paper's AC-CG (fixed step) and TRPO (KL radius
and backtracking line search).

Both solve ``(F + δI) x = g`` with :func:`natpg.linalg.conjugate_gradient`, never forming F:
each CG iteration costs one Fisher-vector product (:func:`natpg.scores.fisher_vector_product`,
the Gauss–Newton form through the distribution parameters, exact for categorical and Gaussian
policies: the true Fisher, not the empirical one).

- ``ac-cg`` steps ``η x`` (SMAC paper's AC-CG baseline; η per env in its Table 2).
- ``trpo`` scales ``x`` to the KL radius, ``β = sqrt(2 δ_KL / xᵀ(F+δI)x)``, then backtracks
  ``β ← 0.8 β`` until the realised mean KL(π_old‖π_new) on the batch is at most ``max_kl`` *and*
  the surrogate ``mean(ratio · A)`` strictly improves. If no trial passes, the parameters are
  restored and the update is reported as rejected (``ls_accepted`` = 0).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from natpg.linalg import check_positive, conjugate_gradient
from natpg.methods.base import PolicyBatch, PreconditionedRule, UpdateRule, _detached
from natpg.methods.registry import register
from natpg.methods.trust_region import kl_radius_scale, line_search
from natpg.scores import ScoreBatch, fisher_vector_product, flatten

__all__ = ["ACCG", "TRPO"]


def _check_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_fraction(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return v


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

    def __init__(
        self,
        actor,
        *,
        lr: float = 8e-2,
        damping: float = 0.1,
        cg_iters: int = 10,
        fisher_subsample: float = 1.0,
        batch_size: int | None = None,
        **shared: Any,
    ):
        super().__init__(actor, lr=lr, batch_size=batch_size, **shared)
        self.damping = check_positive("damping", damping)
        self.cg_iters = _check_int("cg_iters", cg_iters)
        self.fisher_subsample = _check_fraction("fisher_subsample", fisher_subsample)

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

    def __init__(
        self,
        actor,
        *,
        lr: float = 1.0,
        max_kl: float = 0.01,
        damping: float = 1e-3,
        cg_iters: int = 15,
        backtrack_iters: int = 10,
        backtrack_ratio: float = 0.8,
        fisher_subsample: float = 1.0,
    ):
        super().__init__(actor, lr=lr)
        self.max_kl = check_positive("max_kl", max_kl)
        self.damping = check_positive("damping", damping)
        self.cg_iters = _check_int("cg_iters", cg_iters)
        self.backtrack_iters = _check_int("backtrack_iters", backtrack_iters)
        ratio = check_positive("backtrack_ratio", backtrack_ratio)
        if ratio >= 1.0:
            raise ValueError(f"backtrack_ratio must be in (0, 1), got {backtrack_ratio!r}")
        self.backtrack_ratio = ratio
        self.fisher_subsample = _check_fraction("fisher_subsample", fisher_subsample)
        self.rejected_updates = 0

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        dist = self.actor.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        old_dist, old_logp = _detached(dist), logp.detach()
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
                search = line_search(self.actor, self.params, batch, old, full_step, self.max_kl, old_dist, old_logp,
                                     old_surrogate, self.backtrack_iters, self.backtrack_ratio)
                info.update(search, expected_gain=search["step_fraction"] * float(torch.dot(grad, full_step)))
        if not info.get("ls_accepted"):
            self.rejected_updates += 1
            info.update(ls_accepted=0.0, backtracks=float(self.backtrack_iters), step_fraction=0.0,
                        surrogate_gain=0.0, ls_kl=0.0)
        info["rejected_updates"] = float(self.rejected_updates)
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"rejected_updates": self.rejected_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rejected_updates = int(state.get("rejected_updates", 0))
