"""Helpers shared by the aggregators: absent tasks, the (T, T) solvers' building blocks, seeds.

The Gram matrix and the combination of rows are in :mod:`mtl_keras.balancers._gramian`; everything here
works on (T, T) float64 tensors, because the small systems the methods solve are better conditioned there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import Aggregator, state_variable

#: A row whose squared norm is at most this fraction of the largest one counts as a zero row (a task
#: absent from the batch): a norm ratio of 1e-7, the resolution of float32.
ACTIVE_RTOL = 1e-14


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


def step_counter() -> tf.Variable:
    """The call counter that seeds stateless randomness (created in ``build``)."""
    return state_variable(0, name="step", dtype=tf.int64)


def next_seed(aggregator: Aggregator, counter: tf.Variable) -> tf.Tensor:
    """The (2,) stateless seed ``(seed, step)`` of this call; advances ``counter``."""
    seed = aggregator._step_seed(counter.read_value())
    counter.assign_add(1)
    return seed


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """Compile a pure (T, T) computation with XLA as one launch.

    Inside a training step every TensorFlow op costs a few microseconds of executor overhead, which for
    these tiny problems dominates the arithmetic; XLA fuses the whole computation (loops included) into a
    handful of kernels. Traced once per number of tasks (loops over tasks unroll). Only for functions free of variables, and of decompositions whose XLA versions are
    less accurate in float64 than LAPACK's (SVD/pinv, eigh).
    """
    return tf.function(function, jit_compile=True)


#: Up to this size, :func:`small_solve` eliminates with unrolled element-wise ops (which XLA fuses into a
#: few kernels); larger systems use ``tf.linalg.solve``.
_UNROLLED_SOLVE_MAX = 10


def small_matvec(a: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``a @ x`` for small (..., n, n) and (..., n), as a multiply and a sum: XLA fuses it with its
    neighbours, where a tiny dot would be a separate kernel launch."""
    return tf.reduce_sum(a * x[..., None, :], axis=-1)


def small_solve(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Solve ``a x = b`` for batched small (..., n, n) matrices and (..., n) right-hand sides.

    For n ≤ 10 (static): Gaussian elimination without pivoting, unrolled. Only for the matrices of the
    solvers here, whose leading n − 1 (or all n) rows and columns form a symmetric positive-definite
    block (the Newton matrices of the interior-point method and of Nash-MTL, possibly bordered by the
    simplex constraint): elimination without pivoting is stable for them.
    """
    n = a.shape[-1]
    if n is None or n > _UNROLLED_SOLVE_MAX:
        return tf.linalg.solve(a, b[..., None])[..., 0]
    rows = [a[..., i, :] for i in range(n)]
    rhs = [b[..., i] for i in range(n)]
    for k in range(n):
        for i in range(k + 1, n):
            factor = rows[i][..., k] / rows[k][..., k]
            rows[i] = rows[i] - factor[..., None] * rows[k]
            rhs[i] = rhs[i] - factor * rhs[k]
    solution: list[tf.Tensor] = [tf.zeros_like(rhs[0])] * n
    for i in reversed(range(n)):
        residual = rhs[i]
        for j in range(i + 1, n):
            residual = residual - rows[i][..., j] * solution[j]
        solution[i] = residual / rows[i][..., i]
    return tf.stack(solution, axis=-1)
