"""Returns of the natural-gradient baselines (ac-cg, trpo, kfac, ef-exact) with their default
hyperparameters and natpg's default trainer settings.

Two suites (``--suite``):

- ``cartpole``: CartPole-v1 (its default horizon, 500), 150k steps, seeds 0 1 2. The target
  is a mean return >= 195: the table gives the final return (episodes ending in the last
  10% of steps), the best 20-episode running mean and the first step at which that running
  mean reached 195.
- ``halfcheetah``: HalfCheetah-v5, 300k steps, seed 0.

Each run's summary and a compact learning curve go to ``--out/<env>_<method>_seed<s>.json``;
``--out/<suite>.md`` gathers the table with the command, date and machine. Runs are
sequential, one torch thread each. Run with ``nice``::

    nice -n 10 python benchmarks/baselines.py --suite cartpole
    nice -n 10 python benchmarks/baselines.py --suite halfcheetah
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

METHODS = ("ac-cg", "trpo", "kfac", "ef-exact")
SUITES = {
    "cartpole": {"env": "CartPole-v1", "steps": 150_000, "seeds": (0, 1, 2), "target": 195.0},
    "halfcheetah": {"env": "HalfCheetah-v5", "steps": 300_000, "seeds": (0,), "target": None},
}


def run_one(env: str, method: str, steps: int, seed: int, target: float | None, out: Path) -> dict:
    from natpg.config import resolve_config
    from natpg.trainer import train

    config = resolve_config(env, method, total_steps=steps, seed=seed)
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    rows = result.metrics
    curve = [(r["timesteps"], r["episode_return_mean"]) for r in rows]
    finite = [(t, v) for t, v in curve if not math.isnan(v)]
    record = {
        **result.summary,
        "method_kwargs": config.method_kwargs,
        "best_running_mean": max((v for _, v in finite), default=None),
        "first_step_at_target": next((t for t, v in finite if target is not None and v >= target), None),
        "target": target,
        "update_time_ms": 1000.0 * result.summary["update_time_mean"],
        "wall_time": wall,
        "curve": curve[:: max(1, len(curve) // 50)],
    }
    (out / f"{env}_{method}_seed{seed}.json").write_text(json.dumps(record, indent=1))
    return record


def machine() -> str:
    import torch

    return f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated method names")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the suite's)")
    parser.add_argument("--steps", type=int, default=None, help="environment steps (default: the suite's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "baselines"))
    args = parser.parse_args(argv)
    suite = SUITES[args.suite]
    steps = args.steps or suite["steps"]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(suite["seeds"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    started = _dt.datetime.now().isoformat(timespec="seconds")
    lines = []
    total = time.perf_counter()
    for method in args.methods.split(","):
        records = []
        for seed in seeds:
            rec = run_one(suite["env"], method, steps, seed, suite["target"], out)
            records.append(rec)
            print(
                f"{suite['env']} {method} seed {seed}: final {rec['final_return']:.1f}, best running mean "
                f"{rec['best_running_mean']:.1f}, update {rec['update_time_ms']:.1f} ms, wall {rec['wall_time']:.0f} s",
                flush=True,
            )
        finals = [r["final_return"] for r in records]
        kwargs = ", ".join(f"{k}={v}" for k, v in records[0]["method_kwargs"].items())
        reached = [r["first_step_at_target"] for r in records]
        lines.append(
            "| `{}` | {} | {} | {} | {} | {:.1f} | {:.0f} | {} |".format(
                method,
                " / ".join(f"{f:.1f}" for f in finals),
                f"{sum(finals) / len(finals):.1f}",
                " / ".join(f"{r['best_running_mean']:.1f}" for r in records),
                " / ".join("-" if t is None else f"{t // 1000}k" for t in reached) if suite["target"] else "n/a",
                sum(r["update_time_ms"] for r in records) / len(records),
                sum(r["wall_time"] for r in records),
                kwargs,
            )
        )
    header = [
        f"# Natural-gradient baselines: {suite['env']}, {steps} steps, seeds {', '.join(map(str, seeds))}",
        "",
        f"- command: `{command}`",
        f"- date: {started}; total wall time {time.perf_counter() - total:.0f} s",
        f"- machine: {machine()}",
        "- settings: natpg defaults (T = 1000, 64-64 tanh, critic 10 Adam steps, γ 0.99, λ_GAE 0.9, the env's own horizon), "
        "each method's default hyperparameters",
        "- final = mean return of the episodes ending in the last 10% of steps; best = best 20-episode running mean; "
        "at target = first step at which the running mean reached the target"
        + (f" ({suite['target']:g})" if suite["target"] else ""),
        "- update ms = the trainer's mean `update_time` per iteration (GAE, actor update with its diagnostics, "
        "10 critic steps), on a shared 2-core machine; see update_cost.md for the cost of the actor update alone",
        "",
        "| method | final (per seed) | final mean | best running mean | at target | update ms | wall s | hyperparameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    (out / f"{args.suite}.md").write_text("\n".join(header + lines) + "\n")
    print("\n".join(header + lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
