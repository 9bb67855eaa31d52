"""``natpg bench`` and ``natpg report`` (hooked into natpg.cli by :func:`add_subcommands`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands", "HANDLERS", "bench_main", "report_main"]


def _split_list(values: list[str] | None) -> list[str] | None:
    """``--methods smac ac-sgd`` and ``--methods smac,ac-sgd`` both work; a spec with ``:`` keeps its commas."""
    if values is None:
        return None
    out = []
    for v in values:
        out.extend([v] if ":" in v else [p for p in v.split(",") if p])
    return out


def _parse_override(text: str) -> tuple[str, Any]:
    from natpg.bench.suites import _parse_value

    key, eq, value = text.partition("=")
    if not eq:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), _parse_value(value.strip())


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    from natpg.bench.suites import SUITES

    b = sub.add_parser(
        "bench",
        help="run a resumable sweep of (env, method, seed) training runs",
        description="Run a sweep into OUT, one run directory per (env, method, seed). Rerunning the same "
        "command skips finished runs and resumes interrupted ones. Suites: "
        + "; ".join(f"{n}: {s.description}" for n, s in SUITES.items()),
    )
    b.add_argument("--suite", choices=sorted(SUITES), help="a named suite (envs, methods, seeds, budgets)")
    b.add_argument("--envs", nargs="+", help="Gymnasium ids (override the suite's)")
    b.add_argument("--methods", nargs="+", help="method specs: NAME or NAME:key=value+key=value (e.g. smac:batch_size=1, "
                   "sb3-ppo, rat:preset=rat-authors: a spec's own preset wins over --preset)")
    b.add_argument("--seeds", type=int, help="number of seeds 0..N-1 (default: the suite's, else 3)")
    b.add_argument("--seed-start", type=int, default=0, help="first seed (default 0)")
    b.add_argument("--steps", type=int, help="environment steps per run for every env (default: the suite's budget)")
    b.add_argument("--workers", type=int, default=None, help="parallel runs (default: CPU cores)")
    b.add_argument("--out", type=Path, required=True, help="sweep directory")
    b.add_argument("--backend", choices=("local", "ray"), default="local")
    b.add_argument("--ray-address", default=None, help="Ray cluster address (e.g. auto after `ray start --head`)")
    b.add_argument("--preset", default=None,
                   help="hyperparameter preset (default: the suite's, else natpg's default recipe; 'none' for the bare defaults)")
    b.add_argument("--set", dest="overrides", type=_parse_override, action="append", default=[],
                   help="KEY=VALUE override for every natpg run: a trainer setting, or a method hyperparameter "
                   "(applied to the methods that take it); repeatable")
    b.add_argument("--skip-failed", action="store_true", help="do not retry runs that failed before")
    b.add_argument("--order", choices=("seed", "env"), default="seed",
                   help="seed: every env × method at seed 0 first, then seed 1, ... (default); env: one env at a time")
    b.add_argument("--no-progress", dest="progress", action="store_false")

    r = sub.add_parser("report", help="tables and plots of sweep directories (returns.csv, per-seed outcomes, anchors, "
                       "curves per task, thresholds, adaptive damping; the paper's Table 1 with verdicts, Figures 1-5, "
                       "the update time of the batch-size ablation), and results pages from templates")
    r.add_argument("dirs", nargs="*", type=Path, help="sweep directories written by natpg bench")
    r.add_argument("--out", type=Path, default=None, help="where to write (default: DIR/report)")
    r.add_argument("--no-plots", dest="plots", action="store_false", help="tables only")
    r.add_argument("--pack", action="store_true",
                   help="first store the metrics of every ended run (no checkpoint.pt) as committed results are: "
                   "metrics.csv.xz, the curve and step-size columns on every row, the other diagnostics thinned "
                   "(natpg.runlog.pack_metrics); reports read either")
    r.add_argument("--page", type=Path, action="append", default=[], metavar="TEMPLATE",
                   help="render a results page whole from TEMPLATE (e.g. docs/templates/results.md): its header names "
                   "the page, the sweep directories and their report directories, which are written too; repeatable")


def bench_main(args: argparse.Namespace) -> int:
    from natpg.bench.suites import get_suite
    from natpg.bench.sweep import run_sweep

    suite = get_suite(args.suite) if args.suite else None
    envs = _split_list(args.envs) or (list(suite.envs) if suite else None)
    methods = _split_list(args.methods) or (suite.resolved_methods() if suite else None)
    if not envs or not methods:
        raise ValueError("give --suite NAME, or both --envs and --methods")
    n_seeds = args.seeds if args.seeds is not None else (suite.seeds if suite else 3)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {n_seeds}")
    if args.seed_start < 0:
        raise ValueError(f"--seed-start must be an integer >= 0, got {args.seed_start}")
    seeds = range(args.seed_start, args.seed_start + n_seeds)
    preset = args.preset if args.preset is not None else (suite.preset if suite else None)
    result = run_sweep(
        args.out, envs, methods, seeds=seeds, steps=args.steps, workers=args.workers, backend=args.backend,
        ray_address=args.ray_address, preset=preset, overrides=dict(args.overrides), skip_failed=args.skip_failed, order=args.order,
        progress=args.progress, suite=suite,
        command="natpg " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("bench"):]) if "bench" in sys.argv else None,
    )
    if result.failed:
        print(f"natpg bench: {len(result.failed)} run(s) failed (see error.json in their directories):", file=sys.stderr)
        for key, err in result.failed.items():
            print(f"  {key}: {err}", file=sys.stderr)
        return 1
    return 0


def report_main(args: argparse.Namespace) -> int:
    from natpg.bench.report import render_page, write_report

    if not args.dirs and not args.page:
        raise ValueError("give sweep directories, or --page TEMPLATE")
    if args.pack:
        from natpg.bench.report.page import read_template
        from natpg.bench.report.runs import pack_runs

        dirs = [*args.dirs, *(d for t in args.page for ds, _ in read_template(t).sets.values() for d in ds)]
        print(f"natpg report: packed the metrics of {pack_runs(dict.fromkeys(dirs))} runs")
    if args.dirs:
        out = args.out or (args.dirs[0] / "report")
        files = write_report(args.dirs, out, plots=args.plots)
        print(f"natpg report: wrote {len(files)} files to {out}")
        for f in files:
            print(f"  {f}")
    elif args.out is not None:
        raise ValueError("--out is for sweep directories; a --page template names its own report directories")
    for template in args.page:
        page, _, files = render_page(template, plots=args.plots)
        print(f"natpg report: rendered {page} from {template} ({len(files) - 1} report files)")
    return 0


HANDLERS = {"bench": bench_main, "report": report_main}
