"""Every rule's hyperparameters as one frozen dataclass: a field per hyperparameter, with its
default, its meaning (``metadata["help"]``) and its valid values (``metadata["range"]``,
a :class:`Range`); relations between fields are checked in :meth:`Hyperparameters.check`.

Building the dataclass validates it, so that the CLI, ``natpg.train``, the presets and the
bench check a rule's settings before any environment or actor exists, in the rule's own
words. The shared fields (``lr``, ``max_kl``, ``batch_size``, ``damping``) are declared here
once; a rule gives them its own default with :func:`lr`, :func:`damping`, ...

A rule written the old way (keyword-only ``__init__`` arguments) still works:
:func:`hyperparameter_class` derives its dataclass from those signatures.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

__all__ = [
    "Range", "Hyperparameters", "MinibatchHyperparameters", "hyperparameter", "lr", "damping", "batch_size", "unit_interval",
    "type_range", "hyperparameter_class", "REQUIRED", "SHARED_HELP", "DERIVED_HELP", "POSITIVE", "POSITIVE_INT",
]

#: The default of a hyperparameter that has none (it must be given).
REQUIRED = inspect.Parameter.empty


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True)
class Range:
    """The valid values of one setting, and the words for them in an error message."""

    kind: str  # "int", "float", "bool" or "str"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False
    optional: bool = False  # None allowed
    choices: tuple[str, ...] = ()
    words: str = ""  # how a message names the valid values, in place of the generated words

    def describe(self) -> str:
        if self.words:
            text = self.words
        elif self.kind == "bool":
            text = "true or false"
        elif self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "str":
            text = "a string"
        else:
            noun = "an integer" if self.kind == "int" else "a finite number"
            if self.low is not None and self.high is not None:
                lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text = f"{noun} in {lo}{_fmt(self.low)}, {_fmt(self.high)}{hi}"
            elif self.low is not None:
                text = f"{noun} {'>' if self.low_open else '>='} {_fmt(self.low)}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.high_open else '<='} {_fmt(self.high)}"
            else:
                text = noun
        return text + (" (or None)" if self.optional else "")

    def accepts_type(self, value: Any) -> bool:
        """The right kind of value (an integer for "int", ...), whatever its range."""
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return self.kind != "int" or isinstance(value, numbers.Integral)

    def accepts(self, value: Any) -> bool:
        if not self.accepts_type(value):
            return False
        if value is None or self.kind == "bool":
            return True
        if self.kind == "str":
            return not self.choices or value in self.choices
        v = float(value)
        if not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            return False
        return True

    def check(self, flag: str, value: Any, context: str = "") -> None:
        if not self.accepts(value):
            raise ValueError(f"{flag} must be {self.describe()}, got {value!r}{context}")


POSITIVE = Range("float", 0.0, low_open=True, words="a finite positive number")
POSITIVE_INT = Range("int", 1, words="a positive integer")


def type_range(hint: Any) -> Range | None:
    """What the type alone says: ``int`` → an integer, ``float`` → a finite number,
    ``X | None`` → also None, ``Literal[...]`` → one of its values."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return None
        hint = args[0]
    if typing.get_origin(hint) is typing.Literal:
        return Range("str", choices=tuple(str(c) for c in typing.get_args(hint)), optional=optional)
    kinds = {bool: "bool", int: "int", float: "float", str: "str"}
    return Range(kinds[hint], optional=optional) if hint in kinds else None


def hyperparameter(default: Any = MISSING, *, help: str, range: Range | None = None) -> Any:
    """A dataclass field with its meaning and valid values (None: what its type says)."""
    return field(default=default, metadata={"help": help, "range": range})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation naming a local type: no type check for it
        return {}


def field_range(cls: type, f: dataclasses.Field) -> Range | None:
    """A field's valid values: its ``range``, else what its type says."""
    spec = f.metadata.get("range")
    return spec if spec is not None else type_range(_hints(cls).get(f.name))


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """The hyperparameters every rule takes. Building one checks every field (type and range,
    in the field's own words) and then the relations between fields (:meth:`check`)."""

    lr: float = hyperparameter(help="step size η: the rule's direction is multiplied by it", range=POSITIVE)
    max_kl: float | None = hyperparameter(
        None,
        help="KL radius δ of the shared trust-region step: the rule's step is taken as a direction, scaled to "
        "KL(π_old‖π_new) ≈ δ and backtracked on the realised KL and the surrogate (None: the rule's own step)",
        range=dataclasses.replace(POSITIVE, optional=True),
    )
    kl_accept: float = hyperparameter(
        1.0,
        help="the trust-region line search accepts a step whose realised KL is at most kl_accept × max_kl "
        "(1: TRPO's test, KL ≤ δ; OpenAI Baselines' TRPO accepts up to 1.5 δ)",
        range=Range("float", 1.0, words="a finite number ≥ 1"),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            spec = field_range(type(self), f)
            if spec is not None:
                spec.check(f.name, getattr(self, f.name))
        self.check()

    def check(self) -> None:
        """Relations between fields (each field is already valid on its own); a subclass that
        adds some calls ``super().check()``."""
        if self.kl_accept != 1.0 and self.max_kl is None:  # it would be recorded, yet change nothing
            raise ValueError(f"kl_accept={self.kl_accept:g} needs a trust region: set max_kl as well")

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Field name → default (:data:`REQUIRED` where there is none), in declaration order."""
        out = {}
        for f in fields(cls):
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = REQUIRED
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, valid values, default, meaning) of every field, for help pages."""
        rows = []
        for f in fields(cls):
            spec = field_range(cls, f)
            default = cls.defaults()[f.name]
            rows.append((f.name, spec.describe() if spec else "any", default, f.metadata.get("help", "")))
        return rows


@dataclass(frozen=True, kw_only=True)
class MinibatchHyperparameters(Hyperparameters):
    """A rule that takes one step per minibatch of the rollout."""

    batch_size: int | None = hyperparameter(
        None,
        help="samples per minibatch: the rollout is split into consecutive minibatches with one step each "
        "(None: the whole rollout, one step)",
        range=dataclasses.replace(POSITIVE_INT, optional=True),
    )


# -- the shared fields with a rule's own default ---------------------------------------------


def _shared(base: type, name: str, default: Any, help: str | None = None) -> Any:
    f = next(f for f in fields(base) if f.name == name)
    return hyperparameter(default, help=help or f.metadata["help"], range=f.metadata["range"])


def lr(default: float, help: str | None = None) -> Any:
    """The ``lr`` field with this rule's default."""
    return _shared(Hyperparameters, "lr", default, help)


def batch_size(default: int | None, help: str | None = None) -> Any:
    return _shared(MinibatchHyperparameters, "batch_size", default, help)


_DAMPING_HELP = "damping λ added to the curvature matrix: larger λ gives shorter, more gradient-like steps"


def damping(default: float, help: str = _DAMPING_HELP) -> Any:
    """The ``damping`` field (λ > 0) with this rule's default."""
    return hyperparameter(default, help=help, range=POSITIVE)


def unit_interval(high_open: bool = True) -> Range:
    """[0, 1) (or [0, 1]): decays, momenta."""
    return Range("float", 0.0, 1.0, high_open=high_open)


#: The meaning of each shared field, whatever the rule (the CLI's flag help).
SHARED_HELP = {
    **{f.name: f.metadata["help"] for f in fields(MinibatchHyperparameters)},
    "damping": _DAMPING_HELP,
}


# -- rules written the old way ---------------------------------------------------------------

#: The help of a field derived from an old-style rule's signature.
DERIVED_HELP = "keyword argument of"


def _keyword_only(init: Any) -> list[inspect.Parameter]:
    try:
        return [p for p in inspect.signature(init).parameters.values() if p.kind is p.KEYWORD_ONLY]
    except (TypeError, ValueError):
        return []


@functools.cache
def hyperparameter_class(rule: type) -> type[Hyperparameters]:
    """The dataclass of ``rule``'s hyperparameters: its ``Hyperparameters``, or, for a rule
    whose ``__init__`` (or an ancestor's) still takes keyword-only hyperparameters, one derived
    from those signatures on top of the nearest declared dataclass. A derived field has the
    parameter's default and a type-only range: the rule's constructor checks the rest."""
    declared = rule.Hyperparameters
    legacy = [k for k in reversed(rule.__mro__) if "__init__" in k.__dict__ and _keyword_only(k.__dict__["__init__"])]
    if not legacy:
        return declared
    specs: dict[str, tuple[Any, Any]] = {}
    for klass in legacy:
        init = klass.__dict__["__init__"]
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - unresolvable annotations: no type check for them
            hints = {}
        for p in _keyword_only(init):
            default = MISSING if p.default is REQUIRED else p.default
            help_text = f"{DERIVED_HELP} {klass.__name__}.__init__"
            specs[p.name] = (hints.get(p.name, Any), hyperparameter(default, help=help_text))
    return dataclasses.make_dataclass(
        f"{rule.__name__}Hyperparameters", [(name, hint, f) for name, (hint, f) in specs.items()],
        bases=(declared,), frozen=True, kw_only=True,
    )
