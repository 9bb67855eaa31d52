"""The Ray backend: the same runs as Ray tasks (one CPU each) on a local or remote Ray cluster.

``--ray-address ADDR`` connects to a running cluster (``ray start --head`` then
``--ray-address auto``); without it a local Ray instance with ``--workers`` CPUs is started
for the sweep. Workers write their run directories directly, so on a multi-node cluster OUT
must be on a file system every node mounts (NFS, a shared volume); the driver only tracks
completion. Install with ``pip install 'natpg[ray]'``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from natpg.bench.execute import RunOutcome, crashed, execute_run
from natpg.bench.plan import RunSpec

__all__ = ["ray_backend"]


def _run_remote(spec: RunSpec) -> RunOutcome:
    import torch

    torch.set_num_threads(1)
    return execute_run(spec)


def ray_backend(pending: list[RunSpec], workers: int, address: str | None,
                on_done: Callable[[RunOutcome, RunSpec], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs ray: pip install 'natpg[ray]'") from None

    started_here = False
    if not ray.is_initialized():
        # Workers import natpg from the driver's working directory (an editable install or a checkout).
        runtime_env = {"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, runtime_env=runtime_env, log_to_driver=False, include_dashboard=False)
        started_here = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_run_remote)
        # Absolute run directories: remote workers may start elsewhere.
        specs = [replace(s, run_dir=str(Path(s.run_dir).resolve())) for s in pending]
        refs = {remote.remote(spec): spec for spec in specs}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                spec = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker crash is a failed run, not a failed sweep
                    outcome = crashed(spec, exc)
                on_done(outcome, spec)
    finally:
        if started_here:
            ray.shutdown()
