"""The per-task-norm step: weightings that need each task's gradient norm (GradNorm, DB-MTL)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.training.runner import Runner, Step, StepState


class PerTaskNormStep(Step):
    """Takes every task's global gradient of ``norm_variables`` (one backward pass per task, loss-scaled
    inside the tape so float16 gradients do not underflow, all-reduced: the norm of the global gradient,
    not the sum of the replicas' norms) and hands their norms to the weighting.

    The update comes from ``inner``, the step the aggregator asks for. With ``inner=None`` the norms were
    taken over exactly the shared variables and there is no aggregator (DB-MTL alone): the shared update
    Σ_i λ_i g_i reuses those gradients instead of another backward pass through the trunk, and the
    task-specific variables get the objective's gradient.

    Args:
        norm_variables: the variables the weighting declared (``Weighting.norms_over``), resolved.
        inner: the step whose gradients are used, or None to reuse the norm gradients.
    """

    persistent = True

    def __init__(self, norm_variables: list[Any], inner: Step | None = None) -> None:
        self.norm_variables = list(norm_variables)
        self.inner = inner

    def forward(self, runner: Runner, x: Any) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
        if self.inner is not None:
            return self.inner.forward(runner, x)
        return super().forward(runner, x)

    def weigh(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> tuple[tf.Tensor, tf.Tensor]:
        scaled = [runner.loss_scaled(share) for share in state.shares]  # recorded
        with tape.stop_recording():
            grads = runner.per_task_gradients(tape, scaled, [v.value for v in self.norm_variables])
            squared = [tf.add_n([tf.reduce_sum(tf.square(g)) for g in task]) for task in grads]
            norms = tf.sqrt(tf.stack(squared))
        state.recorded["norm_grads"] = grads
        runner.balancer.weighting.observe_gradients(grads)
        return runner.balancer.weighting.weigh(state.losses, gradient_norms=norms)

    def record(self, runner: Runner, state: StepState) -> None:
        if self.inner is not None:
            self.inner.record(runner, state)

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        if self.inner is not None:
            return self.inner.gradients(runner, tape, state)
        norm_grads = state.recorded["norm_grads"]
        lam = tf.unstack(tf.stop_gradient(state.weights))
        direction = [
            tf.add_n([lam[i] * task[k] for i, task in enumerate(norm_grads)])
            for k in range(len(norm_grads[0]))
        ]
        shared_values = [v.value for v in runner.shared]
        shared_grads = runner.with_regularization(tape, state, shared_values, runner.for_optimizer(direction))
        return runner.split(tape, state, shared_grads)
