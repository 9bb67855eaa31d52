"""Throughput benchmark: natpg training steps/s against raw environment stepping (and SB3).

Not a test: it measures. In one run, for every (env, num_envs N):

* ``raw gymnasium``: random actions through ``gymnasium.make(id)`` (the default wrapper
  stack), N envs stepped in a Python loop, reset when an episode ends: the simulator's speed.
  With ``--sync-vector`` also gymnasium's ``SyncVectorEnv`` (N > 1); with ``--envpool``
  EnvPool's own implementation of the task.
* ``natpg <method>``: ``natpg.train(env, method, total_steps, num_envs=N)`` with every other
  setting at its default (the default recipe: T=1024, 20 critic steps, diagnostics on, 1 torch thread), timed from
  its first rollout to its return: steps/s INCLUDE every update. The one-off set-up (config
  checks, gymnasium.make, networks) is excluded, as the raw loop's env construction is, and
  reported apart. A run stopped by the non-finite guard is timed over the steps it ran.
* ``sb3 PPO`` / ``sb3 A2C`` with their defaults (``--sb3``, when stable-baselines3 is
  installed), for reference.

Wall-clock and process-CPU steps/s are both reported, each with its ratio to raw. On a
shared machine the CPU figure (environment steps per second of CPU this process used) is
the steady one. Repeats interleave all runners; the best wall and the best CPU time are
kept, each on its own. See docs/throughput.md.

    nice -n 10 python benchmarks/throughput.py --sb3 --sync-vector --envpool 1,2 --out benchmarks/results/throughput
    nice -n 10 python benchmarks/throughput.py --envs HalfCheetah-v5 --num-envs 1 --methods ac-sgd,smac \
        --steps 50000 --repeats 3 --out benchmarks/results/throughput-after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from natpg.runlog import cpu_model  # noqa: E402

DEFAULT_ENVS = ("CartPole-v1", "HalfCheetah-v5", "Humanoid-v5")
#: Humanoid is ~4x slower to simulate; its measurements use this fraction of --steps.
STEP_SCALE = {"Humanoid-v5": 0.4}





def git_commit() -> str:
    import natpg

    if Path(natpg.__file__).resolve().parents[1] != Path(__file__).resolve().parents[1]:
        return "n/a (natpg imported from outside this checkout)"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "natpg"], capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Timer:
    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def _random_actions(space, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=shape)
    return rng.uniform(space.low, space.high, size=(*shape, *space.shape)).astype(space.dtype)


def raw_gymnasium(env_id: str, num_envs: int, steps: int, seed: int = 0, **make_kwargs) -> dict:
    """``steps`` transitions (steps // num_envs rounds) of N envs in a loop, random actions."""
    import gymnasium as gym

    envs = [gym.make(env_id, **make_kwargs) for _ in range(num_envs)]
    for i, e in enumerate(envs):
        e.reset(seed=seed + i)
    rng = np.random.default_rng(seed)
    rounds = steps // num_envs
    chunk = 1000
    with Timer() as t:
        for start in range(0, rounds, chunk):
            acts = _random_actions(envs[0].action_space, rng, (min(chunk, rounds - start), num_envs))
            for a in acts:
                for i, e in enumerate(envs):
                    _, _, term, trunc, _ = e.step(a[i])
                    if term or trunc:
                        e.reset()
    for e in envs:
        e.close()
    return {"steps": rounds * num_envs, "wall": t.wall, "cpu": t.cpu}


def raw_sync_vector(env_id: str, num_envs: int, steps: int, seed: int = 0) -> dict:
    """The same through gymnasium's SyncVectorEnv (its own autoreset, batched arrays)."""
    import gymnasium as gym

    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    venv.reset(seed=seed)
    rng = np.random.default_rng(seed)
    rounds = steps // num_envs
    chunk = 1000
    with Timer() as t:
        for start in range(0, rounds, chunk):
            acts = _random_actions(venv.single_action_space, rng, (min(chunk, rounds - start), num_envs))
            for a in acts:
                venv.step(a)
    venv.close()
    return {"steps": rounds * num_envs, "wall": t.wall, "cpu": t.cpu}


def raw_envpool(env_id: str, num_envs: int, steps: int, seed: int = 0, threads: int = 1) -> dict:
    """EnvPool's own C++ implementation of the task (synchronous mode, ``threads`` workers).
    Process CPU time counts its worker threads too."""
    import envpool

    env = envpool.make_gymnasium(env_id, num_envs=num_envs, seed=seed, num_threads=threads)
    env.reset()
    rng = np.random.default_rng(seed)
    rounds = steps // num_envs
    with Timer() as t:
        for start in range(0, rounds, 1000):
            for a in _random_actions(env.action_space, rng, (min(1000, rounds - start), num_envs)):
                env.step(a)
    env.close()
    return {"steps": rounds * num_envs, "wall": t.wall, "cpu": t.cpu}


def natpg_train(env_id: str, num_envs: int, steps: int, method: str, seed: int = 0, **overrides) -> dict:
    """``natpg.train`` timed from its first rollout to its return: every update included,
    the one-off set-up (config checks, ``gymnasium.make``, building the networks) not —
    as for the raw loop, whose environments are made before its timer starts. ``setup``
    reports that one-off part."""
    import natpg
    import natpg.trainer as trainer

    first: dict[str, float] = {}
    collect = trainer.collect

    def timed_collect(*args, **kwargs):
        if not first:
            first["wall"], first["cpu"] = time.perf_counter(), time.process_time()
        return collect(*args, **kwargs)

    trainer.collect = timed_collect
    stopped = ""
    try:
        with Timer() as t:
            try:
                result = natpg.train(env_id, method=method, total_steps=steps, seed=seed, num_envs=num_envs, **overrides)
                summary, rows = result.summary, result.metrics
            except getattr(trainer, "TrainingStopped", ()) as exc:  # diverged: time the steps it did take
                summary, rows, stopped = exc.summary, None, f"stopped at {exc.summary['steps']:,} (non-finite updates)"
    finally:
        trainer.collect = collect
    setup = first["wall"] - t.wall0
    if rows:
        update = float(sum(r["update_time"] for r in rows))
    else:  # a stopped run: its summary has the mean update time
        mean = float(summary.get("update_time_mean") or 0.0)
        update = (mean if mean == mean else 0.0) * (summary["steps"] // 1000)
    return {"steps": summary["steps"], "wall": t.wall - setup, "cpu": t.cpu - (first["cpu"] - t.cpu0),
            "setup": setup, "update_wall": update, "final_return": summary.get("final_return"), "stopped": stopped}


def sb3_train(env_id: str, num_envs: int, steps: int, algo: str, seed: int = 0) -> dict:
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)  # same as natpg's default; SB3 leaves torch's default
    venv = make_vec_env(env_id, n_envs=num_envs, seed=seed)
    cls = {"PPO": PPO, "A2C": A2C}[algo]
    model = cls("MlpPolicy", venv, seed=seed, device="cpu", verbose=0)
    with Timer() as t:
        model.learn(total_timesteps=steps)
    done = int(model.num_timesteps)
    venv.close()
    return {"steps": done, "wall": t.wall, "cpu": t.cpu}


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def fmt(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    import natpg.methods

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default=",".join(DEFAULT_ENVS))
    p.add_argument("--methods", default="all", help="comma-separated, or 'all' (natpg.methods.available())")
    p.add_argument("--num-envs", default="1,8")
    p.add_argument("--steps", type=int, default=30_000, help="transitions per measurement (Humanoid: 0.4x)")
    p.add_argument("--repeats", type=int, default=1, help="repeat each measurement, keep the fastest")
    p.add_argument("--sb3", action="store_true", help="also SB3 PPO and A2C (defaults) when installed")
    p.add_argument("--sb3-steps", type=int, default=10_000, help="transitions per SB3 measurement (Humanoid: 0.4x)")
    p.add_argument("--sync-vector", action="store_true", help="also raw gymnasium SyncVectorEnv for N > 1")
    p.add_argument("--envpool", default="", metavar="THREADS",
                   help="also raw EnvPool stepping when installed, with these worker-thread counts (e.g. 1,2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a natpg.train override for every natpg run, e.g. critic_steps=1 or torch_threads=2")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="what-if: actor updates without the common diagnostics (UpdateRule.update(diagnostics=False))")
    p.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    p.add_argument("--note", default="", help="a line of context for the results header")
    args = p.parse_args(argv)

    env_ids = [e for e in args.envs.split(",") if e]
    methods = natpg.methods.available() if args.methods == "all" else [m for m in args.methods.split(",") if m]
    num_envs_list = [int(n) for n in args.num_envs.split(",")]
    overrides = {k: _literal(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    label = "".join(f" {k}={v}" for k, v in overrides.items()) + (" no-diagnostics" if args.no_diagnostics else "")
    if args.no_diagnostics:
        from natpg.methods.base import UpdateRule

        full = UpdateRule.update
        UpdateRule.update = lambda self, batch, diagnostics=True: full(self, batch, diagnostics=False)

    def note(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    have_sb3 = False
    if args.sb3:
        try:
            import stable_baselines3  # noqa: F401

            have_sb3 = True
        except ImportError:
            note("stable-baselines3 not installed: SB3 rows skipped")
    have_envpool = False
    if args.envpool:
        try:
            import envpool  # noqa: F401

            have_envpool = True
        except ImportError:
            note("envpool not installed: its rows skipped")

    # Warm-up outside the timings: one-off imports (torch's optimizers pull in torch._dynamo,
    # ~0.7 s) would otherwise be charged to whichever measurement comes first.
    natpg_train("CartPole-v1", 1, 2048, methods[0] if methods else "smac")

    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    rows: list[dict] = []
    for env_id in env_ids:
        steps = int(args.steps * STEP_SCALE.get(env_id, 1.0))
        steps_n = max(steps // 1000, 1) * 1000  # a multiple of the rollout (T=1000)
        for n in num_envs_list:
            runners = [("raw gymnasium", lambda: raw_gymnasium(env_id, n, steps_n))]
            if args.sync_vector and n > 1:
                runners.append(("raw SyncVectorEnv", lambda: raw_sync_vector(env_id, n, steps_n)))
            if have_envpool:
                for threads in (int(t) for t in args.envpool.split(",")):
                    runners.append((f"raw envpool threads={threads}", lambda t=threads: raw_envpool(env_id, n, steps_n, threads=t)))
            for method in methods:
                runners.append((f"natpg {method}{label}", lambda m=method: natpg_train(env_id, n, steps_n, m, **overrides)))
            if have_sb3:
                for algo in ("PPO", "A2C"):
                    sb3_steps = int(args.sb3_steps * STEP_SCALE.get(env_id, 1.0))
                    runners.append((f"sb3 {algo}", lambda a=algo, k=sb3_steps: sb3_train(env_id, n, k, a)))
            # Repeats interleave all runners, so that each sees the same spread of machine load;
            # the fastest wall time and the smallest CPU time are kept, each on its own.
            results: dict[str, list[dict]] = {name: [] for name, _ in runners}
            for _ in range(args.repeats):
                for name, fn in runners:
                    try:
                        r = fn()
                    except Exception as exc:  # noqa: BLE001 - report, don't stop the table
                        note(f"{env_id} N={n} {name}: {type(exc).__name__}: {exc}")
                        continue
                    results[name].append(r)
                    note(f"{env_id} N={n} {name}: {r['steps'] / r['wall']:,.0f} steps/s wall, "
                         f"{r['steps'] / r['cpu']:,.0f} CPU")
            raw = None
            for name, runs in results.items():
                if not runs:
                    continue
                best = dict(min(runs, key=lambda r: r["cpu"] / r["steps"]))
                best["cpu"] = min(r["cpu"] for r in runs)
                best["wall"] = min(r["wall"] for r in runs)
                best["repeats"] = len(runs)
                best["sps"] = best["steps"] / best["wall"]
                best["cpu_sps"] = best["steps"] / best["cpu"]
                raw = raw or best
                best["ratio"] = best["sps"] / raw["sps"]
                best["cpu_ratio"] = best["cpu_sps"] / raw["cpu_sps"]
                rows.append({"env": env_id, "num_envs": n, "runner": name, **best})
    finished = datetime.now(timezone.utc)

    import gymnasium
    import torch

    try:
        import mujoco

        mj = mujoco.__version__
    except ImportError:
        mj = "—"
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((finished - started).total_seconds(), 1),
        "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs (shared), {platform.system()} {platform.release()}",
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, "
        f"mujoco {mj}, numpy {np.__version__}",
        "natpg_commit": git_commit(),
        "natpg_imported_from": str(Path(natpg.methods.__file__).parents[1]),
        "note": args.note,
        "nice": os.nice(0),
    }
    lines = [
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']} (took {meta['duration_s']} s)",
        f"- machine: {meta['machine']}; load average {meta['load_average_start_end'][0]} → "
        f"{meta['load_average_start_end'][1]}; nice {meta['nice']}",
        f"- versions: {meta['versions']}; natpg commit {meta['natpg_commit']} (imported from {meta['natpg_imported_from']})",
        *([f"- note: {args.note}"] if args.note else []),
        "",
        "| env | N | runner | steps | steps/s (wall) | ratio to raw | steps/s (CPU) | CPU ratio | update share | set-up s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = f"{r['update_wall'] / r['wall']:.0%}" if "update_wall" in r else ""
        setup = f"{r['setup']:.2f}" if "setup" in r else ""
        lines.append(
            f"| {r['env']} | {r['num_envs']} | {r['runner']} | {r['steps']:,} | {fmt(r['sps'])} | {r['ratio']:.2f} "
            f"| {fmt(r['cpu_sps'])} | {r['cpu_ratio']:.2f} | {share} | {setup} |"
        )
    stopped = [f"- {r['env']} N={r['num_envs']} {r['runner']}: {r['stopped']}; its steps/s are over the steps it ran"
               for r in rows if r.get("stopped")]
    if stopped:
        lines += ["", *stopped]
    text = "\n".join(lines)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(text + "\n")
        out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
