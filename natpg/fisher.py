"""Fisher-vector products and the exact damped natural gradient.

The Fisher of a policy whose distribution is a function of parameters ψ(θ) (categorical
logits, Gaussian mean and std) is the Gauss–Newton form F = E_s[Jᵀ M J], J = ∂ψ/∂θ and M the
Fisher of the distribution in ψ (analytic). It equals the Hessian of KL(π_old ‖ π_θ) at
θ_old, costs one JVP and one VJP per product (no Hessian of the KL through the network), and
involves no sampled actions: it is the true Fisher of the policy, not an estimate
(:func:`fisher_vector_product`, what TRPO and the CG rules solve with).

:func:`damped_natural_gradient` is the other Fisher: the empirical one, SᵀS/B, of the
per-sample scores (:mod:`natpg.scores`), solved exactly through their Gram matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from natpg.scores import flatten, trainable_parameters

if TYPE_CHECKING:
    from natpg.scores import ScoreBatch

__all__ = ["detached", "distribution_parameters", "fisher_vector_product", "damped_natural_gradient"]


def detached(dist: Distribution) -> Distribution:
    """The same distribution with its parameters cut from the autograd graph."""
    from torch.distributions import Independent

    if isinstance(dist, Independent):
        return Independent(detached(dist.base_dist), dist.reinterpreted_batch_ndims)
    params = {k: getattr(dist, k).detach() for k in dist.arg_constraints if k in dist.__dict__}
    if "logits" in params:  # categorical: logits define it; a cached `probs` would conflict
        params = {"logits": params["logits"]}
    return type(dist)(**params, validate_args=False)


def distribution_parameters(dist: Distribution) -> tuple[Tensor, ...]:
    """(normalised logits,) of a Categorical, (mean, std) of a (diagonal) Normal."""
    from torch.distributions import Categorical, Independent, Normal

    if isinstance(dist, Independent):
        dist = dist.base_dist
    if isinstance(dist, Categorical):
        return (dist.logits,)
    if isinstance(dist, Normal):
        return (dist.loc, dist.scale)
    raise ValueError(f"Fisher-vector products support Categorical and Normal policies, got {type(dist).__name__}")


def _metric(outputs: tuple[Tensor, ...], num: int):
    """u ↦ M u / num, M the Fisher of the distribution in its own parameters."""
    if len(outputs) == 1:  # categorical logits z: M = diag(p) − p pᵀ
        p = outputs[0].detach().exp()

        def metric(u: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            (uz,) = u
            return ((p * uz - p * (p * uz).sum(-1, keepdim=True)) / num,)

        return metric
    inv_var = outputs[1].detach().pow(-2)  # Normal(μ, σ): M = diag(1/σ², 2/σ²)

    def metric(u: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        u_mean, u_std = u
        return (u_mean * inv_var / num, 2.0 * u_std * inv_var / num)

    return metric


def fisher_vector_product(
    actor: nn.Module,
    obs: Tensor,
    damping: float = 0.0,
    subsample: float = 1.0,
    generator: torch.Generator | None = None,
):
    """Return ``matvec(v) = (F + damping·I) v`` for the policy Fisher at the current parameters.

    ``F = (1/B) Σ_i J_iᵀ M_i J_i`` over the observations ``obs`` (Gauss–Newton form, exact for
    Categorical and diagonal-Gaussian policies). ``v`` and the result are flat vectors in
    the order of the actor's trainable parameters. ``subsample`` in (0, 1] evaluates F on a
    random fraction of the rows (drawn once, with ``generator``), as TRPO implementations do
    to save time. The parameters must not change while ``matvec`` is in use.
    """
    import math

    try:
        damping = float(damping)
        fraction = float(subsample)
    except (TypeError, ValueError):
        raise ValueError(f"damping and subsample must be numbers, got {damping!r}, {subsample!r}") from None
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number >= 0, got {damping!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"subsample must be in (0, 1], got {subsample!r}")
    if not isinstance(obs, Tensor) or obs.dim() < 2 or obs.shape[0] < 1:
        raise ValueError(f"obs must be a (B, obs_dim) tensor with B >= 1, got {getattr(obs, 'shape', type(obs))}")
    if fraction < 1.0:
        keep = max(1, int(round(fraction * obs.shape[0])))
        obs = obs[torch.randperm(obs.shape[0], generator=generator)[:keep]]
    params = trainable_parameters(actor)
    with torch.enable_grad():
        outputs = distribution_parameters(actor.distribution(obs))
        metric = _metric(outputs, obs.shape[0])
        # An output that no trainable parameter reaches (a frozen log-std, say) has J = 0: it
        # takes no part in the products below (autograd refuses outputs without a graph).
        live = [i for i, o in enumerate(outputs) if o.requires_grad]
        # Jᵀu is linear in u, so the graph of u ↦ Jᵀu, built once at u = 0, gives J v for any v
        # by one more backward pass (reverse-over-reverse JVP; much cheaper here than forward
        # mode through torch.func, whose per-call overhead dominates for small MLPs).
        dummies = [torch.zeros_like(outputs[i], requires_grad=True) for i in live]
        pulled = torch.autograd.grad([outputs[i] for i in live], params, dummies, create_graph=True,
                                     allow_unused=True) if live else [None] * len(params)
        pulled_flat = flatten([torch.zeros_like(p) if g is None else g for p, g in zip(params, pulled)])

    def matvec(v: Tensor) -> Tensor:
        if not pulled_flat.requires_grad:  # no trainable parameter reaches the distribution: F = 0
            return damping * v.to(pulled_flat.dtype)
        pushed = [torch.zeros_like(o) for o in outputs]
        for i, j in zip(live, torch.autograd.grad(pulled_flat, dummies, v.to(pulled_flat.dtype), retain_graph=True,
                                                  allow_unused=True)):
            if j is not None:
                pushed[i] = j
        weighted = metric(tuple(pushed))
        grads = torch.autograd.grad([outputs[i] for i in live], params, [weighted[i] for i in live], retain_graph=True,
                                    allow_unused=True)
        out = flatten([torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]).detach()
        return out + damping * v if damping else out

    return matvec


def damped_natural_gradient(scores: ScoreBatch, advantages: Tensor, damping: float) -> list[Tensor]:
    """The exact damped empirical-Fisher natural gradient ``(λI + SᵀS/B)⁻¹ SᵀA/B``.

    Computed as ``Sᵀ (λB·I + SSᵀ)⁻¹ A`` (Woodbury) from the factorised Gram matrix, a B×B
    Cholesky solve, without forming S. Returns a list aligned with ``scores.params``.
    """
    from natpg.linalg import check_positive, solve_shifted_gram

    lam = check_positive("damping", damping)
    if advantages.shape != (scores.num_samples,):
        raise ValueError(f"advantages must have shape ({scores.num_samples},), got {tuple(advantages.shape)}")
    x = solve_shifted_gram(scores.gram(), advantages, lam * scores.num_samples)
    return scores.weighted_sum(x)
