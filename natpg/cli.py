"""Command line: ``natpg train | eval | methods``.

Flags are generated from :class:`~natpg.config.TrainConfig` and from the constructor
signatures of the registered update rules, so a new rule's hyperparameters get flags
without touching this file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Sequence

from natpg import methods
from natpg.config import TrainConfig, resolve_config

__all__ = ["main", "build_parser"]

# Trainer fields whose flag name is not the field name.
_FLAG_NAMES = {"env_id": "env", "total_steps": "steps"}
_SKIP = {"method_kwargs"}


class CLIError(Exception):
    pass


def _parse_hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 64,64, got {text!r}") from None
    return sizes


def _argument_type(hint: Any) -> tuple[Any, bool]:
    """(argparse type, is_bool) for a type hint such as ``int | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else hint
    if base is bool:
        return None, True
    if typing.get_origin(base) is tuple or base is tuple:
        return _parse_hidden, False
    if base in (int, float, str):
        return base, False
    return str, False


def _add_flag(group, name: str, hint: Any, help_text: str) -> None:
    flag = "--" + _FLAG_NAMES.get(name, name).replace("_", "-")
    arg_type, is_bool = _argument_type(hint)
    if is_bool:
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
    else:
        group.add_argument(flag, dest=name, type=arg_type, default=argparse.SUPPRESS, help=help_text)


def _method_hints() -> dict[str, tuple[Any, str]]:
    """Union of all rules' keyword-only hyperparameters: name -> (type hint, help)."""
    out: dict[str, tuple[Any, str]] = {}
    for name in methods.available():
        cls = methods.get(name)
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            hints = typing.get_type_hints(init)
            for param, default in cls.hyperparameters().items():
                if param in hints and param not in out:
                    out[param] = (hints[param], f"{param} of the update rule (default depends on --method)")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="natpg", description="Natural policy gradients for deep RL.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one method on one environment")
    hints = typing.get_type_hints(TrainConfig)
    run = train.add_argument_group("run")
    for f in fields(TrainConfig):
        if f.name in _SKIP:
            continue
        default = f.default if f.default is not MISSING else None
        _add_flag(run, f.name, hints[f.name], f"{f.metadata.get('help', '')} (default: {default})")
    rule = train.add_argument_group("update rule hyperparameters (see `natpg methods`)")
    trainer_names = {f.name for f in fields(TrainConfig)}
    for name, (hint, help_text) in sorted(_method_hints().items()):
        if name not in trainer_names:
            _add_flag(rule, name, hint, help_text)
    train.add_argument("--out", type=Path, default=None, help="run directory (default: runs/ENV_METHOD_seedS)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    ev = sub.add_parser("eval", help="evaluate a saved policy")
    ev.add_argument("--run", type=Path, required=True, help="run directory written by natpg train")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=10_000)
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mean/argmax")

    sub.add_parser("methods", help="list the registered update rules and their hyperparameters")
    from natpg.bench.cli import add_subcommands as _add_bench_subcommands  # natpg bench | report

    _add_bench_subcommands(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from natpg.trainer import train as run_training

    values = {k: v for k, v in vars(args).items() if k not in {"command", "out", "overwrite", "progress"}}
    env_id = values.pop("env_id", TrainConfig.env_id)
    method = values.pop("method", TrainConfig.method)
    preset = values.pop("preset", None)
    config = resolve_config(env_id, method, preset, **values)
    out = args.out or Path("runs") / f"{env_id.replace(':', '_')}_{method}_seed{config.seed}"
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise CLIError(f"run directory {out} already exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    result = run_training(config, run_dir=out, progress=args.progress)
    s = result.summary
    final = "n/a" if s["final_return"] is None else f"{s['final_return']:.1f}"
    print(
        f"natpg {method} on {env_id}, seed {config.seed}: final return {final} "
        f"({s['final_return_basis']}), {s['steps']} steps in {s['wall_time']:.1f} s "
        f"({s['steps_per_second']:.0f} steps/s), {s['episodes']} episodes; run directory {out}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from natpg.api import evaluate

    r = evaluate(args.run, episodes=args.episodes, seed=args.seed, deterministic=not args.stochastic)
    mode = "stochastic" if args.stochastic else "deterministic"
    print(f"{r['method']} on {r['env_id']}: mean return {r['mean']:.2f} ± {r['std']:.2f} over {r['episodes']} episodes ({mode})")
    return 0


def _methods(args: argparse.Namespace) -> int:
    for name in methods.available():
        cls = methods.get(name)
        hp = ", ".join(f"{k}={v}" for k, v in cls.hyperparameters().items())
        print(f"{name:16s} {cls.summary}\n{'':16s} {hp}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from natpg.bench.cli import HANDLERS as _BENCH_HANDLERS

    handler = {"train": _train, "eval": _eval, "methods": _methods, **_BENCH_HANDLERS}[args.command]
    try:
        return handler(args)
    except (ValueError, CLIError) as exc:
        print(f"natpg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("natpg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
