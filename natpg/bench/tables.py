"""Text formatting shared by the report's tables: numbers, Markdown tables, CSV text; and
writing a finished figure."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

__all__ = ["fmt", "cell", "md_table", "csv_text", "save_png"]


def fmt(x: float | None, digits: int | None = None) -> str:
    """A number for a Markdown table: 1 decimal below 1000, none above, a typographic minus, '–' for none/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if digits is None:
        digits = 1 if abs(x) < 1000 else 0
    return f"{x:.{digits}f}".replace("-", "−")


def cell(mean: float, std: float, digits: int | None = None) -> str:
    """``mean ± std`` with both numbers at the precision of the mean."""
    if digits is None and math.isfinite(mean):
        digits = 1 if abs(mean) < 1000 else 0
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def save_png(fig: Any, axes: Any, path: Path) -> Path:
    """Grid and legend on every panel of ``axes``, then ``fig`` as a PNG written atomically to
    ``path`` (a reader never sees half a file); the figure is closed."""
    import matplotlib.pyplot as plt

    from natpg.runlog import atomic_write_bytes

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
