"""Fast adaptive multitask optimization, FAMO (Liu, Feng, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, Weighting
from mtl_keras.balancers.weightings._common import masked_softmax
from mtl_keras.option_types import NonNegativeFloat, PositiveFloat

#: Added to every loss before its logarithm (the official code's 1e-8).
EPSILON = 1e-8
BETA_1, BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@WEIGHTINGS.register("famo")
class FAMO(Weighting):
    """Task logits ξ (init 0), z = softmax(ξ); the network descends Σ_i z_i log L_i, normalised.

    The step's weights are the gradient of Σ_i (z_i / c) log(L_i + ε), c = Σ_j z_j / (L_j + ε):
    λ_i = (z_i / (L_i + ε)) / Σ_j z_j / (L_j + ε) (they sum to 1). After the update ξ takes one Adam step
    (learning rate β, L2 weight decay γ as ``torch.optim.Adam``'s ``weight_decay``) on the gradient
    ∂z/∂ξᵀ δ, δ_i = log(L_i(old) + ε) − log(L_i(new) + ε) the decrease of the log loss: ξ moves towards
    the tasks whose log loss decreased least. L_i(new) is the loss of the *next* training step, on the next
    batch, taken at the start of that step before its weights are computed: no extra forward pass. The
    official code and LibMTL instead recompute the losses on the same batch after the update (one more
    forward pass per step); with full-batch training both are the same.

    A task without labels in a step (loss 0) gets λ_i = 0 and its logit does not move in a step whose δ
    it lacks (absent in this step or the previous one): its Adam moments and step count stay as they are.

    Args:
        learning_rate: β, the Adam learning rate of the logits (0.025 in the paper).
        weight_decay: γ, the logits' weight decay (1e-3 in the paper).
    """

    def __init__(
        self, *, learning_rate: PositiveFloat = 0.025, weight_decay: NonNegativeFloat = 1e-3
    ) -> None:
        super().__init__()
        if not learning_rate > 0:
            raise ValueError(
                f"Expected `learning_rate` to be positive. Received: learning_rate={learning_rate!r}"
            )
        if not weight_decay >= 0:
            raise ValueError(
                f"Expected `weight_decay` to be non-negative. Received: weight_decay={weight_decay!r}"
            )
        self.learning_rate = float(learning_rate)
        self.weight_decay = float(weight_decay)

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.logits = self.add_variable(tf.zeros([num_tasks]), "famo_logits")
        self.m = self.add_variable(tf.zeros([num_tasks]), "famo_adam_m")
        self.v = self.add_variable(tf.zeros([num_tasks]), "famo_adam_v")
        self.steps = self.add_variable(tf.zeros([num_tasks]), "famo_adam_steps")
        #: the previous training step's losses (0: no labels, or no previous step)
        self.previous_losses = self.add_variable(tf.zeros([num_tasks]), "famo_previous_losses")
        self.last = self.add_variable(tf.fill([num_tasks], 1.0 / num_tasks), "famo_weights")

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.last)

    def task_probabilities(self) -> tf.Tensor:
        """z = softmax(ξ) (T,)."""
        return tf.nn.softmax(tf.convert_to_tensor(self.logits))

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        losses = tf.cast(losses, tf.float32)
        present = losses > 0
        if training:
            self._update_logits(losses, present)
        z = masked_softmax(tf.convert_to_tensor(self.logits), present)
        scaled = tf.where(present, z / (losses + EPSILON), tf.zeros_like(z))
        weights = tf.math.divide_no_nan(scaled, tf.reduce_sum(scaled))
        if training:
            self.last.assign(weights)
        return weights, tf.zeros_like(losses)

    def _update_logits(self, losses: tf.Tensor, present: tf.Tensor) -> None:
        previous = tf.convert_to_tensor(self.previous_losses)
        self.previous_losses.assign(tf.where(present, losses, tf.zeros_like(losses)))
        both = tf.logical_and(present, previous > 0)
        delta = tf.where(both, tf.math.log(previous + EPSILON) - tf.math.log(losses + EPSILON), 0.0)
        xi = tf.convert_to_tensor(self.logits)
        z = masked_softmax(xi, both)
        # The vector-Jacobian product of the softmax (over the tasks with a δ) with δ, plus L2 decay.
        grad = tf.where(both, z * (delta - tf.reduce_sum(z * delta)) + self.weight_decay * xi, 0.0)
        steps = self.steps + tf.cast(both, tf.float32)
        m = tf.where(both, BETA_1 * self.m + (1 - BETA_1) * grad, self.m)
        v = tf.where(both, BETA_2 * self.v + (1 - BETA_2) * tf.square(grad), self.v)
        safe_steps = tf.maximum(steps, 1.0)
        m_hat = m / (1 - tf.pow(BETA_1, safe_steps))
        v_hat = v / (1 - tf.pow(BETA_2, safe_steps))
        step = tf.where(both, self.learning_rate * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON), 0.0)
        self.m.assign(m)
        self.v.assign(v)
        self.steps.assign(steps)
        self.logits.assign(xi - step)

    def get_config(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            **super().get_config(),
        }
