"""Pure linear algebra for damped natural gradients. No RL in this module.

Every curvature method in natpg approximates the Tikhonov-damped natural gradient

    w* = (λI + SᵀS/B)⁻¹ (Sᵀy/B) = Sᵀ (λB·I + SSᵀ)⁻¹ y

for a B×d matrix of per-sample scores S and targets y (the advantages). The functions
here are the solvers: Sherman–Morrison for a rank-1 curvature, conjugate gradient for a
matrix-free operator, Woodbury/Cholesky for the exact B×B system, and randomised block
Kaczmarz for a stochastic solve over row blocks. All validate their inputs and raise
``ValueError`` with a message that names the argument; a NaN or inf in an input, or a
system that is not positive definite, raises a :class:`~natpg.errors.NumericalError`
(a ``ValueError`` too) so that callers can tell bad numbers from bad arguments by type.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from natpg.errors import NonFiniteError, NotPositiveDefiniteError

__all__ = [
    "sherman_morrison_solve",
    "sherman_morrison_solve_batched",
    "conjugate_gradient",
    "solve_shifted_gram",
    "woodbury_solve",
    "block_kaczmarz",
    "kaczmarz_block_coefficients",
]


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ValueError."""
    if isinstance(value, (bool, str, bytes)):  # float() would accept True and "0.5"
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v


def check_finite(name: str, tensor: Tensor) -> None:
    # A NaN or inf anywhere makes the sum non-finite, so a finite sum proves every entry
    # finite in one fast pass (torch.isfinite(x).all() is ~20x slower on CPU); only a
    # non-finite sum (possibly an overflow of finite entries) needs the exact test.
    if tensor.numel() == 0 or bool(torch.isfinite(tensor.sum())):
        return
    if not bool(torch.isfinite(tensor).all()):
        raise NonFiniteError(f"{name} contains NaN or inf")


def _check_square(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(x.shape)}")
    check_finite(name, x)


def _check_rows(name: str, x: Tensor, gram: Tensor) -> None:
    """``x`` is a finite (n,) or (n, k) tensor for an n×n ``gram``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (1, 2) or x.shape[0] != gram.shape[0]:
        rows = x.shape[0] if x.dim() else 0
        raise ValueError(f"{name} has {rows} rows but gram is {gram.shape[0]}×{gram.shape[0]}")
    check_finite(name, x)


def _check_vector(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    check_finite(name, x)


def sherman_morrison_solve(u: Tensor, g: Tensor, damping: float) -> Tensor:
    """Return ``(damping·I + u uᵀ)⁻¹ g`` in O(d).

    Sherman–Morrison: ``(λI + uuᵀ)⁻¹ g = g/λ − u (uᵀg) / (λ(λ + ‖u‖²))``.
    ``u`` and ``g`` are 1-D tensors of equal length; ``damping`` a finite number > 0.
    """
    lam = check_positive("damping", damping)
    for name, x in (("u", u), ("g", g)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if u.shape != g.shape:
        raise ValueError(f"u and g must have the same length, got {u.numel()} and {g.numel()}")
    if u.dtype != g.dtype:
        raise ValueError(f"u and g must have the same dtype, got {u.dtype} and {g.dtype}")
    uu, ug = torch.dot(u, u), torch.dot(u, g)
    # The finiteness check costs nothing extra: a NaN or inf in u makes uᵀu non-finite, and
    # one in g makes uᵀg non-finite (0·inf = NaN). Only then look for the culprit.
    if not bool(torch.isfinite(uu) & torch.isfinite(ug)):
        check_finite("u", u)
        check_finite("g", g)
        raise NonFiniteError("uᵀu or uᵀg overflows its dtype: rescale u and g (or use float64)")
    coef = ug / (lam * (lam + uu))
    if torch.is_grad_enabled() and (u.requires_grad or g.requires_grad):
        return g / lam - coef * u  # keeps the graph through coef
    return torch.add(g / lam, u, alpha=-float(coef))  # two passes over d, no other temporaries


def sherman_morrison_solve_batched(u: Tensor, g: Tensor, damping: float) -> Tensor:
    """Row-wise Sherman–Morrison: row i of the result is ``(λI + u_i u_iᵀ)⁻¹ g_i``.

    ``u`` and ``g`` are (n, d) tensors; cost O(n·d).
    """
    lam = check_positive("damping", damping)
    for name, x in (("u", u), ("g", g)):
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise ValueError(f"{name} must be a 2-D tensor (n, d), got {getattr(x, 'shape', type(x))}")
        check_finite(name, x)
    if u.shape != g.shape:
        raise ValueError(f"u and g must have the same shape, got {tuple(u.shape)} and {tuple(g.shape)}")
    coef = (u * g).sum(1) / (lam * (lam + (u * u).sum(1)))
    return g / lam - coef[:, None] * u


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, max_iter: int = 10, tol: float = 1e-10
) -> Tensor:
    """Solve ``A x = b`` for a symmetric positive-definite ``A`` given as ``matvec``.

    Starts from x = 0 and stops after ``max_iter`` iterations or when the squared residual
    norm falls below ``tol``. Never forms ``A``.
    """
    if not callable(matvec):
        raise ValueError(f"matvec must be a callable v -> A v, got {type(matvec).__name__}")
    _check_vector("b", b)
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    try:
        tol_ok = math.isfinite(float(tol)) and float(tol) >= 0
    except (TypeError, ValueError):
        tol_ok = False
    if not tol_ok:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(max_iter):
        if rr <= tol:
            break
        Ap = matvec(p)
        if not isinstance(Ap, Tensor) or Ap.shape != b.shape:
            raise ValueError(f"matvec must return a tensor of shape {tuple(b.shape)}, got {getattr(Ap, 'shape', type(Ap))}")
        pAp = torch.dot(p, Ap)
        if not torch.isfinite(pAp) or pAp <= 0:
            # Not positive definite along p (numerically): stop with the current iterate.
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def solve_shifted_gram(gram: Tensor, y: Tensor, shift: float, max_jitter_tries: int = 6) -> Tensor:
    """Return ``(gram + shift·I)⁻¹ y`` for a symmetric PSD ``gram`` by Cholesky in float64.

    If the factorisation fails (a gram matrix that is numerically indefinite), the shift is
    raised tenfold up to ``max_jitter_tries`` times before giving up.
    """
    shift = check_positive("shift", shift)
    _check_square("gram", gram)
    _check_rows("y", y, gram)
    if not isinstance(max_jitter_tries, int) or isinstance(max_jitter_tries, bool) or max_jitter_tries < 0:
        raise ValueError(f"max_jitter_tries must be an integer >= 0, got {max_jitter_tries!r}")
    k = gram.to(torch.float64)
    k = 0.5 * (k + k.T)
    eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    # A gram matrix computed in low precision can be indefinite by about eps·n·max|K_ii|,
    # which may dwarf the shift: the jitter escalates from at least that size.
    scale = float(torch.diagonal(k).abs().max()) if k.numel() else 0.0
    floor = torch.finfo(gram.dtype).eps * max(k.shape[0], 1) * scale if gram.is_floating_point() else 0.0
    jitter = shift
    for _ in range(max_jitter_tries + 1):
        chol, info = torch.linalg.cholesky_ex(k + jitter * eye)
        if int(info) == 0:
            rhs = y.to(torch.float64)
            sol = torch.cholesky_solve(rhs.reshape(rhs.shape[0], -1), chol).reshape(rhs.shape)
            return sol.to(y.dtype)
        jitter = max(jitter * 10.0, floor)
        floor *= 10.0
    raise NotPositiveDefiniteError("gram + shift·I is not positive definite even after adding jitter")


def _check_system(S: Tensor, y: Tensor) -> None:
    """S must be a finite B×d matrix and y a finite vector of length B."""
    if not isinstance(S, Tensor) or S.dim() != 2:
        raise ValueError(f"S must be a 2-D tensor (B, d), got {getattr(S, 'shape', type(S))}")
    _check_vector("y", y)
    check_finite("S", S)
    if S.shape[0] != y.shape[0]:
        raise ValueError(f"S has {S.shape[0]} rows but y has length {y.shape[0]}")


def woodbury_solve(S: Tensor, y: Tensor, damping: float) -> Tensor:
    """Return ``(damping·I + SᵀS/B)⁻¹ Sᵀy/B`` through the B×B system (Woodbury, Cholesky).

    ``S`` is B×d, ``y`` has length B. Equals ``Sᵀ (damping·B·I + SSᵀ)⁻¹ y``: cost
    O(B²d + B³) instead of O(d³).
    """
    lam = check_positive("damping", damping)
    _check_system(S, y)
    batch = S.shape[0]
    x = solve_shifted_gram(S @ S.T, y, lam * batch)
    return S.T @ x


def kaczmarz_block_coefficients(gram: Tensor, residual: Tensor, damping: float, weights: Tensor | None = None) -> Tensor:
    """Coefficients ``c`` of one damped block-Kaczmarz step ``Δw = S_τᵀ c`` on a block of b rows.

    ``gram`` is the block's ``S_τS_τᵀ`` (b×b), ``residual`` is ``r = y_τ − S_τ w``. Without
    ``weights`` the step minimises ``‖r − S_τΔw‖² + damping·b·‖Δw‖²``:

        c = (damping·b·I + S_τS_τᵀ)⁻¹ r

    With positive row ``weights`` ρ (RAT's clamped importance ratios, D = diag(ρ)) it minimises
    the importance-weighted ``Σ_i ρ_i (r_i − s_iᵀΔw)² + damping·b·‖Δw‖²``, whose solution is
    ``Δw = S_τᵀ D (damping·b·I + S_τS_τᵀ D)⁻¹ r``. The non-symmetric system is solved in its
    symmetric form ``c = D^½ (damping·b·I + D^½ S_τS_τᵀ D^½)⁻¹ D^½ r`` (Cholesky).
    """
    lam = check_positive("damping", damping)
    _check_square("gram", gram)
    _check_rows("residual", residual, gram)
    b = gram.shape[0]
    if weights is None:
        return solve_shifted_gram(gram, residual, lam * b)
    if not isinstance(weights, Tensor) or weights.shape != residual.shape[:1]:
        raise ValueError(f"weights must have the same shape as residual, got {getattr(weights, 'shape', type(weights))}")
    check_finite("weights", weights)
    if bool((weights <= 0).any()):
        raise ValueError("weights must be positive")
    root = weights.sqrt()
    return root * solve_shifted_gram(gram * root[:, None] * root[None, :], root * residual, lam * b)


def block_kaczmarz(
    S: Tensor,
    y: Tensor,
    damping: float,
    block_size: int,
    iters: int,
    generator: torch.Generator | None = None,
    row_weights: Tensor | None = None,
) -> Tensor:
    """Randomised block Kaczmarz for the damped least-squares fit of ``y`` by ``S w``.

    Each iteration takes a block τ of ``block_size`` random rows (without replacement within
    a pass over the rows; when fewer than ``block_size`` rows are left in a pass, a new random
    permutation starts the next pass) and makes the damped projection (RAT, arXiv 2605.18591):

        r = y_τ − S_τ w
        w ← w + S_τᵀ (damping·b·I + S_τ S_τᵀ)⁻¹ r

    Returns the d-vector iterate after ``iters`` block steps, starting from w = 0. Every step
    stays in the row space of S, so with tiny damping on a consistent system (B ≤ d, S of
    full row rank) the iterates approach the minimum-norm solution ``Sᵀ(SSᵀ)⁻¹y``; with
    damping they stop at an error floor that grows with it. With positive ``row_weights`` ρ
    each block step solves the importance-weighted problem instead (see
    :func:`kaczmarz_block_coefficients`): ``w ← w + S_τᵀ D (damping·b·I + S_τS_τᵀ D)⁻¹ r``.
    """
    lam = check_positive("damping", damping)
    _check_system(S, y)
    rows = S.shape[0]
    if not isinstance(block_size, int) or isinstance(block_size, bool) or not 1 <= block_size <= rows:
        raise ValueError(f"block_size must be an integer in [1, {rows}], got {block_size!r}")
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if row_weights is not None:
        if not isinstance(row_weights, Tensor) or row_weights.shape != y.shape:
            raise ValueError("row_weights must have the same shape as y")
        check_finite("row_weights", row_weights)
        if bool((row_weights <= 0).any()):
            raise ValueError("row_weights must be positive")
    w = torch.zeros(S.shape[1], dtype=S.dtype, device=S.device)
    order = torch.empty(0, dtype=torch.long)  # on the CPU: row indices from the CPU generator
    for _ in range(iters):
        if order.numel() < block_size:
            order = torch.randperm(rows, generator=generator)
        tau, order = order[:block_size], order[block_size:]
        s_tau = S[tau]
        weights = None if row_weights is None else row_weights[tau]
        coef = kaczmarz_block_coefficients(s_tau @ s_tau.T, y[tau] - s_tau @ w, lam, weights)
        w = w + s_tau.T @ coef
    return w
