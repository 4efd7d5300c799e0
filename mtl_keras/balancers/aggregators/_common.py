"""Helpers shared by the aggregators: the Gram matrix, absent tasks, combining rows, seeds.

Everything that depends on the number of parameters P is one matmul; the rest works on (T, T) float64
tensors, because the small systems the methods solve are better conditioned there.
"""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.base import Aggregator, state_variable

#: A row whose squared norm is at most this fraction of the largest one counts as a zero row (a task
#: absent from the batch): a norm ratio of 1e-7, the resolution of float32.
ACTIVE_RTOL = 1e-14


def gram(jacobian: tf.Tensor) -> tf.Tensor:
    """G = J Jᵀ as a symmetric float64 (T, T) tensor; all zeros when J is not finite.

    J is divided by its largest absolute entry before the matmul (and G multiplied back in float64), so
    float32 gradients as large as 1e20 or as small as 1e-30 neither overflow nor underflow. A non-finite
    J gives a zero Gram matrix, so the solvers never see NaN; the NaN still reaches the result through
    the final combination of the rows of J.
    """
    rows = jacobian
    if rows.dtype not in (tf.float32, tf.float64):
        rows = tf.cast(rows, tf.float32)
    peak = tf.reduce_max(tf.abs(rows))
    peak = tf.where(tf.math.is_finite(peak) & (peak > 0), peak, tf.ones_like(peak))
    scaled = rows / peak
    g = tf.cast(tf.matmul(scaled, scaled, transpose_b=True), tf.float64) * tf.cast(peak, tf.float64) ** 2
    g = 0.5 * (g + tf.transpose(g))
    return tf.where(tf.reduce_all(tf.math.is_finite(g)), g, tf.zeros_like(g))


def active_rows(g: tf.Tensor) -> tf.Tensor:
    """Boolean (T,): True for the tasks whose gradient is not (numerically) zero."""
    sq_norms = tf.linalg.diag_part(g)
    return sq_norms > ACTIVE_RTOL * tf.reduce_max(sq_norms)


def normalize(g: tf.Tensor, active: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(H, scale)`` with ``H = G / scale`` restricted to the active rows, scale the largest diagonal entry.

    Rows and columns of absent tasks are exactly zero in H; ``scale`` is 1 when every task is absent.
    """
    mask = tf.cast(active, tf.float64)
    scale = tf.reduce_max(tf.linalg.diag_part(g) * mask)
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    return g / scale * mask[:, None] * mask[None, :], scale


def decouple(h: tf.Tensor, active: tf.Tensor) -> tf.Tensor:
    """H with the rows and columns of absent tasks replaced by unit vectors (a unit diagonal entry).

    The variable of an absent task then no longer interacts with the others; each solver adds a linear
    term that pins it at zero.
    """
    inactive = 1.0 - tf.cast(active, tf.float64)
    return h + tf.linalg.diag(inactive)


def combine(weights: tf.Tensor, jacobian: tf.Tensor) -> tf.Tensor:
    """``weightsᵀ J``: the (P,) linear combination of the rows, in the dtype of ``jacobian``."""
    return tf.linalg.matvec(jacobian, tf.cast(weights, jacobian.dtype), transpose_a=True)


def step_counter() -> tf.Variable:
    """The call counter that seeds stateless randomness (created in ``build``)."""
    return state_variable(0, name="step", dtype=tf.int64)


def next_seed(aggregator: Aggregator, counter: tf.Variable) -> tf.Tensor:
    """The (2,) stateless seed ``(seed, step)`` of this call; advances ``counter``."""
    seed = aggregator._step_seed(counter.read_value())
    counter.assign_add(1)
    return seed
