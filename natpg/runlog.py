"""The run directory: config.json, metrics.csv, summary.json, checkpoint.pt, events.jsonl,
tb/ (optional).

Crash safety: config.json, summary.json and checkpoint.pt are replaced atomically (temporary
file, fsync, rename), so a reader — or a resumed run — sees the old file or the new one,
never half of one. metrics.csv is appended one flushed row at a time and rewritten
atomically from the checkpoint's rows on resume. summary.json exists only for a run that
ended (``status`` says how).
"""

from __future__ import annotations

import csv
import fcntl
import functools
import io
import json
import math
import numbers
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from natpg._messages import phrase, setting_name, setting_value

__all__ = [
    "RunLog", "atomic_write_bytes", "atomic_write_json", "package_versions", "source_revision", "read_checkpoint",
    "WALL_TIME_COLUMNS", "RUN_FILES", "clear_run_files", "METRIC_DIGITS", "metric_cell", "metric_row",
    "PACKED_METRICS", "open_metrics", "pack_metrics",
]

#: metrics.csv columns that depend on the machine's speed, not on the seed.
WALL_TIME_COLUMNS = ("wall_time", "update_time", "steps_per_second")
#: Significant digits of a float in metrics.csv. The file is for curves and tables: 4 digits
#: (0.05% relative at worst) is orders of magnitude below the seed-to-seed spread and the timing
#: noise of every logged quantity, and xz packs a 4-digit file a third smaller than a 6-digit one
#: (measured on the paper sweep's runs). Exact resume restores the full rows from checkpoint.pt,
#: and summary.json keeps its numbers at full precision.
METRIC_DIGITS = 4


def metric_cell(value: Any) -> Any:
    """How metrics.csv writes one value: a float at :data:`METRIC_DIGITS` significant digits
    (``%.4g``: ``0.01235``, ``1.235e+06``, ``nan``), an integer as an integer, anything
    else (a bool, a string) as the csv module writes it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    return f"{float(value):.{METRIC_DIGITS}g}"


def metric_row(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row as metrics.csv writes it (:func:`metric_cell` of every value)."""
    return {k: metric_cell(v) for k, v in row.items()}


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def source_revision() -> str | None:
    """The git commit natpg is running from, with ``+dirty`` when its package files differ
    from that commit (an editable install in a checkout); None for an installed wheel.
    Read once per process, at the first call (close to when the code was imported), so a
    long-lived worker keeps reporting the code it runs even if the checkout moves on."""
    import subprocess

    pkg = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if not (top / "pyproject.toml").exists() or pkg.parent != top:
            return None  # natpg lives inside some other repository (e.g. a vendored copy)
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", str(pkg)))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    import gymnasium
    import numpy

    import natpg

    versions = {
        "python": platform.python_version(),
        "natpg": natpg.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }
    revision = source_revision()
    if revision is not None:
        versions["natpg_commit"] = revision
    try:
        import mujoco

        versions["mujoco"] = mujoco.__version__
    except ImportError:
        pass
    return versions


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``:
    a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


#: Everything natpg (and natpg bench) writes into a run directory: --overwrite deletes these
#: and refuses to touch a directory holding anything else.
RUN_FILES = frozenset({"config.json", "metrics.csv", "metrics.csv.xz", "metrics.csv.xz.new", "summary.json", "checkpoint.pt",
                       "events.jsonl", "tb", "error.json", "spaces.json"})
#: An ended run's metrics as stored in a results tree: xz-compressed, thinned (:data:`PACKED_FULL_COLUMNS`),
#: by :func:`pack_metrics` (``natpg report --pack``).
PACKED_METRICS = "metrics.csv.xz"


def open_metrics(run_dir: Path):
    """A text stream of the run's metrics (metrics.csv, else its packed copy), or None."""
    import lzma

    run_dir = Path(run_dir)
    if (run_dir / "metrics.csv").exists():
        return open(run_dir / "metrics.csv", newline="", encoding="utf-8")
    if (run_dir / PACKED_METRICS).exists():
        return lzma.open(run_dir / PACKED_METRICS, "rt", newline="", encoding="utf-8")
    return None


_INTEGER = re.compile(r"^-?\d+$")

#: What a packed run keeps (:func:`pack_metrics`). A results tree holds hundreds of runs and has to
#: stay small enough for git (benchmarks/results/ under 15 MB). Every row keeps the columns the
#: curves and tables are made of, at :data:`METRIC_DIGITS`: returns (whose best running mean the
#: seed tables give), update time (summed along the run by the update-time figure), and every
#: column a table pools over all updates (realised KL, trust-region and damping columns; the caller
#: adds others, ``keep``: a maximum over a subsample would understate). The other per-update
#: columns (wall time, whose total summary.json keeps; critic loss, norms, cosines, episode
#: length, log-probability, entropy, ...) enter the pages at most as binned curves or medians;
#: they are kept on every k-th update (k the smallest
#: that leaves at most :data:`PACKED_DIAGNOSTIC_ROWS` of them) and on the last, at
#: :data:`PACKED_DIGITS` significant digits, and left empty (read back as NaN) on the others.
PACKED_FULL_COLUMNS = frozenset({
    "timesteps", "update_time", "episode_return_mean", "episodes", "steps",
    "kl", "damping", "ls_accepted", "tr_scale",
    "nonfinite_actor_updates", "nonfinite_critic_updates", "nonfinite_transitions"})
PACKED_DIAGNOSTIC_ROWS = 50
PACKED_DIGITS = 3


def _rounded_cell(text: str, digits: int = METRIC_DIGITS) -> str:
    """A metrics.csv cell at ``digits`` significant digits: integers and non-numbers as they are."""
    if _INTEGER.match(text):
        return text
    try:
        return f"{float(text):.{digits}g}"
    except ValueError:
        return text


def packed_rows(rows: list[list[str]], keep: frozenset[str] = frozenset()) -> list[list[str]]:
    """metrics.csv rows (header first) as :func:`pack_metrics` stores them (``keep``: more columns
    on every row); idempotent."""
    header, body = rows[0], rows[1:]
    every = max(1, math.ceil(len(body) / PACKED_DIAGNOSTIC_ROWS))
    sampled = {i for i in range(len(body)) if (i + 1) % every == 0} | {len(body) - 1}
    full = [name in PACKED_FULL_COLUMNS or name in keep for name in header]
    return [header] + [[_rounded_cell(cell) if full[j] else (_rounded_cell(cell, PACKED_DIGITS) if i in sampled else "")
                        for j, cell in enumerate(row)] for i, row in enumerate(body)]


def pack_metrics(run_dir: Path, keep: frozenset[str] = frozenset()) -> bool:
    """Store an ended run's metrics as :data:`PACKED_METRICS` (xz, :func:`packed_rows` with
    ``keep``), deleting metrics.csv, or repack an older packed copy. Only a run with summary.json
    or error.json and without checkpoint.pt (nothing will resume or append to it); returns
    whether it wrote."""
    import lzma

    run_dir = Path(run_dir)
    text, packed = run_dir / "metrics.csv", run_dir / PACKED_METRICS
    ended = (run_dir / "summary.json").exists() or (run_dir / "error.json").exists()
    if not ended or (run_dir / "checkpoint.pt").exists() or not (text.exists() or packed.exists()) or _in_use(run_dir):
        return False
    f = open_metrics(run_dir)  # the text when both exist: a run rerun after it was packed
    with f:
        old = f.read()
    rows = list(csv.reader(io.StringIO(old, newline="")))
    out = io.StringIO()
    csv.writer(out).writerows(packed_rows(rows, keep) if rows else rows)
    data = out.getvalue()
    if not text.exists() and data == old:
        return False
    new = packed.with_name(packed.name + ".new")  # the old copy stays until the new one reads back
    atomic_write_bytes(new, lzma.compress(data.encode(), preset=9 | lzma.PRESET_EXTREME))
    with lzma.open(new, "rt", newline="", encoding="utf-8") as f:
        if f.read() != data:  # never delete the only copy on a bad write
            raise OSError(f"{new} does not read back as metrics.csv")
    os.replace(new, packed)
    text.unlink(missing_ok=True)
    return True


def _in_use(run_dir: Path) -> bool:
    """Whether a natpg process holds the run's lock (:data:`LOCK_FILES`): e.g. a failed run
    being resumed, whose error.json stays until it ends."""
    for name in LOCK_FILES:
        try:
            with open(run_dir / name, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            continue
        except BlockingIOError:
            return True
    return False


#: Lock files: natpg train holds ``.train.lock`` while it writes; natpg bench holds ``.lock``.
LOCK_FILES = frozenset({".train.lock", ".lock"})


def clear_run_files(run_dir: Path, keep: frozenset[str] | set[str] = frozenset()) -> None:
    """Delete what a run wrote into ``run_dir`` (:data:`RUN_FILES`, bar ``keep``)."""
    for name in RUN_FILES - set(keep):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
_TMP = re.compile(r"^\..+\.tmp\d+$")  # atomic_write_bytes' temporary files


def _is_tmp(name: str) -> bool:
    return bool(_TMP.match(name))


class RunLog:
    """Writes one run's directory. ``run_dir=None`` keeps the metrics in memory only.

    ``mode`` says what may happen to an existing directory: ``"new"`` (the default) refuses
    a directory that already holds files, ``"overwrite"`` deletes a previous run's files
    (and refuses a directory holding anything natpg did not write), ``"resume"`` keeps them.
    While open, the directory is locked (``.train.lock``, ``flock``): a second natpg process
    on the same directory gets an error instead of interleaving its writes. The lock dies
    with the process, so a run killed with SIGKILL leaves no stale lock.
    """

    def __init__(self, run_dir: str | Path | None, tensorboard: bool = False, *, mode: str = "new"):
        if mode not in ("new", "overwrite", "resume"):
            raise ValueError(f"mode must be new, overwrite or resume, got {mode!r}")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rows: list[dict[str, Any]] = []
        self.fieldnames: list[str] = []
        self._csv_file = None
        self._writer: csv.DictWriter | None = None
        self._tb = None
        self._tensorboard = tensorboard
        self._lock = None
        if self.run_dir is not None:
            self._prepare(mode)

    # -- the directory -------------------------------------------------------------------
    def _prepare(self, mode: str) -> None:
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise ValueError(f"run directory {d} exists and is not a directory")
        try:
            d.mkdir(parents=True, exist_ok=True)
            self._lock = open(d / ".train.lock", "a+")
        except OSError as exc:
            raise ValueError(f"cannot create run directory {d}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise ValueError(f"run directory {d} is in use by another natpg process (it holds {d / '.train.lock'})") from None
        entries = sorted(p.name for p in d.iterdir() if p.name not in LOCK_FILES)
        for name in [n for n in entries if _is_tmp(n)]:  # left by a process killed mid-write
            (d / name).unlink(missing_ok=True)
        entries = [n for n in entries if not _is_tmp(n)]
        foreign = [n for n in entries if n not in RUN_FILES]
        if mode == "new" and entries:
            what = "holds a natpg run" if not foreign else "is not empty"
            self.close()
            raise ValueError(
                f"run directory {d} already exists and {what} ({', '.join(entries[:5])}); "
                f"pass {setting_value('overwrite', True)} to replace it, or {phrase(f'--resume {d}', 'resume=True')} to continue it"
            )
        if mode == "overwrite" and entries:
            if foreign:
                self.close()
                raise ValueError(
                    f"{phrase(f'refusing to --overwrite {d}', f'refusing to overwrite {d} (overwrite=True)')}: it holds files "
                    f"natpg did not write ({', '.join(foreign[:5])}); choose another {phrase('--out', 'out')}"
                )
            for name in entries:
                path = d / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def has_run_files(self) -> bool:
        return self.run_dir is not None and any((self.run_dir / n).exists() for n in RUN_FILES - {"error.json"})

    def clear(self) -> None:
        """Delete a previous attempt's files (resume without a checkpoint starts afresh)."""
        if self.run_dir is not None:
            clear_run_files(self.run_dir, keep={"error.json"})

    @property
    def metrics_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "metrics.csv"

    def write_spaces(self, record: dict[str, Any]) -> None:
        """spaces.json: the observation and action spaces, so that the policy loads without its env."""
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "spaces.json", record)

    def write_config(self, config: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "config.json", {**config, "versions": package_versions(), "argv": sys.argv})

    # -- metrics.csv -----------------------------------------------------------------------
    def open_metrics(self, keep_rows: list[dict[str, Any]] | None = None, purge_step: int | None = None) -> None:
        """Start metrics.csv afresh, or (on resume) rewrite it atomically with ``keep_rows``
        only: rows logged after the checkpoint being resumed are dropped (they are computed
        again, identically)."""
        self.rows = list(keep_rows or [])
        self.fieldnames = []
        for row in self.rows:
            self.fieldnames += [k for k in row if k not in self.fieldnames]
        if self.run_dir is None:
            return
        self._rewrite_csv()
        if self._tensorboard and self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ValueError(f"{setting_name('tensorboard')} needs the tensorboard package: pip install 'natpg[tensorboard]'") from exc
            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def _rewrite_csv(self) -> None:
        """Write header and all rows to a temporary file, rename it over metrics.csv, and
        reopen it for appending."""
        if self._csv_file is not None:
            self._csv_file.close()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.fieldnames, restval="", extrasaction="raise")
        if self.fieldnames:
            writer.writeheader()
            writer.writerows(metric_row(r) for r in self.rows)
        atomic_write_bytes(self.metrics_path, buffer.getvalue().encode())
        self._csv_file = open(self.metrics_path, "a", newline="")
        self._writer = csv.DictWriter(self._csv_file, fieldnames=self.fieldnames, restval="", extrasaction="raise")

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in self.fieldnames]
        if new:
            # A column appeared (first row, or a diagnostic a rule reports late): rewrite the
            # whole file with the wider header, atomically; earlier rows get empty cells.
            self.fieldnames += new
            if self.run_dir is not None:
                self._rewrite_csv()
        elif self._writer is not None:
            self._writer.writerow(metric_row(row))
            self._csv_file.flush()
        if self._tb is not None:
            step = int(row["timesteps"])
            for key, value in row.items():
                if key != "timesteps" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    # -- checkpoint, summary, events -------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_torch_save(self.run_dir / "checkpoint.pt", state)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The saved training state, or None if there is no checkpoint yet."""
        if self.run_dir is None:
            return None
        return read_checkpoint(self.run_dir / "checkpoint.pt", missing_ok=True)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "summary.json", summary)

    def remove_summary(self) -> None:
        if self.run_dir is not None:
            (self.run_dir / "summary.json").unlink(missing_ok=True)

    def event(self, kind: str, **info: Any) -> None:
        """Append one line to events.jsonl (resumes, non-finite events, early stops)."""
        if self.run_dir is None:
            return
        line = json.dumps({"event": kind, "time": time.time(), **info}, sort_keys=True, default=str)
        with open(self.run_dir / "events.jsonl", "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None


def read_checkpoint(path: str | Path, missing_ok: bool = False) -> dict[str, Any] | None:
    """``torch.load`` of a checkpoint with a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return None
        raise ValueError(f"{path.parent} has no checkpoint ({path.name} is missing)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise ValueError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "agent" not in state:
        raise ValueError(f"checkpoint {path} is not a natpg checkpoint")
    return state
