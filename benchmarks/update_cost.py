"""Wall time of ONE actor update, every registered method, against the parameter count d.

A benchmark, not a test. For each MLP width w (two hidden layers, Gaussian policy with
HalfCheetah's dimensions: 17 observations, 6 actions, so d = w² + 25w + 12) and each method
of ``natpg.methods.available()`` (or ``--methods``): the actor, a batch of ``--samples``
transitions (observations ~ N(0, I), actions sampled from the policy, advantages ~ N(0, 1))
and the rule with its default hyperparameters; timed is ``rule.update(batch,
diagnostics=False)`` — the pure update, no common diagnostics — with torch at ``--threads``
threads, the parameters restored before each call (untimed).

Per width, two phases. Probe: each method alone in a fresh process (warm-up + one call)
under ``--max-memory-gb`` (resident memory, polled) and ``--max-seconds``; a method over a
limit is marked skipped, with the reason, and not tried at larger d. Timing: the methods
that passed, in one process, one warm-up each, then up to ``--repeats`` calls each taken
round-robin, so that all of them see the same background load; the median is reported
(process CPU time and wall time; fewer calls for slow methods).

Writes ``update_cost.csv``, ``update_cost.md`` (table, ratios to ac-sgd, command, date,
machine) and ``update_cost.png`` (log-log) into ``--out``.

    nice -n 10 python benchmarks/update_cost.py                 # every method, all widths
    python benchmarks/update_cost.py --methods ac-sgd,smac --widths 64,256
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from natpg.runlog import cpu_model  # noqa: E402

WIDTHS = (64, 128, 256, 512, 1000)  # d ≈ 5.7e3, 1.96e4, 7.2e4, 2.75e5, 1.03e6
OBS_DIM, ACT_DIM = 17, 6
REFERENCE = "ac-sgd"


def param_count(width: int) -> int:
    return (OBS_DIM + 1) * width + (width + 1) * width + (width + 1) * ACT_DIM + ACT_DIM


# -- workers ---------------------------------------------------------------------------------


def _setup(method: str, width: int, samples: int):
    import torch

    from natpg import methods
    from natpg.methods.base import PolicyBatch
    from natpg.policies import GaussianActor

    torch.manual_seed(0)
    actor = GaussianActor(OBS_DIM, ACT_DIM, (width, width), "tanh")
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(samples, OBS_DIM, generator=gen)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    batch = PolicyBatch(obs, actions, torch.randn(samples, generator=gen))
    rule = methods.make(method, actor)
    start_state = {k: v.clone() for k, v in actor.state_dict().items()}

    def timed() -> tuple[float, float]:
        actor.load_state_dict(start_state)
        c0, t0 = time.process_time(), time.perf_counter()
        rule.update(batch, diagnostics=False)
        return time.perf_counter() - t0, time.process_time() - c0

    return timed


def worker(args: argparse.Namespace) -> None:
    """--probe: one method, warm-up + one call (run under the driver's limits).
    --interleave: every listed method at one width, timed round-robin so that all of them
    see the same background load."""
    import torch

    torch.set_num_threads(args.threads)
    names = args.method.split(",")
    timers = {name: _setup(name, args.width, args.samples) for name in names}
    if args.probe:
        timers[names[0]]()
        wall, cpu = timers[names[0]]()
        print(json.dumps({"wall": wall, "cpu": cpu}))
        return
    budget = json.loads(args.budget)  # repeats per method
    for timed in timers.values():  # warm-up
        timed()
    results: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(max(budget.values())):
        for name in names:
            if r < budget[name]:
                wall, cpu = timers[name]()
                results[name]["wall"].append(wall)
                results[name]["cpu"].append(cpu)
    print(json.dumps(results))


# -- driver ---------------------------------------------------------------------------------


def _rss_gb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _run_worker(extra: list[str], args: argparse.Namespace, time_limit: float) -> tuple[str | None, str, float]:
    """(reason it was stopped or failed, or None; stdout; peak RSS in GB)."""
    cmd = [sys.executable, __file__, "--worker", "--samples", str(args.samples), "--threads", str(args.threads), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, peak, reason = time.monotonic(), 0.0, None
    while proc.poll() is None:
        peak = max(peak, _rss_gb(proc.pid))
        if peak > args.max_memory_gb:
            reason = f"memory > {args.max_memory_gb:g} GB"
        elif time.monotonic() - start > time_limit:
            reason = f"time > {time_limit:g} s"
        if reason:
            proc.kill()
            proc.wait()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    if reason is None and proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        reason = f"error: {last[:120]}"
    return reason, out, peak


def _empty_row(method: str, width: int, args: argparse.Namespace, status: str, peak="") -> dict:
    return {"method": method, "width": width, "d": param_count(width), "samples": args.samples, "threads": args.threads,
            "median_ms": "", "min_ms": "", "cpu_median_ms": "", "repeats": 0, "peak_rss_gb": peak, "status": status}


def run_width(names: list[str], width: int, args: argparse.Namespace, given_up: dict[str, str]) -> list[dict]:
    """Probe each method alone (memory and time limits), then time the survivors interleaved."""
    rows: dict[str, dict] = {}
    probe_time: dict[str, float] = {}
    for name in names:
        if name in given_up:
            rows[name] = _empty_row(name, width, args, f"skipped: {given_up[name]} at a smaller d")
            continue
        reason, out, peak = _run_worker(["--probe", "--method", name, "--width", str(width)], args, args.max_seconds)
        if reason:
            given_up[name] = reason
            rows[name] = _empty_row(name, width, args, f"skipped: {reason}", round(peak, 2))
            continue
        probe_time[name] = json.loads(out.strip().splitlines()[-1])["wall"]
        rows[name] = _empty_row(name, width, args, "ok", round(peak, 2))
    if probe_time:
        # Up to --repeats calls each, fewer for slow methods: about max_seconds/4 per method.
        budget = {n: max(1, min(args.repeats, int(0.25 * args.max_seconds / max(t, 1e-9)))) for n, t in probe_time.items()}
        limit = 3 * sum(budget[n] * probe_time[n] for n in budget) + 60 + 2 * args.max_seconds
        ok = list(probe_time)
        reason, out, _ = _run_worker(["--method", ",".join(ok), "--width", str(width), "--budget", json.dumps(budget)],
                                     args, limit)
        if reason:
            for n in ok:
                rows[n]["status"] = f"skipped: interleaved timing failed ({reason})"
        else:
            results = json.loads(out.strip().splitlines()[-1])
            for n in ok:
                wall, cpu = results[n]["wall"], results[n]["cpu"]
                rows[n].update(median_ms=1e3 * statistics.median(wall), min_ms=1e3 * min(wall),
                               cpu_median_ms=1e3 * statistics.median(cpu), repeats=len(wall))
    return [rows[n] for n in names]


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def write_outputs(rows: list[dict], args: argparse.Namespace, command: str, wall: float) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key = "cpu_median_ms" if args.metric == "cpu" else "median_ms"
    what = ("process CPU time (at 1 thread: the wall time on an idle core)" if args.metric == "cpu"
            else "wall time")
    fields = ["method", "width", "d", "samples", "threads", "median_ms", "min_ms", "cpu_median_ms", "ratio_to_ac_sgd",
              "ratio_metric", "repeats", "peak_rss_gb", "status"]
    ref = {r["width"]: r[key] for r in rows if r["method"] == REFERENCE and r["status"] == "ok"}
    for r in rows:
        r["ratio_metric"] = args.metric
        r["ratio_to_ac_sgd"] = round(r[key] / ref[r["width"]], 3) if r["status"] == "ok" and r["width"] in ref else ""
        for k in ("median_ms", "min_ms", "cpu_median_ms"):
            if r.get(k, "") != "":
                r[k] = round(r[k], 3)
    with open(out / f"{args.name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    method_names = list(dict.fromkeys(r["method"] for r in rows))
    widths = list(dict.fromkeys(r["width"] for r in rows))
    cell = {(r["method"], r["width"]): r for r in rows}
    lines = [
        f"# Update cost: one actor update on {args.samples} samples",
        "",
        f"- command: `{command}`",
        f"- date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; total benchmark wall time {wall:.0f} s",
        f"- machine: {machine()}; torch {torch.__version__} at **{args.threads} thread(s)**; "
        "a shared machine (other jobs were running)",
        f"- policy: Gaussian MLP, 2 tanh hidden layers of width w, obs {OBS_DIM}, actions {ACT_DIM}; "
        "each method with its default hyperparameters; `update(batch, diagnostics=False)`; "
        f"median of up to {args.repeats} calls after one warm-up, each from the same parameters",
        f"- number shown: median {what}, in ms; in parentheses the ratio to ac-sgd at the same d. "
        "The CSV also has wall-time medians and minima.",
        f"- limits per cell: {args.max_memory_gb:g} GB resident memory, {args.max_seconds:g} s",
        "",
        "| method | " + " | ".join(f"w={w}, d={param_count(w):.2e}" for w in widths) + " |",
        "|---|" + "---|" * len(widths),
    ]
    for m in method_names:
        cells = []
        for w in widths:
            r = cell.get((m, w))
            if r is None:
                cells.append("—")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                ratio = f" ({r['ratio_to_ac_sgd']:.2f}×)" if r["ratio_to_ac_sgd"] != "" else ""
                cells.append(f"{r[key]:.1f}{ratio}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = plt.get_cmap("tab20").colors
    for i, m in enumerate(method_names):
        pts = [(cell[(m, w)]["d"], cell[(m, w)][key]) for w in widths if (m, w) in cell and cell[(m, w)]["status"] == "ok"]
        if pts:
            main_line = m.startswith("smac") or m == REFERENCE
            ax.plot(*zip(*pts), "-o" if main_line else "--.", label=m, linewidth=2.2 if main_line else 1.2,
                    color=colors[(2 * i) % 20 + (i // 10) % 2])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("actor parameters d")
    ax.set_ylabel(f"ms per update ({args.samples} samples, {args.threads} thread(s), {args.metric})")
    ax.set_title("Cost of one actor update")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    from natpg.bench.report.plots import png_bytes

    (out / f"{args.name}.png").write_bytes(png_bytes(fig, dpi=120))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default=None, help="comma-separated method names (default: every registered method)")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="hidden widths (two hidden layers each)")
    parser.add_argument("--samples", type=int, default=1000, help="transitions per update")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--metric", choices=("cpu", "wall"), default=None,
                        help="what the table and plot show: process CPU time or wall time "
                             "(default: cpu at 1 thread, robust on a busy machine; wall otherwise)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per cell (fewer when a call is slow)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time limit per cell, start-up included")
    parser.add_argument("--max-memory-gb", type=float, default=4.0, help="resident-memory limit per cell")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output directory")
    parser.add_argument("--name", default="update_cost", help="file stem of the outputs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.metric is None:
        args.metric = "cpu" if args.threads == 1 else "wall"

    from natpg import methods

    names = methods.available() if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in names:
        methods.get(name)  # unknown names fail here, with suggestions
    if REFERENCE in names:  # the reference first, so ratios are known as the table fills
        names = [REFERENCE] + [n for n in names if n != REFERENCE]
    widths = [int(w) for w in args.widths.split(",")]
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))
    rows, given_up, start = [], {}, time.perf_counter()
    for width in widths:
        for row in run_width(names, width, args, given_up):
            rows.append(row)
            shown = "" if row["median_ms"] == "" else f"wall {row['median_ms']:.1f} ms, cpu {row['cpu_median_ms']:.1f} ms"
            print(f"{row['method']:16s} w={width:5d} d={row['d']:>9,d}  {shown:>32s}  {row['status']}", flush=True)
    write_outputs(rows, args, command, time.perf_counter() - start)
    print(f"wrote {args.out}/{args.name}.{{csv,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
