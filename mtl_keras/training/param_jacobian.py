"""The parameter-level Jacobian step: the aggregator acts on the task gradients of the shared variables."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers._gramian import gram_of_blocks
from mtl_keras.training.jacobian import JacobianStep
from mtl_keras.training.replicas import all_reduce_sum
from mtl_keras.training.runner import Runner, StepState


class ParameterJacobianStep(JacobianStep):
    """T backward passes (one per task) give the Jacobian w.r.t. the shared variables as one (T, ...) block
    per variable (measured: faster on CPU than a pfor-vectorised ``tape.jacobian``, which also runs every
    task's pass through the other heads). The replicas' rows are summed (one batched all-reduce) and
    unscaled, aggregated, then scaled again and divided among the replicas for the optimizer."""

    def targets(self, runner: Runner, state: StepState) -> list[Any]:
        return [v.value for v in runner.shared]

    def shared_update(
        self, runner: Runner, tape: tf.GradientTape, state: StepState, rows: list[list[tf.Tensor]]
    ) -> list[tf.Tensor]:
        rows = all_reduce_sum([[tf.cast(g, tf.float32) for g in row] for row in rows])
        rows = [runner.unscaled(row) for row in rows]
        if self.log_conflicts:
            runner.metrics.log_conflicts(
                gram_of_blocks([tf.stack(task_grads) for task_grads in zip(*rows, strict=True)])
            )
        if self.aggregator is None:
            direction = [tf.add_n(list(task_grads)) for task_grads in zip(*rows, strict=True)]
        else:
            direction = self.aggregator.aggregate_rows(rows)
        return runner.for_optimizer(direction)
