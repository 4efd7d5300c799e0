"""IMTL-G's ``rank_deficient="pinv"`` option against a least-squares solution written here with NumPy (the
generalisation of Quinton & Rey, 2024, that TorchJD implements), on random and rank-deficient J."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hard_jacobians import ALL, HARD, RANDOM

from mtl_keras.balancers import AGGREGATORS
from mtl_keras.balancers.aggregators import IMTL


def least_squares_weights(jacobian: np.ndarray) -> np.ndarray:
    """w ∝ the minimum-norm least-squares solution of G w = n (n the row norms), scaled to sum 1."""
    gram = jacobian @ jacobian.T
    norms = np.sqrt(np.diag(gram))
    v = np.linalg.lstsq(gram, norms, rcond=None)[0]
    return v / v.sum()


def aggregate(aggregator: IMTL, jacobian: np.ndarray) -> np.ndarray:
    return aggregator.aggregate(tf.constant(jacobian)).numpy()


RANK_DEFICIENT = {
    "3 tasks in 2-D": np.array([[1.0, 0.2], [-0.3, 1.0], [0.5, 0.5]]),
    **{
        name: HARD[name]
        for name in ("duplicated row", "rank < T, 0 outside the hull", "opposite rows and a third")
    },
}


@pytest.mark.parametrize("name", list(RANK_DEFICIENT))
def test_pinv_matches_least_squares_where_the_default_is_zero(name: str) -> None:
    jacobian = RANK_DEFICIENT[name]
    assert np.linalg.matrix_rank(jacobian) < len(jacobian)
    expected = least_squares_weights(jacobian) @ jacobian
    result = aggregate(IMTL(rank_deficient="pinv"), jacobian)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max())
    assert np.linalg.norm(result) > 1e-3


@pytest.mark.parametrize("name", [*RANDOM, "nearly parallel rows", "one row 1000x larger"])
def test_pinv_equals_the_default_at_full_rank(name: str) -> None:
    jacobian = ALL[name]
    np.testing.assert_allclose(
        aggregate(IMTL(rank_deficient="pinv"), jacobian), aggregate(IMTL(), jacobian), rtol=1e-5, atol=1e-8
    )


def test_duplicated_row_gets_equal_projections() -> None:
    """n is in the range of G here, so the least-squares answer solves the equal-projection system."""
    jacobian = HARD["duplicated row"]
    result = aggregate(IMTL(rank_deficient="pinv"), jacobian)
    projections = jacobian @ result / np.linalg.norm(jacobian, axis=1)
    np.testing.assert_allclose(projections, projections[0], rtol=1e-6)


def test_pinv_on_float32_gradients_ignores_rounding_noise() -> None:
    """A duplicated row in float32: G's zero singular value comes out ~1e-8, below the 1e-6 cutoff."""
    jacobian = HARD["rank < T, 0 outside the hull"]
    result = IMTL(rank_deficient="pinv").aggregate(tf.constant(jacobian, tf.float32)).numpy()
    expected = least_squares_weights(jacobian) @ jacobian
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_pinv_zero_row_is_an_absent_task() -> None:
    jacobian = HARD["zero row"]
    present = jacobian[[0, 2]]
    result = aggregate(IMTL(rank_deficient="pinv"), jacobian)
    np.testing.assert_allclose(result, least_squares_weights(present) @ present, rtol=1e-6)


def test_option_is_in_the_config_and_checked() -> None:
    aggregator = AGGREGATORS.get("imtl", rank_deficient="pinv")
    assert aggregator.get_config() == {"rank_deficient": "pinv"}
    with pytest.raises(ValueError, match="rank_deficient"):
        IMTL(rank_deficient="lstsq")  # type: ignore[arg-type]
