"""Why do the gradient-like rules not learn Pendulum-v1 under the trust region? Two probes.

Not a test: it measures. With the defaults, ``smac``, ``ac-sgd``, ``isopo-ntk`` and ``ac-adam``
end Pendulum-v1 near -930 after 500k steps, while ``trpo``, ``kfac`` and ``ef-exact`` learn it
(docs/choosing.md). Each probe changes one thing about the actor, through natpg's any-actor
interface (natpg's own GaussianActor, 64-64 tanh, log-std -0.5, as the recipe builds it):

* ``gain1``: the output layer initialised orthogonal with gain 1.0 instead of 0.01. Tests whether
  the small output layer starves the hidden layers of gradient, leaving the plain gradient
  to move only the last layer;
* ``fixed-std``: the log-std frozen at -0.5 (``requires_grad=False``). Tests whether the
  std collapses before the mean learns (with the defaults, smac's policy entropy falls from 0.93
  to 0.05 over 500k steps).

Each line of the output (JSON lines) is one run: method, probe, seed, final return (summary.json's),
wall time, date and machine; ``runs.md`` beside it is the table of them (rewritten from all the
lines after every run; ``--table-only`` rewrites it alone).

    nice -n 15 python benchmarks/pendulum_probe.py --methods ac-sgd --probes gain1 fixed-std --seeds 0 1 2 \
        --out benchmarks/results/pendulum-probe/runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

import natpg
from natpg.bench.sweep import machine_info
from natpg.policies import GaussianActor

STEPS = 500_000
LOG_STD = -0.5  # the recipe's log_std_init


def make_actor(probe: str, seed: int):
    def factory(observation_space, action_space):
        torch.manual_seed(seed)
        actor = GaussianActor(observation_space.shape[0], action_space.shape[0], (64, 64), "tanh", LOG_STD)
        if probe == "gain1":
            last = [m for m in actor.net.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.orthogonal_(last.weight, 1.0)
            nn.init.zeros_(last.bias)
        elif probe == "fixed-std":
            actor.log_std.value.requires_grad_(False)
        else:
            raise ValueError(f"unknown probe {probe!r}: gain1 or fixed-std")
        return actor

    return factory


def write_table(out: Path) -> Path:
    """``runs.md`` beside ``out``: mean ± sample std of the final return per (method, probe)."""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["probe"]), []).append(r)
    lines = ["# Pendulum-v1 probes of the gradient-like rules", "",
             "Written by `benchmarks/pendulum_probe.py` from `runs.jsonl` (see the script's docstring for the probes",
             "and the command). Final return: mean of the training episodes that ended in the last 10% of the steps.", "",
             "| method | probe | steps | seeds | final return | per seed | wall time (s) |", "|---|---|---|---|---|---|---|"]
    for (method, probe), g in groups.items():
        g.sort(key=lambda r: r["seed"])
        values = [r["final_return"] for r in g]
        cell = f"{values[0]:.1f}" if len(values) == 1 else f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
        seeds = ", ".join(f"{r['seed']}: {r['final_return']:.1f}" for r in g)
        wall = statistics.mean(r["wall_time"] for r in g)
        lines.append(f"| `{method}` | `{probe}` | {g[0]['steps']} | {len(g)} | {cell} | {seeds} | {wall:.0f} |")
    machines = sorted({f"{r['machine']['cpu_model']}, {r['machine']['cpu_count']} CPUs, torch {r['machine']['torch']}, "
                       f"natpg {r['machine']['natpg_commit'][:7]}" for r in rows})
    dates = sorted(r["date"][:10] for r in rows)
    lines += ["", f"Machine: {'; '.join(machines)}; {dates[0]} to {dates[-1]}; other sweeps shared the cores.", ""]
    table = out.with_name("runs.md")
    table.write_text("\n".join(lines))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["ac-sgd"])
    parser.add_argument("--probes", nargs="+", default=["gain1", "fixed-std"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--table-only", action="store_true", help="only rewrite runs.md from --out")
    args = parser.parse_args()
    if args.table_only:
        print(write_table(args.out))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():  # resume: skip the runs already written
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["probe"], r["seed"]))
    machine = machine_info()
    for seed in args.seeds:
        for method in args.methods:
            for probe in args.probes:
                if (method, probe, seed) in done:
                    continue
                start = time.perf_counter()
                result = natpg.train("Pendulum-v1", method, args.steps, seed, actor=make_actor(probe, seed))
                row = {"method": method, "probe": probe, "seed": seed, "steps": args.steps,
                       "final_return": result.summary["final_return"], "wall_time": time.perf_counter() - start,
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine}
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                write_table(args.out)


if __name__ == "__main__":
    main()
