"""UPGrad: the average of the task gradients, each projected onto the dual cone of all of them."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.aggregators._common import active_rows, compiled, decouple, normalize, small_matvec
from mtl_keras.balancers.aggregators._interior_point import nonnegative_qp
from mtl_keras.balancers.base import AGGREGATORS, Aggregator
from mtl_keras.option_types import NonNegativeFloat


class DualConeAggregator(Aggregator):
    """Base of UPGrad and DualProj: projections onto the dual cone of the rows, regularised by ``eps``."""

    gramian_based = True

    def __init__(self, *, eps: NonNegativeFloat = 0.0) -> None:
        super().__init__()
        if not eps >= 0.0:
            raise ValueError(f"Expected `eps` to be a non-negative number. Received: eps={eps}")
        self.eps = float(eps)

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps, **super().get_config()}


@compiled
def dual_cone_weights(g: tf.Tensor, lower: tf.Tensor, eps: float) -> tf.Tensor:
    """Weights of the projections of ``Jᵀ lower[b]`` onto the dual cone ``{x : J x ≥ 0}``, batched over b.

    The projection of ``Jᵀ u`` is ``Jᵀ w`` with ``w = argmin_{w ≥ u} ½ wᵀ G w`` (the Lagrangian dual of
    ``min ‖x − Jᵀu‖² s.t. J x ≥ 0``), a non-negative QP in ``w − u``. ``G`` is used normalised by its
    Frobenius norm; ``eps > 0`` adds ``eps · I`` to it (TorchJD normalises by the trace instead: its
    ``ε`` is ours times ``‖G‖_F / tr(G)``). Absent tasks (zero rows) keep
    their lower bound (they constrain nothing).

    Args:
        g: the (T, T) float64 Gram matrix.
        lower: (B, T) float64 lower bounds u.
        eps: the regularisation (0: exact projections).

    Returns:
        (B, T) float64 weights w.
    """
    active = active_rows(g)
    mask = tf.cast(active, tf.float64)
    h, _ = normalize(g, active)
    norm = tf.norm(h)
    h = h / tf.where(norm > 0, norm, tf.ones_like(norm)) + eps * tf.linalg.diag(mask)
    h = decouple(h, active)
    # The decoupled variable of an absent task gets a positive linear cost, so it stays exactly 0.
    q = small_matvec(h, lower) + (1.0 - mask)  # rows: h lower[b] (h is symmetric)
    return lower + tf.where(active, nonnegative_qp(h, q), tf.zeros_like(q))


@AGGREGATORS.register("upgrad")
class UPGrad(DualConeAggregator):
    """Unconflicting Projection of Gradients (Quinton & Rey, "Jacobian Descent for Multi-Objective
    Optimization", 2024).

    Every task gradient ``g_i`` is projected onto the dual cone ``{x : g_jᵀ x ≥ 0 for all j}`` of the
    rows, and the update is the mean ``(1/T) Σ_i π(g_i)``: it never conflicts with any task and equals the
    mean when no pair conflicts. Each projection is the exact solution of a T-variable non-negative QP on
    the Gram matrix (normalised by its Frobenius norm), solved in TensorFlow by an interior-point method.

    Convention: with the default ``eps=0`` the projections are exact. TorchJD adds ``eps = 1e-4`` times the
    identity to the normalised Gram matrix for numerical safety, which moves the result slightly (e.g.
    ``[0.2929, 1.9004, 1.9004]`` instead of ``[0.2924, 1.9006, 1.9006]`` for ``J = [[-4, 1, 1], [6, 1, 1]]``).
    TorchJD normalises G by its trace, we by its Frobenius norm; the projections do not change when the
    matrix is scaled, so TorchJD's ``ε`` equals ours times ``‖G‖_F / tr(G)``, i.e. ``eps = ε · tr(G) / ‖G‖_F``
    reproduces it exactly (a factor between 1 and √rank(G); 1.07 for this J, where ``eps=1e-4`` already
    agrees to four decimals). A zero row (absent task) projects to zero and adds no constraint; it still
    counts in the 1/T, as in the mean.

    Args:
        eps: regularisation added to the Frobenius-normalised Gram matrix (TorchJD: 1e-4).
    """

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        assert self.num_tasks is not None
        eye = tf.eye(self.num_tasks, dtype=tf.float64)
        weights = dual_cone_weights(g, eye, self.eps)  # row i: weights of π(g_i)
        return tf.reduce_mean(weights, axis=0)
