import numpy as np

from natpg.rollout import gae


def test_gae_hand_computed_with_truncation_and_termination():
    gamma, lam = 0.9, 0.5
    rewards = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    values = np.array([[0.5], [1.0], [1.5], [2.0], [2.5]])
    # step 1 is truncated (bootstrap from its final observation, value 10),
    # step 3 terminates (no bootstrap; 99 must be ignored), step 4 ends the rollout (bootstrap 7).
    next_values = np.array([[1.0], [10.0], [2.0], [99.0], [7.0]])
    terminated = np.array([[False], [False], [False], [True], [False]])
    truncated = np.array([[False], [True], [False], [False], [False]])
    adv = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    # δ = [1.4, 10.0, 3.3, 2.0, 8.8]; chains cut after steps 1 and 3.
    expected = np.array([[1.4 + 0.45 * 10.0], [10.0], [3.3 + 0.45 * 2.0], [2.0], [8.8]])
    np.testing.assert_allclose(adv, expected, rtol=1e-12)


def test_gae_vectorised_envs_are_independent():
    rng = np.random.default_rng(0)
    T, N = 6, 3
    args = [rng.normal(size=(T, N)) for _ in range(3)]
    term = rng.random((T, N)) < 0.2
    trunc = (rng.random((T, N)) < 0.2) & ~term
    full = gae(*args, term, trunc, 0.99, 0.95)
    for n in range(N):
        col = gae(*[a[:, n : n + 1] for a in args], term[:, n : n + 1], trunc[:, n : n + 1], 0.99, 0.95)
        np.testing.assert_allclose(full[:, n : n + 1], col)
