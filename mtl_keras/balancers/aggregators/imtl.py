"""IMTL-G: the update whose projections onto every unit task gradient are equal."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, decouple, normalize
from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("imtl")
class IMTL(Aggregator):
    """IMTL-G, the gradient part of Impartial Multi-Task Learning (Liu et al., "Towards Impartial
    Multi-task Learning", ICLR 2021).

    Finds weights ``α`` with ``Σ_i α_i = 1`` such that ``d = Σ_i α_i g_i`` has the same projection onto
    every unit gradient ``u_i = g_i / ‖g_i‖``. The paper's closed form ``α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹`` (D, U
    the differences of the gradients and of the unit gradients to the first task) is the same as the
    bordered system ``G α = c·n, 1ᵀα = 1`` (n the gradient norms) solved here on the (T, T) Gram matrix
    with a pseudo-inverse. Only IMTL-G is implemented; the loss-scale part (IMTL-L) is a loss weighting.

    Edge case: when the present tasks' gradients are linearly dependent (rank(J) < T, e.g. more tasks
    than shared parameters, or two parallel gradients), the exact solution of that system is ``c = 0``
    with ``G α = 0``, so the update is the ZERO step (the only direction with equal projections onto
    every unit gradient is 0 there). This is what the paper's definition gives, not a failure of the
    solver; use another aggregator when J is rank-deficient.

    Tasks with a zero gradient (absent from the batch) get weight 0 and are left out of the equal-
    projection conditions; the weights of the others sum to 1. All-zero J gives a zero update.
    """

    gramian_based = True

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        assert self.num_tasks is not None
        t = self.num_tasks
        active = active_rows(g)
        mask = tf.cast(active, tf.float64)
        h, _ = normalize(g, active)
        norms = tf.sqrt(tf.linalg.diag_part(h))  # 0 for absent tasks
        # [[H, -n], [1ᵀ, 0]] [α; c] = [0; 1]; an absent task's row reads α_j = 0.
        system = tf.concat(
            [
                tf.concat([decouple(h, active), -norms[:, None]], axis=1),
                tf.concat([mask, tf.zeros([1], tf.float64)], axis=0)[None],
            ],
            axis=0,
        )
        rhs = tf.one_hot(t, t + 1, dtype=tf.float64)
        solution = tf.linalg.matvec(tf.linalg.pinv(system), rhs)
        return solution[:t] * mask
