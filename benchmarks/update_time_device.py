"""Time per update of a CNN policy, CPU against GPU (``--device``).

A benchmark, not a test. natpg's image actor and critic for MinAtar-sized frames (10×10×4
bool: one 3×3 convolution with 16 channels and ReLU, then the default 64-64 tanh MLP head;
3 actions as Breakout) and a batch of ``--samples`` transitions (random frames, actions
sampled from the policy, advantages ~ N(0, 1)). Each rule of ``--methods`` takes natpg's
default recipe (``--preset natpg``: its own values, e.g. the trust region ``max_kl``) and
the critic the recipe's fit (``critic_steps`` full-batch Adam steps). Timed, per device:
``rule.update(batch)`` as the trainer calls it (diagnostics included) and the critic fit,
each from the same starting parameters (restored, untimed, before every call), the batch
already on the device (as the trainer puts it there), with ``torch.cuda.synchronize()``
around each call on a GPU. One warm-up call, then the median of ``--repeats`` calls.

Writes ``--out`` (Markdown: command, date, machine, commit, the table) and the raw times
next to it (``.json``). The GPU columns are "—" where torch sees no GPU.

    PYTHONPATH=. python benchmarks/update_time_device.py                     # cpu, and cuda if present
    PYTHONPATH=. python benchmarks/update_time_device.py --repeats 3 --devices cpu
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from natpg import methods
from natpg.critic_fit import fit_critic, make_critic_optimizer
from natpg.methods.base import PolicyBatch
from natpg.policies import CategoricalActor, Critic, ImageTrunk
from natpg.presets import DEFAULT_PRESET, preset_values
from natpg.runlog import cpu_model, source_revision

ENV_ID = "MinAtar/Breakout-v1"  # for the recipe's values only: no environment is made
FRAME = spaces.Box(0, 1, (10, 10, 4), np.bool_)
N_ACTIONS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_method(method: str, device: torch.device, samples: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each timed call: ``{"actor": [...], "critic": [...]}``."""
    shared, own = preset_values(DEFAULT_PRESET, ENV_ID, method)
    torch.manual_seed(0)
    actor = CategoricalActor(0, N_ACTIONS, shared["hidden"], shared["activation"], ImageTrunk(FRAME)).to(device)
    critic = Critic(0, shared["hidden"], shared["activation"], ImageTrunk(FRAME)).to(device)
    gen = torch.Generator().manual_seed(1)
    obs = (torch.rand(samples, *FRAME.shape, generator=gen) < 0.2).float().to(device)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    advantages = torch.randn(samples, generator=gen).to(device)
    returns = torch.randn(samples, generator=gen).to(device)
    batch = PolicyBatch(obs, actions, advantages)
    rule = methods.make(method, actor, **own)
    optimizer = make_critic_optimizer(critic, shared["critic_lr"])
    start = {k: v.clone() for k, v in actor.state_dict().items()}
    critic_start = {k: v.clone() for k, v in critic.state_dict().items()}
    times: dict[str, list[float]] = {"actor": [], "critic": []}
    for rep in range(repeats + 1):  # the first call of each warms up
        actor.load_state_dict(start)
        critic.load_state_dict(critic_start)
        for what, call in (("actor", lambda: rule.update(batch)),
                           ("critic", lambda: fit_critic(critic, optimizer, obs, returns, shared["critic_steps"]))):
            _sync(device)
            t0 = time.perf_counter()
            call()
            _sync(device)
            if rep:
                times[what].append(time.perf_counter() - t0)
    return times


def _ms(values: list[float] | None) -> str:
    return "—" if not values else f"{1e3 * statistics.median(values):.1f}"


def machine(devices: list[str]) -> str:
    text = f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"
    gpus = sorted({torch.cuda.get_device_name(torch.device(d)) for d in devices if d.startswith("cuda")})
    return text + (f"; GPU: {', '.join(gpus)}" if gpus else "; no GPU visible to torch")


def write(results: dict, args: argparse.Namespace, command: str) -> None:
    cpu = next((d for d in args.devices if d == "cpu"), None)
    gpu = next((d for d in args.devices if d.startswith("cuda")), None)
    lines = [
        "# Time per update of a CNN policy, CPU against GPU",
        "",
        f"- command: `{command}`",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {machine(args.devices)}; torch {torch.__version__}, {args.threads} CPU thread(s); "
        f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine: other jobs may be running)",
        f"- commit: {source_revision() or 'unknown'}",
        f"- what: natpg's image actor and critic on 10×10×4 bool frames (3×3 conv, 16 channels, then 64-64 tanh), "
        f"{args.samples} samples; `rule.update(batch)` with diagnostics, and the critic fit "
        f"({preset_values(DEFAULT_PRESET, ENV_ID, 'smac')[0]['critic_steps']} full-batch Adam steps); "
        f"median of {args.repeats} calls after one warm-up, in ms",
        "",
        f"| method | actor update, {cpu or 'cpu'} | critic fit, {cpu or 'cpu'} | actor update, {gpu or 'cuda'} "
        f"| critic fit, {gpu or 'cuda'} | whole update, CPU / GPU |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        on_cpu, on_gpu = results.get(cpu, {}).get(method), results.get(gpu, {}).get(method)
        ratio = "—"
        if on_cpu and on_gpu:
            total = {k: statistics.median(v["actor"]) + statistics.median(v["critic"]) for k, v in (("c", on_cpu), ("g", on_gpu))}
            ratio = f"{total['c'] / total['g']:.1f}×"
        lines.append(f"| `{method}` | {_ms(on_cpu and on_cpu['actor'])} | {_ms(on_cpu and on_cpu['critic'])} | "
                     f"{_ms(on_gpu and on_gpu['actor'])} | {_ms(on_gpu and on_gpu['critic'])} | {ratio} |")
    if gpu is None:
        lines += ["", "No GPU was visible to torch on this machine: the GPU columns await a run on one."]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "seconds": results}, indent=1) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="trpo,kfac,smac,rat", type=lambda s: s.split(","))
    parser.add_argument("--devices", default=None, type=lambda s: s.split(","),
                        help="comma-separated (default: cpu, and cuda where torch sees a GPU)")
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (natpg's default is 1)")
    parser.add_argument("--out", default="benchmarks/results/update_time_device.md")
    args = parser.parse_args()
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    torch.set_num_threads(args.threads)
    command = "PYTHONPATH=. python " + shlex.join(["benchmarks/update_time_device.py", *sys.argv[1:]])
    results: dict[str, dict] = {}
    for device in args.devices:
        for method in args.methods:
            results.setdefault(device, {})[method] = time_method(method, torch.device(device), args.samples, args.repeats)
            print(f"{device} {method}: actor {_ms(results[device][method]['actor'])} ms, "
                  f"critic {_ms(results[device][method]['critic'])} ms", flush=True)
    write(results, args, command)


if __name__ == "__main__":
    main()
