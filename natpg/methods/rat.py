"""RAT: randomised advantage transformation (arXiv 2605.18591).

By Woodbury the damped natural gradient is a vanilla policy gradient with transformed
advantages: ``w* = Sᵀ(λB·I + SSᵀ)⁻¹A``. RAT approximates the transformation by randomised
block Kaczmarz over on-policy minibatches and reuses each rollout for several epochs.

One update (one rollout of B samples), as implemented here:

1. Advantages centred and divided by their RMS; ``π_old`` = the policy before the update.
2. ``w = 0``. For ``epochs`` passes, for each random minibatch τ of ``batch_size`` = b samples:

   - scores ``S_τ`` at the *current* parameters (factorised: only ``S_τS_τᵀ``, ``S_τw`` and
     ``S_τᵀc`` are formed, never ``S_τ``), importance ratios ``ρ = π/π_old`` clamped to
     ``[1/ratio_clip, ratio_clip]``;
   - Kaczmarz step on the importance-weighted damped least-squares fit of A by S w
     (``Σ_i ρ_i (A_i − s_iᵀw)²``, the on-policy fit rewritten for reused data)::

         r = A_τ − S_τ w
         w ← w + S_τᵀ D (λb·I + S_τS_τᵀ D)⁻¹ r,     D = diag(ρ)

   - step ``θ ← θ + α w`` with ``α = min(lr, max_step/‖w‖)`` (step clipping).

   ``w`` is carried across minibatches and epochs of the rollout while θ moves: it is the
   running Kaczmarz estimate of the natural gradient, each new block's residual is taken
   against scores at the moved parameters, and the importance weights account for the data
   having been drawn from ``π_old``. It restarts at 0 on each new rollout (new advantages).
   Every step applies the whole current estimate (as SGD would with ``.grad = −w``), so one
   rollout moves θ by about ``epochs·(B/b)·α·w``; the learning-rate adaptation below is what
   keeps that in check.
3. Once per rollout the learning rate follows the realised ``KL(π_old‖π)`` on the batch:
   ÷1.5 above ``2·kl_target``, ×1.5 below ``kl_target/2``, kept in ``[lr_min, lr_max]``.

Defaults suit natpg's trainer defaults (T = 1000, one env); the authors' settings
(λ = 0.1, 4 epochs × 8 minibatches, lr 0.05 within [1e-4, 0.05], KL target 0.008) are the
``rat-authors`` preset. See docs/isopo_rat.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import kl_divergence

from natpg.linalg import kaczmarz_block_coefficients
from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PolicyBatch, UpdateRule
from natpg.methods.registry import register
from natpg.fisher import detached
from natpg.scores import compute_scores, flatten, unflatten

__all__ = ["RAT", "adapt_lr"]

#: Factor of the once-per-rollout learning-rate adaptation (authors' value).
LR_FACTOR = 1.5


def adapt_lr(lr: float, kl: float, target: float, lr_min: float, lr_max: float) -> float:
    """KL-adaptive learning rate: ÷1.5 if ``kl > 2·target``, ×1.5 if ``kl < target/2``, clamped."""
    if kl > 2.0 * target:
        lr /= LR_FACTOR
    elif kl < 0.5 * target:
        lr *= LR_FACTOR
    return min(max(lr, lr_min), lr_max)


@register
class RAT(UpdateRule):
    name = "rat"
    summary = "randomised advantage transformation: block Kaczmarz on minibatches, multi-epoch, KL-adaptive lr"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.Hyperparameters):
        lr: float = hparams.lr(0.02, "initial step size, adapted to the KL target within [lr_min, lr_max]")
        damping: float = hparams.damping(0.1, "damping λ of each block-Kaczmarz solve")
        batch_size: int = hparams.hyperparameter(250, help="minibatch (Kaczmarz block) size", range=hparams.POSITIVE_INT)
        epochs: int = hparams.hyperparameter(4, help="passes over the rollout per update", range=hparams.POSITIVE_INT)
        max_step: float = hparams.hyperparameter(1.0, help="largest parameter step ‖lr·w‖ per minibatch (the step is clipped)",
                                            range=hparams.POSITIVE)
        ratio_clip: float = hparams.hyperparameter(
            10.0, help="importance ratios are clamped to [1/ratio_clip, ratio_clip] (>= 1)", range=hparams.POSITIVE
        )
        kl_target: float = hparams.hyperparameter(0.008, help="KL per update the step size is adapted to", range=hparams.POSITIVE)
        lr_min: float = hparams.hyperparameter(1e-4, help="lower bound of the adapted lr", range=hparams.POSITIVE)
        lr_max: float = hparams.hyperparameter(0.02, help="upper bound of the adapted lr", range=hparams.POSITIVE)

        def check(self) -> None:
            super().check()
            if self.ratio_clip < 1.0:
                raise ValueError(
                    f"ratio_clip must be >= 1 (ratios are clamped to [1/ratio_clip, ratio_clip]), got {self.ratio_clip!r}"
                )
            if self.lr_min > self.lr_max:
                raise ValueError(f"lr_min {self.lr_min} must be at most lr_max {self.lr_max}")
            if not self.lr_min <= self.lr <= self.lr_max:
                raise ValueError(f"lr {self.lr} must lie in [lr_min, lr_max] = [{self.lr_min}, {self.lr_max}]")

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        h = self.hp
        self.damping = float(h.damping)
        self.batch_size, self.epochs = h.batch_size, h.epochs
        self.max_step, self.ratio_clip = float(h.max_step), float(h.ratio_clip)
        self.kl_target, self.lr_min, self.lr_max = float(h.kl_target), float(h.lr_min), float(h.lr_max)
        self.last_direction: torch.Tensor | None = None  # final Kaczmarz iterate w of the last update

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        n = len(batch)
        adv = batch.advantages - batch.advantages.mean()
        adv = adv / (adv.pow(2).mean().sqrt() + 1e-8)
        with torch.no_grad():
            old_dist = detached(self.actor.distribution(batch.obs))
            old_log_prob = old_dist.log_prob(batch.actions)
        w = torch.zeros(sum(p.numel() for p in self.params), dtype=adv.dtype, device=adv.device)
        lr = self.lr
        steps = clipped_steps = 0
        residuals: list[float] = []
        ratio_clipped = 0.0
        for epoch in range(self.epochs):
            for idx in torch.randperm(n).split(self.batch_size):
                scores, _, log_prob = compute_scores(self.actor, batch.obs[idx], batch.actions[idx])
                ratio = torch.exp(log_prob - old_log_prob[idx])
                ratio_clipped += float(((ratio < 1.0 / self.ratio_clip) | (ratio > self.ratio_clip)).float().mean())
                ratio = ratio.clamp(1.0 / self.ratio_clip, self.ratio_clip)
                target = adv[idx]
                residual = target - scores.dot(unflatten(w, self.params))
                if epoch == self.epochs - 1:
                    residuals.append(float(residual.pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)))
                coef = kaczmarz_block_coefficients(scores.gram(), residual, self.damping, ratio)
                w = w + flatten(scores.weighted_sum(coef))
                norm = float(w.norm())
                alpha = lr if norm * lr <= self.max_step else self.max_step / norm
                clipped_steps += alpha < lr
                steps += 1
                with torch.no_grad():
                    for p, dw in zip(self.params, unflatten(w, self.params)):
                        p.add_(dw, alpha=alpha)
        with torch.no_grad():
            kl = float(kl_divergence(old_dist, self.actor.distribution(batch.obs)).mean())
        if math.isfinite(kl):
            self.lr = adapt_lr(lr, kl, self.kl_target, self.lr_min, self.lr_max)
        self.last_direction = w.detach()
        return {
            "rat_lr": lr,
            "rat_kl": kl,
            "rat_direction_norm": float(w.norm()),
            "rat_residual": sum(residuals) / max(len(residuals), 1),
            "rat_step_clipped": clipped_steps / steps,
            "rat_ratio_clipped": ratio_clipped / steps,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lr = float(state["lr"])
