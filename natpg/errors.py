"""Numerical failures: the exceptions that mean "the numbers went bad", not "the code is wrong".

The trainer tells the two apart by type (never by message): an update that raises a
:class:`NumericalError` (or torch's ``torch.linalg.LinAlgError``) is rejected, counted and
the run goes on from the last finite parameters; any other exception is a bug and propagates.
Each class derives from ``ValueError``, so ``except ValueError`` keeps catching them.

Raise them where a non-finite value or a matrix that is not positive definite is *detected*
(:mod:`natpg.linalg`, the rules in :mod:`natpg.methods`); raise a plain ``ValueError`` for a
wrong argument (a shape, a type, a hyperparameter out of range).
"""

from __future__ import annotations

__all__ = ["NumericalError", "NonFiniteError", "NotPositiveDefiniteError", "InvalidDistributionError"]


class NumericalError(ValueError):
    """A computation failed because of its numbers (NaN, inf, lost definiteness)."""


class NonFiniteError(NumericalError):
    """An input or an intermediate result holds NaN or inf."""


class NotPositiveDefiniteError(NumericalError):
    """A matrix that must be positive definite is not, even after the jitter a solver adds."""


class InvalidDistributionError(NumericalError):
    """The actor's outputs are not valid distribution parameters (NaN or inf logits or means,
    a standard deviation that underflowed to 0): torch.distributions' argument check failed."""
