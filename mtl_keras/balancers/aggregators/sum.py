"""Sum of the task gradients: the update of the plain summed loss."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("sum")
class Sum(Aggregator):
    """The sum of the task gradients, ``Σ_i g_i``: the gradient of ``Σ_i L_i`` (Caruana 1997).

    The result is a fixed combination of the rows, so the model skips the Jacobian and back-propagates
    the combined loss once (``needs_jacobian = False``). Subclasses change only :meth:`row_weight`.
    """

    needs_jacobian = False

    def row_weight(self, num_tasks: int) -> float:
        """The weight every task's gradient gets."""
        return 1.0

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        num_tasks = int(jacobian.shape[0])
        # tf.constant in the Jacobian's dtype: tf.cast of a Python float would round it through float32
        # first (1/3 off by 1e-8 in float64).
        return tf.reduce_sum(jacobian, axis=0) * tf.constant(self.row_weight(num_tasks), jacobian.dtype)

    def combination_weights(self) -> tf.Tensor:
        if self.num_tasks is None:
            raise ValueError(
                f"{type(self).__name__} aggregator is not built yet: call `build(num_tasks)` first."
            )
        return tf.fill([self.num_tasks], self.row_weight(self.num_tasks))
