"""Memory benchmark: resident set size (RSS) along one long natpg training run.

Runs ``natpg.train`` once (default: SMAC on HalfCheetah-v5 for 1M steps, default settings,
writing a real run directory with its checkpoints) and samples after every update the
current RSS (/proc/self/statm) and the peak RSS (getrusage ru_maxrss). Writes OUT.csv (one
row per ``--every`` steps) and OUT.md (peak, RSS at points along the run, and the slope of
RSS over the second half of the run, which is ~0 if memory does not grow with steps).

    nice -n 10 python benchmarks/memory.py --out benchmarks/results/memory
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from natpg.runlog import cpu_model  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux





def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--method", default="smac")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--every", type=int, default=10_000, help="steps between CSV rows")
    p.add_argument("--out", default=None, help="write OUT.csv and OUT.md")
    args = p.parse_args(argv)

    import torch

    import natpg
    import natpg.runlog as runlog

    samples: list[dict] = []
    start = time.perf_counter()
    rss_before_import_work = rss_mb()
    log = runlog.RunLog.log

    def sampling_log(self, row):
        log(self, row)
        t = int(row["timesteps"])
        if t % args.every == 0 or t == args.steps:
            samples.append({"timesteps": t, "rss_mb": round(rss_mb(), 2), "peak_rss_mb": round(peak_mb(), 2),
                            "wall_s": round(time.perf_counter() - start, 2)})

    runlog.RunLog.log = sampling_log
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            result = natpg.train(args.env, method=args.method, total_steps=args.steps, seed=0, out=Path(run_dir) / "run")
    finally:
        runlog.RunLog.log = log
    wall = time.perf_counter() - start

    t = np.array([s["timesteps"] for s in samples], dtype=float)
    rss = np.array([s["rss_mb"] for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], rss[half], 1)[0]) * 100_000 if half.sum() >= 2 else float("nan")

    def at(step: int) -> str:
        i = int(np.argmin(np.abs(t - step)))
        return f"{rss[i]:.1f} MB (at {int(t[i]):,})"

    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    lines = [
        f"- command: `{command}` (nice {os.nice(0)})",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; wall time {wall:.0f} s; "
        f"{result.summary['steps']:,} steps at {result.summary['steps_per_second']:,.0f} steps/s (wall, shared machine)",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs (shared), python {platform.python_version()}, "
        f"torch {torch.__version__}, natpg {natpg.__version__}",
        f"- run: {args.method} on {args.env}, default settings, run directory written (metrics.csv, checkpoints)",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| RSS after imports, before training | {rss_before_import_work:.1f} MB |",
        f"| RSS after the first {int(t[0]):,} steps | {rss[0]:.1f} MB |",
        f"| RSS at 10% / 50% / 100% of the run | {at(args.steps // 10)} / {at(args.steps // 2)} / {at(args.steps)} |",
        f"| peak RSS (ru_maxrss) | {peak_mb():.1f} MB |",
        f"| RSS slope over the second half (least squares) | {slope:+.3f} MB per 100k steps |",
        f"| RSS max − min after the first 10% | {rss[t >= t[-1] / 10].max() - rss[t >= t[-1] / 10].min():.2f} MB |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text + "\n")
        with open(out.with_suffix(".csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
