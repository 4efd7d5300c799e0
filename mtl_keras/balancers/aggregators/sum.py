"""Sum of the task gradients: the update of the plain summed loss."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("sum")
class Sum(Aggregator):
    """The sum of the task gradients, ``Σ_i g_i``: the gradient of ``Σ_i L_i`` (Caruana 1997).

    The result is a fixed combination of the rows, so the model skips the Jacobian and back-propagates
    the summed loss once (``needs_jacobian = False``).

    Args:
        seed: unused (no randomness); kept for a uniform constructor.
    """

    needs_jacobian = False

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(jacobian, axis=0)

    def combination_weights(self) -> tf.Tensor:
        if self.num_tasks is None:
            raise ValueError("Sum aggregator is not built yet: call `build(num_tasks)` first.")
        return tf.ones([self.num_tasks])
