"""Mean of the task gradients: the update of equal loss weights 1/T."""

from __future__ import annotations

from mtl_keras.balancers.aggregators.sum import Sum
from mtl_keras.balancers.base import AGGREGATORS


@AGGREGATORS.register("mean")
class Mean(Sum):
    """The mean of the task gradients, ``(1/T) Σ_i g_i``: plain equal-weight multi-task learning.

    The baseline every gradient method is compared with (hard parameter sharing, Caruana 1997). A
    task with no labels in the batch has a zero gradient and still counts in the 1/T, as it does when
    the weighted losses are summed. The result is a fixed combination of the rows, so the model skips
    the Jacobian and back-propagates ``(1/T) Σ_i L_i`` once (``needs_jacobian = False``).
    """

    def row_weight(self, num_tasks: int) -> float:
        return 1.0 / num_tasks
