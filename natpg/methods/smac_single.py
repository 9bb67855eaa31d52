"""Single-sample SMAC: the paper's Algorithm 1, faithfully sequential.

For each sample of the rollout *in rollout order*: the score ``s = ∇θ log π(a|s)`` at the
*current* parameters, then the Sherman–Morrison step with the rank-1 Fisher ``λI + s sᵀ``
and gradient ``A s``:

    θ ← θ + η (λI + s sᵀ)⁻¹ (A s) = θ + η A s / (λ + ‖s‖²)

(the two forms are equal: ``(λI + ssᵀ)⁻¹ s = s/(λ + ‖s‖²)``). B samples are B dependent
forward/backward passes; that cost is what the paper's batch-size ablation is about.

Two interchangeable backends compute the per-sample score and take the step:

- ``mlp``: natpg's own MLP actors (:class:`~natpg.policies.GaussianActor`,
  :class:`~natpg.policies.CategoricalActor` with tanh or ReLU hidden layers) by hand — one
  matrix-vector product per layer forward and back, a rank-1 in-place update per layer —
  written into the parameters' memory directly. About 10× faster than autograd at the
  paper's network size, because a single sample is all per-call overhead.
- ``autograd``: any actor (:class:`~natpg.policies.ActorLike`), one ``torch.autograd.grad``
  of ``distribution(obs_i).log_prob(a_i)`` per sample.

``auto`` takes ``mlp`` when the actor is one it supports. Tests check that both give the
same parameters as a dense float64 reference, step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from natpg.methods import hyperparameters as hparams
from natpg.methods.base import PolicyBatch, UpdateRule
from natpg.methods.registry import register
from natpg.methods.smac import AdaptiveDampingHyperparameters, DampingControl
from natpg.policies import Actor, CategoricalActor, GaussianActor
from natpg.scores import trainable_parameters

__all__ = ["SMACSingle", "sequential_smac_sweep"]

#: Layers with more weights than this use torch for their matrix-vector products and
#: rank-1 updates (numpy's BLAS may spawn threads there, which is slow on a busy machine).
_TORCH_MIN_NUMEL = 1 << 17
_BACKENDS = ("auto", "mlp", "autograd")


def _mlp_layers(actor: Actor) -> tuple[list[nn.Linear], str] | None:
    """(linear layers, activation) if ``actor`` is an MLP actor the ``mlp`` backend supports."""
    if type(actor).distribution not in (GaussianActor.distribution, CategoricalActor.distribution):
        return None
    net = getattr(actor, "net", None)
    if not isinstance(net, nn.Sequential) or len(net) == 0:
        return None
    linears = [m for m in net if isinstance(m, nn.Linear)]
    acts = [m for m in net if not isinstance(m, nn.Linear)]
    if len(net) != 2 * len(linears) - 1 or any(not isinstance(m, nn.Linear) for m in net[::2]):
        return None
    kinds = {type(m) for m in acts}
    if kinds - {nn.Tanh, nn.ReLU} or len(kinds) > 1:
        return None
    activation = "relu" if nn.ReLU in kinds else "tanh"
    params = trainable_parameters(actor)
    expected = [p for m in linears for p in (m.weight, m.bias)]
    if isinstance(actor, GaussianActor):
        expected.append(actor.log_std.value)
    if any(m.bias is None for m in linears) or {id(p) for p in params} != {id(p) for p in expected}:
        return None
    if len(params) != len(list(actor.parameters())):  # frozen parameters: leave to autograd
        return None
    dtype = params[0].dtype
    if any(p.dtype != dtype or p.device.type != "cpu" or not p.is_contiguous() for p in params):
        return None
    if dtype not in (torch.float32, torch.float64):
        return None
    return linears, activation


class _MLPSweep:
    """Algorithm 1 over a batch for natpg's MLP actors, by hand, in place."""

    def __init__(self, actor: Actor, linears: list[nn.Linear], activation: str):
        self.gaussian = isinstance(actor, GaussianActor)
        self.tanh = activation == "tanh"
        self.dtype = linears[0].weight.dtype
        # numpy views share memory with the parameters: writing them updates the actor.
        self.w_t = [m.weight.detach() for m in linears]
        self.b_t = [m.bias.detach() for m in linears]
        self.w = [w.numpy() for w in self.w_t]
        self.b = [b.numpy() for b in self.b_t]
        self.big = [w.numel() > _TORCH_MIN_NUMEL for w in self.w_t]
        self.log_std = actor.log_std.value.detach().numpy() if self.gaussian else None

    def _forward(self, layer: int, h: np.ndarray) -> np.ndarray:
        if self.big[layer]:
            return torch.addmv(self.b_t[layer], self.w_t[layer], torch.from_numpy(h)).numpy()
        return self.w[layer] @ h + self.b[layer]

    def _backward(self, layer: int, delta: np.ndarray) -> np.ndarray:
        if self.big[layer]:
            return torch.mv(self.w_t[layer].T, torch.from_numpy(delta)).numpy()
        return delta @ self.w[layer]

    def _rank1(self, layer: int, coef: float, delta: np.ndarray, h: np.ndarray) -> None:
        if self.big[layer]:
            self.w_t[layer].addr_(torch.from_numpy(delta), torch.from_numpy(h), alpha=coef)
        else:
            self.w[layer] += np.outer(coef * delta, h)
        self.b[layer] += coef * delta

    def run(self, obs: Tensor, actions: Tensor, advantages: Tensor, lr: float, damping: float) -> Tensor:
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        obs_np = np.ascontiguousarray(obs.detach().cpu().numpy(), dtype=np_dtype)
        if self.gaussian:
            act_np = np.ascontiguousarray(actions.detach().cpu().numpy(), dtype=np_dtype).reshape(len(obs_np), -1)
        else:
            act_np = actions.detach().cpu().numpy().astype(np.int64).reshape(-1)
        adv = advantages.detach().cpu().double().tolist()
        layers = len(self.w)
        sq_norms = np.empty(len(obs_np))
        hs: list[np.ndarray] = [obs_np[0]] * layers
        deltas: list[np.ndarray] = [obs_np[0]] * layers
        for i in range(len(obs_np)):
            # Forward at the current parameters.
            h = obs_np[i]
            for layer in range(layers - 1):
                hs[layer] = h
                z = self._forward(layer, h)
                h = np.tanh(z) if self.tanh else np.maximum(z, 0.0)
            hs[-1] = h
            out = self._forward(layers - 1, h)
            # ∂ log π / ∂(network output) and, for a Gaussian, ∂ log π / ∂ log σ.
            if self.gaussian:
                inv_var = np.exp(-2.0 * self.log_std)
                diff = act_np[i] - out
                delta = diff * inv_var
                d_log_std = diff * delta - 1.0
                sq = float(d_log_std @ d_log_std)
            else:
                p = np.exp(out - out.max())
                p /= p.sum()
                delta = -p
                delta[act_np[i]] += 1.0
                sq = 0.0
            # Backward through the layers (with the weights as they are before this step).
            for layer in range(layers - 1, -1, -1):
                deltas[layer] = delta
                h_in = hs[layer]
                sq += float(delta @ delta) * (float(h_in @ h_in) + 1.0)
                if layer > 0:
                    back = self._backward(layer, delta)
                    delta = back * (1.0 - h_in * h_in) if self.tanh else back * (h_in > 0)
            sq_norms[i] = sq
            # θ ← θ + η A s / (λ + ‖s‖²), layer by layer in place.
            coef = lr * adv[i] / (damping + sq)
            for layer in range(layers):
                self._rank1(layer, coef, deltas[layer], hs[layer])
            if self.gaussian:
                self.log_std += coef * d_log_std
        return torch.from_numpy(sq_norms)


def _autograd_sweep(actor: Actor, obs: Tensor, actions: Tensor, advantages: Tensor, lr: float, damping: float) -> Tensor:
    """Algorithm 1 for any actor: one autograd call per sample."""
    params = trainable_parameters(actor)
    adv = advantages.detach().double().tolist()
    sq_norms = torch.empty(len(adv), dtype=torch.float64)  # on the CPU: Python floats, one per sample
    for i in range(len(adv)):
        logp = actor.distribution(obs[i : i + 1]).log_prob(actions[i : i + 1]).sum()
        grads = torch.autograd.grad(logp, params, allow_unused=True)
        pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
        sq = float(sum(g.pow(2).sum() for _, g in pairs)) if pairs else 0.0
        sq_norms[i] = sq
        coef = lr * adv[i] / (damping + sq)
        with torch.no_grad():
            for p, g in pairs:
                p.add_(g, alpha=coef)
    return sq_norms


def _resolve_backend(actor: Actor, backend: str) -> tuple[list[nn.Linear], str] | None:
    """The ``mlp`` backend's layers, or None for autograd; ValueError for a bad choice."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")
    found = _mlp_layers(actor) if backend != "autograd" else None
    if backend == "mlp" and found is None:
        raise ValueError(
            "backend 'mlp' supports natpg's GaussianActor/CategoricalActor with tanh or ReLU hidden layers "
            "(all parameters trainable, float32/float64 on CPU); use backend 'autograd' for other actors"
        )
    return found


def sequential_smac_sweep(
    actor: Actor, obs: Tensor, actions: Tensor, advantages: Tensor, lr: float, damping: float, backend: str = "auto"
) -> Tensor:
    """Algorithm 1 over one batch, in place on ``actor``; returns each sample's ‖s_i‖² (taken
    at the parameters of its own step)."""
    found = _resolve_backend(actor, backend)
    if found is not None:
        return _MLPSweep(actor, *found).run(obs, actions, advantages, lr, damping)
    return _autograd_sweep(actor, obs, actions, advantages, lr, damping)


@register
class SMACSingle(UpdateRule):
    """Algorithm 1: one Sherman–Morrison step per sample, in rollout order, each at the
    parameters left by the previous one."""

    name = "smac-single"
    summary = "SMAC Algorithm 1: one Sherman–Morrison step per sample at the current θ (sequential)"

    @dataclass(frozen=True, kw_only=True)
    class Hyperparameters(AdaptiveDampingHyperparameters):
        lr: float = hparams.lr(5e-3, "step size η of each per-sample step η A s / (λ + ‖s‖²)")
        backend: str = hparams.hyperparameter(
            "auto", help="how each per-sample step is computed: mlp (by hand, natpg's MLP actors, ~10× faster), "
            "autograd (any actor), auto (mlp where it applies)",
            range=hparams.Range("str", choices=_BACKENDS),
        )

    def __init__(self, actor, hp=None, /, **overrides):
        super().__init__(actor, hp, **overrides)
        self.backend = self.hp.backend
        _resolve_backend(actor, self.backend)  # fail at construction, not at the first update
        self.control = DampingControl.of(self.hp)

    @property
    def damping(self) -> float:
        return self.control.damping

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        old = self.control.before(self.actor, batch.obs)
        damping = self.control.damping
        sq_norms = sequential_smac_sweep(self.actor, batch.obs, batch.actions, batch.advantages, self.lr, damping, self.backend)
        info = {"damping": damping, "steps": float(len(batch)), "sweep_score_norm_sq": float(sq_norms.mean())}
        info.update(self.control.after(self.actor, batch.obs, old))
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"damping": self.control.damping}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.control.load(state)
