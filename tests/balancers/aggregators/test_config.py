"""ConFIG against the paper's definition computed here with NumPy (pseudo-inverse of the unit rows in the
parameter space), and its claimed behaviour: equal positive cosines with every task gradient."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, HARD, RANDOM, present

from mtl_keras.balancers.aggregators import ConFIG


def config_numpy(jacobian: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """d = (Σ_i g_iᵀ x̂) x̂ with x = U⁺ 1 for the unit rows U of the present tasks (the paper's eq. for ConFIG).

    ``rcond`` is NumPy's cut-off on singular values of U relative to the largest.
    """
    rows = jacobian[present(jacobian)]
    units = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    x = np.linalg.pinv(units, rcond=rcond) @ np.ones(len(rows))
    norm = np.linalg.norm(x)
    if norm < 1e-12:
        return np.zeros(jacobian.shape[1])
    unit = x / norm
    return np.sum(rows @ unit) * unit


def aggregate(aggregator: ConFIG, jacobian: np.ndarray, dtype: tf.DType = tf.float64) -> np.ndarray:
    return aggregator.aggregate(tf.constant(jacobian, dtype)).numpy()


@pytest.mark.parametrize("name", list(ALL))
def test_matches_the_definition(name: str) -> None:
    jacobian = ALL[name]
    expected = config_numpy(jacobian)
    scale = np.max(np.linalg.norm(jacobian, axis=1))
    np.testing.assert_allclose(aggregate(ConFIG(), jacobian), expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("name", [*RANDOM, "nearly parallel rows", "one row 1000x larger"])
def test_equal_positive_cosine_with_every_row_at_full_rank(name: str) -> None:
    jacobian = ALL[name]
    d = aggregate(ConFIG(), jacobian)
    cosines = jacobian @ d / np.linalg.norm(jacobian, axis=1) / np.linalg.norm(d)
    assert np.all(cosines > 0)
    np.testing.assert_allclose(cosines, np.full(len(cosines), cosines.mean()), rtol=1e-6)
    # The length is the sum of the projections of the gradients on the direction.
    np.testing.assert_allclose(np.linalg.norm(d), np.sum(jacobian @ d) / np.linalg.norm(d), rtol=1e-8)


def test_scale_of_one_row_changes_only_the_length() -> None:
    """The direction depends on the unit rows only: one row 1000x larger leaves it unchanged."""
    base = RANDOM["T=3"]
    scaled = base * np.array([[1.0], [1000.0], [1.0]])
    d, d_scaled = aggregate(ConFIG(), base), aggregate(ConFIG(), scaled)
    np.testing.assert_allclose(d_scaled / np.linalg.norm(d_scaled), d / np.linalg.norm(d), atol=1e-10)


def test_exactly_opposite_rows_give_a_zero_step() -> None:
    np.testing.assert_array_equal(aggregate(ConFIG(), HARD["opposite rows"]), 0.0)
    np.testing.assert_array_equal(aggregate(ConFIG(), HARD["opposite rows"], tf.float32), 0.0)


def test_zero_row_is_an_absent_task() -> None:
    jacobian = HARD["zero row"]
    np.testing.assert_allclose(
        aggregate(ConFIG(), jacobian), aggregate(ConFIG(), jacobian[[0, 2]]), rtol=1e-10, atol=1e-12
    )


def test_float32_rank_deficient_stays_bounded() -> None:
    """float32 round-off in G must not be inverted: a dependent row gives the float64 answer to 1e-4."""
    jacobian = HARD["rank < T, 0 outside the hull"]
    scale = np.max(np.linalg.norm(jacobian, axis=1))
    np.testing.assert_allclose(
        aggregate(ConFIG(), jacobian, tf.float32), config_numpy(jacobian), atol=1e-4 * scale
    )


def test_invalid_rcond() -> None:
    with pytest.raises(ValueError, match="rcond"):
        ConFIG(rcond=1.5)
