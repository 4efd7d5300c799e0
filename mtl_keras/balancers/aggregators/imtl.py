"""IMTL-G: the update whose projections onto every unit task gradient are equal."""

from __future__ import annotations

from typing import Any, Literal

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, decouple, normalize
from mtl_keras.balancers.base import AGGREGATORS, Aggregator

#: ``rank_deficient="pinv"``: eigenvalues of the rows' cosine matrix below this fraction of the largest
#: count as 0 when deciding the rank of J.
RANK_RTOL = 1e-6


def truncated_pinv(h: tf.Tensor, norms: tf.Tensor) -> tf.Tensor:
    """The pseudo-inverse of the PSD (T, T) ``h`` truncated to the rank of its cosine matrix
    ``h_ij / (n_i n_j)`` (rows with ``n_i = 0`` left out), by eigendecomposition in float64."""
    t = int(h.shape[0])
    inverse_norms = tf.where(norms > 0, 1.0 / tf.where(norms > 0, norms, tf.ones_like(norms)), 0.0)
    cosines = h * inverse_norms[:, None] * inverse_norms[None, :]
    cosine_values = tf.linalg.eigvalsh(cosines)
    rank = tf.reduce_sum(tf.cast(cosine_values > RANK_RTOL * cosine_values[-1], tf.int32))
    values, vectors = tf.linalg.eigh(h)  # ascending: keep the last `rank`
    keep = tf.range(t) >= t - rank
    inverted = tf.where(keep, 1.0 / tf.where(keep, values, tf.ones_like(values)), 0.0)
    return tf.matmul(vectors * inverted[None, :], vectors, transpose_b=True)


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
    solver. ``rank_deficient="pinv"`` uses instead the generalisation of Quinton & Rey ("Jacobian Descent
    for Multi-Objective Optimization", 2024; TorchJD's IMTL-G): ``α = G⁺ n / (1ᵀ G⁺ n)`` with the
    pseudo-inverse G⁺, which equals the exact solution at full rank and, at rank(J) < T, is the least-
    squares (minimum-norm) answer of ``G α ∝ n``: a non-zero step whenever ``1ᵀ G⁺ n ≠ 0``. G⁺ is taken of
    G normalised by its largest diagonal entry (so the result is scale-invariant) and truncated to the
    rank of J, which is read off the cosine matrix of the rows (eigenvalues below 1e-6 of its largest
    count as 0: a Gram matrix of float32 gradients is exact only to about 1e-7 of ‖g_i‖‖g_j‖, and a
    rank decided on G itself would drop a row 1000× smaller than another); ``|1ᵀ G⁺ n| ≤ 1e-12`` (on
    that normalised G) gives the zero step, as in TorchJD.

    Tasks with a zero gradient (absent from the batch) get weight 0 and are left out of the equal-
    projection conditions; the weights of the others sum to 1. All-zero J gives a zero update.

    Args:
        rank_deficient: ``"zero"`` (default): the exact solution of the bordered system, the zero step
            when rank(J) < T; ``"pinv"``: the pseudo-inverse generalisation above.
    """

    gramian_based = True

    def __init__(self, *, rank_deficient: Literal["zero", "pinv"] = "zero") -> None:
        super().__init__()
        if rank_deficient not in ("zero", "pinv"):
            raise ValueError(
                f"Expected `rank_deficient` to be 'zero' or 'pinv'. Received: rank_deficient={rank_deficient!r}"
            )
        self.rank_deficient = rank_deficient

    def get_config(self) -> dict[str, Any]:
        return {"rank_deficient": self.rank_deficient, **super().get_config()}

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        assert self.num_tasks is not None
        t = self.num_tasks
        active = active_rows(g)
        mask = tf.cast(active, tf.float64)
        h, _ = normalize(g, active)
        norms = tf.sqrt(tf.linalg.diag_part(h))  # 0 for absent tasks
        if self.rank_deficient == "pinv":
            v = tf.linalg.matvec(truncated_pinv(h, norms), norms) * mask
            total = tf.reduce_sum(v)
            usable = tf.abs(total) > 1e-12
            return tf.where(usable, v / tf.where(usable, total, tf.ones_like(total)), tf.zeros_like(v))
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
