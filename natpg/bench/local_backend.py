"""The local backend: the runs of a sweep in a pool of worker processes on this machine, one
torch thread each, at most ``workers`` runs in flight."""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Callable

from natpg.bench.execute import RunOutcome, crashed, execute_run
from natpg.bench.plan import RunSpec

__all__ = ["local_backend"]


def _worker_init() -> None:
    """One torch thread per worker; die with the parent (a SIGKILLed sweep leaves no trainers)."""
    import torch

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:  # pragma: no cover
            pass
    if os.getppid() == 1:  # parent already gone
        os._exit(1)


def local_backend(pending: list[RunSpec], workers: int, on_done: Callable[[RunOutcome, RunSpec], None]) -> None:
    """Run ``pending`` in ``workers`` spawned processes, calling ``on_done`` as each finishes; a
    worker that dies fails its run and the pool is started again. One worker with
    ``NATPG_BENCH_INPROCESS=1`` runs them in this process instead (for tests and debugging)."""
    if workers == 1 and os.environ.get("NATPG_BENCH_INPROCESS") == "1":
        for spec in pending:
            on_done(execute_run(spec), spec)
        return
    ctx = get_context("spawn")
    queue = list(pending)
    while queue:
        broken = False
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {}
            # Keep at most `workers` runs in flight so an interrupted sweep leaves few partial runs.
            while (queue or futures) and not broken:
                while queue and len(futures) < workers:
                    spec = queue.pop(0)
                    futures[pool.submit(execute_run, spec)] = spec
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = futures.pop(fut)
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool as exc:
                        broken = True
                        outcome = crashed(spec, exc)
                    except Exception as exc:  # noqa: BLE001
                        outcome = crashed(spec, exc)
                    on_done(outcome, spec)
            if broken:
                # A worker died (killed, out of memory): record the runs in flight, start a new pool.
                for fut, spec in futures.items():
                    on_done(crashed(spec, RuntimeError("worker process died")), spec)
                futures.clear()
