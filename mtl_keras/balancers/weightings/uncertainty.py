"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting


@WEIGHTINGS.register("uncertainty")
class Uncertainty(Weighting):
    """Learned homoscedastic-uncertainty weights: total = Σ_i L_i / (2 e^{s_i}) + s_i / 2.

    ``s_i = log σ_i²`` starts at 0 and is trained with the model; its optimum is e^{s_i} = L_i. This is the
    form LibMTL uses for every task type (the paper's classification variant differs by constant factors).
    Logged weights are λ_i = 1 / (2 e^{s_i}).
    """

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.log_variance = self.add_variable(tf.zeros([num_tasks]), "log_variance", trainable=True)

    def weights(self) -> tf.Tensor:
        return 0.5 * tf.exp(-tf.convert_to_tensor(self.log_variance))

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        s = tf.convert_to_tensor(self.log_variance)
        return 0.5 * tf.exp(-s), 0.5 * s

    def get_config(self) -> dict[str, Any]:
        return super().get_config()
