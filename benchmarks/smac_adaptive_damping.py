"""Adaptive damping (Levenberg–Marquardt style, ``--adaptive-damping``) against fixed λ.

Side by side, same seeds and budget, ``--preset paper`` for every run:

- HalfCheetah-v5: batch-mean ``smac`` and single-sample ``smac-single`` (Algorithm 1), each
  with the paper's fixed λ and with adaptive λ (starting at the paper's λ, KL target 0.01);
  ``ac-sgd-matched`` (the step-size control) for reference;
- CartPole-v1: ``smac`` fixed vs adaptive.

Runs are natpg run directories under ``--out/raw/ENV/VARIANT/seedS`` (the checkpoint is
deleted); finished runs are skipped. Writes ``smac_adaptive_damping.{csv,md,png}``.

    nice -n 10 python benchmarks/smac_adaptive_damping.py
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fig1_ablation import _mean_std, _smac_values, machine, read_run, return_cell, train_run  # noqa: E402

ADAPTIVE = {"adaptive_damping": True, "kl_target": 0.01}
#: env -> [(variant label, method, overrides)]
PLAN = {
    "HalfCheetah-v5": [
        ("smac fixed λ", "smac", {}),
        ("smac adaptive λ", "smac", ADAPTIVE),
        ("smac-single fixed λ", "smac-single", {}),
        ("smac-single adaptive λ", "smac-single", ADAPTIVE),
        ("ac-sgd-matched", "ac-sgd-matched", {}),
        # Post hoc, from the adaptive runs (median λ over their updates, 3 seeds: 0.13): is the
        # gain the adaptation, or only a smaller λ, i.e. a longer step?
        ("smac fixed λ=0.13", "smac", {"damping": 0.13}),
        ("ac-sgd-matched λ=0.13", "ac-sgd-matched", {"damping": 0.13}),
    ],
    "CartPole-v1": [
        ("smac fixed λ", "smac", {}),
        ("smac adaptive λ", "smac", ADAPTIVE),
    ],
}


def _slug(label: str) -> str:
    return label.replace(" ", "_").replace("λ", "lambda")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="HalfCheetah-v5=100000,CartPole-v1=100000", help="ENV=STEPS,...")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "smac_adaptive_damping"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    budgets = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(","))}
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))

    if not args.report_only:
        import torch

        torch.set_num_threads(1)
        for seed in seeds:
            for env, variants in PLAN.items():
                for label, method, overrides in variants:
                    run_dir = out / "raw" / env / _slug(label) / f"seed{seed}"
                    if (run_dir / "summary.json").exists():
                        continue
                    hp = {**(_smac_values(env) if method.startswith("smac") else {}), **overrides}
                    if method == "ac-sgd-matched":
                        hp = {**_smac_values(env), **overrides}
                    train_run(env, label, method, hp, seed, budgets[env], run_dir)

    table, curves = [], {}
    for env, variants in PLAN.items():
        for label, method, overrides in variants:
            finals, kls, lams, walls, stopped = [], [], [], [], []
            for seed in seeds:
                run_dir = out / "raw" / env / _slug(label) / f"seed{seed}"
                if not (run_dir / "summary.json").exists():
                    continue
                summary, rows = read_run(run_dir)
                if summary.get("status", "completed") != "completed":
                    stopped.append(f"seed {seed} at {summary['steps']:,}")
                else:
                    curves.setdefault((env, label), []).append(rows)
                    walls.append(summary["wall_time"])
                    if summary["final_return"] is not None:
                        finals.append(summary["final_return"])
                finite = sorted(x for x in (float(r["kl"]) for r in rows) if math.isfinite(x))
                kls.append(finite[len(finite) // 2] if finite else math.nan)
                lams.append(float(rows[-1]["damping"]) if "damping" in rows[-1] else math.nan)
            if not kls:
                continue
            mean, std = _mean_std(finals)
            table.append({"env": env, "variant": label, "method": method, "seeds": len(kls), "steps": budgets[env],
                          "completed": len(finals), "final_return_mean": round(mean, 1), "final_return_std": round(std, 1),
                          "diverged": "; ".join(stopped), "median_kl": f"{sum(kls) / len(kls):.2e}", "final_damping": ", ".join(f"{x:.3g}" for x in lams),
                          "wall_time_s": round(sum(walls) / len(walls), 1) if walls else math.nan})
    with open(out / "smac_adaptive_damping.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]) if table else ["env"])
        w.writeheader()
        w.writerows(table)
    lines = [
        "# Adaptive damping vs fixed λ",
        "",
        f"- command: `{command}`",
        f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {machine()}, 1 torch thread, `nice -n 10`, shared",
        f"- budget: {', '.join(f'{k} {v:,} steps' for k, v in budgets.items())}; seeds {', '.join(map(str, seeds))} — small budgets",
        "- `--preset paper` everywhere; SMAC variants at the paper's η and λ (λ is the *starting* value when adaptive); "
        f"adaptive: `--adaptive-damping --kl-target {ADAPTIVE['kl_target']}` with the defaults "
        "`--damping-factor 1.5 --damping-min 1e-4 --damping-max 1e4` (λ ×1.5 when the realised KL > 2× target, "
        "÷1.5 when < ½× target)",
        "- median KL: the median over updates of the realised KL(π_old‖π_new) on the batch, averaged over seeds; "
        "final λ: per seed",
        "- the two `λ=0.13` rows were added after the adaptive runs (post hoc): fixed λ at the median λ of the "
        "adaptive HalfCheetah runs, to tell the adaptation from a smaller λ, and SMAC from AC-SGD at that step",
        "- a run whose updates turned non-finite is stopped by the trainer and listed as diverged (its return is "
        "left out of the mean)",
        "",
        "| env | variant | final return (completed seeds) | diverged | median KL per update | final λ | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        wall = "—" if math.isnan(r["wall_time_s"]) else f"{r['wall_time_s']:.1f}"
        lams = "—" if "nan" in r["final_damping"] else r["final_damping"]
        lines.append(f"| {r['env']} | {r['variant']} | {return_cell(r)} | {r['diverged'] or '—'} | "
                     f"{r['median_kl']} | {lams} | {wall} |")
    (out / "smac_adaptive_damping.md").write_text("\n".join(lines) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, axes = plt.subplots(2, len(PLAN), figsize=(6 * len(PLAN), 7.5), squeeze=False)
    for col, (env, variants) in enumerate(PLAN.items()):
        for label, _, _ in variants:
            runs = curves.get((env, label))
            if not runs:
                continue
            n = min(len(r) for r in runs)
            x = [float(runs[0][i]["timesteps"]) for i in range(n)]
            axes[0][col].plot(x, [sum(float(r[i]["episode_return_mean"]) for r in runs) / len(runs) for i in range(n)], label=label)
            if "damping" in runs[0][0]:
                axes[1][col].plot(x, [float(runs[0][i]["damping"]) for i in range(n)], label=f"{label} (seed {seeds[0]})")
        axes[0][col].set_title(env)
        axes[0][col].set_ylabel("mean return (last 20 episodes)")
        axes[1][col].set_ylabel("damping λ")
        axes[1][col].set_yscale("log")
        for row in (0, 1):
            axes[row][col].set_xlabel("environment steps")
            axes[row][col].grid(alpha=0.3)
            axes[row][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "smac_adaptive_damping.png", dpi=110)
    print(f"wrote {out}/smac_adaptive_damping.{{csv,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
