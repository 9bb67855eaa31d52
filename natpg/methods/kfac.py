"""K-FAC for the actor, ACKTR-style (Martens & Grosse 2015; Wu et al. 2017), with KFC's factors
for convolutions (Grosse & Martens 2016).

Per linear layer ``y = W a + b`` the Fisher block is approximated by a Kronecker product,

    F_l ≈ E[ā āᵀ] ⊗ E[δ δᵀ] =: A ⊗ G        (ā = (a, 1) when the layer has a bias),

with ``δ = ∂ log π(ã|s)/∂y`` for actions ``ã`` *sampled from the policy* (so the true Fisher,
not the empirical one), ``A`` and ``G`` running averages (decay ``stats_decay``). With the
eigendecompositions ``A = Q_A Λ_A Q_Aᵀ``, ``G = Q_G Λ_G Q_Gᵀ`` the damped solve is exact for
the Kronecker product (ACKTR's unfactored damping):

    (A ⊗ G + λI)⁻¹ ∇W  =  Q_G [ (Q_Gᵀ ∇W̄ Q_A) ⊘ (λ_G λ_Aᵀ + λ) ] Q_Aᵀ

(∇W̄ = [∇W | ∇b]). A **Conv2d layer** (one group) is the same code with the weight read as a
(C_out, C_in·kh·kw) matrix: its per-sample gradient is ∇W̄ = Σ_t δ_t ā_tᵀ over the |T| output
positions t, with ā_t the unfolded input patch (``torch.nn.functional.unfold``: padding,
stride and dilation as the layer has them) and δ_t the output gradient there. KFC assumes
activations independent of derivatives, statistics the same at every position, and
derivatives uncorrelated between positions; then E[vec ∇W̄ vec ∇W̄ᵀ] ≈ Σ_t E[ā_t ā_tᵀ] ⊗ E[δ_t δ_tᵀ]
= |T| · Ā ⊗ Ḡ, Ā and Ḡ the averages over samples and positions. natpg's convention puts the
factor |T| on the output side:

    A = (1/(B|T|)) Σ_i Σ_t ā_it ā_itᵀ,        G = (1/B) Σ_i Σ_t δ_it δ_itᵀ        (= |T|·Ḡ).

Why: the product A ⊗ G is KFC's, on the scale of the Fisher of the layer's summed gradient,
so the damping λ and the KL clip mean what they mean for a Linear layer (without the |T| a
conv layer's curvature would be |T| times too small and its step |T| times too long before
the clip); with |T| = 1 (a 1×1 convolution on a 1×1 image) the factors are exactly the
Linear layer's; and A keeps the scale of the inputs (its bias entry is 1, as for a Linear
layer). Only the product enters the unfactored-damped solve above, so where |T| sits changes
nothing else. Kronecker factors need the layer on the factorised path of :mod:`natpg.scores`
(called once, parameters not shared; for Conv2d ``compute_scores(..., unfold_conv=True)``,
which the rule's Fisher pass uses unless ``conv_factors="diagonal"``: then Conv2d layers
stay on the general path and get the diagonal block below). Every other parameter tensor —
the Gaussian log-std (natpg's BroadcastParameter or a plain ``nn.Parameter``), LayerNorm, a Conv2d with
``groups > 1`` or a Conv2d subclass with its own forward, Embedding, a Linear used twice or
tied to another — falls back to a **diagonal Fisher block**: the running average of its
squared per-sample scores under sampled actions (for a state-independent log-std the exact
value is 2 per dimension), ``(diag + λ)⁻¹`` applied elementwise. The step is rescaled as in
ACKTR so that ``lr² ĝᵀg ≤ kl_clip`` (ĝ the preconditioned gradient; ``lr² ĝᵀg`` is twice the
quadratic KL of a step ``lr·ĝ``), then taken by SGD with momentum (step ``lr·(1−momentum)``,
ACKTR's convention).

Failures are detected and recovered, never passed on as NaN: a non-finite factor statistic
is skipped (or the running average reset from the batch); a failing eigendecomposition is
retried with growing jitter; if it still fails the layer falls back to the plain gradient.
``kfac_failures`` and ``kfac_jitter`` count these per update.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PreconditionedRule
from natpg.methods.registry import register
from natpg.scores import ScoreBatch, compute_scores

__all__ = ["KFAC", "robust_eigh", "CONV_FACTORS"]

#: The Fisher blocks a Conv2d layer may get (the ``conv_factors`` hyperparameter).
CONV_FACTORS = ("kronecker", "diagonal")


def _eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``; a module-level seam so that tests can inject failures."""
    return torch.linalg.eigh(matrix)


def robust_eigh(matrix: Tensor, max_tries: int = 4) -> tuple[Tensor | None, Tensor | None, int]:
    """Eigendecomposition of a symmetric PSD matrix in float64, with recovery.

    Returns ``(eigenvalues clamped at 0, eigenvectors, jitter retries)``, or ``(None, None,
    retries)`` if the matrix is not finite or every attempt failed. Retry k adds
    ``10^(k−7) · mean|diag|`` to the diagonal.
    """
    m = matrix.to(torch.float64)
    m = 0.5 * (m + m.T)
    if not bool(torch.isfinite(m).all()):
        return None, None, 0
    scale = max(float(m.diagonal().abs().mean()), 1e-12)
    eye = torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
    for k in range(max_tries + 1):
        jitter = 0.0 if k == 0 else scale * 10.0 ** (k - 7)
        try:
            e, q = _eigh(m + jitter * eye)
        except RuntimeError:  # torch.linalg.LinAlgError derives from RuntimeError
            continue
        if bool(torch.isfinite(e).all()) and bool(torch.isfinite(q).all()):
            return e.clamp(min=0.0), q, k
    return None, None, max_tries + 1


def _second_moment(x: Tensor, bias: bool = False, chunk: int = 65536) -> Tensor:
    """Σ_r x̄_r x̄_rᵀ over the rows of ``x`` in float64 (x̄ = (x, 1) with ``bias``), converted
    ``chunk`` rows at a time: a convolution's patches have B·|T| rows."""
    total = None
    for part in x.split(chunk):
        part = part.to(torch.float64)
        if bias:
            part = torch.cat([part, torch.ones(part.shape[0], 1, dtype=part.dtype, device=part.device)], 1)
        total = part.T @ part if total is None else total + part.T @ part
    return total


@register
class KFAC(PreconditionedRule):
    """ACKTR-style K-FAC natural gradient with a KL-clipped step."""

    name = "kfac"
    summary = "K-FAC (ACKTR): Kronecker-factored Fisher of sampled actions per Linear and Conv2d layer (diagonal elsewhere), KL-clipped step"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(hparams.MinibatchHyperparameters):
        lr: float = hparams.lr(0.25, "step size η before the KL clip (the SGD step is η·(1 − momentum), ACKTR's convention)")
        kl_clip: float = hparams.hyperparameter(
            3e-3, help="the step is shortened so that η² ĝᵀg (twice its quadratic KL) is at most this", range=hparams.POSITIVE
        )
        damping: float = hparams.damping(0.01, "damping λ of the Kronecker-factored solve (A ⊗ G + λI)⁻¹")
        momentum: float = hparams.hyperparameter(0.9, help="SGD momentum of the step, in [0, 1)", range=hparams.unit_interval())
        stats_decay: float = hparams.hyperparameter(
            0.95, help="decay of the running averages of the Kronecker factors, in [0, 1)", range=hparams.unit_interval()
        )
        conv_factors: str = hparams.hyperparameter(
            "kronecker", help="the Fisher block of a Conv2d layer (one group): kronecker (KFC's factors A ⊗ G over the "
            "unfolded patches) or diagonal (squared per-sample scores, as for any other parameter tensor)",
            range=hparams.Range("str", choices=CONV_FACTORS),
        )

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.kl_clip = float(self.hp.kl_clip)
        self.damping = float(self.hp.damping)
        self.stats_decay = float(self.hp.stats_decay)
        #: Running factor statistics: module name -> {"A", "G"} (Linear, Conv2d) or {"D"} (diagonal).
        self.factors: dict[str, dict[str, Tensor]] = {}
        self.failures_total = 0

    @property
    def momentum(self) -> float:
        return float(self.hp.momentum)

    def make_optimizer(self) -> torch.optim.Optimizer:
        # ACKTR: MomentumOptimizer(lr·(1−m), m), i.e. buf ← m·buf + u, θ ← θ − lr(1−m)·buf.
        return torch.optim.SGD(self.params, lr=self.lr * (1.0 - self.momentum), momentum=self.momentum)

    # -- statistics ---------------------------------------------------------------------------
    @staticmethod
    def batch_statistics(scores: ScoreBatch) -> dict[str, dict[str, Tensor]]:
        """Factor statistics of one batch of scores (of sampled actions), keyed by block name:
        ``{"A", "G"}`` for a Linear or Conv2d layer, ``{"D"}`` (diagonal) for any other block.

        Over B samples and the L positions of a layer (L = 1 for a Linear layer):
        ``A = Σ_i Σ_t ā_it ā_itᵀ / (B·L)`` and ``G = Σ_i Σ_t δ_it δ_itᵀ / B`` (module docstring)."""
        n = scores.num_samples
        out: dict[str, dict[str, Tensor]] = {}
        for block in scores.blocks:
            if block.layer:
                a, delta = block.spatial()
                rows = a.shape[0] * a.shape[1]
                out[block.name] = {"A": _second_moment(a.reshape(rows, -1), bias=len(block.params) == 2) / rows,
                                   "G": _second_moment(delta.reshape(rows, -1)) / n}
            else:
                delta = block.delta.reshape(n, -1).to(torch.float64)
                out[block.name] = {"D": (delta * delta).mean(0)}
        return out

    def _accumulate(self, batch_stats: dict[str, dict[str, Tensor]]) -> int:
        failures = 0
        for name, stats in batch_stats.items():
            running = self.factors.setdefault(name, {})
            for key, value in stats.items():
                if not bool(torch.isfinite(value).all()):
                    failures += 1  # keep the old statistic
                    continue
                old = running.get(key)
                if old is None or old.shape != value.shape or not bool(torch.isfinite(old).all()):
                    if old is not None:
                        failures += 1  # corrupted running average: restart from this batch
                    running[key] = value.clone()
                else:
                    running[key] = self.stats_decay * old + (1.0 - self.stats_decay) * value
        return failures

    # -- preconditioning ----------------------------------------------------------------------
    def _precondition_layer(self, name: str, g: Tensor) -> tuple[Tensor | None, int]:
        """(A ⊗ G + λI)⁻¹ applied to the (out, in[+1]) gradient matrix ``g``; None on failure."""
        stats = self.factors.get(name, {})
        if "A" not in stats or "G" not in stats:
            return None, 0
        e_a, q_a, tries_a = robust_eigh(stats["A"])
        e_g, q_g, tries_g = robust_eigh(stats["G"])
        jitter = tries_a + tries_g
        if e_a is None or e_g is None:
            return None, jitter
        g64 = g.to(torch.float64)
        v = q_g.T @ g64 @ q_a
        v = v / (e_g[:, None] * e_a[None, :] + self.damping)
        out = q_g @ v @ q_a.T
        if not bool(torch.isfinite(out).all()):
            return None, jitter
        return out.to(g.dtype), jitter

    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor):
        obs = scores.obs
        with torch.no_grad():
            sampled = self.actor.distribution(obs).sample()
        # Conv2d layers unfolded for Kronecker factors (patches and output gradients); else on
        # the general path, where they get the diagonal block.
        unfold = self.hp.conv_factors == "kronecker"
        fisher_scores, _, _ = compute_scores(self.actor, obs, sampled, unfold_conv=unfold)
        failures = self._accumulate(self.batch_statistics(fisher_scores))
        blocks = [(block.name, block.layer, block.params) for block in fisher_scores.blocks]
        del fisher_scores
        jitter = 0

        offsets: dict[int, tuple[int, int]] = {}
        start = 0
        for p in self.params:
            offsets[id(p)] = (start, p.numel())
            start += p.numel()
        natural = grad.clone()
        for name, layer, params in blocks:
            if layer:  # weight (out, in) or (out, C_in, kh, kw) as an (out, in) matrix, bias as a last column
                w = params[0]
                ws, wn = offsets[id(w)]
                gm = grad[ws : ws + wn].view(w.shape[0], -1)
                columns = gm.shape[1]
                if len(params) == 2:
                    bs, bn = offsets[id(params[1])]
                    gm = torch.cat([gm, grad[bs : bs + bn][:, None]], 1)
                pre, tries = self._precondition_layer(name, gm)
                jitter += tries
                if pre is None:
                    failures += 1  # plain-gradient fallback for this layer (natural keeps grad)
                    continue
                natural[ws : ws + wn] = pre[:, :columns].reshape(-1)
                if len(params) == 2:
                    natural[bs : bs + bn] = pre[:, -1]
            else:
                p = params[0]
                s, n = offsets[id(p)]
                diag = self.factors.get(name, {}).get("D")
                if diag is None or not bool(torch.isfinite(diag).all()):
                    failures += 1
                    continue
                natural[s : s + n] = (grad[s : s + n].to(torch.float64) / (diag.reshape(-1) + self.damping)).to(grad.dtype)
        if not bool(torch.isfinite(natural).all()):
            failures += 1
            natural = grad.clone()
        # ACKTR's KL clipping: lr² ĝᵀg ≤ kl_clip.
        vfv = self.lr**2 * float(torch.dot(natural, grad))
        scale = min(1.0, math.sqrt(self.kl_clip / vfv)) if math.isfinite(vfv) and vfv > 0 else 1.0
        self.failures_total += failures
        info = {
            "kfac_failures": float(failures),
            "kfac_failures_total": float(self.failures_total),
            "kfac_jitter": float(jitter),
            "kfac_clip_scale": scale,
            "kfac_vfv": vfv,
        }
        return scale * natural, info

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["factors"] = {name: {k: v.clone() for k, v in stats.items()} for name, stats in self.factors.items()}
        state["failures_total"] = self.failures_total
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's Optimizer.load_state_dict keeps the given momentum tensors (no copy): copy first.
        state = copy.deepcopy(state)
        super().load_state_dict(state)
        device = self.params[0].device  # a checkpoint holds CPU tensors; the factors live with the actor
        self.factors = {name: {k: v.to(device) for k, v in stats.items()} for name, stats in state.get("factors", {}).items()}
        self.failures_total = int(state.get("failures_total", 0))
