import re
import sys
import types

import gymnasium as gym
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


def assert_layer_grams_match_dense(scores, S):
    """Each block's Gram matrix is the Gram matrix of that block's columns of the dense
    (float64, one autograd call per sample) scores S; together the blocks cover every column once."""
    columns, o = {}, 0
    for p in scores.params:
        columns[id(p)] = torch.arange(o, o + p.numel())
        o += p.numel()
    covered = torch.zeros(S.shape[1], dtype=torch.bool)
    for block, gram in zip(scores.blocks, scores.layer_grams()):
        cols = torch.cat([columns[id(p)] for p in block.params])
        assert not covered[cols].any(), "a parameter in two blocks"
        covered[cols] = True
        torch.testing.assert_close(gram, S[:, cols] @ S[:, cols].T, rtol=1e-10, atol=1e-12)
    assert covered.all(), "a parameter in no block"


# -- the two wordings of messages: --flags on the command line, keywords from Python ----------

_PYTHON_NAMES = {"--steps": "total_steps", "--env": "env_id"}


def python_words(words: str) -> str:
    """Command-line words of a message as the Python API writes them: ``--rollout-steps 200``
    → ``rollout_steps=200``, ``--method rat`` → ``method='rat'``, ``--lr`` → ``lr``."""

    def keyword(match: re.Match) -> str:
        name = _PYTHON_NAMES.get(match[1], match[1][2:].replace("-", "_"))
        if match[2] is None:
            return name
        return f"{name}={match[2]!r}" if name == "method" else f"{name}={match[2]}"

    return re.sub(r"(--[a-z][a-z-]*)(?: ([\w.]+))?", keyword, words)


class Wording:
    """Messages in one wording; :meth:`assert_says` takes the command line's words."""

    def __init__(self, command_line: bool):
        self.command_line = command_line

    def assert_says(self, message: str, words: list[str]) -> None:
        for word in words:
            expected = word if self.command_line else python_words(word)
            assert expected in message, (expected, message)
        if not self.command_line:
            assert "--" not in message, f"a Python message names a flag: {message}"


@pytest.fixture(params=["command line", "python"])
def wording(request):
    """Run the test in both wordings: as the CLI runs library code, and as Python calls it."""
    from natpg._messages import use_wording

    command_line = request.param == "command line"
    with use_wording(command_line):
        yield Wording(command_line)


def assert_scores_match_dense(scores, S, adv):
    """Every product of a ScoreBatch (S, ‖s_i‖², SSᵀ, Sᵀc, S v, the per-block Gram matrices)
    against the dense float64 scores S of a per-sample loop."""
    from natpg.scores import flatten

    torch.testing.assert_close(scores.matrix(), S, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores.sq_norms(), (S * S).sum(1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scores.gram(), S @ S.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flatten(scores.weighted_sum(adv)), S.T @ adv, rtol=1e-10, atol=1e-12)
    v = torch.randn(S.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    pieces, o = [], 0
    for p in scores.params:
        pieces.append(v[o : o + p.numel()].view_as(p))
        o += p.numel()
    torch.testing.assert_close(scores.dot(pieces), S @ v, rtol=1e-10, atol=1e-12)
    assert_layer_grams_match_dense(scores, S)


class MinAtarStandIn(gym.Env):
    """MinAtar's Breakout as natpg sees it, without the ``minatar`` package: 10×10×4 bool
    frames, 3 actions; one lit cell walks, reward 1 when action 1 is taken in column 0."""

    observation_space = spaces.Box(0, 1, (10, 10, 4), np.bool_)
    action_space = spaces.Discrete(3)

    def _obs(self):
        frame = np.zeros((10, 10, 4), np.bool_)
        frame[self.t % 10, self.col, self.t % 4] = True
        return frame

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.col = 0, int(self.np_random.integers(10))
        return self._obs(), {}

    def step(self, action):
        reward = float(action == 1 and self.col == 0)
        self.t, self.col = self.t + 1, (self.col + int(action) - 1) % 10
        return self._obs(), reward, False, self.t >= 50, {}


@pytest.fixture
def minatar_stand_in(monkeypatch):
    """``minatar.gym`` replaced by a module whose ``register_envs`` registers MinAtarStandIn as
    ``MinAtar/Breakout-v1`` (any MinAtar ids already registered are hidden meanwhile); yields the
    list of its calls."""
    for key in [k for k in gym.registry if k.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, key)
    calls = []

    def register_envs():
        calls.append(1)
        gym.register("MinAtar/Breakout-v1", entry_point=MinAtarStandIn)

    package, module = types.ModuleType("minatar"), types.ModuleType("minatar.gym")
    module.register_envs, package.gym = register_envs, module
    monkeypatch.setitem(sys.modules, "minatar", package)
    monkeypatch.setitem(sys.modules, "minatar.gym", module)
    yield calls
    gym.registry.pop("MinAtar/Breakout-v1", None)
