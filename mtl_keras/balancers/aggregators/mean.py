"""Mean of the task gradients: the update of equal loss weights 1/T."""

from __future__ import annotations

import tensorflow as tf

from mtl_keras.balancers.base import AGGREGATORS, Aggregator


@AGGREGATORS.register("mean")
class Mean(Aggregator):
    """The mean of the task gradients, ``(1/T) Σ_i g_i``: plain equal-weight multi-task learning.

    The baseline every gradient method is compared with (hard parameter sharing, Caruana 1997). A
    task with no labels in the batch has a zero gradient and still counts in the 1/T, as it does when
    the weighted losses are summed. The result is a fixed combination of the rows, so the model skips
    the Jacobian and back-propagates ``(1/T) Σ_i L_i`` once (``needs_jacobian = False``).

    Args:
        seed: unused (no randomness); kept for a uniform constructor.
    """

    needs_jacobian = False

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)

    def _aggregate(self, jacobian: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(jacobian, axis=0)

    def combination_weights(self) -> tf.Tensor:
        if self.num_tasks is None:
            raise ValueError("Mean aggregator is not built yet: call `build(num_tasks)` first.")
        return tf.fill([self.num_tasks], 1.0 / self.num_tasks)
