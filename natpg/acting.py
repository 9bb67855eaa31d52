"""How a policy acts in the rollout: the sampling side of an :class:`~natpg.policies.Agent`.

:func:`rollout_policy` picks one of two objects with the same interface: :class:`NumpyPolicy`,
a frozen numpy copy of natpg's own MLP actors (a few µs a step, against ~20 µs through
torch), or :class:`TorchPolicy`, any actor through ``actor.distribution(obs).sample()``.
Log-probabilities are recomputed in torch on the whole batch at update time.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Distribution

from natpg.policies import Agent, CategoricalActor, GaussianActor

__all__ = ["rollout_policy", "uses_numpy_rollout", "NumpyPolicy", "TorchPolicy"]

_NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}


def uses_numpy_rollout(actor: nn.Module) -> bool:
    """natpg's own MLP actors act in the rollout through :class:`NumpyPolicy`; anything else
    (a user's actor, an image actor) through :class:`TorchPolicy`."""
    return type(actor) in (CategoricalActor, GaussianActor) and not actor.has_trunk


def rollout_policy(agent: Agent, action_space: spaces.Space) -> "NumpyPolicy | TorchPolicy":
    """What acts in a rollout: a frozen numpy copy of natpg's MLP actors, else the actor itself
    through torch. ``action_space``: the policy's (Discrete from 0, or a 1-D Box). Either acts
    on the CPU: an agent on a GPU acts through its CPU copy (:meth:`Agent.for_acting`)."""
    agent = agent.for_acting()
    return NumpyPolicy(agent) if uses_numpy_rollout(agent.actor) else TorchPolicy(agent, action_space)


class TorchPolicy:
    """Acting through torch for any actor: ``actor.distribution(obs).sample()`` under
    ``torch.inference_mode``, with the same interface as :class:`NumpyPolicy`.

    Sampling uses torch's global RNG (saved in checkpoints, so resume stays exact), not the
    numpy Generator: :meth:`draw_noise` draws nothing.
    """

    def __init__(self, agent: Agent, action_space: spaces.Space):
        self.agent = agent
        probe = next(iter(agent.actor.parameters()), None)
        self.dtype = probe.dtype if probe is not None and probe.is_floating_point() else torch.float32
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.act_dim = None if self.discrete else int(action_space.shape[0])

    def _distribution(self, obs: np.ndarray) -> Distribution:
        x = torch.as_tensor(obs)
        if not x.is_floating_point() or x.dtype != self.dtype:
            x = x.to(self.dtype)
        return self.agent.actor.distribution(self.agent.obs_norm(x))

    def draw_noise(self, rng: np.random.Generator, steps: int, n: int) -> np.ndarray:
        return np.empty((steps, 0))

    def action_array(self, steps: int, n: int) -> np.ndarray:
        if self.discrete:
            return np.empty((steps, n), dtype=np.int64)
        return np.empty((steps, n, self.act_dim), dtype=np.float32)

    def act(self, obs: np.ndarray, noise: np.ndarray, out: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            actions = self._distribution(obs).sample()
        out[...] = actions.numpy()
        return out

    def sample(self, obs: np.ndarray, rng: np.random.Generator | None = None, deterministic: bool = False) -> np.ndarray:
        from natpg.deploy import _deterministic

        with torch.inference_mode():
            dist = self._distribution(obs)
            actions = _deterministic(dist) if deterministic else dist.sample()
        return actions.numpy()


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
