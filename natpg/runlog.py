"""The run directory: config.json, metrics.csv, summary.json, checkpoint.pt, tb/ (optional)."""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["RunLog", "atomic_write_bytes", "atomic_write_json", "package_versions", "WALL_TIME_COLUMNS"]

#: metrics.csv columns that depend on the machine's speed, not on the seed.
WALL_TIME_COLUMNS = ("wall_time", "update_time", "steps_per_second")


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
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class RunLog:
    """Writes one run's directory. ``run_dir=None`` keeps the metrics in memory only."""

    def __init__(self, run_dir: str | Path | None, tensorboard: bool = False):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.rows: list[dict[str, Any]] = []
        self._csv_file = None
        self._writer: csv.DictWriter | None = None
        self._tb = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as exc:
                    raise ValueError("--tensorboard needs the tensorboard package: pip install 'natpg[tensorboard]'") from exc
                self._tb = SummaryWriter(str(self.run_dir / "tb"))

    @property
    def metrics_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "metrics.csv"

    def write_config(self, config: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "config.json", {**config, "versions": package_versions(), "argv": sys.argv})

    def open_metrics(self, keep_rows: list[dict[str, Any]] | None = None) -> None:
        """Start metrics.csv afresh, or (on resume) rewrite it with ``keep_rows`` only."""
        self.rows = list(keep_rows or [])
        if self.run_dir is None:
            return
        self._csv_file = open(self.metrics_path, "w", newline="")
        self._writer = None
        for row in self.rows:
            self._write_csv(row)

    def _write_csv(self, row: dict[str, Any]) -> None:
        if self._csv_file is None:
            return
        if self._writer is None:
            self._writer = csv.DictWriter(self._csv_file, fieldnames=list(row), restval="", extrasaction="raise")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._csv_file.flush()

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self._write_csv(row)
        if self._tb is not None:
            step = int(row["timesteps"])
            for key, value in row.items():
                if key != "timesteps" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_torch_save(self.run_dir / "checkpoint.pt", state)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.run_dir is not None:
            atomic_write_json(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
