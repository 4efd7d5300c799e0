"""SDMGrad against its regularised min-norm problem solved here with SciPy in the parameter space, and its
limits (λ = 0 is MGDA, a large λ the mean gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, RANDOM, present
from scipy import optimize

from mtl_keras.balancers.aggregators import SDMGrad


def sdmgrad_scipy(jacobian: np.ndarray, lam: float) -> np.ndarray:
    """d = (Jᵀw + λ g0)/(1 + λ), w minimising ‖Jᵀw + λ g0‖² over the simplex of the present rows (SLSQP,
    on J divided by its largest row norm: SLSQP stops early on badly scaled objectives)."""
    scale = np.max(np.linalg.norm(jacobian, axis=1))
    jacobian = jacobian / scale
    g0 = jacobian.mean(axis=0)
    rows = jacobian[present(jacobian)]
    num = len(rows)

    def objective(w: np.ndarray) -> float:
        return float(np.sum((w @ rows + lam * g0) ** 2))

    result = optimize.minimize(
        objective,
        np.full(num, 1.0 / num),
        jac=lambda w: 2.0 * rows @ (w @ rows + lam * g0),
        bounds=[(0.0, 1.0)] * num,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert result.success, result.message
    return scale * (result.x @ rows + lam * g0) / (1.0 + lam)


def aggregate(aggregator: SDMGrad, jacobian: np.ndarray, dtype: tf.DType = tf.float64) -> np.ndarray:
    return aggregator.aggregate(tf.constant(jacobian, dtype)).numpy()


def objective(jacobian: np.ndarray, d: np.ndarray, lam: float) -> float:
    """‖Jᵀw + λ g0‖² of the update d = (Jᵀw + λ g0)/(1 + λ)."""
    return float(np.sum(((1.0 + lam) * d) ** 2))


@pytest.mark.parametrize("lam", [0.3, 1.0])
@pytest.mark.parametrize("name", list(ALL))
def test_matches_the_regularised_min_norm_problem(name: str, lam: float) -> None:
    jacobian = ALL[name]
    expected = sdmgrad_scipy(jacobian, lam)
    result = aggregate(SDMGrad(lam=lam), jacobian)
    scale = np.max(np.linalg.norm(jacobian, axis=1))
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4 * scale)
    # The optimum's value, relative to the largest squared gradient norm.
    assert objective(jacobian, result, lam) <= objective(jacobian, expected, lam) + 1e-8 * scale**2


@pytest.mark.parametrize("name", list(RANDOM))
def test_lambda_zero_is_the_min_norm_point_of_the_hull(name: str) -> None:
    jacobian = RANDOM[name]
    np.testing.assert_allclose(aggregate(SDMGrad(lam=0.0), jacobian), sdmgrad_scipy(jacobian, 0.0), atol=1e-6)


@pytest.mark.parametrize("name", list(RANDOM))
def test_large_lambda_approaches_the_mean(name: str) -> None:
    jacobian = RANDOM[name]
    mean = jacobian.mean(axis=0)
    result = aggregate(SDMGrad(lam=1e6), jacobian)
    np.testing.assert_allclose(result, mean, atol=1e-5 * np.linalg.norm(mean) * len(jacobian))


def test_direction_moves_toward_the_mean_as_lambda_grows() -> None:
    """The claimed trade-off: the cosine with g0 grows with λ."""
    jacobian = RANDOM["T=5"]
    g0 = jacobian.mean(axis=0)
    cosines = []
    for lam in (0.0, 0.3, 1.0, 10.0):
        d = aggregate(SDMGrad(lam=lam), jacobian)
        cosines.append(d @ g0 / np.linalg.norm(d) / np.linalg.norm(g0))
    assert np.all(np.diff(cosines) >= -1e-9), cosines


def test_float32_matches_float64() -> None:
    jacobian = ALL["one row 1000x larger"]
    np.testing.assert_allclose(
        aggregate(SDMGrad(), jacobian, tf.float32), aggregate(SDMGrad(), jacobian), rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize("lam", [-0.1, float("inf"), float("nan")])
def test_invalid_lambda(lam: float) -> None:
    with pytest.raises(ValueError, match="lam"):
        SDMGrad(lam=lam)
