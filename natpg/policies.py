"""Actors (categorical and diagonal-Gaussian MLPs), the critic and the observation normaliser.

The actor contract is :class:`ActorLike`: any ``nn.Module`` with ``distribution(obs)``
returning a torch ``Distribution`` (Categorical, Normal or Independent Normal) whose
``log_prob(actions)`` has one entry per sample. No natpg base class is needed, and
parameters may live anywhere (:mod:`natpg.scores` uses torch.func for those outside
``nn.Linear`` layers). natpg's own actors keep every parameter in an ``nn.Linear`` layer or
a :class:`BroadcastParameter` (a parameter shared by all samples, such as the Gaussian
log-std), which gives the fast factorised path: per-sample score norms and Gram matrices
without materialising per-sample gradients.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}
_NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


def mlp(sizes: Sequence[int], activation: str, out_gain: float = 1.0) -> nn.Sequential:
    """An MLP with orthogonal initialisation (gain √2 hidden, ``out_gain`` at the output)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, gain=out_gain if last else np.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class BroadcastParameter(nn.Module):
    """A parameter used identically by every sample of a batch (e.g. a state-independent
    log-std). ``forward(batch_shape)`` returns it expanded to the batch, so that the
    gradient of that expanded tensor is the per-sample gradient."""

    def __init__(self, init: Tensor):
        super().__init__()
        self.value = nn.Parameter(init.clone())

    def forward(self, like: Tensor) -> Tensor:
        return self.value.expand(*like.shape[:-1], *self.value.shape)


@runtime_checkable
class ActorLike(Protocol):
    """What every update rule needs of an actor: an ``nn.Module`` (for its parameters) with

    ``distribution(obs) -> torch.distributions.Distribution``

    on a (B, *obs_shape) batch; ``log_prob(actions)`` of that distribution must have shape
    (B,): a Categorical, or a diagonal Gaussian as ``Independent(Normal(mean, std), 1)``.
    Samples must not interact inside the actor (no BatchNorm in training mode)."""

    def distribution(self, obs: Tensor) -> Distribution: ...

    def parameters(self, recurse: bool = True): ...


def check_actor(actor: object) -> None:
    """ValueError naming the fix when ``actor`` does not follow :class:`ActorLike`."""
    if not isinstance(actor, nn.Module) or not callable(getattr(actor, "distribution", None)):
        raise ValueError(
            f"the actor must be an nn.Module with a method distribution(obs) -> torch.distributions.Distribution "
            f"(e.g. return Categorical(logits=self.net(obs)) or Independent(Normal(mean, std), 1)); "
            f"got {type(actor).__name__}"
        )
    if not any(p.requires_grad for p in actor.parameters()):
        raise ValueError(f"the actor ({type(actor).__name__}) has no trainable parameters")


class Actor(nn.Module):
    """natpg's base class (optional: any :class:`ActorLike` will do): ``distribution(obs)`` returns a torch Distribution whose ``log_prob``
    gives one log-probability per sample."""

    discrete: bool

    def distribution(self, obs: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.distribution(obs).log_prob(actions)


class CategoricalActor(Actor):
    discrete = True

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.activation = activation
        self.net = mlp([obs_dim, *hidden, n_actions], activation, out_gain=0.01)

    def distribution(self, obs: Tensor) -> Distribution:
        return Categorical(logits=self.net(obs))


class GaussianActor(Actor):
    """Diagonal Gaussian with a state-independent log-std (initialised at 0)."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str, log_std_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.net = mlp([obs_dim, *hidden, act_dim], activation, out_gain=0.01)
        self.log_std = BroadcastParameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: Tensor) -> Distribution:
        mean = self.net(obs)
        return Independent(Normal(mean, self.log_std(mean).exp()), 1)


def make_actor(obs_dim: int, action_space: spaces.Space, hidden: Sequence[int], activation: str, log_std_init: float = 0.0) -> Actor:
    if isinstance(action_space, spaces.Discrete):
        return CategoricalActor(obs_dim, int(action_space.n), hidden, activation)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianActor(obs_dim, action_space.shape[0], hidden, activation, log_std_init)
    raise ValueError(f"unsupported action space {action_space}: natpg supports Discrete and 1-D Box actions")


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, 1], activation, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class ObsNormalizer(nn.Module):
    """Running mean/variance observation normaliser (parallel-variance updates), clipped to
    ±``clip``. Disabled normalisers are the identity. Its statistics are buffers, so they
    are saved with the agent."""

    def __init__(self, obs_dim: int, enabled: bool, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def forward(self, obs: Tensor) -> Tensor:
        if not self.enabled:
            return obs
        std = torch.sqrt(self.var + self.eps)
        return ((obs - self.mean.to(obs.dtype)) / std.to(obs.dtype)).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, obs: np.ndarray) -> None:
        if not self.enabled:
            return
        x = torch.as_tensor(obs, dtype=torch.float64).reshape(-1, self.mean.shape[0])
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def numpy(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.enabled:
            return None
        return self.mean.numpy().astype(np.float32), np.sqrt(self.var.numpy() + self.eps).astype(np.float32)


class Agent(nn.Module):
    """Observation normaliser + actor + critic: everything a saved policy needs."""

    def __init__(self, obs_dim: int, action_space: spaces.Space, hidden: Sequence[int], activation: str, normalize_obs: bool,
                 log_std_init: float = 0.0):
        super().__init__()
        self.obs_norm = ObsNormalizer(obs_dim, normalize_obs)
        self.actor = make_actor(obs_dim, action_space, hidden, activation, log_std_init)
        self.critic = Critic(obs_dim, hidden, activation)

    def policy_input(self, obs: Tensor) -> Tensor:
        return self.obs_norm(obs)

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.obs_norm(obs))


class NumpyPolicy:
    """A frozen numpy copy of an actor for fast inference in the rollout loop (a 64-64 MLP
    costs a few µs here against ~20 µs through torch).

    :meth:`sample` draws actions for one batch of observations. The rollout's hot loop uses
    :meth:`draw_noise` once per rollout (all the sampling noise, drawn in one call from the
    same Generator stream, so the actions are bit-identical to per-step ``sample`` calls)
    and :meth:`act` per step, which writes into a preallocated row. Log-probabilities are
    recomputed in torch on the whole batch at update time.
    """

    def __init__(self, agent: Agent):
        actor = agent.actor
        if actor.activation not in _NUMPY_ACTIVATIONS:
            self._torch_agent = agent
        else:
            self._torch_agent = None
        self._relu = actor.activation == "relu"
        linears = [m for m in actor.net if isinstance(m, nn.Linear)]
        self.weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]
        self.norm = agent.obs_norm.numpy()
        self.clip = agent.obs_norm.clip
        self.discrete = actor.discrete
        self.out_dim = self.weights[-1][1].shape[0]
        self.std = None if actor.discrete else np.exp(actor.log_std.value.detach().numpy()).astype(np.float32)
        self._tiled: dict[int, tuple] = {}

    def _params_for(self, n: int) -> tuple:
        """Biases and normaliser statistics tiled to an (n, ·) batch, cached per n: numpy ufuncs
        on equal shapes skip the broadcasting set-up, which costs as much as the 64-wide
        add itself at these sizes (the values added are the same)."""
        tiled = self._tiled.get(n)
        if tiled is None:
            weights = [(w, np.tile(b, (n, 1))) for w, b in self.weights]
            norm = None if self.norm is None else tuple(np.tile(v, (n, 1)) for v in self.norm)
            tiled = self._tiled[n] = (weights, norm)
        return tiled

    def _output(self, obs: np.ndarray) -> np.ndarray:
        """Logits or Gaussian means for a (n, obs_dim) batch (a fresh array)."""
        if self._torch_agent is not None:
            with torch.inference_mode():
                x = self._torch_agent.policy_input(torch.as_tensor(obs))
                return self._torch_agent.actor.net(x).numpy()
        weights, norm = self._params_for(obs.shape[0]) if obs.ndim == 2 else (self.weights, self.norm)
        x = obs
        if norm is not None:
            # = np.clip((x - mean) / std, -clip, clip), without np.clip's wrapper overhead
            x = np.minimum(np.maximum((x - norm[0]) / norm[1], -self.clip), self.clip)
        last = len(weights) - 1
        for i, (w, b) in enumerate(weights):
            x = x.dot(w)  # a fresh array (the in-place ops below never touch ``obs``); = x @ w, ~2x cheaper here
            x += b
            if i < last:
                if self._relu:
                    np.maximum(x, 0.0, out=x)
                else:
                    np.tanh(x, out=x)
        return x

    def draw_noise(self, rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
        """The sampling noise of ``steps`` calls of :meth:`sample` on ``n`` observations, drawn
        at once: ``std · ε`` (float32, (steps, n, act_dim)) for a Gaussian, Gumbel noise
        ``−log(−log u)`` ((steps, n, n_actions)) for a categorical policy."""
        if self.discrete:
            return -np.log(-np.log(rng.random((steps, n, self.out_dim))))
        return self.std * rng.standard_normal((steps, n, self.out_dim), dtype=np.float32)

    def action_array(self, steps: int, n: int) -> np.ndarray:
        """An empty (steps, n[, act_dim]) array for the actions of a rollout."""
        if self.discrete:
            return np.empty((steps, n), dtype=np.int64)
        return np.empty((steps, n, self.out_dim), dtype=np.float32)

    def act(self, obs: np.ndarray, noise: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Sampled actions for (n, obs_dim) ``obs`` given one step of :meth:`draw_noise`,
        written into ``out`` (one row of :meth:`action_array`) and returned."""
        logits = self._output(obs)
        if self.discrete:
            # logits + (−log(−log u)) = logits − log(−log u) exactly: the Gumbel-max trick. The
            # ndarray method, not np.argmax, whose Python wrapper costs ~2 µs a call.
            return (logits + noise).argmax(-1, out=out)
        return np.add(logits, noise, out=out)

    def sample(self, obs: np.ndarray, rng: np.random.Generator, deterministic: bool = False) -> np.ndarray:
        """Actions for a (n, obs_dim) float32 batch of observations."""
        out = self._output(obs)
        if self.discrete:
            if deterministic:
                return out.argmax(-1)
            # Gumbel-max sampling from the logits.
            return (out - np.log(-np.log(rng.random(out.shape)))).argmax(-1)
        if deterministic:
            return out
        return out + self.std * rng.standard_normal(out.shape, dtype=np.float32)
