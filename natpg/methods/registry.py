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
    """``cls(actor, **hyperparameters)``. A rule whose constructor neither names nor forwards
    (``**shared``) the base class's ``max_kl`` still gets the shared trust region: it is set
    after construction, so a user's rule written before it existed keeps working."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    forwards = "max_kl" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if forwards or "max_kl" not in hyperparameters:
        return cls(actor, **hyperparameters)
    max_kl = hyperparameters.pop("max_kl")
    rule = cls(actor, **hyperparameters)
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
