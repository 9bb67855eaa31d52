"""The one interface every actor-update rule implements.

A rule is built from an actor and named hyperparameters, and exposes ``update(batch)``
which changes the actor's parameters in place and returns a dict of diagnostics.

Most rules are *preconditioners* (:class:`PreconditionedRule`): they turn the plain policy
gradient into a direction, write it into ``.grad`` and let a ``torch.optim`` optimizer step
— the K-FAC library's habit, so the same object also works inside another training loop::

    loss.backward()                       # your loss: -(A * log π).mean()
    rule.precondition_grads(obs, actions, advantages)
    rule.optimizer.step()                  # or any optimizer of yours

Rules that need a closure over the batch — sequential single-sample SMAC, TRPO's line
search, RAT's multi-epoch Kaczmarz — subclass :class:`UpdateRule` and implement
``_step`` themselves; the common diagnostics are added by :meth:`UpdateRule.update` for all.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

import torch
from torch import Tensor
from torch.distributions import kl_divergence

from natpg.errors import InvalidDistributionError
from natpg.policies import Actor, check_actor
from natpg.methods import trust_region
from natpg.methods.hyperparameters import Hyperparameters, MinibatchHyperparameters, hyperparameter_class
from natpg.fisher import damped_natural_gradient, detached
from natpg.scores import ScoreBatch, compute_scores, flatten, trainable_parameters

__all__ = ["PolicyBatch", "UpdateRule", "PreconditionedRule", "cosine", "check_policy_inputs", "check_actions_fit"]


def _describe(name: str, value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{name} of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
    return f"{name} of type {type(value).__name__}"


def check_policy_inputs(obs: Tensor, actions: Tensor, advantages: Tensor | None = None) -> None:
    """The shapes and dtypes every actor update needs, or a ValueError naming the expected ones:
    ``obs`` (B, obs_dim) floating (or (B, *obs_shape), e.g. images, for an actor that takes them), ``actions`` B rows ((B,) integer for a discrete actor,
    (B, act_dim) floating for a continuous one: :func:`check_actions_fit` checks that against
    the actor), ``advantages`` (B,) floating."""
    for name, value in (("obs", obs), ("actions", actions), ("advantages", advantages)):
        if value is not None and not isinstance(value, Tensor):
            raise ValueError(f"{_describe(name, value)}: expected a torch.Tensor (torch.as_tensor converts arrays)")
    if obs.dim() < 2 or not obs.is_floating_point():
        raise ValueError(f"{_describe('obs', obs)}: expected a floating (B, obs_dim) tensor, one row per sample")
    n = obs.shape[0]
    if actions.dim() not in (1, 2) or actions.shape[0] != n:
        raise ValueError(
            f"{_describe('actions', actions)} do not match obs of {n} rows: expected ({n},) integer actions for a "
            f"discrete actor or ({n}, act_dim) floating actions for a continuous one"
        )
    if advantages is not None and (advantages.dim() != 1 or advantages.shape[0] != n or not advantages.is_floating_point()):
        raise ValueError(f"{_describe('advantages', advantages)} do not match obs of {n} rows: expected a floating ({n},) tensor")


def check_actions_fit(actor: Actor, obs: Tensor, actions: Tensor) -> None:
    """``actor.distribution(obs).log_prob(actions)`` must give one log-probability per sample.

    A discrete actor given (B, 1) actions would broadcast them into a B×B matrix of
    log-probabilities and silently compute a wrong update; refuse that, naming the shape the
    actor takes. Costs one forward pass on the first two samples.
    """
    probe = min(len(obs), 2)
    n = len(obs)
    with torch.no_grad():
        try:
            dist = actor.distribution(obs[:probe])
        except (RuntimeError, ValueError) as exc:
            error = InvalidDistributionError if _raised_by_torch_distributions(exc) else ValueError
            raise error(f"actor.distribution(obs) fails on {_describe('obs', obs)}: {str(exc).splitlines()[0]}") from None
        expected = (n, *dist.event_shape)
        discrete = bool(getattr(dist.support, "is_discrete", False))
        fits = tuple(actions.shape) == expected and not (discrete and actions.is_floating_point())
        if fits:
            try:
                fits = tuple(dist.log_prob(actions[:probe]).shape) == (probe,)
            except (RuntimeError, ValueError):
                fits = False
    if fits:
        return
    if discrete:
        fix = "actions" + (".reshape(-1)" if tuple(actions.shape) != expected else "") + (".long()" if actions.is_floating_point() else "")
        takes = f"integer actions of shape {expected}" + (f" ({fix})" if actions.numel() == n else ", one action index per sample")
    else:
        takes = f"floating actions of shape {expected}, one row of {', '.join(map(str, dist.event_shape)) or 1} per sample"
    raise ValueError(
        f"{_describe('actions', actions)} do not fit this actor: actor.distribution(obs).log_prob(actions) must have "
        f"shape ({n},), and this actor takes {takes}"
    )


def _raised_by_torch_distributions(exc: BaseException) -> bool:
    """Whether ``exc`` is a ValueError raised inside torch.distributions: its argument check,
    which fails on NaN/inf logits or means, or a standard deviation that underflowed to 0.
    Told by where it was raised, not by its wording."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return isinstance(exc, ValueError) and tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("torch.distributions")


def _numerical_distribution_errors(update):
    """Within an update (after :func:`check_actions_fit` has shown that the actor and the
    actions fit), torch.distributions' argument check can only fail on the numbers: raise it
    as :class:`~natpg.errors.InvalidDistributionError`."""

    @functools.wraps(update)
    def wrapper(*args, **kwargs):
        try:
            return update(*args, **kwargs)
        except ValueError as exc:
            if not isinstance(exc, InvalidDistributionError) and _raised_by_torch_distributions(exc):
                raise InvalidDistributionError(str(exc)) from exc
            raise

    return wrapper


@dataclass
class PolicyBatch:
    """What an actor update consumes: policy inputs, actions taken and their advantages.
    Shapes and dtypes are checked on construction (:func:`check_policy_inputs`)."""

    obs: Tensor  # (B, obs_dim) floating, already normalised: exactly what the actor sees
    actions: Tensor  # (B,) integer for discrete, (B, act_dim) floating for continuous
    advantages: Tensor  # (B,) floating

    def __post_init__(self) -> None:
        check_policy_inputs(self.obs, self.actions, self.advantages)

    def __len__(self) -> int:
        return self.obs.shape[0]

    def slice(self, start: int, stop: int) -> "PolicyBatch":
        return PolicyBatch(self.obs[start:stop], self.actions[start:stop], self.advantages[start:stop])

    def minibatches(self, size: int | None) -> Iterator["PolicyBatch"]:
        """Consecutive minibatches in rollout order (the last one may be shorter)."""
        n = len(self)
        size = n if size is None else size
        for start in range(0, n, size):
            yield self.slice(start, min(start + size, n))


def cosine(a: Tensor, b: Tensor) -> float:
    """cos(a, b) computed in float64 and clamped to [-1, 1] (0 if either is zero): a float32
    dot product of parallel vectors can round to 1.0000001 on one CPU and not on another."""
    a, b = a.double(), b.double()
    denom = a.norm() * b.norm()
    if not denom > 0:
        return 0.0
    return float(torch.clamp(torch.dot(a, b) / denom, -1.0, 1.0))


class UpdateRule(ABC):
    """Base class of all actor-update rules.

    Subclasses set ``name`` (the registry key), declare their hyperparameters as a frozen
    dataclass ``Hyperparameters`` (the CLI, ``natpg methods NAME``, the presets and the bench
    read it) and implement ``_step``; the constructor reads them from ``self.hp``.
    """

    name: ClassVar[str] = ""
    #: One-line description shown by ``natpg methods``.
    summary: ClassVar[str] = ""
    #: Opt-in diagnostic (costly: a B×B Cholesky per update): log ``exact_cosine``, the cosine
    #: between the applied step and the exact damped empirical-Fisher natural gradient at the
    #: old parameters. Its damping: ``exact_damping``, else the rule's ``damping``, else 0.1.
    exact_cosine: bool = False
    exact_damping: float | None = None
    #: False for a rule with a KL-controlled step of its own (TRPO): ``max_kl`` is then its own.
    shared_trust_region: ClassVar[bool] = True

    #: The rule's hyperparameters (:mod:`natpg.methods.hyperparameters`): a subclass declares
    #: its own, derived from this one or from :class:`MinibatchHyperparameters`.
    Hyperparameters: ClassVar[type[Hyperparameters]] = Hyperparameters

    def __init__(self, actor: Actor, hp: Hyperparameters | None = None, /, **overrides: Any):
        """``hp``: the rule's :attr:`Hyperparameters` (None: its defaults); ``overrides``
        replace single fields (``SMAC(actor, lr=1e-2)``). Invalid values raise ValueError
        naming the hyperparameter and its valid values.

        ``max_kl`` (δ): None takes the rule's own step; a number replaces it by the shared
        trust-region step (:mod:`natpg.methods.trust_region`): the rule's step as a direction,
        scaled to the KL radius δ and backtracked on the realised KL and the surrogate."""
        check_actor(actor)
        declared = type(self).Hyperparameters
        if hp is None:
            hp = declared(**overrides)
        elif not isinstance(hp, declared):
            raise TypeError(f"{type(self).__name__} takes {declared.__qualname__}, got {type(hp).__name__}")
        elif overrides:
            hp = dataclasses.replace(hp, **overrides)
        self.hp = hp
        self.actor = actor
        self.params = trainable_parameters(actor)
        self.lr = float(hp.lr)
        self._take_trust_region()

    def _take_trust_region(self) -> None:
        """The shared trust region's radius and acceptance factor, from :attr:`hp` (the trainer
        may anneal ``max_kl`` afterwards)."""
        self.max_kl = None if self.hp.max_kl is None else float(self.hp.max_kl)
        self.kl_accept = float(self.hp.kl_accept)

    @classmethod
    def hyperparameters(cls) -> dict[str, Any]:
        """Hyperparameter name → default (:data:`~natpg.methods.hyperparameters.REQUIRED` where
        there is none), from the rule's dataclass (:func:`hyperparameter_class`)."""
        return hyperparameter_class(cls).defaults()

    @abstractmethod
    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        """Change the actor's parameters using ``batch``; return the rule's own diagnostics."""

    def precondition_grads(self, obs: Tensor, actions: Tensor, advantages: Tensor | None = None) -> dict[str, float]:
        """Rules with a closure over the batch (``trpo``'s line search, ``rat``'s Kaczmarz
        epochs, ``smac-single``'s sequential steps) cannot be a ``.grad`` preconditioner: in
        your own loop, call ``rule.update(PolicyBatch(obs, actions, advantages))`` instead,
        which steps the actor in place (no ``loss.backward()``, no optimizer step)."""
        raise TypeError(
            f"{self.name or type(self).__name__} takes its step with a closure over the batch, not through .grad: "
            f"call rule.update(PolicyBatch(obs, actions, advantages)) (from natpg.methods import PolicyBatch) "
            f"in place of loss.backward(); rule.precondition_grads(...); optimizer.step()"
        )

    def _apply(self, batch: PolicyBatch) -> dict[str, float]:
        """The rule's own step, or, with ``max_kl``, the shared trust-region step along it."""
        if self.max_kl is None or not self.shared_trust_region:
            return self._step(batch)
        return trust_region.constrain(self, batch, self._step)

    @_numerical_distribution_errors
    def update(self, batch: PolicyBatch, diagnostics: bool = True) -> dict[str, float]:
        """One actor update. With ``diagnostics`` (one extra forward/backward pass at the old
        parameters and one forward pass at the new ones) the common ones are added:
        ``score_norm_sq`` (mean ‖s_i‖²), ``mean_score_norm_sq`` (‖ℓ̄‖²), ``grad_norm``,
        ``update_norm``, ``grad_cosine`` (cosine between the applied step and the plain
        gradient), ``kl`` (realised KL(π_old‖π_new) on the batch), ``log_prob_mean`` and
        ``entropy`` at the old parameters."""
        check_actions_fit(self.actor, batch.obs, batch.actions)
        if not diagnostics:
            return self._apply(batch)
        old = flatten([p.detach() for p in self.params]).clone()
        scores, old_dist, log_prob = compute_scores(self.actor, batch.obs, batch.actions)
        n = len(batch)
        grad = flatten(scores.weighted_sum(batch.advantages / n))
        mean_score = flatten(scores.weighted_sum(torch.full_like(batch.advantages, 1.0 / n)))
        score_norm_sq = float(scores.sq_norms().mean())
        exact = None
        if self.exact_cosine:
            lam = self.exact_damping or getattr(self, "damping", None) or 0.1
            exact = flatten(damped_natural_gradient(scores, batch.advantages, lam))
        del scores
        info = self._apply(batch)
        step = flatten([p.detach() for p in self.params]) - old
        with torch.no_grad():
            old_dist = detached(old_dist)
            kl = kl_divergence(old_dist, self.actor.distribution(batch.obs)).mean()
            entropy = old_dist.entropy().mean()
        info.update(
            score_norm_sq=score_norm_sq,
            mean_score_norm_sq=float(mean_score.dot(mean_score)),
            grad_norm=float(grad.norm()),
            update_norm=float(step.norm()),
            grad_cosine=cosine(step, grad),
            kl=float(kl),
            log_prob_mean=float(log_prob.mean()),
            entropy=float(entropy),
        )
        if exact is not None:
            info["exact_cosine"] = cosine(step, exact.to(step.dtype))
        return info

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PreconditionedRule(UpdateRule):
    """Direction = a preconditioned policy gradient; a torch.optim optimizer takes the step.

    ``batch_size`` splits the rollout into consecutive minibatches with one step each
    (None: the whole rollout, one step). Subclasses implement :meth:`direction`.
    """

    Hyperparameters: ClassVar[type[Hyperparameters]] = MinibatchHyperparameters

    def __init__(self, actor: Actor, hp: Hyperparameters | None = None, /, **overrides: Any):
        super().__init__(actor, hp, **overrides)
        self.batch_size = self.hp.batch_size
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.params, lr=self.lr)

    @abstractmethod
    def direction(self, scores: ScoreBatch, advantages: Tensor | None, grad: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Map the flat plain policy gradient ``grad`` (ascent) of the samples in ``scores``
        to a flat ascent direction; also return diagnostics. ``advantages`` is None when the
        caller gave only gradients."""

    def precondition_grads(self, obs: Tensor, actions: Tensor, advantages: Tensor | None = None) -> dict[str, float]:
        """Rewrite ``p.grad`` (the gradient of a loss to *minimise*) in place with the
        preconditioned direction, for use in any training loop."""
        check_policy_inputs(obs, actions, advantages)
        check_actions_fit(self.actor, obs, actions)
        scores, _, _ = compute_scores(self.actor, obs, actions)
        grad = -flatten([p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params])
        direction, info = self.direction(scores, advantages, grad)
        self._write_grads(direction)
        return info

    def _write_grads(self, direction: Tensor) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = -direction[offset : offset + n].view_as(p).clone()
            offset += n

    def _step(self, batch: PolicyBatch) -> dict[str, float]:
        totals: dict[str, float] = {}
        minibatches = list(batch.minibatches(self.batch_size))
        for mb in minibatches:
            scores, _, _ = compute_scores(self.actor, mb.obs, mb.actions)
            grad = flatten(scores.weighted_sum(mb.advantages / len(mb)))
            direction, info = self.direction(scores, mb.advantages, grad)
            self._write_grads(direction)
            self.optimizer.step()
            for key, value in info.items():
                totals[key] = totals.get(key, 0.0) + value / len(minibatches)
        return totals

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # torch's Optimizer.load_state_dict keeps the given tensors: copy, so that two rules
        # loaded from one in-memory state never share moment buffers.
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
