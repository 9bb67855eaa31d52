"""Learning-curve figures: one panel per task, one line per method, the legend outside the panels.

A method keeps its colour and line style in every figure of a report (:func:`line_styles`); the
title says how many seeds each line is over (:func:`seeds_phrase`); a band (± 1 sample std over
seeds) is drawn only for a line over two seeds or more. The figures make no claim about which
method is better: that is the tables' job, by the rule of :mod:`natpg.bench.report.stats`.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from natpg.bench.report.runs import Curve, method_order
from natpg.runlog import atomic_write_bytes

__all__ = ["line_styles", "seeds_phrase", "figure", "plot_grid", "png_bytes", "palette_png", "PNG_COLOURS"]

#: matplotlib's tab10 colours, reordered so that the look-alike pairs (red / pink, blue / cyan, green / olive,
#: orange / brown) sit at positions that get different line styles below.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f", "#17becf", "#e377c2",
            "#bcbd22")
#: Line styles cycled in label order; 3 is coprime to the 10 colours, so the first 30 labels get 30 distinct
#: (colour, style) pairs and two neighbours in the legend differ in both.
_STYLES: tuple[Any, ...] = ("-", (0, (5, 2)), (0, (5, 1.5, 1, 1.5)))


def _style(k: int) -> Any:
    """The k-th line style: the three above, then dash-dot patterns with ever longer dashes (from 10 points,
    so none repeats the dash-dot above)."""
    return _STYLES[k] if k < len(_STYLES) else (0, (2 * k + 4, 1.5, 1, 1.5))


def line_styles(labels: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """label → (colour, line style) for any number of labels, by report order: label i gets colour
    i mod 10 and style i mod 3, and each further block of 30 labels a fresh set of three styles, so
    no two labels share both."""
    block = len(_COLOURS) * len(_STYLES)
    return {label: (_COLOURS[i % len(_COLOURS)], _style(i % len(_STYLES) + len(_STYLES) * (i // block)))
            for i, label in enumerate(method_order(labels))}


def _seed_count(counts: Iterable[int]) -> str:
    lo, hi = min(counts), max(counts)
    return "1 seed" if hi == 1 else f"{lo} seeds" if lo == hi else f"{lo}–{hi} seeds"


def seeds_phrase(counts: Iterable[int]) -> str:
    """What a figure's lines are over, in words: '1 seed (no band)', 'mean ± std over 3 seeds', or a range."""
    counts = set(counts)
    if counts == {1}:
        return "1 seed (no band)"
    if len(counts) == 1:
        return f"mean ± std over {_seed_count(counts)}"
    return (f"mean ± std over {_seed_count(counts)} (per method in the legend"
            + ("; no band with 1 seed)" if 1 in counts else ")"))


def figure(data: dict[str, dict[str, Curve]], ylabel: str, title: str, note: str = "",
           styles: dict[str, tuple[str, Any]] | None = None, xlabel: str = "environment steps",
           xscale: str = "linear"):
    """The matplotlib figure of :func:`plot_grid` (the caller closes it); None for no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(data)
    if not envs:
        return None
    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    size = (5.2 * ncols, 3.6 * nrows) if len(envs) > 1 else (7.0, 4.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    labels = method_order({label for env in envs for label in data[env]})
    styles = styles or line_styles(labels)
    seeds: dict[str, set[int]] = defaultdict(set)
    for ax, env in zip(axes.flat, envs):
        for label, c in data[env].items():
            colour, style = styles[label]
            ax.plot(c.x, c.mean, color=colour, linestyle=style, lw=1.6)
            if c.seeds >= 2 and np.isfinite(c.std).any():
                ax.fill_between(c.x, c.mean - c.std, c.mean + c.std, color=colour, alpha=0.12, lw=0)
            seeds[label].add(c.seeds)
        if len(envs) > 1 or env not in title:
            ax.set_title(env)
        ax.set(xlabel=xlabel, ylabel=ylabel, xscale=xscale)
        ax.grid(alpha=0.3)
        if xscale == "linear":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    counts = {n for ns in seeds.values() for n in ns}
    names = [label if len(counts) == 1 else f"{label} ({_seed_count(seeds[label])})" for label in labels]
    handles = [plt.Line2D([], [], color=styles[l][0], linestyle=styles[l][1], lw=2) for l in labels]
    fig.suptitle(f"{title}\n{seeds_phrase(counts)}" + (f"; {note}" if note else ""), fontsize=11)
    fig.tight_layout()
    # Right of the panels, outside every axes: bbox_inches="tight" widens the canvas to hold it.
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=9,
               handlelength=3.5)
    return fig


def plot_grid(data: dict[str, dict[str, Curve]], ylabel: str, title: str, path: Path, note: str = "",
              styles: dict[str, tuple[str, Any]] | None = None, xlabel: str = "environment steps",
              xscale: str = "linear") -> Path | None:
    """One panel per env of ``data`` (from :func:`natpg.bench.report.runs.curves`) written to ``path``
    as PNG; the legend right of the panels, outside every axes; the title states the seeds present
    and ``note`` (e.g. the smoothing). ``styles`` keeps a method's colour and line style the same
    across figures."""
    fig = figure(data, ylabel, title, note, styles, xlabel, xscale)
    if fig is None:
        return None
    import matplotlib.pyplot as plt  # after figure() chose the Agg backend

    data = png_bytes(fig)
    plt.close(fig)
    atomic_write_bytes(path, data)
    return path


def png_bytes(fig, dpi: int = 90) -> bytes:
    """The figure as a PNG of at most :data:`PNG_COLOURS` colours (a palette image, undithered):
    line plots need few, and the palette makes the file about a third of the RGBA one, which keeps
    the committed results tree small."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return palette_png(buf.getvalue())


#: Colours of a committed figure's palette.
PNG_COLOURS = 128


def palette_png(png: bytes) -> bytes:
    """A PNG re-encoded with an adaptive palette of :data:`PNG_COLOURS` colours, undithered."""
    from PIL import Image  # a matplotlib dependency

    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=PNG_COLOURS, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out, format="png", optimize=True)
    return out.getvalue()
