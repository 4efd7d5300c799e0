"""ConFIG: the direction with equal cosine to every task gradient, from the pseudo-inverse of the unit rows."""

from __future__ import annotations

from typing import Annotated, Any

import tensorflow as tf
from annotated_types import Interval

from mtl_keras.balancers.aggregators._common import active_rows
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


def config_weights(g: tf.Tensor, rcond: float) -> tf.Tensor:
    """Row weights (T,) of the ConFIG update for the Gram matrix ``g`` (float64).

    With ``D = diag(‖g_i‖)`` and the unit rows ``U = D⁻¹ J``, ``U⁺ 1 = Jᵀ D⁻¹ C⁺ 1`` for the cosine matrix
    ``C = D⁻¹ G D⁻¹ = U Uᵀ``; so ``x = U⁺ 1 = Jᵀ v`` with ``v = D⁻¹ C⁺ 1``, ``‖x‖² = vᵀ G v`` and the update
    ``(Σ_i g_iᵀ x̂) x̂`` (x̂ = x/‖x‖) has the row weights ``v · (1ᵀ G v) / (vᵀ G v)``. ``C⁺`` comes from an
    eigendecomposition (LAPACK, not XLA: see :func:`~mtl_keras.balancers.aggregators._common.compiled`)
    with eigenvalues below ``rcond`` times the largest treated as zero.
    """
    active = active_rows(g)
    mask = tf.cast(active, tf.float64)
    norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(g), 0.0))
    inverse_norms = tf.where(active, 1.0 / tf.where(active, norms, tf.ones_like(norms)), tf.zeros_like(norms))
    cosines = g * inverse_norms[:, None] * inverse_norms[None, :]
    cosines = 0.5 * (cosines + tf.transpose(cosines))
    values, vectors = tf.linalg.eigh(cosines)
    largest = tf.reduce_max(values)
    keep = values > rcond * tf.maximum(largest, 0.0)
    inverse_values = tf.where(keep, 1.0 / tf.where(keep, values, tf.ones_like(values)), tf.zeros_like(values))
    # C⁺ 1 over the active rows (absent rows are zero in C and get no weight).
    pinv_ones = tf.linalg.matvec(vectors, inverse_values * tf.linalg.matvec(vectors, mask, transpose_a=True))
    v = inverse_norms * pinv_ones * mask
    gv = tf.linalg.matvec(g, v)
    norm2 = tf.reduce_sum(v * gv)
    length = tf.reduce_sum(gv)  # Σ_i g_iᵀ x (absent rows are zero)
    # A null x (no direction with a positive cosine to every row in the least-squares sense, e.g. two
    # exactly opposite rows) gives a zero update.
    tiny = 1e-14 * tf.maximum(tf.reduce_max(tf.linalg.diag_part(g)), 1e-300) * tf.reduce_sum(v * v)
    usable = norm2 > tiny
    return tf.where(usable, v * length / tf.where(usable, norm2, tf.ones_like(norm2)), tf.zeros_like(v))


@AGGREGATORS.register("config")
class ConFIG(Aggregator):
    """ConFIG, Conflict-Free Inverse Gradients (Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training
    of Physics Informed Neural Networks", ICLR 2025).

    With the unit gradients ``u_i = g_i / ‖g_i‖`` stacked as the rows of U, the direction is
    ``x = U⁺ 1`` (the minimum-norm x with ``u_iᵀ x = 1`` for every task when U has full row rank, the
    least-squares solution otherwise) and the update is ``d = (Σ_i g_iᵀ x̂) x̂`` with ``x̂ = x/‖x‖``: its
    cosine with every task gradient is the same positive number (``1/‖x‖``) when J has full row rank, so
    no task conflicts with it, and its length is the sum of the projections of the gradients on it. This
    is the paper's default (equal weights, projection length); its momentum variant (M-ConFIG, one task
    gradient per step) is not implemented.

    Computed on the (T, T) Gram matrix: ``x = Jᵀ D⁻¹ C⁺ 1`` with C the matrix of cosines. Eigenvalues of C
    below ``rcond`` times the largest are treated as zero (rank-deficient J, e.g. a duplicated or
    linearly dependent gradient): float32 round-off in G is far larger than float64's machine epsilon,
    and inverting it would send x along a noise direction. The default 1e-6 keeps every direction of C
    whose unit rows leave the span of the others by more than about 1e-3. When x vanishes (two exactly
    opposite gradients and nothing else) the update is zero. Tasks with a zero gradient (absent from the
    batch) get no weight, as with TorchJD's zero unit vectors. All-zero J gives a zero update.

    Args:
        rcond: relative cut-off for the eigenvalues of the cosine matrix in its pseudo-inverse.
    """

    gramian_based = True

    def __init__(self, *, rcond: Annotated[float, Interval(ge=0, lt=1)] = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= rcond < 1.0:
            raise ValueError(f"Expected `rcond` to be in [0, 1). Received: rcond={rcond}")
        self.rcond = float(rcond)

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return config_weights(g, self.rcond)

    def get_config(self) -> dict[str, Any]:
        return {"rcond": self.rcond, **super().get_config()}
