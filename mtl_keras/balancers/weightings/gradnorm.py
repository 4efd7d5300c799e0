"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, NormScope, Weighting
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat


@WEIGHTINGS.register("gradnorm")
class GradNorm(Weighting):
    """Learned weights w_i (init 1) that equalise the tasks' training rates.

    On the last shared layer W_s: G_i = ‖∇_{W_s} w_i L_i‖ = w_i n_i, L̃_i = L_i(t)/L_i(0), r_i = L̃_i / mean L̃,
    target_i = mean(G)·r_i^α (a constant). L_grad = Σ_i |G_i − target_i|, whose gradient with respect to w is
    sign(w_i n_i − target_i)·n_i in closed form (n_i does not depend on w). After every step w takes one Adam
    step on L_grad and is renormalised to Σ w_i = T. The network is trained with Σ w_i L_i using w before
    the step.

    Args:
        alpha: the restoring-force strength α (1.5 default; 0.12 in the paper's toy).
        learning_rate: Adam learning rate of the weights.
    """

    norms_over = NormScope.LAST_SHARED_LAYER

    def __init__(self, *, alpha: NonNegativeFloat = 1.5, learning_rate: PositiveFloat = 0.025) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"Expected `alpha` to be non-negative. Received: alpha={alpha!r}")
        if not learning_rate > 0:
            raise ValueError(
                f"Expected `learning_rate` to be positive. Received: learning_rate={learning_rate!r}"
            )
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.task_weights = self.add_variable(tf.ones([num_tasks]), "gradnorm_weights")
        self.initial_losses = self.add_variable(tf.zeros([num_tasks]), "gradnorm_initial_losses")
        self.m = self.add_variable(tf.zeros([num_tasks]), "gradnorm_adam_m")
        self.v = self.add_variable(tf.zeros([num_tasks]), "gradnorm_adam_v")
        self.step = self.add_variable(0.0, "gradnorm_step")

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.task_weights)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        w = self.weights()
        if training:
            if gradient_norms is None:
                raise ValueError("GradNorm needs per-task gradient norms of the last shared layer.")
            self._update(w, losses, gradient_norms)
        return w, tf.zeros_like(losses)

    def _update(self, w: tf.Tensor, losses: tf.Tensor, norms: tf.Tensor) -> None:
        # L_i(0) is each task's loss at the first step that has labels for it: a task missing from the first
        # batch would otherwise keep L_i(0) = 0, a training rate of 0 and a weight pushed to the floor.
        recorded = tf.convert_to_tensor(self.initial_losses)
        initial = tf.where(tf.logical_and(tf.equal(recorded, 0.0), losses > 0), losses, recorded)
        self.initial_losses.assign(initial)
        ratio = tf.math.divide_no_nan(losses, initial)
        # A task without labels in the batch (loss 0) has no defined training rate: leave it alone.
        present = tf.cast(losses > 0, tf.float32)
        mean_ratio = tf.math.divide_no_nan(tf.reduce_sum(ratio * present), tf.reduce_sum(present))
        relative = tf.math.divide_no_nan(ratio, mean_ratio)
        g = w * norms
        mean_g = tf.math.divide_no_nan(tf.reduce_sum(g * present), tf.reduce_sum(present))
        target = tf.stop_gradient(mean_g * tf.pow(relative, self.alpha))
        grad = tf.sign(g - target) * norms * present
        step = self.step + 1.0
        beta1, beta2, eps = 0.9, 0.999, 1e-7
        m = beta1 * self.m + (1 - beta1) * grad
        v = beta2 * self.v + (1 - beta2) * tf.square(grad)
        self.m.assign(m)
        self.v.assign(v)
        self.step.assign(step)
        m_hat = m / (1 - tf.pow(beta1, step))
        v_hat = v / (1 - tf.pow(beta2, step))
        new_w = tf.maximum(w - self.learning_rate * m_hat / (tf.sqrt(v_hat) + eps), 1e-6)
        self.task_weights.assign(float(self.num_tasks or 1) * new_w / tf.reduce_sum(new_w))

    def get_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "learning_rate": self.learning_rate, **super().get_config()}
