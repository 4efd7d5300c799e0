"""MGDA: the minimum-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, decouple, normalize
from mtl_keras.balancers.aggregators._interior_point import simplex_qp
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("mgda")
class MGDA(Aggregator):
    """Multiple-Gradient Descent (Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018), the MGDA-UB update when given the gradients of the shared representation.

    Returns ``Σ_i w_i g_i`` with ``w = argmin_{w ∈ simplex} ‖Σ_i w_i g_i‖²``, the minimum-norm point of the
    convex hull of the task gradients (a Pareto-stationary descent direction). The paper solves this QP
    with Frank-Wolfe steps; here it is solved to ~1e-12 by a small interior-point method on the (T, T)
    Gram matrix (normalised by its largest diagonal entry), so the weights are the exact minimiser up to
    round-off. No gradient normalisation is applied (the paper's "none" setting); normalise the losses
    with a loss-level weighting if wanted.

    Tasks with a zero gradient (absent from the batch) are left out of the hull: otherwise the zero
    vector would be in the hull and the update would always vanish. All-zero J gives a zero update.
    """

    gramian_based = True

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        return mgda_weights(g)


@compiled
def mgda_weights(g: tf.Tensor) -> tf.Tensor:
    """Min-norm weights (T,) on the simplex over the active rows of the Gram matrix ``g`` (0 when absent)."""
    active = active_rows(g)
    h, _ = normalize(g, active)
    # An absent task gets a decoupled variable with a linear cost 2 > max over the hull of ‖·‖² (≤ 1 after
    # normalisation), so its optimal weight is exactly 0.
    q = 2.0 * (1.0 - tf.cast(active, tf.float64))
    weights = simplex_qp(decouple(h, active), q)
    return tf.where(active, weights, tf.zeros_like(weights))
