"""ISOPO: isometric policy optimisation (Abrahamsen, arXiv 2512.23353), both variants.

Single-pass approximations of the natural gradient, applied layer by layer to the actor's
``nn.Linear`` layers. For one sample the layer's score is the rank-1 ``G_i = δ_i a_iᵀ`` (plus
``δ_i`` for the bias), so the per-layer inner products ``⟨G_i, G_j⟩ = (δ_i·δ_j)(a_i·a_j + 1)``
come from one forward and one backward pass (:meth:`natpg.scores.ScoreBatch.layer_grams`):
no per-sample gradient is formed. Each microbatch of ``m = batch_size`` samples gives, per
layer, coefficients ``c_i`` and the layer step ``lr · (1/m) Σ_i c_i G_i``:

- ``isopo`` (variant A, non-interacting): ``c_i = A_i / n_i`` with ``n_i`` the sample's
  Fisher norm in that layer, measured against probe samples ``T_k`` of the same layer,
  ``n_i = sqrt(Σ_k ⟨G_i, T_k⟩²) / sqrt(Σ_k ‖T_k‖²)`` (default probes: every sample of the
  microbatch, read off the layer Gram matrix). With ``regularization = c > 0`` (default 1)
  the divisor is the authors' regularised ``sqrt(n_i² / (c·EMA[mean n²]) + 1)``; ``c = 0``
  gives the plain ``n_i`` (its c → 0 limit up to a per-layer scale).
- ``isopo-ntk`` (variant B, interacting): ``c = Ã = λ (K + λI)⁻¹ A`` with ``K`` the layer's
  m×m Gram matrix and ``λ = damping · EMA(trace(K)/m)``. Then ``(1/m) Σ_i Ã_i G_i =
  μ (μI + G_lᵀG_l/m)⁻¹ G_lᵀA/m`` with ``μ = λ/m``: the layer's damped natural gradient on the
  microbatch, scaled by μ. It never exceeds the plain gradient in any direction and tends to
  it when λ ≫ K.

Normalisation ``1/m``: in their large-damping limits (c → ∞, λ → ∞) both variants are then
exactly SGD at ``lr`` on the policy gradient, whatever the microbatch size.

Blocks other than linear layers: natpg's own Gaussian log-std (a
:class:`~natpg.policies.BroadcastParameter`) takes the plain policy gradient
``(1/m) Σ_i A_i s_i``, as in the paper's setting — the authors' code drops the advantage
there, which we read as a bug and do not copy. Every other parameter tensor outside a
factorised Linear layer (a plain ``nn.Parameter`` log-std, LayerNorm, Conv2d, Embedding, a
Linear used twice; :mod:`natpg.scores`' general path) is **its own layer**: its Gram matrix
``⟨s_i, s_j⟩`` over that tensor's entries, from its per-sample gradients, takes the place
of ``(δ_i·δ_j)(a_i·a_j + 1)``. As in the paper: no importance ratio, no clipping, one pass over the
rollout, one plain SGD step per microbatch.

``standardize_advantages`` (per microbatch: centre, divide by RMS, as GRPO's group
normalisation does in the authors' setting) is on by default for ``isopo``: per-sample
normalisation makes the step no longer invariant to a constant shift of the advantages,
and on CartPole with raw advantages variant A collapsed to a deterministic policy. The
measurements behind the defaults are in docs/isopo_rat.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from natpg.errors import NonFiniteError
from natpg.linalg import solve_shifted_gram
from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.scores import ScoreBatch, flatten

__all__ = ["ISOPO", "ISOPONTK", "fisher_norms_sq"]


def fisher_norms_sq(gram: Tensor, probes: Tensor | None = None) -> Tensor:
    """``n_i² = Σ_k ⟨G_i, T_k⟩² / Σ_k ‖T_k‖²`` from a layer's Gram matrix ``gram`` (m×m).

    The probes ``T_k`` are the samples with indices ``probes`` (None: every sample, the exact
    value under the microbatch's empirical Fisher ``F̂ = Σ_k T_kT_kᵀ``; then
    ``n_i² = G_iᵀF̂G_i / tr F̂``, and n_i ≤ ‖G_i‖ by Cauchy–Schwarz). Only the probe columns
    of ``gram`` are used.
    """
    cols = gram if probes is None else gram[:, probes]
    probe_sq = torch.diagonal(gram) if probes is None else torch.diagonal(gram)[probes]
    total = probe_sq.sum()
    if not total > 0:
        return torch.zeros(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return (cols * cols).sum(1) / total


class _Layerwise(PreconditionedRule):
    """Shared machinery: per microbatch, one coefficient vector c per layer (the subclass's
    transform of the advantages; a layer is a Linear layer or a general-path parameter
    tensor), ``A/m`` for broadcast parameters (the plain policy gradient); step
    ``lr · Σ_i c_i s_i`` block by block."""

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        batch_size: int | None = hparams.batch_size(250, "microbatch size m: one step per microbatch (None: the whole rollout)")
        ema_decay: float = hparams.hyperparameter(
            0.9, help="decay of the per-layer running average of the normalisers, in [0, 1)", range=hparams.unit_interval()
        )
        standardize_advantages: bool = hparams.hyperparameter(
            False, help="centre the advantages and divide them by their RMS, per microbatch (as GRPO's group normalisation)"
        )

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.standardize_advantages = bool(self.hp.standardize_advantages)
        self.ema_decay = float(self.hp.ema_decay)
        self.ema: list[float] = []  # one running average per layer, in block order

    def _ema(self, layer: int, value: float) -> float:
        if not math.isfinite(value):  # the layer's per-sample scores overflowed: never averaged in
            raise NonFiniteError(f"{self.name}: layer {layer}'s score statistic is {value} (its per-sample scores overflow)")
        if layer == len(self.ema):
            self.ema.append(value)  # first value initialises the average (no zero bias)
        else:
            self.ema[layer] = self.ema_decay * self.ema[layer] + (1.0 - self.ema_decay) * value
        return self.ema[layer]

    def _coefficients(self, layer: int, gram: Tensor, advantages: Tensor) -> tuple[Tensor, float]:
        """The layer's coefficients c (m,), the step being ``lr · Σ_i c_i G_i``, and one
        diagnostic number."""
        raise NotImplementedError

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        if advantages is None:
            raise ValueError(f"{self.name} transforms the advantages layer by layer: pass them to precondition_grads")
        m = scores.num_samples
        if self.standardize_advantages:
            advantages = advantages - advantages.mean()
            advantages = advantages / (advantages.pow(2).mean().sqrt() + 1e-8)
        coefs, stats, layer, ema = [], [], 0, list(self.ema)
        try:
            for block, gram in zip(scores.blocks, scores.layer_grams()):
                if block.kind == "broadcast":
                    coefs.append(advantages / m)
                    continue
                c, stat = self._coefficients(layer, gram, advantages)
                coefs.append(c)
                stats.append(stat)
                layer += 1
        except NonFiniteError:
            self.ema = ema  # no layer's running average moves on a rejected step
            raise
        return flatten(scores.weighted_sum(coefs)), self._info(stats)

    def _info(self, stats: list[float]) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ema": list(self.ema)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ema = list(state.get("ema", []))


@register
class ISOPO(_Layerwise):
    """ISOPO variant A: each sample's layer gradient normalised by its Fisher norm."""

    name = "isopo"
    summary = "ISOPO variant A: per-sample, per-layer Fisher-norm normalisation (one pass)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(_Layerwise.Hyperparameters):
        lr: float = hparams.lr(0.15)
        probes: int | None = hparams.hyperparameter(
            None, help="probe samples the Fisher norm n_i is measured against (None: every sample of the microbatch)",
            range=hparams.Range("int", 1, optional=True, words="a positive integer or None (every sample)"),
        )
        regularization: float = hparams.hyperparameter(
            1.0, help="c of the regularised divisor sqrt(n_i² / (c·EMA[mean n²]) + 1) (0: the plain divisor n_i)",
            range=hparams.Range("float", 0.0, words="a finite number >= 0 (0: the plain divisor n_i)"),
        )
        standardize_advantages: bool = hparams.hyperparameter(
            True, help="centre the advantages and divide them by their RMS, per microbatch (as GRPO's group normalisation)"
        )

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.probes = self.hp.probes
        self.regularization = float(self.hp.regularization)

    def _coefficients(self, layer: int, gram: Tensor, advantages: Tensor) -> tuple[Tensor, float]:
        m = gram.shape[0]
        probes = None if self.probes is None or self.probes >= m else torch.randperm(m)[: self.probes]
        n_sq = fisher_norms_sq(gram, probes)
        if self.regularization == 0.0:
            # A sample orthogonal to every probe has n = 0: floor it far below the layer's scale.
            floor = 1e-12 * float(n_sq.max()) + torch.finfo(n_sq.dtype).tiny
            divisor = n_sq.clamp_min(floor).sqrt()
        else:
            scale = self._ema(layer, float(n_sq.mean())) * self.regularization
            divisor = (n_sq / max(scale, torch.finfo(n_sq.dtype).tiny) + 1.0).sqrt()
        return advantages / (m * divisor.to(advantages.dtype)), float(divisor.mean())

    def _info(self, stats: list[float]) -> dict[str, float]:
        return {"isopo_divisor_mean": sum(stats) / max(len(stats), 1)}


@register
class ISOPONTK(_Layerwise):
    """ISOPO variant B: per-layer NTK transform of the microbatch advantages."""

    name = "isopo-ntk"
    summary = "ISOPO variant B: per-layer damped NTK transform of the advantages (one pass)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(_Layerwise.Hyperparameters):
        lr: float = hparams.lr(0.3)
        damping: float = hparams.damping(1.0, "λ relative to the layer's running mean NTK eigenvalue: λ = damping·EMA(trace(K)/m)")

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.damping = float(self.hp.damping)

    def _coefficients(self, layer: int, gram: Tensor, advantages: Tensor) -> tuple[Tensor, float]:
        m = gram.shape[0]
        lam = self.damping * self._ema(layer, float(torch.trace(gram)) / m)
        lam = max(lam, torch.finfo(gram.dtype).tiny)
        transformed = lam * solve_shifted_gram(gram, advantages, lam)  # Ã = λ (K + λI)⁻¹ A
        return transformed / m, lam

    def _info(self, stats: list[float]) -> dict[str, float]:
        return {"ntk_damping_mean": sum(stats) / max(len(stats), 1)}
