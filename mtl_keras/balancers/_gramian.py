"""The Gram matrix of a Jacobian given as blocks of columns, and combinations of its rows.

The model hands a parameter-level Jacobian to the aggregators as one (T, ...) block per shared variable
(row i of each block is task i's gradient of that variable), so nothing of size P is ever concatenated:
Gramian-based aggregators need only ``G = Σ_b J_b J_bᵀ`` and return row weights, and the update of each
variable is ``weightsᵀ J_b``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

#: Below this largest squared row norm the plain float32 Gram matrix may lose the small rows to
#: underflow (an active row can be 1e-14 of the largest, and 1e-20 · 1e-14 is still a normal float32).
_SMALLEST_PLAIN_GRAM = 1e-20


def gram(jacobian: tf.Tensor) -> tf.Tensor:
    """G = J Jᵀ as a symmetric float64 (T, T) tensor; all zeros when J is not finite.

    See :func:`gram_of_blocks`; ``jacobian`` is one (T, P) block.
    """
    return gram_of_blocks([jacobian])


def gram_of_blocks(blocks: Sequence[tf.Tensor]) -> tf.Tensor:
    """G = Σ_b J_b J_bᵀ for blocks J_b of shape (T, ...) (the columns of J split by variable).

    The Gram matrix is computed directly in the blocks' dtype (one matmul per block, no concatenation of
    the Jacobian). Only when that overflows, or its largest diagonal entry is so small that float32 could
    have lost the smaller rows to underflow, it is recomputed with every block divided by the largest
    absolute entry of J (and G multiplied back in float64), so float32 gradients as large as 1e20 or as
    small as 1e-30 neither overflow nor underflow. A non-finite J gives a zero Gram matrix, so the solvers
    never see NaN; the NaN still reaches the result through the final combination of the rows of J.
    """
    rows = [_as_rows(block) for block in blocks]
    plain = tf.cast(tf.add_n([tf.matmul(r, r, transpose_b=True) for r in rows]), tf.float64)
    largest = tf.reduce_max(tf.linalg.diag_part(plain))
    safe = tf.reduce_all(tf.math.is_finite(plain)) & (largest >= _SMALLEST_PLAIN_GRAM)

    def rescaled() -> tf.Tensor:
        peak = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(r)) for r in rows]))
        peak = tf.where(tf.math.is_finite(peak) & (peak > 0), peak, tf.ones_like(peak))
        scaled = [r / peak for r in rows]
        g = tf.add_n([tf.matmul(r, r, transpose_b=True) for r in scaled])
        return tf.cast(g, tf.float64) * tf.cast(peak, tf.float64) ** 2

    g = tf.cond(safe, lambda: plain, rescaled)
    g = 0.5 * (g + tf.transpose(g))
    return tf.where(tf.reduce_all(tf.math.is_finite(g)), g, tf.zeros_like(g))


def _as_rows(block: tf.Tensor) -> tf.Tensor:
    """A (T, ...) block as a (T, n) float32/float64 matrix."""
    if block.dtype not in (tf.float32, tf.float64):
        block = tf.cast(block, tf.float32)
    if block.shape.rank == 2:
        return block
    return tf.reshape(block, [block.shape[0], -1])


def combine_blocks(weights: tf.Tensor, blocks: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """``weightsᵀ J_b`` for every block (T, ...): a list of tensors of the blocks' trailing shapes."""
    return [tf.tensordot(tf.cast(weights, block.dtype), block, axes=1) for block in blocks]


def combine(weights: tf.Tensor, jacobian: tf.Tensor) -> tf.Tensor:
    """``weightsᵀ J``: the (P,) linear combination of the rows, in the dtype of ``jacobian``."""
    return tf.linalg.matvec(jacobian, tf.cast(weights, jacobian.dtype), transpose_a=True)
