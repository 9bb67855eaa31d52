"""Deployment, Stable-Baselines3's habit: ``natpg.load(run_dir).predict(obs)``.

A :class:`Policy` is everything needed to act, and nothing of training: the saved
observation normalisation, the actor, and the action post-processing the environment wrapper
did during training (Box actions clipped to their bounds, a ``Discrete(n, start)`` index
shifted by ``start``). It needs no environment: the run directory stores the observation and
action spaces (``spaces.json``), so a run on a ``module:Env-v0`` whose module is not
importable any more still loads and predicts.

    policy = natpg.load("runs/cp-smac")
    action = policy.predict(obs)                  # one observation → one action
    actions = policy.predict(batch_of_obs)        # (n, *obs_shape) → n actions

``result.policy`` of :func:`natpg.train` is the same kind of object. A ``Policy`` is also an
``nn.Module`` whose ``forward`` maps a batch of observation tensors to deterministic actions
(normalisation included), for ``torch.jit.trace`` or ``torch.export``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn
from torch.distributions import Distribution

__all__ = ["Policy", "load", "space_to_dict", "space_from_dict", "read_spaces", "SPACES_FILE"]

SPACES_FILE = "spaces.json"


# -- spaces, as plain JSON ---------------------------------------------------------------------


def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """A Box or Discrete space as a JSON-ready dict (``space_from_dict`` inverts it)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        def encode(a: np.ndarray) -> list:
            a = np.asarray(a, dtype=np.float64)
            return [str(x) if not np.isfinite(x) else float(x) for x in a.reshape(-1)]

        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": encode(space.low), "high": encode(space.high)}
    raise ValueError(f"cannot store a {type(space).__name__} space: natpg supports Box and Discrete")


def space_from_dict(d: dict[str, Any]) -> spaces.Space:
    if d["type"] == "Discrete":
        return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if d["type"] == "Box":
        shape = tuple(d["shape"])
        low = np.array([float(x) for x in d["low"]], dtype=np.float64).reshape(shape)
        high = np.array([float(x) for x in d["high"]], dtype=np.float64).reshape(shape)
        return spaces.Box(low.astype(d["dtype"]), high.astype(d["dtype"]), shape=shape, dtype=np.dtype(d["dtype"]))
    raise ValueError(f"unknown space type {d.get('type')!r} in {SPACES_FILE}")


def spaces_record(observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    return {"observation_space": space_to_dict(observation_space), "action_space": space_to_dict(action_space)}


def env_spaces(env) -> tuple[spaces.Space, spaces.Space]:
    """The observation and action spaces of a :class:`natpg.envs.VectorEnv`'s environments, as
    the environment itself declares them (before natpg's internal Discrete shift)."""
    from natpg.envs import _ShiftDiscrete

    first = env.envs[0]
    action_space = first.env.action_space if isinstance(first, _ShiftDiscrete) else first.action_space
    return first.observation_space, action_space


def read_spaces(run_dir: str | Path) -> tuple[spaces.Space, spaces.Space] | None:
    """(observation space, action space) stored in a run directory, or None (an older run)."""
    path = Path(run_dir) / SPACES_FILE
    if not path.exists():
        return None
    try:
        d = json.loads(path.read_text())
        return space_from_dict(d["observation_space"]), space_from_dict(d["action_space"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None


# -- the policy ----------------------------------------------------------------------------------


def _deterministic(dist: Distribution) -> Tensor:
    """The most likely action: argmax of a Categorical, the mean of a Gaussian."""
    try:
        return dist.mode
    except (NotImplementedError, AttributeError):
        return dist.mean


class Policy(nn.Module):
    """Observation normalisation + actor + action post-processing, for acting.

    ``predict`` takes numpy (or anything ``np.asarray`` takes) and returns numpy; ``forward``
    is the same deterministic map on tensors (a batch), without the Discrete shift's dtype
    change. Unlike SB3's ``predict`` it returns the action alone (no recurrent state).
    """

    def __init__(self, actor: nn.Module, observation_space: spaces.Space, action_space: spaces.Space,
                 obs_norm: nn.Module | None = None):
        super().__init__()
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"a Policy needs a Box observation space, got {observation_space}")
        if not isinstance(action_space, (spaces.Box, spaces.Discrete)):
            raise ValueError(f"a Policy needs a Box or Discrete action space, got {action_space}")
        self.actor = actor
        self.obs_norm = obs_norm if obs_norm is not None else nn.Identity()
        self.observation_space = observation_space
        self.action_space = action_space
        self._discrete = isinstance(action_space, spaces.Discrete)
        self._start = int(action_space.start) if self._discrete else 0
        if not self._discrete:
            self.register_buffer("low", torch.as_tensor(np.asarray(action_space.low, dtype=np.float64)), persistent=False)
            self.register_buffer("high", torch.as_tensor(np.asarray(action_space.high, dtype=np.float64)), persistent=False)
        self.eval()

    @property
    def _dtype(self) -> torch.dtype:
        for p in self.actor.parameters():
            return p.dtype
        return torch.float32

    @property
    def _device(self) -> torch.device:
        for p in self.actor.parameters():
            return p.device
        return torch.device("cpu")

    def distribution(self, obs: Tensor) -> Distribution:
        """The action distribution at raw (unnormalised) observations, a (n, *obs_shape) tensor
        (moved to the actor's device)."""
        return self.actor.distribution(self.obs_norm(obs.to(self._device, self._dtype)))

    def _post(self, actions: Tensor) -> Tensor:
        if self._discrete:
            return actions.long() + self._start
        return torch.maximum(torch.minimum(actions, self.high.to(actions)), self.low.to(actions))

    def forward(self, obs: Tensor) -> Tensor:
        """Deterministic actions for a batch of raw observations (normalised here, clipped or
        shifted as the environment needs)."""
        return self._post(_deterministic(self.distribution(obs)))

    def export(self, example: Tensor | None = None):
        """``torch.export`` of :meth:`forward` (normalisation and clipping built in, any batch
        size): a program that runs without natpg. ``example``: a batch of observations (by
        default zeros). Save it with ``torch.export.save(program, "policy.pt2")``."""
        if example is None:
            example = torch.zeros(2, *self.observation_space.shape, dtype=self._dtype)
        batch = torch.export.Dim("batch", min=1)
        # torch.distributions validates arguments with data-dependent checks, which export
        # cannot trace; the values are the actor's own, so skip them while tracing.
        validate = Distribution._validate_args
        Distribution.set_default_validate_args(False)
        try:
            return torch.export.export(self, (example,), dynamic_shapes=({0: batch},))
        finally:
            Distribution.set_default_validate_args(validate)

    @torch.no_grad()
    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation (shape ``observation_space.shape``) or the actions
        for a batch (shape ``(n, *observation_space.shape)``). ``deterministic``: the most
        likely action (argmax, Gaussian mean); else a sample (torch's global RNG)."""
        array = np.asarray(obs)
        shape = tuple(self.observation_space.shape)
        if array.shape == shape:
            single = True
            array = array[None]
        elif array.shape[1:] == shape and array.shape[0] >= 1:
            single = False
        else:
            raise ValueError(
                f"obs of shape {array.shape} fits neither one observation {shape} nor a batch (n, {', '.join(map(str, shape))})"
            )
        x = torch.as_tensor(np.ascontiguousarray(array))
        dist = self.distribution(x)
        actions = self._post(_deterministic(dist) if deterministic else dist.sample()).cpu().numpy()
        if not self._discrete:
            actions = actions.astype(self.action_space.dtype, copy=False)
        return actions[0] if single else actions


def load(run_dir: str | Path, actor: Any = None) -> Policy:
    """The trained policy of a run directory, ready to ``predict`` (no environment needed
    when the run stored its spaces, as every run since natpg 0.1 with ``spaces.json`` does).
    A run trained with your own ``actor`` needs it again: a module of the same architecture
    (its weights are replaced by the run's), or its factory ``f(observation_space, action_space)``."""
    from natpg.api import _load

    _, agent, (observation_space, action_space) = _load(run_dir, actor=actor)
    return Policy(agent.actor, observation_space, action_space, agent.obs_norm)
