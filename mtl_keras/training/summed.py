"""The summed step: one backward pass of the weighted objective Σ_i (λ_i L_i + c_i) + regularisation."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.training.runner import Runner, Step, StepState


class SummedStep(Step):
    """Every variable gets the gradient of the objective: the plain multi-task step (no aggregator).

    Also the fallback of the Jacobian steps when no shared variable is trainable (a frozen trunk): the
    task-specific variables' gradients are the same, and there is nothing shared to aggregate.
    """

    separate_task_losses = False

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        return tape.gradient(state.scaled_objective, [v.value for v in state.variables])
