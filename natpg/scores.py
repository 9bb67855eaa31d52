"""Per-sample scores s_i = ∇θ log π(a_i|s_i), for any actor, held factorised where possible.

An actor is any ``nn.Module`` with ``distribution(obs) -> torch.distributions.Distribution``
whose ``log_prob(actions)`` gives one log-probability per sample (:class:`natpg.policies.ActorLike`).
Its trainable parameters are split into *blocks*, each computed by one of two paths:

**Factorised (fast) path.** For a linear layer y = W a + b, the per-sample gradient of log π
is the rank-1 δ_i a_iᵀ (and δ_i for the bias), where a_i is the layer input and
δ_i = ∂ log π(a_i|s_i)/∂y_i. One forward pass with hooks and one backward pass to the layer
outputs give every a_i and δ_i, hence without materialising S (B×d):

- per-sample squared norms ‖s_i‖² = Σ_layers ‖δ_i‖² (‖a_i‖² + 1),
- weighted sums Σ_i c_i s_i (the policy gradient, the mean score ℓ̄, ...) as one matmul per layer,
- products S v and the Gram matrix SSᵀ = Σ_layers (δδᵀ) ⊙ (aaᵀ + 1).

A :class:`~natpg.policies.BroadcastParameter` (e.g. natpg's Gaussian log-std) is expanded to
the batch in the forward pass, so its per-sample gradients are the gradient of that expanded
tensor. A layer takes this path when it is called exactly once per forward pass, on a
(B, in) input, and its parameters are used nowhere else (checked on the autograd graph:
a weight tied to another layer, or a Linear called twice, goes to the general path).

A Conv2d layer (one group) can take this path too, on request (``unfold_conv=True``): its
per-sample weight gradient is Σ_t δ_t a_tᵀ over the L output positions t, with a_t the
unfolded input patch (``torch.nn.functional.unfold``) and δ_t the output gradient there; the
block keeps a (B, L, C_in·kh·kw) and δ (B, L, C_out), and materialises the per-sample
gradients (B·numel) only for norms, Gram matrices and S. K-FAC's Kronecker factors need
exactly a and δ; for per-sample scores it is not the default, being no faster than torch.func
on natpg's MinAtar CNN (measured in docs/methods.md).

**General path.** Every other trainable parameter — a plain ``nn.Parameter`` log-std as
CleanRL and SB3 write it, LayerNorm, Conv2d, Embedding, tied or shared weights, custom
modules — gets its per-sample gradients from ``torch.func``: ``vmap(grad(log π))`` over the
samples with ``functional_call``, one (B, *shape) tensor per parameter (memory B·numel).
Each such parameter tensor is its own block. Samples must not interact inside the actor
(BatchNorm in training mode, dropout): per-sample scores are then not defined.

The :class:`ScoreBatch` interface is the same for both kinds of block; ``path="factorised"``
or ``path="general"`` in :func:`compute_scores` forces one path (for tests and timing).

Fisher-vector products are in :mod:`natpg.fisher`. This module stays one although it is a
little over 400 lines: the two paths meet in every method of :class:`ScoreBatch` and in
:func:`compute_scores`, which sends each parameter to one of them; the torch.func path on its
own is the one function :func:`per_sample_grads`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.distributions import Distribution

from natpg._moved import moved_names
from natpg.policies import BroadcastParameter

__all__ = [
    "ScoreBatch", "compute_scores", "flatten", "unflatten", "trainable_parameters",
    "fisher_vector_product", "damped_natural_gradient", "distribution_parameters", "per_sample_grads",
]

PATHS = ("auto", "factorised", "general")

# Fisher-vector products and the exact damped natural gradient live in natpg.fisher (which
# imports this module); their names stay importable from here.
__getattr__ = moved_names(__name__, dict.fromkeys(
    ["detached", "distribution_parameters", "fisher_vector_product", "damped_natural_gradient"], "natpg.fisher"))


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
    """One share of the scores: a layer (Linear or Conv2d: inputs ``a``, output gradients
    ``delta``), a broadcast parameter, or one parameter tensor of the general path
    (``delta`` its per-sample gradients)."""

    module: nn.Module | None
    params: list[nn.Parameter]
    output: Tensor | None = None
    #: Layer inputs: (B, in) for a Linear layer, the unfolded patches (B, L, C_in·kh·kw) of a
    #: Conv2d with L output positions; None for other blocks.
    a: Tensor | None = None
    #: Output gradients ∂ log π/∂y, (B, out) for a Linear layer, (B, L, C_out) for a Conv2d;
    #: the per-sample gradients (B, *shape) for the other blocks.
    delta: Tensor | None = None
    #: A stable name (module name for layers and broadcast parameters, the parameter's name
    #: for the general path): the key of per-block state such as K-FAC's running factors.
    name: str = ""
    #: "linear", "conv", "broadcast" or "general".
    kind: str = "linear"
    #: Per-sample gradients of each parameter, (B, numel), once materialised.
    per_sample: list[Tensor] | None = None

    @property
    def linear(self) -> bool:
        return self.kind == "linear"

    @property
    def layer(self) -> bool:
        """A Linear or Conv2d layer: per-sample gradients Σ_t δ_t a_tᵀ (and Σ_t δ_t for the bias)."""
        return self.kind in ("linear", "conv")

    def spatial(self) -> tuple[Tensor, Tensor]:
        """A layer's inputs (B, L, in) and output gradients (B, L, out); L = 1 for a Linear layer."""
        if self.kind == "linear":
            return self.a[:, None], self.delta[:, None]
        return self.a, self.delta


@dataclass
class ScoreBatch:
    """The per-sample scores of a batch, block by block (see module docstring).

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

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0].delta.dtype if self.blocks else self.params[0].dtype

    @property
    def device(self) -> torch.device:
        return self.blocks[0].delta.device if self.blocks else self.params[0].device

    # -- per-sample quantities -------------------------------------------------------------
    def _per_sample(self, block: _Block) -> list[Tensor]:
        """The per-sample gradients of each of the block's parameters, (B, numel) each
        (memory B·numel; materialised once for a layer, a view otherwise)."""
        if block.per_sample is None:
            if block.layer:
                a, d = block.spatial()
                block.per_sample = [torch.bmm(d.transpose(1, 2), a).reshape(self.num_samples, -1)]
                if len(block.params) == 2:
                    block.per_sample.append(d.sum(1))
            else:
                return [block.delta.reshape(self.num_samples, -1)]
        return block.per_sample

    def _block_sq_norms(self, block: _Block) -> Tensor:
        if block.linear:  # rank-1 per sample: ‖δ aᵀ‖² = ‖δ‖²‖a‖²
            dd = torch.linalg.vector_norm(block.delta, dim=1).square()
            aa = (block.a * block.a).sum(1)
            return dd * (aa + (1.0 if len(block.params) == 2 else 0.0))
        return sum(torch.linalg.vector_norm(g, dim=1).square() for g in self._per_sample(block))

    def sq_norms(self) -> Tensor:
        """‖s_i‖² for every sample, shape (B,)."""
        if not self.blocks:
            return torch.zeros(self.num_samples, dtype=self.dtype, device=self.device)
        return sum(self._block_sq_norms(b) for b in self.blocks)

    def layer_grams(self) -> list[Tensor]:
        """Per-block Gram matrices ⟨s_i, s_j⟩ restricted to that block's parameters, each (B, B)."""
        grams = []
        for b in self.blocks:
            if b.linear:  # ⟨δ_i a_iᵀ, δ_j a_jᵀ⟩ = (δ_i·δ_j)(a_i·a_j)
                aa = b.a @ b.a.T
                grams.append((b.delta @ b.delta.T) * (aa + 1.0 if len(b.params) == 2 else aa))
            else:
                grams.append(sum(g @ g.T for g in self._per_sample(b)))
        return grams

    def gram(self) -> Tensor:
        """SSᵀ, shape (B, B)."""
        if not self.blocks:
            return torch.zeros(self.num_samples, self.num_samples, dtype=self.dtype, device=self.device)
        return sum(self.layer_grams())

    def _block_grads(self, block: _Block, c: Tensor) -> list[Tensor]:
        if block.layer:  # Σ_i c_i Σ_t δ_it a_itᵀ: one matmul over samples and positions
            a, d = block.spatial()
            d = (d * c.to(d.dtype)[:, None, None]).reshape(-1, d.shape[-1])
            grads = [(d.T @ a.reshape(-1, a.shape[-1])).view_as(block.params[0])]
            if len(block.params) == 2:
                grads.append(d.sum(0))
            return grads
        d = block.delta.reshape(self.num_samples, -1)
        return [(c.to(d.dtype) @ d).view_as(block.params[0])]  # a vector-matrix product: no B×d temporary

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
        out = torch.zeros(self.num_samples, dtype=self.dtype, device=self.device)
        for p, v in zip(self.params, vector):
            block = self.blocks[self._index[id(p)][0]]
            if not block.layer:
                out = out + block.delta.reshape(self.num_samples, -1) @ v.reshape(-1).to(block.delta.dtype)
                continue
            a, d = block.spatial()
            if p is block.params[0]:  # Σ_t δ_tᵀ V a_t
                out = out + ((a @ v.reshape(d.shape[-1], -1).T) * d).sum((1, 2))
            else:
                out = out + d.sum(1) @ v
        return out

    def matrix(self) -> Tensor:
        """The dense B×d score matrix S, columns in ``params`` order (memory B·d)."""
        cols = []
        for p in self.params:
            bi, pi = self._index[id(p)]
            cols.append(self._per_sample(self.blocks[bi])[pi])
        return torch.cat(cols, 1)


def _parameter_uses(root: Tensor) -> Counter:
    """How many times each leaf tensor (by id) enters the autograd graph of ``root``: the
    number of graph edges into its AccumulateGrad node. A parameter of a Linear layer called
    once and used nowhere else has exactly one."""
    uses: Counter = Counter()
    if root.grad_fn is None:
        return uses
    seen, stack = {root.grad_fn}, [root.grad_fn]
    while stack:
        node = stack.pop()
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            variable = getattr(nxt, "variable", None)
            if variable is not None:  # AccumulateGrad: a leaf
                uses[id(variable)] += 1
            elif nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return uses


def _plain_conv(module: nn.Conv2d) -> bool:
    """A Conv2d whose output is conv2d(input, weight, bias) with one group (not a subclass
    that transforms its weight in its own forward)."""
    plain = type(module).forward is nn.Conv2d.forward and type(module)._conv_forward is nn.Conv2d._conv_forward
    return plain and module.groups == 1


def _conv_patches(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """The input patches of ``conv`` on ``x`` (B, C_in, H, W): a (B, L, C_in·kh·kw) tensor, L the
    number of output positions, such that ``y[:, :, l] = W.view(C_out, -1) @ patches[:, l] + b``.

    Padding (zeros or ``padding_mode``, integer or ``"same"``/``"valid"``) is applied as the
    layer applies it; stride and dilation are unfold's."""
    if conv.padding == "valid":
        pads = [0, 0, 0, 0]
    elif conv.padding == "same":  # as torch pads for it: the odd pixel at the end
        pads = []
        for d, k in zip(reversed(conv.dilation), reversed(conv.kernel_size)):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        pads = [conv.padding[1], conv.padding[1], conv.padding[0], conv.padding[0]]
    if any(pads):
        x = F.pad(x, pads, mode="constant" if conv.padding_mode == "zeros" else conv.padding_mode)
    return F.unfold(x, conv.kernel_size, dilation=conv.dilation, stride=conv.stride).transpose(1, 2)


class _LogProb(nn.Module):
    """``actor.distribution(obs).log_prob(actions)`` as a module's forward, for ``functional_call``."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.actor.distribution(obs).log_prob(actions)


def per_sample_grads(actor: nn.Module, obs: Tensor, actions: Tensor, params: Sequence[nn.Parameter]) -> list[Tensor]:
    """∇ log π(a_i|s_i) with respect to each of ``params``, per sample: a list of
    (B, *p.shape) tensors, by ``torch.func.vmap(grad(...))`` over the samples with
    ``functional_call`` (every other parameter and buffer held fixed)."""
    from torch.func import functional_call, grad, vmap

    wrapper = _LogProb(actor)
    names = {}
    for name, p in wrapper.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    wanted = {names[id(p)]: p.detach() for p in params}

    def log_prob_one(differentiated: dict[str, Tensor], o: Tensor, a: Tensor) -> Tensor:
        # Parameters not passed (and buffers) are the module's own; tied ones follow theirs.
        return functional_call(wrapper, differentiated, (o.unsqueeze(0), a.unsqueeze(0))).sum()

    # Argument validation in torch.distributions branches on tensor values, which vmap cannot
    # trace; the values were already checked by the batched forward pass.
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        with torch.no_grad():
            grads = vmap(grad(log_prob_one), in_dims=(None, 0, 0))(wanted, obs.detach(), actions.detach())
    finally:
        Distribution.set_default_validate_args(validate)
    return [grads[names[id(p)]] for p in params]


def compute_scores(actor: nn.Module, obs: Tensor, actions: Tensor, *, path: str = "auto",
                   unfold_conv: bool = False) -> tuple[ScoreBatch, Distribution, Tensor]:
    """Per-sample scores of ``actions`` under ``actor`` at ``obs``: one forward pass (with
    hooks on Linear layers and broadcast parameters), one backward pass to the layer outputs
    for the factorised blocks, and ``torch.func`` per-sample gradients for every parameter
    outside them (see the module docstring).

    ``path``: ``"auto"`` (factorised where possible, general elsewhere), ``"factorised"``
    (an error if some parameter needs the general path) or ``"general"`` (torch.func for
    every parameter). ``unfold_conv``: also put every Conv2d layer with one group on the
    factorised path, as its unfolded input patches and output gradients (what K-FAC's
    Kronecker factors need); off by default, since for per-sample scores it was measured no
    faster than torch.func (docs/methods.md). Returns the scores, the distribution at
    the current parameters and the log-probabilities of ``actions`` (detached).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    n = obs.shape[0]
    params = trainable_parameters(actor)
    records: list[_Block] = []
    handles = []
    module_names: dict[int, str] = {}
    for name, m in actor.named_modules(remove_duplicate=False):
        module_names.setdefault(id(m), name or "root")

    def linear_hook(module, inputs, output):
        a = inputs[0] if inputs else None
        fits = (isinstance(a, Tensor) and a.dim() == 2 and a.shape[0] == n and output.dim() == 2 and output.requires_grad
                and module.weight.requires_grad)  # a trainable bias alone goes to the general path
        records.append(_Block(module, [p for p in (module.weight, module.bias) if p is not None and p.requires_grad],
                              output if fits else None, a.detach() if fits else None, name=module_names[id(module)]))

    def conv_hook(module, inputs, output):
        x = inputs[0] if inputs else None
        fits = (isinstance(x, Tensor) and x.dim() == 4 and x.shape[0] == n and output.dim() == 4 and output.requires_grad
                and module.weight.requires_grad and _plain_conv(module))
        records.append(_Block(module, [p for p in (module.weight, module.bias) if p is not None and p.requires_grad],
                              output if fits else None, _conv_patches(module, x.detach()) if fits else None,
                              name=module_names[id(module)], kind="conv"))

    def broadcast_hook(module, inputs, output):
        fits = output.dim() >= 1 and output.shape[0] == n and output.requires_grad
        records.append(_Block(module, [module.value] if module.value.requires_grad else [], output if fits else None,
                              name=module_names[id(module)], kind="broadcast"))

    if path != "general":
        for m in actor.modules():
            if isinstance(m, nn.Linear):
                handles.append(m.register_forward_hook(linear_hook))
            elif unfold_conv and isinstance(m, nn.Conv2d):
                handles.append(m.register_forward_hook(conv_hook))
            elif isinstance(m, BroadcastParameter):
                handles.append(m.register_forward_hook(broadcast_hook))
    try:
        with torch.set_grad_enabled(path != "general"):
            dist = actor.distribution(obs)
            logp = dist.log_prob(actions)
    finally:
        for h in handles:
            h.remove()
    if logp.shape != (n,):
        raise ValueError(f"actor.distribution(obs).log_prob(actions) must have shape ({n},), got {tuple(logp.shape)}")

    blocks: list[_Block] = []
    if records:
        uses = _parameter_uses(logp)
        calls = Counter(id(r.module) for r in records)
        for r in records:
            if r.params and r.output is not None and calls[id(r.module)] == 1 and all(uses[id(p)] == 1 for p in r.params):
                blocks.append(r)
    covered = {id(p) for b in blocks for p in b.params}
    general = [p for p in params if id(p) not in covered]
    if general and path == "factorised":
        shapes = [tuple(p.shape) for p in general]
        raise ValueError(
            f"path='factorised' needs every actor parameter in an nn.Linear layer called once or a BroadcastParameter "
            f"(or, with unfold_conv=True, an nn.Conv2d layer with groups=1 called once); "
            f"parameters of shapes {shapes} are not: use path='auto' (torch.func per-sample gradients for them)"
        )
    if blocks:
        deltas = torch.autograd.grad(logp.sum(), [b.output for b in blocks], allow_unused=True)
        for b, d in zip(blocks, deltas):
            b.delta = torch.zeros_like(b.output).detach() if d is None else d.detach()
            if b.kind == "conv":  # (B, C_out, H', W') -> (B, L, C_out), positions in unfold's order
                b.delta = b.delta.flatten(2).transpose(1, 2)
            b.output = None
    if general:
        names = {id(p): name for name, p in actor.named_parameters()}
        for p, g in zip(general, per_sample_grads(actor, obs, actions, general)):
            blocks.append(_Block(None, [p], delta=g, name=names.get(id(p), ""), kind="general"))
    for r in records:
        r.output = None
    return ScoreBatch(params, blocks, n, obs.detach()), dist, logp.detach()
