"""Registry of update rules by name: the CLI, presets and the bench never branch on names."""

from __future__ import annotations

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
    shared trust region's ``max_kl``, which is set after construction, so that a user's rule
    written before it existed keeps working."""
    import inspect

    from natpg.methods.hyperparameters import hyperparameter_class

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return cls(actor, **hyperparameters)
    named = {k: v for k, v in hyperparameters.items() if k in params}
    max_kl = hyperparameters.get("max_kl") if "max_kl" not in params else None
    defaults = hyperparameter_class(cls).defaults()
    ignored = sorted(k for k, v in hyperparameters.items() if k not in params and k != "max_kl" and v != defaults.get(k))
    if ignored:
        raise ValueError(f"{cls.name or cls.__name__}.__init__ does not take {', '.join(ignored)}")
    rule = cls(actor, **named)
    if max_kl is not None:
        from natpg.linalg import check_positive

        rule.max_kl = check_positive("max_kl", max_kl)
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
