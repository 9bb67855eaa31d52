"""Actor-update rules, one file each, all behind :class:`~natpg.methods.base.UpdateRule`.

Importing this package registers every rule; ``make(name, actor, **hparams)`` builds one.
"""

import importlib
import pkgutil

from natpg.methods.base import PolicyBatch, PreconditionedRule, UpdateRule
from natpg.methods.registry import available, get, make, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "registry", "hyperparameters"}:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PolicyBatch", "PreconditionedRule", "UpdateRule", "available", "get", "make", "register"]
