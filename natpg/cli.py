"""Command line: ``natpg train | eval | methods``.

Flags are generated from :class:`~natpg.config.TrainConfig` and from the hyperparameter
dataclasses of the registered update rules (:mod:`natpg.methods.hyperparameters`), so a new
rule's hyperparameters get flags, with their meanings and defaults, without touching this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Sequence

from natpg import methods
from natpg._messages import did_you_mean, flag, use_wording
from natpg.config import TrainConfig, flag_name, parse_hidden, resolve_config
from natpg.methods.hyperparameters import DERIVED_HELP, REQUIRED, SHARED_HELP, hyperparameter_class
from natpg.presets import NATPG_RECIPE, preset_values

__all__ = ["main", "build_parser"]

_SKIP = {"method_kwargs"}


class CLIError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), with close flag names
    suggested for an unrecognised one; exit status 2 as usual."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            known = sorted(o for o in self._option_string_actions if o.startswith("--"))
            hints = []
            for token in message.split(":", 1)[1].split():
                hint = did_you_mean(token.split("=")[0], known, limit=2, lead="") if token.startswith("--") else ""
                if hint:
                    hints.append(f"{token} → {hint}")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, but unrecognised flags are reported by the subcommand's own parser
    (``natpg train: error: ...``, with suggestions from that subcommand's flags)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _parse_int(text: str) -> int:
    """An integer; ``1e6`` and ``100_000`` are accepted when they are whole numbers."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def _parse_hidden(text: str) -> tuple[int, ...]:
    try:
        return parse_hidden(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _argument_type(hint: Any) -> tuple[Any, bool]:
    """(argparse type, is_bool) for a type hint such as ``int | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args else hint
    if base is bool:
        return None, True
    if typing.get_origin(base) is tuple or base is tuple:
        return _parse_hidden, False
    if base is int:
        return _parse_int, False
    if base in (float, str):
        return base, False
    return str, False


def _add_flag(group, name: str, hint: Any, help_text: str) -> None:
    arg_type, is_bool = _argument_type(hint)
    if is_bool:
        group.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
    else:
        group.add_argument(flag(name), dest=name, type=arg_type, default=argparse.SUPPRESS, help=help_text)


def _method_hints() -> dict[str, tuple[Any, str]]:
    """Every registered rule's hyperparameters: name -> (type hint, help), from the rules'
    dataclasses. The help is the meaning most rules give the field, with each rule's default."""
    hints: dict[str, Any] = {}
    helps: dict[str, list[str]] = {}
    defaults: dict[str, dict[str, list[str]]] = {}
    for method in methods.available():
        hp_class = hyperparameter_class(methods.get(method))
        types = typing.get_type_hints(hp_class)
        for f in fields(hp_class):
            hints.setdefault(f.name, types[f.name])
            helps.setdefault(f.name, []).append(f.metadata.get("help", ""))
            default = "required" if f.default is MISSING else str(f.default)
            defaults.setdefault(f.name, {}).setdefault(default, []).append(method)
    out = {}
    for name, hint in hints.items():
        # the meaning most rules give it; one a rule declared beats one derived from a signature
        meaning = SHARED_HELP.get(name) or max(helps[name], key=lambda h: (not h.startswith(DERIVED_HELP), helps[name].count(h)))
        per_method = "; ".join(f"{value} ({', '.join(ms)})" for value, ms in defaults[name].items())
        recipe: dict[str, list[str]] = {}
        for method, values in NATPG_RECIPE["methods"].items():
            if name in values:
                recipe.setdefault(str(values[name]), []).append(method)
        if recipe:
            per_method += "; the default recipe sets " + "; ".join(f"{v} ({', '.join(ms)})" for v, ms in recipe.items())
        text = f"{meaning} (default: {per_method})"
        if len(set(helps[name])) > 1:
            text += "; each rule's meaning: `natpg methods NAME`"
        out[name] = (hint, text.replace("%", "%%"))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="natpg", description="Natural policy gradients for deep RL.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one method on one environment")
    hints = typing.get_type_hints(TrainConfig)
    run = train.add_argument_group("run")
    for f in fields(TrainConfig):
        if f.name in _SKIP:
            continue
        default = f.default if f.default is not MISSING else None
        shown = f"{default}"
        if f.name in NATPG_RECIPE["shared"] and NATPG_RECIPE["shared"][f.name] != default:
            shown = f"{NATPG_RECIPE['shared'][f.name]} in the default recipe, {default} with --preset none"
        _add_flag(run, f.name, hints[f.name], f"{f.metadata.get('help', '')} (default: {shown})")
    rule = train.add_argument_group("update rule hyperparameters (see `natpg methods`)")
    trainer_names = {f.name for f in fields(TrainConfig)}
    for name, (hint, help_text) in sorted(_method_hints().items()):
        if name not in trainer_names:
            _add_flag(rule, name, hint, help_text)
    train.add_argument("--out", type=Path, default=None, help="run directory (default: runs/ENV_METHOD_seedS)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    train.add_argument(
        "--resume", type=Path, default=None, metavar="DIR",
        help="continue the run in DIR from its last checkpoint, with its settings (only --steps and "
        "--checkpoint-every may change); a run killed at any moment resumes exactly where the env state can be captured",
    )
    train.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    ev = sub.add_parser("eval", help="evaluate a saved policy")
    ev.add_argument("--run", type=Path, required=True, help="run directory written by natpg train")
    ev.add_argument("--episodes", type=_parse_int, default=10)
    ev.add_argument("--seed", type=_parse_int, default=10_000)
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mean/argmax")

    listing = sub.add_parser("methods", help="list the registered update rules, or one rule's hyperparameters")
    listing.add_argument("name", nargs="?", default=None, help="a rule: list its hyperparameters, defaults and meanings")
    from natpg.bench.cli import add_subcommands as _add_bench_subcommands  # natpg bench | report

    _add_bench_subcommands(sub)
    return parser


def _saved_config(run_dir: Path) -> TrainConfig:
    """The configuration a run directory was started with (config.json, else the checkpoint's)."""
    path = run_dir / "config.json"
    if path.exists():
        try:
            return TrainConfig.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError) as exc:
            raise CLIError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
    if (run_dir / "checkpoint.pt").exists():
        from natpg.runlog import read_checkpoint

        return TrainConfig.from_dict(read_checkpoint(run_dir / "checkpoint.pt")["config"])
    if not run_dir.is_dir():
        raise CLIError(f"--resume {run_dir}: no such run directory")
    raise CLIError(f"--resume {run_dir}: nothing to resume there (no config.json or checkpoint.pt); start a run with --out")


def _resumed_config(run_dir: Path, given: dict[str, Any]) -> TrainConfig:
    """The saved configuration with the flags given on this command line applied; the
    trainer refuses any change other than --steps / --checkpoint-every."""
    config = _saved_config(run_dir)
    accepted = methods.get(config.method).hyperparameters() if config.method in methods.available() else {}
    trainer_names = {f.name for f in fields(TrainConfig)} - _SKIP
    for key, value in given.items():
        if key in trainer_names:
            setattr(config, key, tuple(value) if key == "hidden" else value)
        elif key in accepted:
            config.method_kwargs[key] = value
        else:
            raise CLIError(f"{flag_name(key)} is not a setting of this run (--method {config.method})")
    return config


def _train(args: argparse.Namespace) -> int:
    from natpg.trainer import train as run_training

    values = {k: v for k, v in vars(args).items() if k not in {"command", "out", "overwrite", "progress", "resume"}}
    if args.resume is not None:
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise CLIError(f"--out {args.out} and --resume {args.resume} name different run directories")
        if args.overwrite:
            raise CLIError("--resume continues a run and --overwrite replaces it: pass one of them")
        out = args.resume
        config = _resumed_config(out, values)
        result = run_training(config, run_dir=out, progress=args.progress, resume=True)
    else:
        env_id = values.pop("env_id", TrainConfig.env_id)
        method = values.pop("method", TrainConfig.method)
        preset = values.pop("preset", None)
        config = resolve_config(env_id, method, preset, **values)
        if preset is not None and config.preset is not None and not preset_values(config.preset, env_id, method)[1]:
            print(f"natpg train: note: preset {preset!r} has no values of its own for --method {method}: "
                  "it takes the preset's shared settings and the method's defaults", file=sys.stderr)
        out = args.out or Path("runs") / f"{env_id.replace(':', '_').replace('/', '_')}_{method}_seed{config.seed}"
        result = run_training(config, run_dir=out, progress=args.progress, overwrite=args.overwrite)
    s = result.summary
    final = "n/a" if s["final_return"] is None else f"{s['final_return']:.1f}"
    print(
        f"natpg {config.method} on {config.env_id}, seed {config.seed}: final return {final} "
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
    if args.name is not None:
        print(_method_page(args.name))
        return 0
    for name in methods.available():
        cls = methods.get(name)
        hp = ", ".join(f"{k}={v}" for k, v in cls.hyperparameters().items())
        print(f"{name:16s} {cls.summary}\n{'':16s} {hp}")
    return 0


def _method_page(name: str) -> str:
    """``natpg methods NAME``: the rule's summary, its docstring and, per hyperparameter, the
    flag, the default, the valid values and the meaning."""
    import inspect
    import textwrap

    if name not in methods.available():
        raise ValueError(f"unknown method {name!r}{did_you_mean(name, methods.available())} "
                         f"(available: {', '.join(methods.available())})")
    cls = methods.get(name)
    lines = [f"{name}: {cls.summary}", ""]
    doc = inspect.getdoc(cls)
    if doc:
        lines += [doc, ""]
    lines.append("hyperparameters (natpg train --method " + name + " FLAG VALUE; Python: keyword arguments):")
    for field_name, valid, default, meaning in hyperparameter_class(cls).describe():
        shown = "required" if default is REQUIRED else repr(default)
        lines.append(f"  {flag(field_name)} (default {shown}; {valid})")
        lines += textwrap.wrap(meaning, 88, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from natpg.vector_env import EnvironmentFault
    from natpg.trainer import TrainingStopped

    parser = build_parser()
    args = _parse(parser, argv)
    from natpg.bench.cli import HANDLERS as _BENCH_HANDLERS

    handler = {"train": _train, "eval": _eval, "methods": _methods, **_BENCH_HANDLERS}[args.command]
    try:
        with use_wording(command_line=True):  # messages name --flags, not Python keywords
            return handler(args)
    except (ValueError, CLIError) as exc:  # bad input: one line, status 2
        print(f"natpg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (TrainingStopped, EnvironmentFault, OSError) as exc:  # a fault while running: one line, status 1
        print(f"natpg {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        from natpg.trainer import Terminated

        print("natpg: interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
