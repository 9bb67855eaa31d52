"""natpg: natural policy gradients for deep RL — SMAC and every practical way to
approximate the natural gradient, behind one interface."""

__version__ = "0.1.0"

from natpg.api import evaluate, load, load_run, train  # noqa: E402

__all__ = ["train", "load", "evaluate", "load_run", "__version__"]
