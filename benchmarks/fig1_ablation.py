"""The SMAC paper's Figure 1 ablation: single-sample (Algorithm 1) vs batch-mean SMAC.

Variants, each with the paper's Table 2 values for the environment (``--preset paper``:
T = 1000, horizon 1000, SMAC's η and λ, critic α) and the same η, λ for every SMAC variant:

- ``single``: ``smac-single``, Algorithm 1 — 1000 sequential steps per rollout;
- ``B=1``: ``smac --batch-size 1`` — the same algorithm through the generic batch code path
  (one score computation per sample), for its wall time; by default only the first seed;
- ``B=10``, ``B=100``, ``B=1000``: batch-mean ``smac``, T/B steps per rollout;
- ``ac-sgd``: the paper's AC-SGD at its own η; ``ac-sgd-matched``: AC-SGD at SMAC's η/λ.

Every run is a natpg run directory under ``--out/raw/ENV/VARIANT/seedS`` (config.json,
metrics.csv, summary.json; the checkpoint is deleted). Finished runs are skipped, so the
script resumes where it stopped. Then writes ``fig1.csv``, ``fig1.md`` and ``fig1.png``.

    nice -n 10 python benchmarks/fig1_ablation.py --steps 100000 --seeds 0,1
    python benchmarks/fig1_ablation.py --report-only
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from natpg.runlog import cpu_model  # noqa: E402

ENVS = ("HalfCheetah-v5", "Hopper-v5")
#: (label, method, method overrides); None in batch_size means "no override".
VARIANTS = [
    ("single", "smac-single", {}),
    ("B=1", "smac", {"batch_size": 1}),
    ("B=10", "smac", {"batch_size": 10}),
    ("B=100", "smac", {"batch_size": 100}),
    ("B=1000", "smac", {"batch_size": 1000}),
    ("ac-sgd", "ac-sgd", {}),
    ("ac-sgd-matched", "ac-sgd-matched", {}),
]
OPTIONAL = {"single-lr1e-3": ("smac-single", {"lr": 1e-3})}


def _slug(label: str) -> str:
    return label.replace("=", "").replace(" ", "_")


def _smac_values(env: str) -> dict:
    from natpg.config import resolve_config

    kwargs = resolve_config(env, "smac", "paper").method_kwargs
    return {"lr": kwargs["lr"], "damping": kwargs["damping"]}


def run_one(env: str, label: str, method: str, overrides: dict, seed: int, steps: int, out: Path) -> Path:
    run_dir = out / "raw" / env / _slug(label) / f"seed{seed}"
    if (run_dir / "summary.json").exists():
        return run_dir
    if run_dir.exists():  # an interrupted run: start it again
        for f in run_dir.iterdir():
            if f.is_file():
                f.unlink()
    hp = dict(overrides)
    if method.startswith("smac"):
        hp = {**_smac_values(env), **hp}
    train_run(env, label, method, hp, seed, steps, run_dir)
    return run_dir


def train_run(env: str, label: str, method: str, hp: dict, seed: int, steps: int, run_dir: Path) -> dict:
    """One natpg run with the paper preset into ``run_dir`` (checkpoint deleted); a run the
    trainer stops as diverged keeps its summary, whose ``status`` says so."""
    import natpg
    from natpg.trainer import TrainingStopped

    t0 = time.perf_counter()
    try:
        summary = natpg.train(env, method=method, total_steps=steps, seed=seed, preset="paper", out=run_dir, **hp).summary
    except TrainingStopped as stop:  # diverged: the trainer wrote a summary with its status
        summary = stop.summary
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    status = summary.get("status", "completed")
    print(f"{env:15s} {label:24s} seed {seed}: final return {summary['final_return']:9.1f}  {status} at "
          f"{summary['steps']} steps  {time.perf_counter() - t0:6.1f} s", flush=True)
    return summary


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return summary, rows


def return_cell(row: dict) -> str:
    """A table cell: mean ± std of the completed seeds' final returns (completed/seeds)."""
    if not row["completed"]:
        return f"— (0/{row['seeds']})"
    return f"{row['final_return_mean']:.1f} ± {row['final_return_std']:.1f} ({row['completed']}/{row['seeds']})"


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    return m, (sum((x - m) ** 2 for x in xs) / len(xs)) ** 0.5


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs"


def report(args: argparse.Namespace, variants: list[tuple[str, str, dict]], command: str) -> None:
    out = Path(args.out)
    table = []
    curves: dict[tuple[str, str], list[list[dict]]] = {}
    for env in args.envs:
        for label, method, _ in variants:
            finals, walls, per_update, stopped = [], [], [], []
            for seed in args.seeds:
                run_dir = out / "raw" / env / _slug(label) / f"seed{seed}"
                if not (run_dir / "summary.json").exists():
                    continue
                summary, rows = read_run(run_dir)
                if summary.get("status", "completed") != "completed":
                    stopped.append(f"seed {seed} diverged at {summary['steps']:,}")
                elif summary["final_return"] is not None:
                    finals.append(summary["final_return"])
                    walls.append(summary["wall_time"])
                per_update.append(sum(float(r["update_time"]) for r in rows) / len(rows))
                curves.setdefault((env, label), []).append((rows, summary.get("status", "completed") == "completed"))
            if not per_update:
                continue
            mean, std = _mean_std(finals)
            table.append({"env": env, "variant": label, "method": method, "seeds": len(per_update), "steps": args.steps,
                          "completed": len(finals), "final_return_mean": round(mean, 1), "final_return_std": round(std, 1),
                          "diverged": "; ".join(stopped),
                          "wall_time_s": round(sum(walls) / len(walls), 1) if walls else "",
                          "update_ms": round(1e3 * sum(per_update) / len(per_update), 1)})
    for env in args.envs:
        ref = next((r for r in table if r["env"] == env and r["variant"] == "B=1000"), None)
        for r in table:
            if r["env"] == env and ref:
                r["update_time_vs_B1000"] = round(r["update_ms"] / ref["update_ms"], 2)
    fields = ["env", "variant", "method", "seeds", "steps", "completed", "final_return_mean", "final_return_std", "diverged",
              "wall_time_s", "update_ms", "update_time_vs_B1000"]
    with open(out / "fig1.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)

    lines = [
        "# Figure 1 ablation: single-sample vs batch-mean SMAC",
        "",
        f"- command: `{command}`",
        f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {machine()}, torch 1 thread per run, "
        "runs one after another with `nice -n 10` on a machine shared with other jobs (wall times are inflated "
        "by that load, roughly alike for all variants)",
        f"- budget: **{args.steps:,} environment steps per run, seeds {', '.join(map(str, args.seeds))}** "
        "(B=1: see below) — far smaller than the paper's (it plots about 1M steps, 5 seeds); "
        "a qualitative check, not a reproduction of its numbers",
        "- settings: `--preset paper` (T = 1000, horizon 1000, γ 0.99, λ_GAE 0.9, critic α from Table 2, "
        "10 critic steps, 64-64 tanh); every SMAC variant uses the paper's SMAC η and λ for the env; "
        "`single` = `smac-single` (Algorithm 1), `B=k` = `smac --batch-size k`",
        "- final return: mean return of the episodes ending in the last 10% of the steps, mean ± std over the seeds "
        "that completed; a run whose updates turned non-finite was stopped by the trainer (`--max-nonfinite-updates`) "
        "and is listed as diverged instead",
        "- update time: mean per rollout of 1000 samples (GAE + actor update + critic fit + diagnostics), "
        "comparable across variants even for diverged runs; wall time: whole run, completed runs only",
        "",
        "| env | variant | final return (completed seeds) | diverged | update time per rollout (ms) | ÷ B=1000 | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        wall = f"{r['wall_time_s']:.1f}" if r["wall_time_s"] != "" else "—"
        lines.append(f"| {r['env']} | {r['variant']} | {return_cell(r)} | {r['diverged'] or '—'} | {r['update_ms']:.1f} | "
                     f"{r.get('update_time_vs_B1000', '')} | {wall} |")
    (out / "fig1.md").write_text("\n".join(lines) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, axes = plt.subplots(2, len(args.envs), figsize=(6 * len(args.envs), 8), squeeze=False)
    for col, env in enumerate(args.envs):
        for label, _, _ in variants:
            found = curves.get((env, label))
            if not found:
                continue
            # Mean over the completed seeds; a variant that diverged on every seed is drawn
            # up to where it stopped, ending in a cross.
            runs = [rows for rows, done in found if done]
            diverged = not runs
            runs = runs or [rows for rows, _ in found]
            n = min(len(r) for r in runs)
            steps = [float(runs[0][i]["timesteps"]) for i in range(n)]
            ret = [sum(float(r[i]["episode_return_mean"]) for r in runs) / len(runs) for i in range(n)]
            busy, total = [], 0.0
            for i in range(n):
                total += sum(float(r[i]["update_time"]) for r in runs) / len(runs)
                busy.append(total)
            style = "-" if label.startswith(("single", "B=")) else "--"
            name = f"{label} (diverged)" if diverged else label
            for ax, x in ((axes[0][col], steps), (axes[1][col], busy)):
                line = ax.plot(x, ret, style, label=name)[0]
                if diverged:
                    ax.plot(x[-1:], ret[-1:], "x", color=line.get_color(), markersize=9)
        axes[0][col].set_title(f"{env} ({args.steps:,} steps, seeds {','.join(map(str, args.seeds))})")
        axes[0][col].set_xlabel("environment steps")
        axes[1][col].set_xlabel("cumulative update time (s): GAE + actor + critic")
        axes[1][col].set_xscale("log")
        for row in (0, 1):
            axes[row][col].set_ylabel("mean return (last 20 episodes)")
            axes[row][col].grid(alpha=0.3)
            axes[row][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fig1.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--steps", type=int, default=100_000, help="environment steps per run")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--b1-seeds", default="0", help="seeds for the slow B=1 variant (a subset of --seeds)")
    parser.add_argument("--extra", default="", help=f"comma-separated optional variants: {', '.join(OPTIONAL)}")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fig1"))
    parser.add_argument("--report-only", action="store_true", help="only aggregate the finished runs")
    args = parser.parse_args(argv)
    args.envs = [e for e in args.envs.split(",") if e]
    args.seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    b1_seeds = [int(s) for s in args.b1_seeds.split(",") if s != ""]
    variants = list(VARIANTS)
    for name in (e for e in args.extra.split(",") if e):
        if name not in OPTIONAL:
            parser.error(f"unknown --extra {name!r} (choose from {', '.join(OPTIONAL)})")
        variants.append((name, *OPTIONAL[name]))
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import torch

        torch.set_num_threads(1)
        # Seed-major order: a cut-short ablation still has every variant for the first seed.
        for seed in args.seeds:
            for env in args.envs:
                for label, method, overrides in variants:
                    if label == "B=1" and seed not in b1_seeds:
                        continue
                    run_one(env, label, method, overrides, seed, args.steps, out)
    report(args, variants, command)
    print(f"wrote {out}/fig1.{{csv,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
