"""Property-based tests (hypothesis) for every function in ``natpg.linalg.__all__``:

1. agreement with a dense float64 solve on random well-conditioned inputs,
2. finite output on extreme but valid inputs (tiny/huge scales and damping, zero and
   duplicated rows, rank deficiency, float32),
3. a ValueError naming the argument on invalid inputs (non-positive / non-finite damping,
   NaN/inf entries, wrong shapes and types).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from natpg import linalg
from natpg.linalg import (
    block_kaczmarz,
    conjugate_gradient,
    kaczmarz_block_coefficients,
    sherman_morrison_solve,
    sherman_morrison_solve_batched,
    solve_shifted_gram,
    woodbury_solve,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
F64 = torch.float64

seeds = st.integers(0, 2**31 - 1)
dims = st.integers(1, 12)
well_damping = st.floats(1e-2, 1e2)
# "extreme but valid": 10**k for k in a wide range
extreme_damping = st.integers(-10, 10).map(lambda k: 10.0**k)
extreme_scale = st.integers(-20, 12).map(lambda k: 10.0**k)
dtypes = st.sampled_from([torch.float32, torch.float64])


def randn(gen, *shape, dtype=F64, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=F64) * scale).to(dtype)


def gen_of(seed):
    return torch.Generator().manual_seed(seed)


def assert_close(actual, expected, rtol=1e-7):
    scale = max(float(expected.abs().max()), 1e-300)
    err = float((actual.to(F64) - expected).abs().max())
    assert err <= rtol * scale, f"max error {err:.3e} against scale {scale:.3e}"


def assert_finite(x):
    assert bool(torch.isfinite(x).all()), x


def test_every_public_function_is_covered():
    covered = {"sherman_morrison_solve", "sherman_morrison_solve_batched", "conjugate_gradient", "solve_shifted_gram",
               "woodbury_solve", "block_kaczmarz", "kaczmarz_block_coefficients"}
    assert set(linalg.__all__) <= covered, f"add property tests for {set(linalg.__all__) - covered}"


# -- 1. agreement with dense float64 solves -------------------------------------------------------


@SETTINGS
@given(seeds, dims, well_damping, st.floats(0.1, 10.0))
def test_sherman_morrison_matches_dense(seed, d, damping, scale):
    g_ = gen_of(seed)
    u, g = randn(g_, d, scale=scale), randn(g_, d)
    expected = torch.linalg.solve(damping * torch.eye(d, dtype=F64) + torch.outer(u, u), g)
    assert_close(sherman_morrison_solve(u, g, damping), expected)


@SETTINGS
@given(seeds, st.integers(1, 6), dims, well_damping)
def test_sherman_morrison_batched_matches_dense(seed, n, d, damping):
    g_ = gen_of(seed)
    u, g = randn(g_, n, d), randn(g_, n, d)
    out = sherman_morrison_solve_batched(u, g, damping)
    for i in range(n):
        expected = torch.linalg.solve(damping * torch.eye(d, dtype=F64) + torch.outer(u[i], u[i]), g[i])
        assert_close(out[i], expected)


def spd(gen, d, cond_floor=0.1):
    m = randn(gen, d, d)
    return m @ m.T + cond_floor * d * torch.eye(d, dtype=F64)


@SETTINGS
@given(seeds, dims)
def test_conjugate_gradient_matches_dense(seed, d):
    g_ = gen_of(seed)
    a, b = spd(g_, d), randn(g_, d)
    x = conjugate_gradient(lambda v: a @ v, b, max_iter=3 * d, tol=1e-28 * float(b @ b))
    assert_close(x, torch.linalg.solve(a, b), rtol=1e-6)


@SETTINGS
@given(seeds, dims, st.floats(1e-3, 1e3), st.integers(0, 3))
def test_solve_shifted_gram_matches_dense(seed, n, shift, k):
    g_ = gen_of(seed)
    s = randn(g_, n, max(1, n // 2))  # rank-deficient gram on purpose
    gram = s @ s.T
    y = randn(g_, n) if k == 0 else randn(g_, n, k)
    expected = torch.linalg.solve(gram + shift * torch.eye(n, dtype=F64), y)
    assert_close(solve_shifted_gram(gram, y, shift), expected)


def dense_damped_ng(S, y, damping):
    b, d = S.shape
    return torch.linalg.solve(damping * torch.eye(d, dtype=F64) + S.T @ S / b, S.T @ y / b)


@SETTINGS
@given(seeds, st.integers(1, 10), dims, well_damping)
def test_woodbury_matches_dense_natural_gradient(seed, b, d, damping):
    g_ = gen_of(seed)
    S, y = randn(g_, b, d), randn(g_, b)
    assert_close(woodbury_solve(S, y, damping), dense_damped_ng(S, y, damping), rtol=1e-6)


@SETTINGS
@given(seeds, st.integers(1, 8), dims, well_damping, st.booleans())
def test_kaczmarz_block_coefficients_solve_the_weighted_damped_problem(seed, b, d, damping, weighted):
    """Δw = S_τᵀ c minimises Σ ρ_i (r_i − s_iᵀΔw)² + damping·b·‖Δw‖²: (SᵀDS + λb I)Δw = SᵀD r."""
    g_ = gen_of(seed)
    S, r = randn(g_, b, d), randn(g_, b)
    rho = torch.rand(b, generator=g_, dtype=F64) * 9.9 + 0.1 if weighted else torch.ones(b, dtype=F64)
    c = kaczmarz_block_coefficients(S @ S.T, r, damping, rho if weighted else None)
    D = torch.diag(rho)
    expected = torch.linalg.solve(S.T @ D @ S + damping * b * torch.eye(d, dtype=F64), S.T @ D @ r)
    assert_close(S.T @ c, expected, rtol=1e-6)


@SETTINGS
@given(seeds, st.integers(1, 8), dims, well_damping, st.booleans())
def test_block_kaczmarz_one_full_block_is_the_exact_solve(seed, b, d, damping, weighted):
    g_ = gen_of(seed)
    S, y = randn(g_, b, d), randn(g_, b)
    rho = torch.rand(b, generator=g_, dtype=F64) + 0.5 if weighted else None
    w = block_kaczmarz(S, y, damping, block_size=b, iters=1, generator=gen_of(seed + 1), row_weights=rho)
    D = torch.diag(rho) if weighted else torch.eye(b, dtype=F64)
    expected = torch.linalg.solve(S.T @ D @ S + damping * b * torch.eye(d, dtype=F64), S.T @ D @ y)
    assert_close(w, expected, rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seeds, st.integers(2, 6), st.integers(1, 3))
def test_block_kaczmarz_converges_to_the_minimum_norm_solution(seed, b, block):
    """Consistent system (B ≤ d, full row rank), tiny damping: w → Sᵀ(SSᵀ)⁻¹y."""
    g_ = gen_of(seed)
    d = 3 * b
    S, y = randn(g_, b, d), randn(g_, b)
    block = min(block, b)
    w = block_kaczmarz(S, y, 1e-12, block_size=block, iters=400, generator=gen_of(seed + 1))
    assert_close(w, S.T @ torch.linalg.solve(S @ S.T, y), rtol=1e-5)


# -- 2. finite output on extreme but valid inputs -------------------------------------------------


def stable_sherman_morrison(u, g, damping):
    """Float64 reference without cancellation: split g along û = u/‖u‖ and across it."""
    u, g = u.to(F64), g.to(F64)
    norm = u.norm()
    if norm == 0:
        return g / damping
    uhat = u / norm
    along = uhat @ g
    return (g - along * uhat) / damping + along * uhat / (damping + norm**2)


@SETTINGS
@given(seeds, dims, extreme_damping, extreme_scale, extreme_scale, dtypes)
def test_sherman_morrison_extreme_inputs_are_finite_and_accurate(seed, d, damping, u_scale, g_scale, dtype):
    g_ = gen_of(seed)
    u, g = randn(g_, d, scale=u_scale, dtype=dtype), randn(g_, d, scale=g_scale, dtype=dtype)
    out = sherman_morrison_solve(u, g, damping)
    assert_finite(out)
    assert out.dtype == dtype
    # normwise forward error, relative to the size of the answer's scale ‖g‖/λ
    err = float((out.to(F64) - stable_sherman_morrison(u, g, damping)).norm())
    tol = 1e-12 if dtype == F64 else 1e-5
    assert err <= tol * float(g.to(F64).norm()) / damping + 1e-300


@SETTINGS
@given(seeds, st.integers(1, 5), dims, extreme_damping, extreme_scale, dtypes)
def test_sherman_morrison_batched_extreme_inputs_are_finite(seed, n, d, damping, scale, dtype):
    g_ = gen_of(seed)
    u, g = randn(g_, n, d, scale=scale, dtype=dtype), randn(g_, n, d, dtype=dtype)
    u[0] = 0.0  # a zero row: plain g/λ
    out = sherman_morrison_solve_batched(u, g, damping)
    assert_finite(out)
    assert_close(out[0], g[0].to(F64) / damping, rtol=1e-6)


@SETTINGS
@given(seeds, dims, st.integers(-12, 10).map(lambda k: 10.0**k), extreme_scale)
def test_conjugate_gradient_extreme_inputs_are_finite(seed, d, a_scale, b_scale):
    g_ = gen_of(seed)
    a, b = a_scale * spd(g_, d), randn(g_, d, scale=b_scale)
    x = conjugate_gradient(lambda v: a @ v, b, max_iter=2 * d)
    assert_finite(x)
    assert_finite(conjugate_gradient(lambda v: a @ v, torch.zeros(d, dtype=F64)))
    # a singular (PSD, not PD) operator stops early instead of dividing by zero
    assert_finite(conjugate_gradient(lambda v: torch.zeros_like(v), b))


@SETTINGS
@given(seeds, dims, extreme_damping, extreme_scale, dtypes)
def test_solve_shifted_gram_extreme_inputs_are_finite(seed, n, shift, scale, dtype):
    g_ = gen_of(seed)
    s = randn(g_, n, 1, scale=scale)  # rank one
    gram = (s @ s.T).to(dtype)
    y = randn(g_, n, dtype=dtype)
    out = solve_shifted_gram(gram, y, shift)
    assert_finite(out)
    assert out.dtype == dtype


def test_solve_shifted_gram_jitters_an_indefinite_gram():
    gram = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)  # eigenvalues 3 and -1
    assert_finite(solve_shifted_gram(gram, torch.ones(2, dtype=F64), 1e-6))


@SETTINGS
@given(seeds, st.integers(1, 10), dims, extreme_damping, extreme_scale, dtypes)
def test_woodbury_extreme_inputs_are_finite(seed, b, d, damping, scale, dtype):
    g_ = gen_of(seed)
    S = randn(g_, b, d, scale=scale, dtype=dtype)
    S[0] = 0.0  # a zero score
    if b > 1:
        S[-1] = S[-2]  # a duplicated score: SSᵀ singular
    y = randn(g_, b, dtype=dtype)
    assert_finite(woodbury_solve(S, y, damping))


@SETTINGS
@given(seeds, st.integers(1, 8), dims, extreme_damping, extreme_scale, st.booleans())
def test_block_kaczmarz_and_coefficients_extreme_inputs_are_finite(seed, b, d, damping, scale, weighted):
    g_ = gen_of(seed)
    S = randn(g_, b, d, scale=scale, dtype=torch.float32)
    if b > 1:
        S[-1] = S[0]
    y = randn(g_, b, dtype=torch.float32)
    rho = (10.0 ** (torch.rand(b, generator=g_) * 12 - 6)) if weighted else None  # 1e-6 .. 1e6
    w = block_kaczmarz(S, y, damping, block_size=max(1, b // 2), iters=5, generator=gen_of(seed), row_weights=rho)
    assert_finite(w)
    assert_finite(kaczmarz_block_coefficients(S @ S.T, y, damping, rho))


# -- 3. clear errors on invalid inputs ---------------------------------------------------------------

bad_damping = st.sampled_from([0.0, -1.0, -1e-300, math.nan, math.inf, -math.inf, True, "0.1", None, [0.1]])


def nonfinite_like(x, which, position):
    x = x.clone()
    x.view(-1)[-position] = [math.nan, math.inf, -math.inf][which]  # first or last entry
    return x


@settings(max_examples=30, deadline=None)
@given(bad_damping)
def test_bad_damping_is_named(value):
    u = torch.ones(3, dtype=F64)
    S = torch.ones(2, 3, dtype=F64)
    y = torch.ones(2, dtype=F64)
    calls = [
        ("damping", lambda: sherman_morrison_solve(u, u, value)),
        ("damping", lambda: sherman_morrison_solve_batched(S, S, value)),
        ("shift", lambda: solve_shifted_gram(S @ S.T, y, value)),
        ("damping", lambda: woodbury_solve(S, y, value)),
        ("damping", lambda: block_kaczmarz(S, y, value, 1, 1)),
        ("damping", lambda: kaczmarz_block_coefficients(S @ S.T, y, value)),
    ]
    for name, call in calls:
        with pytest.raises(ValueError, match=f"^{name} must be a finite positive number"):
            call()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2), st.integers(0, 1))  # nan/inf/-inf, first/last entry
def test_nonfinite_entries_are_named(which, position):
    v = torch.ones(3, dtype=F64)
    S = torch.ones(2, 3, dtype=F64)
    y = torch.ones(2, dtype=F64)
    gram = S @ S.T
    bad_v, bad_S, bad_y, bad_gram = (nonfinite_like(x, which, position) for x in (v, S, y, gram))
    cases = [
        ("u", lambda: sherman_morrison_solve(bad_v, v, 0.1)),
        ("g", lambda: sherman_morrison_solve(v, bad_v, 0.1)),
        ("u", lambda: sherman_morrison_solve_batched(bad_S, S, 0.1)),
        ("g", lambda: sherman_morrison_solve_batched(S, bad_S, 0.1)),
        ("b", lambda: conjugate_gradient(lambda x: x, bad_v)),
        ("gram", lambda: solve_shifted_gram(bad_gram, y, 0.1)),
        ("y", lambda: solve_shifted_gram(gram, bad_y, 0.1)),
        ("S", lambda: woodbury_solve(bad_S, y, 0.1)),
        ("y", lambda: woodbury_solve(S, bad_y, 0.1)),
        ("S", lambda: block_kaczmarz(bad_S, y, 0.1, 1, 1)),
        ("y", lambda: block_kaczmarz(S, bad_y, 0.1, 1, 1)),
        ("row_weights", lambda: block_kaczmarz(S, y, 0.1, 1, 1, row_weights=bad_y)),
        ("gram", lambda: kaczmarz_block_coefficients(bad_gram, y, 0.1)),
        ("residual", lambda: kaczmarz_block_coefficients(gram, bad_y, 0.1)),
        ("weights", lambda: kaczmarz_block_coefficients(gram, y, 0.1, bad_y)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=f"^{name} contains NaN or inf"):
            call()


def test_shapes_types_and_ranges_are_named():
    v3, v4 = torch.ones(3, dtype=F64), torch.ones(4, dtype=F64)
    S = torch.ones(2, 3, dtype=F64)
    y2, y3 = torch.ones(2, dtype=F64), torch.ones(3, dtype=F64)
    cases = [
        (lambda: sherman_morrison_solve(v3, v4, 0.1), "u and g must have the same length"),
        (lambda: sherman_morrison_solve(S, S, 0.1), "u must be 1-D"),
        (lambda: sherman_morrison_solve([1.0], v3, 0.1), "u must be a torch.Tensor"),
        (lambda: sherman_morrison_solve(v3, v3.float(), 0.1), "u and g must have the same dtype"),
        (lambda: sherman_morrison_solve_batched(v3, v3, 0.1), "u must be a 2-D tensor"),
        (lambda: sherman_morrison_solve_batched(S, torch.ones(3, 2, dtype=F64), 0.1), "u and g must have the same shape"),
        (lambda: conjugate_gradient("A", v3), "matvec must be a callable"),
        (lambda: conjugate_gradient(lambda x: x, v3, max_iter=0), "max_iter must be a positive integer"),
        (lambda: conjugate_gradient(lambda x: x, v3, max_iter=True), "max_iter must be a positive integer"),
        (lambda: conjugate_gradient(lambda x: x, v3, tol=-1.0), "tol must be a finite number >= 0"),
        (lambda: conjugate_gradient(lambda x: x, v3, tol=math.nan), "tol must be a finite number >= 0"),
        (lambda: conjugate_gradient(lambda x: x[:2], v3), "matvec must return a tensor of shape (3,)"),
        (lambda: solve_shifted_gram(S, y2, 0.1), "gram must be square"),
        (lambda: solve_shifted_gram(S @ S.T, y3, 0.1), "y has 3 rows but gram is 2×2"),
        (lambda: solve_shifted_gram(S @ S.T, [1.0, 1.0], 0.1), "y must be a torch.Tensor"),
        (lambda: solve_shifted_gram(S @ S.T, y2, 0.1, max_jitter_tries=-1), "max_jitter_tries must be an integer >= 0"),
        (lambda: woodbury_solve(v3, y2, 0.1), "S must be a 2-D tensor"),
        (lambda: woodbury_solve(S, y3, 0.1), "S has 2 rows but y has length 3"),
        (lambda: block_kaczmarz(S, y2, 0.1, 3, 1), "block_size must be an integer in [1, 2]"),
        (lambda: block_kaczmarz(S, y2, 0.1, 1, 0), "iters must be a positive integer"),
        (lambda: block_kaczmarz(S, y2, 0.1, 1, True), "iters must be a positive integer"),
        (lambda: block_kaczmarz(S, y2, 0.1, True, 1), "block_size must be an integer in [1, 2]"),
        (lambda: block_kaczmarz(S, y2, 0.1, 1, 1, row_weights=y3), "row_weights must have the same shape as y"),
        (lambda: block_kaczmarz(S, y2, 0.1, 1, 1, row_weights=-y2), "row_weights must be positive"),
        (lambda: kaczmarz_block_coefficients(S, y2, 0.1), "gram must be square"),
        (lambda: kaczmarz_block_coefficients(S @ S.T, y3, 0.1), "residual has 3 rows but gram is 2×2"),
        (lambda: kaczmarz_block_coefficients(S @ S.T, y2, 0.1, y3), "weights must have the same shape as residual"),
        (lambda: kaczmarz_block_coefficients(S @ S.T, y2, 0.1, -y2), "weights must be positive"),
    ]
    for call, words in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert words in str(info.value), (words, str(info.value))
