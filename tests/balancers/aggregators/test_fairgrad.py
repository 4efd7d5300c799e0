"""FairGrad against the positive root of (G w)_i = w_i^(−1/α) found here with SciPy, and its special cases."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, HARD, RANDOM, present
from scipy import optimize

from mtl_keras.balancers.aggregators import FairGrad

#: The cases where the system has a positive solution (0 is not in the convex hull of the present rows).
SOLVABLE = [
    *RANDOM,
    "nearly parallel rows",
    "one row 1000x larger",
    "zero row",
    "duplicated row",
    "rank < T, 0 outside the hull",
]


def fair_root(jacobian: np.ndarray, alpha: float) -> np.ndarray:
    """w (T,) with (G w)_i = w_i^(−1/α) over the present rows (0 for the absent), by scipy.optimize.root in
    log w (which keeps w > 0); the residual is checked here, not the solver's flag."""
    keep = present(jacobian)
    gram = jacobian[keep] @ jacobian[keep].T
    start = -np.log(np.diag(gram)) * alpha / (alpha + 1.0)
    result = optimize.root(lambda z: gram @ np.exp(z) - np.exp(-z / alpha), start, method="hybr", tol=1e-14)
    weights = np.exp(result.x)
    residual = gram @ weights - weights ** (-1.0 / alpha)
    assert np.max(np.abs(residual) / weights ** (-1.0 / alpha)) < 1e-8, residual
    full = np.zeros(len(jacobian))
    full[keep] = weights
    return full


def aggregate(aggregator: FairGrad, jacobian: np.ndarray, dtype: tf.DType = tf.float64) -> np.ndarray:
    return aggregator.aggregate(tf.constant(jacobian, dtype)).numpy()


def weights(aggregator: FairGrad, jacobian: np.ndarray) -> np.ndarray:
    return aggregator.row_weights(tf.constant(jacobian @ jacobian.T)).numpy()


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("name", SOLVABLE)
def test_matches_the_root_of_the_system(name: str, alpha: float) -> None:
    jacobian = ALL[name]
    expected = fair_root(jacobian, alpha)
    np.testing.assert_allclose(weights(FairGrad(alpha=alpha), jacobian), expected, rtol=1e-4)


@pytest.mark.parametrize("name", SOLVABLE)
def test_update_is_the_combination_of_the_rows(name: str) -> None:
    jacobian = ALL[name]
    expected = fair_root(jacobian, 2.0) @ jacobian
    d = aggregate(FairGrad(), jacobian)
    np.testing.assert_allclose(d, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("name", SOLVABLE)
def test_stationarity_improvement_of_each_task(name: str) -> None:
    """Task i's improvement g_iᵀ d is w_i^(−1/α): the paper's optimality condition."""
    jacobian, alpha = ALL[name], 2.0
    w = weights(FairGrad(alpha=alpha), jacobian)
    improvement = jacobian @ (w @ jacobian)
    keep = present(jacobian)
    np.testing.assert_allclose(improvement[keep], w[keep] ** (-1.0 / alpha), rtol=1e-6)
    assert np.all(w[keep] > 0) and np.all(w[~keep] == 0)


@pytest.mark.parametrize("name", list(RANDOM))
def test_alpha_one_is_proportional_fairness(name: str) -> None:
    """α = 1: G w = 1/w, the Nash bargaining solution; Σ_i log(g_iᵀ d) is maximal among directions of the
    same norm in the span of the rows."""
    jacobian = RANDOM[name]
    w = weights(FairGrad(alpha=1.0), jacobian)
    gram = jacobian @ jacobian.T
    np.testing.assert_allclose(gram @ w, 1.0 / w, rtol=1e-6)
    d = w @ jacobian
    best = np.sum(np.log(jacobian @ d))
    rng = np.random.default_rng(0)
    for _ in range(50):
        other = (w + 0.05 * rng.normal(size=w.shape)) @ jacobian
        other *= np.linalg.norm(d) / np.linalg.norm(other)
        improvement = jacobian @ other
        if np.all(improvement > 0):
            assert np.sum(np.log(improvement)) <= best + 1e-9


@pytest.mark.parametrize("name", ["T=2", "T=3"])
def test_large_alpha_approaches_equal_improvements(name: str) -> None:
    """α → ∞: w^(−1/α) → 1, so every task improves by the same amount (G w = 1, here with G⁻¹1 > 0)."""
    jacobian = RANDOM[name]
    assert np.all(np.linalg.solve(jacobian @ jacobian.T, np.ones(len(jacobian))) > 0)
    improvement = jacobian @ aggregate(FairGrad(alpha=1e4), jacobian)
    np.testing.assert_allclose(improvement, 1.0, rtol=2e-3)


@pytest.mark.parametrize("name", list(RANDOM))
def test_worst_improvement_grows_with_alpha(name: str) -> None:
    """Max-min fairness in the limit: for a unit step, the worst task's improvement grows with α."""
    jacobian = RANDOM[name]
    worst = []
    for alpha in (0.5, 2.0, 1e4):
        d = aggregate(FairGrad(alpha=alpha), jacobian)
        worst.append(np.min(jacobian @ d) / np.linalg.norm(d))
    assert worst[0] <= worst[1] + 1e-9 <= worst[2] + 2e-9, worst


@pytest.mark.parametrize(
    "name", ["opposite rows", "opposite rows and a third", "rank < T, 0 inside the hull"]
)
def test_no_positive_solution_stays_finite(name: str) -> None:
    """0 in the convex hull: the system has no positive root; the ridge keeps the update finite."""
    for dtype in (tf.float32, tf.float64):
        d = aggregate(FairGrad(), HARD[name], dtype)
        assert np.all(np.isfinite(d))


def test_scale_equivariance() -> None:
    """J → kJ: w → k^(−2α/(α+1)) w; checked against the root directly."""
    jacobian = RANDOM["T=3"]
    for scale in (1e-6, 1e6):
        np.testing.assert_allclose(
            weights(FairGrad(alpha=2.0), scale * jacobian), fair_root(scale * jacobian, 2.0), rtol=1e-4
        )


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("inf"), float("nan")])
def test_invalid_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        FairGrad(alpha=alpha)
