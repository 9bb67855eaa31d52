import numpy as np
import pytest
import torch
from gymnasium import spaces

from natpg.policies import CategoricalActor, GaussianActor


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)
    yield


def tiny_actor(kind: str, obs_dim: int = 3, act: int = 2, hidden=(5, 4), seed: int = 0):
    """A small float64 actor and a batch for it."""
    torch.manual_seed(seed)
    actor = CategoricalActor(obs_dim, act, hidden, "tanh") if kind == "categorical" else GaussianActor(obs_dim, act, hidden, "tanh")
    actor = actor.double()
    # Non-trivial output layer and log-std so gradients are not tiny.
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return actor


def tiny_batch(actor, n: int = 7, obs_dim: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g, dtype=torch.float64)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    advantages = torch.randn(n, generator=g, dtype=torch.float64)
    return obs, actions, advantages


def dense_scores(actor, obs, actions):
    """S (B×d) by one autograd call per sample: the slow, obviously-correct reference."""
    params = [p for p in actor.parameters() if p.requires_grad]
    rows = []
    for i in range(obs.shape[0]):
        lp = actor.distribution(obs[i : i + 1]).log_prob(actions[i : i + 1]).sum()
        grads = torch.autograd.grad(lp, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)
