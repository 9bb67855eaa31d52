"""Per-update cost of the two per-sample score paths (natpg.scores): factorised vs torch.func.

    PYTHONPATH=. python benchmarks/score_paths.py [--batch 2048] [--reps 7]

Times ``compute_scores`` and one ``smac`` update (with and without the common diagnostics)
on the default 64-64 tanh MLP, forcing each path, and on a CleanRL-style actor (Linear
layers factorised, plain ``nn.Parameter`` log-std through torch.func). One thread, float32,
median of ``reps``. Results: docs/methods.md ("Any actor, any network").
"""

from __future__ import annotations

import argparse
import functools
import time

import torch
from torch import nn
from torch.distributions import Independent, Normal

import natpg.methods.base as base_module
import natpg.methods.smac as smac_module
from natpg import methods, scores
from natpg.methods import PolicyBatch
from natpg.policies import CategoricalActor, GaussianActor

_compute_scores = scores.compute_scores


class CleanRLActor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.actor_mean = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, act_dim))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def distribution(self, obs):
        mean = self.actor_mean(obs)
        return Independent(Normal(mean, self.actor_logstd.expand_as(mean).exp()), 1)


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cases = [
        ("gaussian MLP 17->6", GaussianActor(17, 6, (64, 64), "tanh"), 17, ("factorised", "general")),
        ("categorical MLP 4->2", CategoricalActor(4, 2, (64, 64), "tanh"), 4, ("factorised", "general")),
        ("CleanRL actor 17->6", CleanRLActor(17, 6), 17, ("auto", "general")),
    ]
    for label, actor, obs_dim, paths in cases:
        obs = torch.randn(args.batch, obs_dim)
        with torch.no_grad():
            actions = actor.distribution(obs).sample()
        batch = PolicyBatch(obs, actions, torch.randn(args.batch))
        for path in paths:
            forced = functools.partial(_compute_scores, path=path)
            smac_module.compute_scores = base_module.compute_scores = forced
            rule = methods.make("smac", actor, lr=1e-8)
            cs = median_ms(lambda: forced(actor, obs, actions), args.reps)
            up = median_ms(lambda: rule.update(batch, diagnostics=False), args.reps)
            diag = median_ms(lambda: rule.update(batch, diagnostics=True), args.reps)
            print(f"{label:22s} {path:10s} compute_scores {cs:7.1f} ms   smac update {up:7.1f} ms   with diagnostics {diag:7.1f} ms",
                  flush=True)
    smac_module.compute_scores = base_module.compute_scores = _compute_scores


if __name__ == "__main__":
    main()
