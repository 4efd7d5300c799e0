"""DualProj: the mean gradient projected onto the dual cone of the task gradients."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.aggregators.upgrad import DualConeAggregator, dual_cone_weights
from mtl_keras.balancers.base import AGGREGATORS


@AGGREGATORS.register("dualproj")
class DualProj(DualConeAggregator):
    """DualProj (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

    The mean gradient ``(1/T) Σ_i g_i`` projected onto the dual cone ``{x : g_jᵀ x ≥ 0 for all j}``: the
    closest direction to the mean that conflicts with no task. The projection is the exact solution of a
    T-variable non-negative QP on the Gram matrix, solved in TensorFlow by an interior-point method.

    Convention: ``eps=0`` (default) gives the exact projection; TorchJD's ``eps = 1e-4`` added to the
    Frobenius-normalised Gram matrix gives ``[0.5563, 1.1109, 1.1109]`` instead of the exact
    ``[0.5556, 1.1111, 1.1111]`` for ``J = [[-4, 1, 1], [6, 1, 1]]``; TorchJD normalises by the trace of G,
    so ``eps = ε_TorchJD · tr(G) / ‖G‖_F`` matches it exactly (see UPGrad). A zero row (absent task) adds no
    constraint and still counts in the 1/T of the mean.

    Args:
        eps: regularisation added to the Frobenius-normalised Gram matrix (TorchJD: 1e-4).
    """

    def _row_weights(self, g: tf.Tensor) -> tf.Tensor:
        assert self.num_tasks is not None
        mean = tf.fill([1, self.num_tasks], tf.constant(1.0 / self.num_tasks, tf.float64))
        return dual_cone_weights(g, mean, self.eps)[0]
