"""One trust-region step for every rule: scale a direction to a KL radius, then backtrack.

Given any rule's direction ``d`` (the step the rule itself would take), the step is scaled to
the radius of the quadratic KL model, ``β = sqrt(2 δ / dᵀ F d)``, with ``F`` the exact policy
Fisher (:func:`natpg.fisher.fisher_vector_product`: one extra Fisher-vector product per
update), and then shortened by a backtracking line search, ``β ← 0.8 β``, until the realised
mean ``KL(π_old ‖ π_new)`` on the batch is at most ``δ`` and the surrogate ``mean(ratio · A)``
strictly improves — the acceptance test of TRPO (Schulman et al. 2015). If no trial passes,
the parameters stay where they were. ``kl_accept`` > 1 loosens the KL test to ``kl_accept · δ``
(OpenAI Baselines' TRPO accepts up to 1.5 δ): the quadratic model of the full step is nearly
exact, so with the strict test the full step fails by a hair on many updates and the first
backtrack (0.64 δ) is taken instead.

With this step the rules differ only in their *direction*: plain gradient (``ac-sgd``) at the
same ``δ`` is the honest step-size control for every curvature method.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from natpg.fisher import detached, fisher_vector_product
from natpg.scores import flatten, unflatten

__all__ = ["BACKTRACK_ITERS", "BACKTRACK_RATIO", "kl_radius_scale", "line_search", "rejected", "set_flat"]

#: Trials of the line search and the shrink factor between them (TRPO's usual values).
BACKTRACK_ITERS = 10
BACKTRACK_RATIO = 0.8


@torch.no_grad()
def set_flat(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    """Copy a flat vector into ``params`` (in their order)."""
    for p, v in zip(params, unflatten(flat, params)):
        p.copy_(v)


def rejected(backtracks: int) -> dict[str, float]:
    """The line-search diagnostics of an update that took no step after ``backtracks`` trials."""
    return {"ls_accepted": 0.0, "backtracks": float(backtracks), "step_fraction": 0.0, "surrogate_gain": 0.0, "ls_kl": 0.0}


def kl_radius_scale(quadratic: float, max_kl: float) -> float | None:
    """``β = sqrt(2 δ / dᵀ F d)`` given ``quadratic = dᵀ F d``, or None where the quadratic
    model has no curvature along d (zero, negative or non-finite)."""
    if not math.isfinite(quadratic) or quadratic <= 0.0:
        return None
    return math.sqrt(2.0 * max_kl / quadratic)


def fisher_quadratic(actor: nn.Module, obs: Tensor, direction: Tensor, damping: float = 0.0) -> float:
    """``dᵀ (F + damping·I) d`` at the actor's current parameters (one Fisher-vector product)."""
    matvec = fisher_vector_product(actor, obs, damping=damping)
    return float(torch.dot(direction, matvec(direction)))


@torch.no_grad()
def _evaluate(actor: nn.Module, obs: Tensor, actions: Tensor, advantages: Tensor,
              old_dist: Distribution, old_logp: Tensor) -> tuple[float, float]:
    """(surrogate ``mean(ratio·A)``, mean ``KL(π_old‖π)``) at the current parameters."""
    dist = actor.distribution(obs)
    ratio = torch.exp(dist.log_prob(actions) - old_logp)
    return float((ratio * advantages).mean()), float(kl_divergence(old_dist, dist).mean())


def line_search(
    actor: nn.Module,
    params: Sequence[nn.Parameter],
    batch,
    old: Tensor,
    full_step: Tensor,
    max_kl: float,
    old_dist: Distribution,
    old_logp: Tensor,
    old_surrogate: float,
    iters: int = BACKTRACK_ITERS,
    ratio: float = BACKTRACK_RATIO,
) -> dict[str, float]:
    """Try ``old + f · full_step`` for f = 1, ratio, ratio², … (``iters`` trials); keep the
    first whose realised KL is ≤ ``max_kl`` and whose surrogate beats ``old_surrogate``. If none
    passes, the parameters are put back to ``old``. Returns ``ls_accepted``, ``backtracks``,
    ``step_fraction`` (f, 0 if rejected), ``surrogate_gain`` and ``ls_kl``."""
    fraction = 1.0
    for k in range(iters):
        set_flat(params, old + fraction * full_step)
        surrogate, kl = _evaluate(actor, batch.obs, batch.actions, batch.advantages, old_dist, old_logp)
        if math.isfinite(surrogate) and math.isfinite(kl) and kl <= max_kl and surrogate > old_surrogate:
            return {"ls_accepted": 1.0, "backtracks": float(k), "step_fraction": fraction,
                    "surrogate_gain": surrogate - old_surrogate, "ls_kl": kl}
        fraction *= ratio
    set_flat(params, old)
    return rejected(iters)


def constrain(rule, batch, step) -> dict[str, float]:
    """Run ``step(batch)`` (the rule's own update), take the change of the parameters as the
    direction ``d``, and replace it by the trust-region step of radius ``rule.max_kl``.

    Diagnostics added to the rule's own: ``tr_scale`` (β relative to the rule's own step:
    > 1 lengthens it), ``tr_kl_model`` (½ dᵀFd of the rule's own step: the KL it would have
    taken by the quadratic model) and the line search's (see :func:`line_search`)."""
    params = rule.params
    with torch.no_grad():
        dist = rule.actor.distribution(batch.obs)
        old_logp = dist.log_prob(batch.actions)
    old_dist = detached(dist)
    old = flatten([p.detach() for p in params]).clone()
    info = step(batch)
    direction = flatten([p.detach() for p in params]) - old
    set_flat(params, old)
    quadratic = fisher_quadratic(rule.actor, batch.obs, direction)
    beta = kl_radius_scale(quadratic, rule.max_kl)
    info.update(tr_scale=0.0 if beta is None else beta, tr_kl_model=0.5 * quadratic if math.isfinite(quadratic) else math.inf)
    if beta is None:  # no step, or no curvature along it: nothing to take
        info.update(rejected(0))
        return info
    old_surrogate = float(batch.advantages.mean())  # ratio = 1 at the old parameters
    info.update(line_search(rule.actor, params, batch, old, beta * direction, rule.max_kl * rule.kl_accept, old_dist, old_logp,
                            old_surrogate))
    return info
