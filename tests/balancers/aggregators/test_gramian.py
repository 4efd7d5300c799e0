"""The Jacobian as per-variable blocks: Gram matrix, row weights, and `aggregate_blocks` == `aggregate`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import mtl_keras.balancers.aggregators  # noqa: F401  (registers the aggregators)
from mtl_keras.balancers._gramian import combine_blocks, gram_of_blocks
from mtl_keras.balancers.base import AGGREGATORS

NAMES = AGGREGATORS.names()
RNG = np.random.default_rng(3)
JACOBIAN = RNG.normal(size=(3, 17)).astype(np.float32)
#: Column blocks of JACOBIAN shaped like variables: a (5,) bias, a (2, 3) kernel, a (6,) vector.
SHAPES = [(5,), (2, 3), (6,)]


def make(name: str) -> Any:
    """The aggregator called ``name``, seeded when it draws random numbers (only those take a seed)."""
    return AGGREGATORS.get(name, **({"seed": 5} if AGGREGATORS.lookup(name).randomised else {}))


def split(jacobian: np.ndarray) -> list[tf.Tensor]:
    blocks, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        blocks.append(tf.constant(jacobian[:, start : start + size].reshape((jacobian.shape[0], *shape))))
        start += size
    assert start == jacobian.shape[1]
    return blocks


@pytest.mark.parametrize("name", NAMES)
def test_aggregate_blocks_equals_aggregate(name: str) -> None:
    """Same seed, same calls: the blocks' results, flattened and concatenated, are ``aggregate(J)`` (up to
    the float32 summation order of the Gram matrix, which the degenerate second J amplifies a little)."""
    whole, by_block = make(name), make(name)
    inputs = [JACOBIAN]
    if name != "cagrad":
        # With 0 in the convex hull, CAGrad's update is g0 + √φ g_w/‖g_w‖ at g_w → 0: the direction is a
        # limit that float32 round-off in G moves by ~1e-3, so the comparison is not meaningful there.
        inputs.append(np.stack([JACOBIAN[0], -JACOBIAN[0], JACOBIAN[2]]))
    for jacobian in inputs:
        expected = whole.aggregate(tf.constant(jacobian)).numpy()
        parts = by_block.aggregate_blocks(split(jacobian))
        assert [tuple(p.shape) for p in parts] == SHAPES
        result = np.concatenate([p.numpy().reshape(-1) for p in parts])
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=3e-5)


@pytest.mark.parametrize("name", NAMES)
def test_aggregate_rows_equals_aggregate_blocks(name: str) -> None:
    """The per-task form ``rows[i][k]`` gives the same update as the stacked blocks."""
    by_rows, by_block = make(name), make(name)
    blocks = split(JACOBIAN)
    rows = [[block[i] for block in blocks] for i in range(JACOBIAN.shape[0])]
    for _ in range(2):
        expected = by_block.aggregate_blocks(blocks)
        for result, wanted in zip(by_rows.aggregate_rows(rows), expected, strict=True):
            np.testing.assert_allclose(result.numpy(), wanted.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="at least one task"):
        by_rows.aggregate_rows([])


@pytest.mark.parametrize("name", [n for n in NAMES if AGGREGATORS.get(n).gramian_based])
def test_row_weights_reproduce_aggregate(name: str) -> None:
    """``Jᵀ row_weights(J Jᵀ)`` is the update, with the Gram matrix computed independently in float64."""
    gram = tf.constant(JACOBIAN.astype(np.float64) @ JACOBIAN.astype(np.float64).T)
    weights = make(name).row_weights(gram).numpy()
    expected = make(name).aggregate(tf.constant(JACOBIAN)).numpy()
    np.testing.assert_allclose(weights @ JACOBIAN.astype(np.float64), expected, rtol=1e-5, atol=1e-6)


def test_row_weights_needs_a_gramian_aggregator() -> None:
    with pytest.raises(TypeError, match="GradDrop needs the Jacobian"):
        AGGREGATORS.get("graddrop").row_weights(tf.eye(3, dtype=tf.float64))


def test_aggregate_blocks_needs_blocks() -> None:
    with pytest.raises(ValueError, match="at least one block"):
        AGGREGATORS.get("pcgrad").aggregate_blocks([])


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e-30, 1e-12])
def test_gram_of_blocks_is_exact_at_extreme_scales(scale: float) -> None:
    """float32 blocks whose plain J Jᵀ would overflow (1e20) or underflow (1e-30) still give the float64
    Gram matrix to float32 precision."""
    jacobian = JACOBIAN.astype(np.float64) * scale
    expected = jacobian @ jacobian.T
    result = gram_of_blocks(split(jacobian.astype(np.float32))).numpy()
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(result, result.T)


def test_gram_of_blocks_zero_when_not_finite() -> None:
    jacobian = JACOBIAN.copy()
    jacobian[1, 4] = np.nan
    np.testing.assert_array_equal(gram_of_blocks(split(jacobian)).numpy(), np.zeros((3, 3)))
    jacobian[1, 4] = np.inf
    np.testing.assert_array_equal(gram_of_blocks(split(jacobian)).numpy(), np.zeros((3, 3)))


def test_combine_blocks() -> None:
    weights = tf.constant([0.5, -1.0, 2.0], tf.float64)
    parts = combine_blocks(weights, split(JACOBIAN))
    expected = np.array([0.5, -1.0, 2.0], np.float32) @ JACOBIAN
    np.testing.assert_allclose(np.concatenate([p.numpy().reshape(-1) for p in parts]), expected, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 4, 7, 12])
def test_small_solve_and_matvec(n: int) -> None:
    """The unrolled elimination (n ≤ 10) and its tf.linalg.solve fallback solve the solvers' systems:
    symmetric positive-definite, and bordered by a row and column of ones (the simplex constraint)."""
    from mtl_keras.balancers.aggregators._common import small_matvec, small_solve

    rng = np.random.default_rng(n)
    factors = rng.normal(size=(4, n, n + 2))
    spd = factors @ np.swapaxes(factors, -1, -2) + 1e-3 * np.eye(n)
    bordered = np.zeros((4, n + 1, n + 1))
    bordered[:, :n, :n] = spd
    bordered[:, :n, n] = bordered[:, n, :n] = 1.0
    for matrix in (spd, bordered):
        rhs = rng.normal(size=matrix.shape[:-1])
        result = small_solve(tf.constant(matrix), tf.constant(rhs)).numpy()
        np.testing.assert_allclose(
            result, np.linalg.solve(matrix, rhs[..., None])[..., 0], rtol=1e-8, atol=1e-9
        )
        np.testing.assert_allclose(
            small_matvec(tf.constant(matrix), tf.constant(rhs)).numpy(), (matrix @ rhs[..., None])[..., 0]
        )
