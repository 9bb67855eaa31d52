"""Per-sample scores of a CNN actor: Conv2d by unfolding (factorised) vs torch.func (general).

    PYTHONPATH=. python benchmarks/conv_scores.py [--batch 2048] [--reps 9] [--channels 4 10]

natpg's image actor for MinAtar-sized frames (10×10×C bool: one 3×3 convolution with 16
channels, ReLU, then the 64-64 tanh MLP head, categorical over 6 actions). Times, for the
Conv2d layer on each path (the Linear layers are factorised in both; ``unfold`` is
``compute_scores(..., unfold_conv=True)``):
``compute_scores`` alone, ``compute_scores`` followed by ``sq_norms()`` and one
``weighted_sum`` (the per-sample norms force the conv layer's per-sample gradients to be
materialised on the unfold path), and one ``smac`` update with and without the common
diagnostics; one ``kfac`` update (its Fisher pass then unfolds the conv layer for Kronecker
factors, or gives it the diagonal block from torch.func scores, its fallback before). One
thread, float32, median of ``reps``, all the timings interleaved
within each repetition (the machine's load then falls on both paths alike). Results: benchmarks/results/conv_scores.md, docs/methods.md.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable

import numpy as np
import torch
from gymnasium import spaces

import natpg.methods.base as base_module
import natpg.methods.kfac as kfac_module
import natpg.methods.smac as smac_module
from natpg import methods, scores
from natpg.methods import PolicyBatch
from natpg.policies import CategoricalActor, ImageTrunk

_compute_scores = scores.compute_scores


def interleaved_median_ms(fns: dict[object, Callable[[], object]], reps: int) -> dict[object, float]:
    """Median time of each function, the functions run in turn within each repetition so
    that a machine's changing load falls on all of them alike."""
    times: dict[object, list[float]] = {key: [] for key in fns}
    for rep in range(reps + 1):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            if rep:  # the first round warms up
                times[key].append(time.perf_counter() - start)
    return {key: sorted(t)[len(t) // 2] * 1e3 for key, t in times.items()}


@contextlib.contextmanager
def conv_path(path: str):
    """``torch.func``: natpg's default (Conv2d on the general path); ``unfold``: every
    ``compute_scores`` call of the smac rule and of the benchmark with ``unfold_conv=True``."""
    def forced(*args, **kwargs):  # overrides kfac's own unfold_conv=True too
        return _compute_scores(*args, **{**kwargs, "unfold_conv": path == "unfold"})

    smac_module.compute_scores = base_module.compute_scores = kfac_module.compute_scores = forced
    try:
        yield forced
    finally:
        smac_module.compute_scores = base_module.compute_scores = kfac_module.compute_scores = _compute_scores


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
        kfac = methods.make("kfac", actor, lr=1e-8)

        def timed(path: str, what: str):
            def run():
                with conv_path(path) as compute_scores:
                    if what == "smac update":
                        rule.update(batch, diagnostics=False)
                    elif what == "with diagnostics":
                        rule.update(batch, diagnostics=True)
                    elif what == "kfac update":
                        kfac.update(batch, diagnostics=False)
                    else:
                        s, _, _ = compute_scores(actor, obs, actions)
                        if what != "compute_scores":
                            s.sq_norms()
                            s.weighted_sum(adv)
            return run

        whats = ("compute_scores", "+ sq_norms + weighted_sum", "smac update", "with diagnostics", "kfac update")
        paths = ("torch.func", "unfold")
        ms = interleaved_median_ms({(p, w): timed(p, w) for w in whats for p in paths}, args.reps)
        for path in paths:
            cells = "   ".join(f"{w} {ms[(path, w)]:6.1f} ms" for w in whats)
            print(f"10x10x{channels:<2d} conv {path:10s} {cells}", flush=True)
        print(f"10x10x{channels:<2d} torch.func / unfold: " + "   ".join(f"{w} {ms[('torch.func', w)] / ms[('unfold', w)]:.2f}x"
                                                               for w in whats), flush=True)


if __name__ == "__main__":
    main()
