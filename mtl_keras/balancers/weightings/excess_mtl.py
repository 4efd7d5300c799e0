"""ExcessMTL: task weights from excess risks (He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao, ICML 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from mtl_keras.balancers.base import WEIGHTINGS, NormScope, Weighting
from mtl_keras.option_types import PositiveFloat

#: Added to the Adagrad accumulator under the square root (the official code's 1e-7).
EPSILON = 1e-7


@WEIGHTINGS.register("excess_mtl")
class ExcessMTL(Weighting):
    """Weights that grow with each task's estimated excess risk, by exponentiated gradient.

    What is estimated: the excess risk of task i, ε_i = L_i(θ) − min L_i, by its second-order expansion
    around the minimiser, ε_i ≈ ½ g_iᵀ H_i⁻¹ g_i, with g_i task i's global gradient of the shared variables
    and H_i replaced by the diagonal Adagrad preconditioner H_i ≈ diag(√(Σ_{s ≤ t} g_{i,s}² + 10⁻⁷)), the
    running sum over the training steps so far, this one included. The code drops the ½ (it cancels below):

        ε_i = Σ_p g_{i,p}² / √(A_{i,p} + 10⁻⁷),       A_i ← A_i + g_i²  (elementwise).

    Each ε_i is divided by its value at the first step that has labels for the task (the estimates of
    different tasks are not on one scale); from the next step on, w_i ← w_i exp(η ε_i / ε_i(0)) and w is
    renormalised to its previous sum (T at the start, weights start at 1), the network training with the
    updated w in the same step (as the official code). A task without labels in a step keeps its weight,
    its accumulator and its ε_i(0); the others are renormalised among themselves.

    Cost: one backward pass per task and one accumulator of the shared variables' size per task (T × P
    state, saved with the model).

    Args:
        step_size: η, the exponentiated-gradient step size (``robust_step_size=1e-2`` in the official code).
    """

    norms_over = NormScope.SHARED

    def __init__(self, *, step_size: PositiveFloat = 1e-2) -> None:
        super().__init__()
        if not step_size > 0:
            raise ValueError(f"Expected `step_size` to be positive. Received: step_size={step_size!r}")
        self.step_size = float(step_size)
        self.accumulators: list[Any] = []

    def build(self, num_tasks: int) -> None:
        super().build(num_tasks)
        self.task_weights = self.add_variable(tf.ones([num_tasks]), "excess_mtl_weights")
        self.initial_risks = self.add_variable(tf.zeros([num_tasks]), "excess_mtl_initial_risks")
        self.risks = self.add_variable(tf.zeros([num_tasks]), "excess_mtl_risks")

    def build_blocks(self, block_shapes: Sequence[tuple[int, ...]]) -> None:
        shapes = [tuple(int(d) for d in shape) for shape in block_shapes]
        if self.accumulators:
            built = [tuple(a.shape[1:]) for a in self.accumulators]
            if built != shapes:
                raise ValueError(
                    f"ExcessMTL was built for shared variables of shapes {built} and received {shapes}."
                )
            return
        assert self.num_tasks is not None
        self.accumulators = [
            self.add_variable(tf.zeros((self.num_tasks, *shape)), f"excess_mtl_accumulator_{k}")
            for k, shape in enumerate(shapes)
        ]

    def observe_gradients(self, gradients: Sequence[Sequence[tf.Tensor]]) -> None:
        if not self.accumulators:
            raise ValueError("ExcessMTL needs its accumulators: compile a model with it first.")
        risk = tf.zeros([len(gradients)])
        for k, accumulator in enumerate(self.accumulators):
            g = tf.stack([tf.cast(task[k], tf.float32) for task in gradients])
            total = accumulator + tf.square(g)
            accumulator.assign(total)
            per_task = tf.reshape(tf.square(g) / tf.sqrt(total + EPSILON), [len(gradients), -1])
            risk = risk + tf.reduce_sum(per_task, axis=1)
        self.risks.assign(risk)

    def weights(self) -> tf.Tensor:
        return tf.convert_to_tensor(self.task_weights)

    def weigh(
        self, losses: tf.Tensor, *, gradient_norms: tf.Tensor | None = None, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        if not training:
            return self.weights(), tf.zeros_like(losses)
        risk = tf.convert_to_tensor(self.risks)
        present = tf.logical_and(tf.cast(losses, tf.float32) > 0, risk > 0)
        initial = tf.convert_to_tensor(self.initial_risks)
        started = initial > 0
        self.initial_risks.assign(tf.where(tf.logical_and(present, tf.logical_not(started)), risk, initial))
        move = tf.logical_and(present, started)
        w = self.weights()
        grown = tf.where(move, w * tf.exp(self.step_size * tf.math.divide_no_nan(risk, initial)), w)
        mass = tf.reduce_sum(tf.where(move, w, 0.0))
        new_mass = tf.reduce_sum(tf.where(move, grown, 0.0))
        renormalised = tf.where(move, grown * tf.math.divide_no_nan(mass, new_mass), w)
        self.task_weights.assign(renormalised)
        return renormalised, tf.zeros_like(losses)

    def get_config(self) -> dict[str, Any]:
        return {"step_size": self.step_size, **super().get_config()}
