"""Registry of update rules by name: the CLI, presets and the bench never branch on names."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from natpg._messages import did_you_mean

if TYPE_CHECKING:
    from natpg.methods.base import UpdateRule

_REGISTRY: dict[str, type["UpdateRule"]] = {}


def register(cls: type["UpdateRule"]) -> type["UpdateRule"]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> type["UpdateRule"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}{did_you_mean(name, _REGISTRY)} (available: {', '.join(available())})") from None


def build(cls: type["UpdateRule"], actor, **hyperparameters: Any) -> "UpdateRule":
    """``cls(actor, **hyperparameters)``. A rule written the old way, whose ``__init__`` names
    its keyword-only hyperparameters and forwards nothing else (no ``**kwargs``), is given only
    the ones it names: an inherited one it does not name must be at its default, except the
    shared trust region's ``max_kl`` and ``kl_accept``, which are set after construction, so that
    a user's rule written before they existed keeps working."""
    import inspect

    from natpg.methods.hyperparameters import hyperparameter_class

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls(actor, **hyperparameters)
    named = {k: v for k, v in hyperparameters.items() if k in params}
    after = {k: hyperparameters[k] for k in ("max_kl", "kl_accept") if k in hyperparameters and k not in params}
    defaults = hyperparameter_class(cls).defaults()
    ignored = sorted(k for k, v in hyperparameters.items() if k not in params and k not in after and v != defaults.get(k))
    if ignored:
        raise ValueError(f"{cls.name or cls.__name__}.__init__ does not take {', '.join(ignored)}")
    rule = cls(actor, **named)
    if after:  # checked as the rule's dataclass checks them (ranges and relations), then set
        rule.hp = dataclasses.replace(rule.hp, **after)
        rule._take_trust_region()
    return rule


def make(name: str, actor, **hyperparameters: Any) -> "UpdateRule":
    """Build the rule ``name`` for ``actor``; unknown hyperparameters are an error."""
    cls = get(name)
    accepted = cls.hyperparameters()
    unknown = sorted(set(hyperparameters) - set(accepted))
    if unknown:
        hints = "".join(did_you_mean(word, accepted) for word in unknown)
        raise ValueError(f"method {name!r} does not take {', '.join(unknown)}{hints} (it takes: {', '.join(sorted(accepted))})")
    return build(cls, actor, **hyperparameters)
