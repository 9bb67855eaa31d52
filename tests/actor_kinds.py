"""Actors written the way users write them, none of them natpg's classes (issue 15).

Each follows the :class:`natpg.policies.ActorLike` contract and nothing more:
``distribution(obs) -> torch.distributions.Distribution``. Small and float64, for tests
against a per-sample Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Independent, Normal


class CleanRLActor(nn.Module):
    """CleanRL's ppo_continuous_action.py: Sequential MLP mean, plain nn.Parameter log-std."""

    def __init__(self, obs_dim: int = 3, act_dim: int = 2, hidden: int = 6):
        super().__init__()
        self.actor_mean = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                        nn.Linear(hidden, act_dim))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def distribution(self, obs):
        mean = self.actor_mean(obs)
        return Independent(Normal(mean, self.actor_logstd.expand_as(mean).exp()), 1)


class LayerNormActor(nn.Module):
    """Linear → LayerNorm → tanh → Linear, categorical."""

    def __init__(self, obs_dim: int = 3, n_actions: int = 3, hidden: int = 6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.LayerNorm(hidden), nn.Tanh(), nn.Linear(hidden, n_actions))

    def distribution(self, obs):
        return Categorical(logits=self.net(obs))


class SharedLinearActor(nn.Module):
    """One hidden Linear layer applied twice (weights shared across depth), categorical."""

    def __init__(self, obs_dim: int = 3, n_actions: int = 3, hidden: int = 5):
        super().__init__()
        self.inp = nn.Linear(obs_dim, hidden)
        self.shared = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, n_actions)

    def distribution(self, obs):
        h = torch.tanh(self.inp(obs))
        h = torch.tanh(self.shared(h))
        h = torch.tanh(self.shared(h))
        return Categorical(logits=self.out(h))


class ConvActor(nn.Module):
    """A small CNN on (B, C, H, W) image-shaped observations, categorical."""

    obs_shape = (2, 5, 5)

    def __init__(self, n_actions: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, kernel_size=3)
        self.head = nn.Linear(3 * 3 * 3, n_actions)

    def distribution(self, obs):
        return Categorical(logits=self.head(torch.relu(self.conv(obs)).flatten(1)))


class TiedActor(nn.Module):
    """The input layer's weight reused (transposed) as the output layer: a Linear whose
    parameter is also used outside it. Gaussian with a plain log-std vector."""

    def __init__(self, obs_dim: int = 3, hidden: int = 5):
        super().__init__()
        self.enc = nn.Linear(obs_dim, hidden)
        self.log_std = nn.Parameter(torch.zeros(obs_dim))

    def distribution(self, obs):
        mean = F.linear(torch.tanh(self.enc(obs)), self.enc.weight.t())
        return Independent(Normal(mean, self.log_std.exp()), 1)


class FrozenActor(CleanRLActor):
    """CleanRL's actor with its input layer and its log-std frozen (``requires_grad=False``), as
    a user fine-tunes the head of a pretrained policy or fixes the exploration noise: the
    rules see only the trainable parameters, and no gradient reaches the std."""

    def __init__(self):
        super().__init__()
        for p in (*self.actor_mean[0].parameters(), self.actor_logstd):
            p.requires_grad_(False)


KINDS = {
    "cleanrl": CleanRLActor,
    "frozen": FrozenActor,
    "layernorm": LayerNormActor,
    "shared-linear": SharedLinearActor,
    "conv": ConvActor,
    "tied": TiedActor,
}


def make_actor(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    actor = KINDS[kind]().double()
    with torch.no_grad():  # non-trivial values everywhere (LayerNorm starts at 1 and 0)
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return actor


def make_batch(kind: str, actor: nn.Module, n: int = 9, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = ConvActor.obs_shape if kind == "conv" else (3,)
    obs = torch.randn(n, *shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    advantages = torch.randn(n, generator=g, dtype=torch.float64)
    return obs, actions, advantages
