"""Per-sample scores of a CNN actor: Conv2d by unfolding (factorised) vs torch.func (general).

    PYTHONPATH=. python benchmarks/conv_scores.py [--batch 2048] [--reps 9] [--channels 4 10]

natpg's image actor for MinAtar-sized frames (10×10×C bool: one 3×3 convolution with 16
channels, ReLU, then the 64-64 tanh MLP head, categorical over 6 actions). Times, for the
Conv2d layer on each path (the Linear layers are factorised in both):
``compute_scores`` alone, ``compute_scores`` followed by ``sq_norms()`` and one
``weighted_sum`` (the per-sample norms force the conv layer's per-sample gradients to be
materialised on the unfold path), and one ``smac`` update with and without the common
diagnostics. One thread, float32, median of ``reps``. Results: docs/architecture.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import time

import numpy as np
import torch
from gymnasium import spaces

import natpg.methods.base as base_module
import natpg.methods.smac as smac_module
from natpg import methods, scores
from natpg.methods import PolicyBatch
from natpg.policies import CategoricalActor, ImageTrunk


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


@contextlib.contextmanager
def conv_path(path: str):
    """``unfold``: natpg's default; ``torch.func``: every Conv2d sent to the general path."""
    plain = scores._plain_conv
    if path == "torch.func":
        scores._plain_conv = lambda module: False
    try:
        yield
    finally:
        scores._plain_conv = plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 10])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for channels in args.channels:
        torch.manual_seed(0)
        space = spaces.Box(0, 1, (10, 10, channels), np.bool_)
        actor = CategoricalActor(0, 6, (64, 64), "tanh", ImageTrunk(space))
        obs = (torch.rand(args.batch, 10, 10, channels) < 0.2).float()
        with torch.no_grad():
            actions = actor.distribution(obs).sample()
        adv = torch.randn(args.batch)
        batch = PolicyBatch(obs, actions, adv)
        rule = methods.make("smac", actor, lr=1e-8)

        def norms_and_sum():
            s, _, _ = scores.compute_scores(actor, obs, actions)
            s.sq_norms()
            s.weighted_sum(adv)

        for path in ("torch.func", "unfold"):
            with conv_path(path):
                cs = median_ms(lambda: scores.compute_scores(actor, obs, actions), args.reps)
                ns = median_ms(norms_and_sum, args.reps)
                up = median_ms(lambda: rule.update(batch, diagnostics=False), args.reps)
                diag = median_ms(lambda: rule.update(batch, diagnostics=True), args.reps)
            print(f"10x10x{channels:<2d} conv {path:10s} compute_scores {cs:6.1f} ms   + sq_norms + weighted_sum {ns:6.1f} ms"
                  f"   smac update {up:6.1f} ms   with diagnostics {diag:6.1f} ms", flush=True)


if __name__ == "__main__":
    main()
