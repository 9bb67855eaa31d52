"""Per-sample scores s_i = ∇θ log π(a_i|s_i), held factorised.

For a linear layer y = W a + b, the per-sample gradient of log π is the rank-1 δ_i a_iᵀ
(and δ_i for the bias), where a_i is the layer input and δ_i = ∂ log π(a_i|s_i)/∂y_i.
One forward pass with hooks and one backward pass to the layer outputs give every a_i and
δ_i, hence without materialising S (B×d):

- per-sample squared norms ‖s_i‖² = Σ_layers ‖δ_i‖² (‖a_i‖² + 1),
- weighted sums Σ_i c_i s_i (the policy gradient, the mean score ℓ̄, ...) as one matmul per layer,
- products S v and the Gram matrix SSᵀ = Σ_layers (δδᵀ) ⊙ (aaᵀ + 1).

A :class:`~natpg.policies.BroadcastParameter` (e.g. the Gaussian log-std) is expanded to
the batch in the forward pass, so its per-sample gradients are the gradient of that
expanded tensor. Parameters anywhere else are not supported by this fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from natpg.policies import Actor, BroadcastParameter

__all__ = [
    "ScoreBatch", "compute_scores", "flatten", "unflatten", "trainable_parameters",
    "fisher_vector_product", "damped_natural_gradient", "distribution_parameters",
]


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(vector[offset : offset + n].view_as(t))
        offset += n
    return out


@dataclass
class _Block:
    """One module's share of the scores: a linear layer (input ``a``) or a broadcast parameter."""

    module: nn.Module
    params: list[nn.Parameter]
    output: Tensor | None = None
    a: Tensor | None = None  # (B, in) for linear layers, None for broadcast parameters
    delta: Tensor | None = None  # (B, out) output gradients, or (B, *shape) per-sample grads

    @property
    def linear(self) -> bool:
        return self.a is not None


@dataclass
class ScoreBatch:
    """The per-sample scores of a batch in factorised form (see module docstring).

    ``params`` is the actor's trainable parameter list; every list of tensors returned or
    accepted by this class is aligned with it.
    """

    params: list[nn.Parameter]
    blocks: list[_Block]
    num_samples: int
    #: The policy inputs the scores were computed on: rules whose curvature needs more
    #: than the scores of the actions taken (a true-Fisher product, K-FAC statistics of
    #: sampled actions) read them here.
    obs: Tensor | None = None
    _index: dict[int, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for bi, block in enumerate(self.blocks):
            for pi, p in enumerate(block.params):
                self._index[id(p)] = (bi, pi)

    # -- per-sample quantities -------------------------------------------------------------
    def _block_sq_norms(self, block: _Block) -> Tensor:
        d = block.delta.reshape(self.num_samples, -1)
        dd = (d * d).sum(1)
        if block.linear:
            aa = (block.a * block.a).sum(1)
            return dd * (aa + (1.0 if len(block.params) == 2 else 0.0))
        return dd

    def sq_norms(self) -> Tensor:
        """‖s_i‖² for every sample, shape (B,)."""
        return sum(self._block_sq_norms(b) for b in self.blocks)

    def layer_grams(self) -> list[Tensor]:
        """Per-block Gram matrices ⟨s_i, s_j⟩ restricted to that block's parameters, each (B, B)."""
        grams = []
        for b in self.blocks:
            d = b.delta.reshape(self.num_samples, -1)
            dd = d @ d.T
            if b.linear:
                aa = b.a @ b.a.T
                grams.append(dd * (aa + 1.0) if len(b.params) == 2 else dd * aa)
            else:
                grams.append(dd)
        return grams

    def gram(self) -> Tensor:
        """SSᵀ, shape (B, B)."""
        return sum(self.layer_grams())

    def _block_grads(self, block: _Block, c: Tensor) -> list[Tensor]:
        d = block.delta.reshape(self.num_samples, -1) * c[:, None]
        if block.linear:
            grads = [d.T @ block.a]
            if len(block.params) == 2:
                grads.append(d.sum(0))
            return grads
        return [d.sum(0).view_as(block.params[0])]

    def weighted_sum(self, c: Tensor | Sequence[Tensor]) -> list[Tensor]:
        """Σ_i c_i s_i as a list aligned with ``params`` (e.g. c = A/B gives the policy gradient).

        ``c`` may also be a sequence of (B,) tensors, one per entry of ``blocks``: block k's
        parameters then get Σ_i c[k]_i s_i (layer-wise transformed advantages, as in ISOPO).
        """
        if isinstance(c, Tensor):
            c = [c] * len(self.blocks)
        elif len(c) != len(self.blocks):
            raise ValueError(f"weighted_sum needs one coefficient vector per block ({len(self.blocks)}), got {len(c)}")
        by_block = [self._block_grads(b, cb) for b, cb in zip(self.blocks, c)]
        return [by_block[bi][pi] for bi, pi in (self._index[id(p)] for p in self.params)]

    def dot(self, vector: Sequence[Tensor]) -> Tensor:
        """S v: the inner products ⟨s_i, v⟩ for every sample, shape (B,)."""
        out = torch.zeros(self.num_samples, dtype=self.blocks[0].delta.dtype)
        for p, v in zip(self.params, vector):
            block = self.blocks[self._index[id(p)][0]]
            d = block.delta.reshape(self.num_samples, -1)
            if not block.linear:
                out = out + d @ v.reshape(-1)
            elif p is block.params[0]:
                out = out + ((block.a @ v.T) * d).sum(1)
            else:
                out = out + d @ v
        return out

    def matrix(self) -> Tensor:
        """The dense B×d score matrix S, columns in ``params`` order (memory B·d)."""
        cols = []
        for p in self.params:
            block = self.blocks[self._index[id(p)][0]]
            d = block.delta.reshape(self.num_samples, -1)
            if not block.linear:
                cols.append(d)
            elif p is block.params[0]:
                cols.append(torch.einsum("bo,bi->boi", d, block.a).reshape(self.num_samples, -1))
            else:
                cols.append(d)
        return torch.cat(cols, 1)


def compute_scores(actor: Actor, obs: Tensor, actions: Tensor) -> tuple[ScoreBatch, Distribution, Tensor]:
    """One forward pass (with hooks) and one backward pass to the layer outputs.

    Returns the factorised scores, the distribution at the current parameters and the
    log-probabilities of ``actions`` (detached).
    """
    params = trainable_parameters(actor)
    blocks: list[_Block] = []
    handles = []

    def linear_hook(module, inputs, output):
        if any(b.module is module for b in blocks):
            raise ValueError(f"module {module} is called twice in one forward pass; per-sample scores need each layer once")
        blocks.append(_Block(module, [p for p in (module.weight, module.bias) if p is not None and p.requires_grad], output, inputs[0].detach()))

    def broadcast_hook(module, inputs, output):
        blocks.append(_Block(module, [module.value], output))

    for m in actor.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, BroadcastParameter):
            handles.append(m.register_forward_hook(broadcast_hook))
    try:
        dist = actor.distribution(obs)
        logp = dist.log_prob(actions)
    finally:
        for h in handles:
            h.remove()
    covered = {id(p) for b in blocks for p in b.params}
    missing = [p.shape for p in params if id(p) not in covered]
    if missing:
        raise ValueError(
            "per-sample scores need every actor parameter in an nn.Linear layer or a BroadcastParameter; "
            f"uncovered parameters of shapes {missing}"
        )
    deltas = torch.autograd.grad(logp.sum(), [b.output for b in blocks])
    for b, d in zip(blocks, deltas):
        b.delta = d.detach()
        b.output = None
    return ScoreBatch(params, blocks, obs.shape[0], obs.detach()), dist, logp.detach()


# -- Fisher-vector products and the exact damped natural gradient -----------------------------
#
# The Fisher of a policy whose distribution is a function of parameters ψ(θ) (categorical
# logits, Gaussian mean and std) is the Gauss–Newton form F = E_s[Jᵀ M J], J = ∂ψ/∂θ and M the
# Fisher of the distribution in ψ (analytic). It equals the Hessian of KL(π_old ‖ π_θ) at
# θ_old, costs one JVP and one VJP per product (no Hessian of the KL through the network), and
# involves no sampled actions: it is the true Fisher of the policy, not an estimate.


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
    actor: Actor,
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
        # Jᵀu is linear in u, so the graph of u ↦ Jᵀu, built once at u = 0, gives J v for any v
        # by one more backward pass (reverse-over-reverse JVP; much cheaper here than forward
        # mode through torch.func, whose per-call overhead dominates for small MLPs).
        dummies = [torch.zeros_like(o, requires_grad=True) for o in outputs]
        pulled = torch.autograd.grad(outputs, params, dummies, create_graph=True, allow_unused=True)
        pulled_flat = flatten([torch.zeros_like(p) if g is None else g for p, g in zip(params, pulled)])

    def matvec(v: Tensor) -> Tensor:
        pushed = torch.autograd.grad(pulled_flat, dummies, v.to(pulled_flat.dtype), retain_graph=True, allow_unused=True)
        pushed = tuple(torch.zeros_like(o) if j is None else j for o, j in zip(outputs, pushed))
        grads = torch.autograd.grad(outputs, params, metric(pushed), retain_graph=True, allow_unused=True)
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
