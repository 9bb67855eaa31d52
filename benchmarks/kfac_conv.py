"""K-FAC on a CNN policy: Kronecker factors for the Conv2d layer (natpg's K-FAC) against the
diagonal fallback it had before (the conv parameters' squared per-sample scores).

    PYTHONPATH=. nice -n 15 python benchmarks/kfac_conv.py [--env MinAtar/Breakout-v1] [--steps 50000] [--seeds 0 1] [--jobs 2]

Each run is ``natpg.train(env, "kfac", steps, seed)`` with the default recipe and natpg's
image actor (MinAtar-sized frames: one 3×3 convolution with 16 channels, then 64-64 tanh),
in its own process at one torch thread. ``diagonal`` runs the same rule with the Fisher pass
computing the conv layer's scores on the general path (``unfold_conv=False``), so the layer
falls back to the diagonal block; everything else is identical. A ``MinAtar/...`` id is
registered from the ``minatar`` package (``pip install 'natpg[minatar]'``) when gymnasium
does not know it.

Writes into ``--out`` (default benchmarks/results/kfac_conv/): ``runs.csv`` (one row per
run: final return = mean over episodes ending in the last 10% of steps, episodes, wall time,
mean update time = actor update + critic fit), ``curves.csv`` (return over the last 20
episodes, per update) and ``runs.md`` (table, command, date, machine, commit).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

VARIANTS = ("kronecker", "diagonal")


def _register(env_id: str) -> None:
    import gymnasium as gym

    if env_id.startswith("MinAtar/") and env_id not in gym.registry:
        from minatar.gym import register_envs

        register_envs()


def run(env_id: str, variant: str, steps: int, seed: int) -> tuple[dict, list[dict]]:
    import natpg
    import natpg.methods.kfac as kfac_module
    import natpg.scores

    _register(env_id)

    def compute_scores(*args, **kwargs):  # the rule's own unfold_conv=True overridden (a worker runs both variants)
        return natpg.scores.compute_scores(*args, **{**kwargs, "unfold_conv": variant == "kronecker"})

    kfac_module.compute_scores = compute_scores
    result = natpg.train(env_id, "kfac", steps, seed=seed)
    s = result.summary
    row = dict(env=env_id, variant=variant, seed=seed, steps=s["steps"], final_return=s["final_return"],
               episodes=s["episodes"], wall_time=s["wall_time"], update_time_mean=s["update_time_mean"])
    curve = [dict(variant=variant, seed=seed, timesteps=r["timesteps"], return_last_20_episodes=r["episode_return_mean"])
             for r in result.metrics]
    return row, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kfac_conv")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(args.env, v, args.steps, seed) for seed in args.seeds for v in VARIANTS]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, *zip(*jobs)))
    rows = [row for row, _ in results]
    for name, table in (("runs.csv", rows), ("curves.csv", [c for _, curve in results for c in curve])):
        with open(args.out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# K-FAC on {args.env}: Kronecker factors for Conv2d vs the diagonal fallback",
        "",
        f"Command: `PYTHONPATH=. nice -n 15 python benchmarks/kfac_conv.py {shlex.join(sys.argv[1:])}`  ",
        f"Date: {_dt.date.today()}; machine: {platform.machine()}, {os.cpu_count()} cores ({platform.platform()}), "
        f"shared with a running benchmark sweep; commit {commit}.",
        "",
        "| variant | seed | final return | episodes | wall time (s) | mean update time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['final_return']:.3f} | {r['episodes']} | {r['wall_time']:.0f} | "
                     f"{r['update_time_mean']:.2f} |")
    (args.out / "runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
