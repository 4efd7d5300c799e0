"""Random loss weighting (Lin et al., TMLR 2022)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("rlw")
class RLW(Weighting):
    """λ = softmax(z), z ~ N(0, I) drawn afresh every training step (stateless, seeded by ``(seed, step)``
    so every replica draws the same weights). Evaluation uses the expected weights 1/T.

    Args:
        seed: seeds the draws; step ``k`` uses the stateless seed ``(seed, k)``.
    """

    randomised = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.step = self.add_variable(0, "rlw_step", dtype="int64")
        self.last = self.add_variable(tf.fill([num_tasks], 1.0 / num_tasks), "rlw_weights")

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.last)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        if not training:
            return tf.fill(tf.shape(losses), 1.0 / float(self.num_tasks or 1)), tf.zeros_like(losses)
        z = tf.random.stateless_normal(tf.shape(losses), seed=self._step_seed(self.step))
        weights = tf.nn.softmax(z)
        self.step.assign_add(1)
        self.last.assign(weights)
        return weights, tf.zeros_like(losses)

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
