"""Actors (categorical and diagonal-Gaussian MLPs), the critic and the observation normaliser.

The actor contract is :class:`ActorLike`: any ``nn.Module`` with ``distribution(obs)``
returning a torch ``Distribution`` (Categorical, Normal or Independent Normal) whose
``log_prob(actions)`` has one entry per sample. No natpg base class is needed, and
parameters may live anywhere (:mod:`natpg.scores` uses torch.func for those outside
``nn.Linear`` layers). natpg's own actors keep every parameter in an ``nn.Linear`` layer or
a :class:`BroadcastParameter` (a parameter shared by all samples, such as the Gaussian
log-std), which gives the fast factorised path: per-sample score norms and Gram matrices
without materialising per-sample gradients.

How these act in the rollout (a numpy copy of the MLP actors, or torch) is :mod:`natpg.acting`.
"""

from __future__ import annotations

import copy
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from natpg._moved import moved_names

# The rollout's acting side lives in natpg.acting (which imports this module); its names stay
# importable from here.
__getattr__ = moved_names(__name__, dict.fromkeys(
    ["NumpyPolicy", "TorchPolicy", "rollout_policy", "uses_numpy_rollout"], "natpg.acting"))

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


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


def is_image_space(space: spaces.Space) -> bool:
    """A 3-D Box of uint8 or bool values: an image, H×W×C or C×H×W."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype in (np.uint8, np.bool_)


class ImageTrunk(nn.Module):
    """The built-in CNN for image observations (:func:`is_image_space`), shared in shape (not
    in weights) by the image actor and critic.

    Takes a float batch of raw pixel values, (B, H, W, C) or (B, C, H, W) as the space has
    them: uint8 is scaled to [0, 1], bool is taken as 0/1, and H×W×C is transposed to C×H×W.
    The layout is channels-first when the first dimension is the smallest, else channels-last
    (so 10×10×4 MinAtar frames and 4×84×84 Atari stacks are both read right; a cube is taken as
    H×W×C). Small frames (both sides < 36, e.g. MinAtar's 10×10) get MinAtar's network: one 3×3
    convolution with 16 channels and ReLU; larger ones the Nature-DQN stack (8×8/4, 4×4/2, 3×3/1).
    ``out_dim`` is the flattened feature size the MLP head starts from.
    """

    def __init__(self, observation_space: spaces.Box):
        super().__init__()
        shape = tuple(int(d) for d in observation_space.shape)
        self.channels_last = not shape[0] < shape[-1]
        c, h, w = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        self.scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 else 1.0
        if min(h, w) >= 36:
            self.conv = nn.Sequential(nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                                      nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten())
        else:
            padding = 0 if min(h, w) >= 5 else 1
            self.conv = nn.Sequential(nn.Conv2d(c, 16, 3, stride=1, padding=padding), nn.ReLU(), nn.Flatten())
        for m in self.conv:
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, gain=np.sqrt(2))
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.out_dim = int(self.conv(torch.zeros(1, c, h, w)).shape[1])

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.conv[0].weight.dtype) * self.scale
        if self.channels_last:
            x = x.movedim(-1, -3)
        return self.conv(x)


def _body(in_dim: int, out_dim: int, hidden: Sequence[int], activation: str, out_gain: float,
          trunk: nn.Module | None) -> nn.Sequential:
    """The MLP ``in_dim → hidden → out_dim``, behind ``trunk`` (whose ``out_dim`` it then takes) if given."""
    if trunk is None:
        return mlp([in_dim, *hidden, out_dim], activation, out_gain=out_gain)
    return nn.Sequential(trunk, *mlp([trunk.out_dim, *hidden, out_dim], activation, out_gain=out_gain))


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

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], activation: str, trunk: nn.Module | None = None):
        super().__init__()
        self.activation = activation
        self.has_trunk = trunk is not None
        self.net = _body(obs_dim, n_actions, hidden, activation, 0.01, trunk)

    def distribution(self, obs: Tensor) -> Distribution:
        return Categorical(logits=self.net(obs))


class GaussianActor(Actor):
    """Diagonal Gaussian with a state-independent log-std (initialised at 0)."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], activation: str, log_std_init: float = 0.0,
                 trunk: nn.Module | None = None):
        super().__init__()
        self.activation = activation
        self.has_trunk = trunk is not None
        self.net = _body(obs_dim, act_dim, hidden, activation, 0.01, trunk)
        self.log_std = BroadcastParameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, obs: Tensor) -> Distribution:
        mean = self.net(obs)
        return Independent(Normal(mean, self.log_std(mean).exp()), 1)


def make_actor(obs_dim: int, action_space: spaces.Space, hidden: Sequence[int], activation: str, log_std_init: float = 0.0,
               trunk: nn.Module | None = None) -> Actor:
    """natpg's actor for ``action_space``: an MLP on ``obs_dim`` inputs, or behind ``trunk``."""
    if isinstance(action_space, spaces.Discrete):
        return CategoricalActor(obs_dim, int(action_space.n), hidden, activation, trunk)
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return GaussianActor(obs_dim, action_space.shape[0], hidden, activation, log_std_init, trunk)
    raise ValueError(f"unsupported action space {action_space}: natpg supports Discrete and 1-D Box actions")


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: Sequence[int], activation: str, trunk: nn.Module | None = None):
        super().__init__()
        self.net = _body(obs_dim, 1, hidden, activation, 1.0, trunk)

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
        x = torch.as_tensor(obs, dtype=torch.float64, device=self.mean.device).reshape(-1, self.mean.shape[0])
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
        mean, var = self.mean.cpu().numpy(), self.var.cpu().numpy()
        return mean.astype(np.float32), np.sqrt(var + self.eps).astype(np.float32)


def _build(given, observation_space: spaces.Space | None, action_space: spaces.Space, what: str) -> nn.Module:
    """A user's module as it is, or what a user's factory returns for the spaces."""
    if isinstance(given, nn.Module):
        return given
    if not callable(given):
        raise ValueError(f"{what} must be an nn.Module or a factory f(observation_space, action_space) returning one, "
                         f"got {type(given).__name__}")
    if observation_space is None:
        raise ValueError(f"a {what} factory needs the observation space")
    module = given(observation_space, action_space)
    if not isinstance(module, nn.Module):
        raise ValueError(f"the {what} factory {getattr(given, '__name__', given)!r} returned {type(module).__name__}, "
                         "not an nn.Module")
    return module


class Agent(nn.Module):
    """Observation normaliser + actor + critic: everything a saved policy needs.

    By default natpg's own networks: MLPs on ``obs_dim`` inputs, or, for an image
    ``observation_space`` (:func:`is_image_space`), the same MLPs behind an
    :class:`ImageTrunk` each (and no observation normalisation). ``actor`` / ``critic``
    replace them with a user's module, or a factory ``f(observation_space, action_space)``
    that builds one: any :class:`ActorLike` actor, and a critic mapping a (B, *obs_shape)
    float batch to (B,) values. Their parameters and buffers are part of this module's
    ``state_dict`` (under ``actor.`` and ``critic.``), so checkpoints hold them.
    """

    def __init__(self, obs_dim: int, action_space: spaces.Space, hidden: Sequence[int], activation: str, normalize_obs: bool,
                 log_std_init: float = 0.0, *, observation_space: spaces.Space | None = None, actor=None, critic=None):
        super().__init__()
        image = observation_space is not None and is_image_space(observation_space)
        self.obs_norm = ObsNormalizer(obs_dim, normalize_obs and not image)
        if actor is not None:
            self.actor = _build(actor, observation_space, action_space, "actor")
            check_actor(self.actor)
        else:
            trunk = ImageTrunk(observation_space) if image else None
            self.actor = make_actor(obs_dim, action_space, hidden, activation, log_std_init, trunk)
        if critic is not None:
            self.critic = _build(critic, observation_space, action_space, "critic")
        else:
            self.critic = Critic(obs_dim, hidden, activation, ImageTrunk(observation_space) if image else None)
        #: The class names of user-given networks (None: natpg's own), recorded in checkpoints.
        self.custom = {"actor": None if actor is None else type(self.actor).__qualname__,
                       "critic": None if critic is None else type(self.critic).__qualname__}

    @property
    def device(self) -> torch.device:
        """Where the actor's parameters are (the CPU for an actor without any)."""
        probe = next(iter(self.actor.parameters()), None)
        return probe.device if probe is not None else torch.device("cpu")

    def for_acting(self) -> Agent:
        """This agent with its weights on the CPU, for the rollout: itself when it is there;
        else a CPU copy, made once and refreshed from this agent's state on each call (one
        transfer per rollout, none per environment step)."""
        if self.device.type == "cpu":
            return self
        cached = self.__dict__.get("_cpu_copy")
        if cached is None:
            cached = copy.deepcopy(self).cpu()
            object.__setattr__(self, "_cpu_copy", cached)  # a plain attribute: not a submodule, not in state_dict
        else:
            cached.load_state_dict(self.state_dict())
        return cached

    def policy_input(self, obs: Tensor) -> Tensor:
        """Raw observations as the actor and critic take them: float (uint8 / bool images
        as float32 of their raw values; the image trunk scales them), normalised if enabled."""
        if not obs.is_floating_point():
            obs = obs.to(torch.float32)
        return self.obs_norm(obs)

    @torch.no_grad()
    def value(self, obs: Tensor) -> Tensor:
        return self.critic(self.policy_input(obs))
