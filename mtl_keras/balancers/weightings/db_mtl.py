"""Dual-balancing multi-task learning, DB-MTL (Lin, Ye, Xu, Shi & Zhang, 2023)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, NormScope, Weighting
from mtl_keras.option_types import Rate


@WEIGHTINGS.register("db_mtl")
class DBMTL(Weighting):
    """Loss-scale balancing by a log transform, gradient-magnitude balancing by EMA-normalised norms.

    Loss level: the objective uses log L_i, whose gradient is ∇L_i / L_i, i.e. λ_i ∝ 1 / L_i (constant).
    Gradient level: m_i = EMA_β of ‖∇_W log L_i‖ over the shared variables, and every task's gradient is
    rescaled to the largest: λ_i = (max_j m_j / m_i) / L_i.

    Convention: the paper keeps an EMA of each task's gradient *vector* and sums the normalised EMA vectors;
    this implementation keeps an EMA of the gradient *norms* and rescales the current gradients, so it is a
    loss weighting (composable with any aggregator) and needs no (T, P) state. β = 0.9 as in the paper.
    """

    norms_over = NormScope.SHARED

    def __init__(self, *, beta: Rate = 0.9) -> None:
        super().__init__()
        if not 0 <= beta < 1:
            raise ValueError(f"Expected `beta` in [0, 1). Received: beta={beta!r}")
        self.beta = float(beta)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.ema = self.add_variable(tf.zeros([num_tasks]), "db_mtl_norm_ema")
        self.step = self.add_variable(0.0, "db_mtl_step")
        self.last = self.add_variable(tf.ones([num_tasks]), "db_mtl_weights")

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.last)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        inverse_loss = tf.math.divide_no_nan(1.0, losses)
        if not training:
            return self.weights(), tf.zeros_like(losses)
        if gradient_norms is None:
            raise ValueError("DB-MTL needs per-task gradient norms of the shared variables.")
        log_norms = gradient_norms * inverse_loss  # ‖∇ log L_i‖ = ‖∇L_i‖ / L_i
        step = self.step + 1.0
        ema = self.beta * tf.convert_to_tensor(self.ema) + (1 - self.beta) * log_norms
        self.ema.assign(ema)
        self.step.assign(step)
        corrected = ema / (1 - tf.pow(self.beta, step))  # bias correction of the zero-initialised EMA
        scale = tf.math.divide_no_nan(tf.reduce_max(corrected), corrected)
        weights = scale * inverse_loss
        self.last.assign(weights)
        return weights, tf.zeros_like(losses)

    def get_config(self) -> dict[str, Any]:
        return {"beta": self.beta, **super().get_config()}
