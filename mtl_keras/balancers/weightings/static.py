"""Static (fixed) loss weights: total = Σ λ_i L_i with λ given by the user (equal weights by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("static")
class Static(Weighting):
    """Fixed task weights (Caruana 1997's plain sum when all weights are 1).

    Args:
        weights: one non-negative weight per task, in the model's task order; ``None`` means 1 for every task.
    """

    def __init__(self, *, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if weights is not None:
            weights = [float(w) for w in weights]
            if any(w < 0 for w in weights):
                raise ValueError(f"Expected non-negative static weights. Received: weights={weights}")
        self.static_weights = weights

    def build(self, num_tasks: int) -> None:
        if self.static_weights is not None and len(self.static_weights) != num_tasks:
            raise ValueError(
                f"Expected {num_tasks} static weights (one per task). Received: weights={self.static_weights}"
            )
        super().build(num_tasks)

    def weights(self) -> tf.Tensor:
        assert self.num_tasks is not None
        if self.static_weights is None:
            return tf.ones([self.num_tasks])
        return tf.constant(self.static_weights, tf.float32)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.weights(), tf.zeros_like(losses)

    def get_config(self) -> dict[str, Any]:
        return {"weights": self.static_weights, **super().get_config()}
