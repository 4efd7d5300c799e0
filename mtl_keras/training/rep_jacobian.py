"""The representation-level Jacobian step: the aggregator acts on the task gradients of the shared
representation z (batch × d), and the result is back-propagated once through the shared part."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.balancers import Aggregator
from mtl_keras.balancers._gramian import combine_blocks, gram_of_blocks
from mtl_keras.training.jacobian import JacobianStep
from mtl_keras.training.replicas import all_gather_columns, all_reduce_sum
from mtl_keras.training.runner import Runner, StepState


class RepresentationJacobianStep(JacobianStep):
    """Rows of J are the tasks' gradients of z, split along the batch over the replicas. A Gramian-based
    aggregator needs only ``G = Σ_r J_r J_rᵀ`` (one (T, T) all-reduce); the others see J itself (this
    replica's on one replica, all-gathered across replicas otherwise). Each replica back-propagates its
    slice of the aggregated direction, loss-scaled, with ``output_gradients``.

    Args:
        representation_model: a Functional model over the same layers returning ``(outputs, z)``.
        aggregator: the gradient aggregator (required at this level).
        log_conflicts: log the pairwise cosines of the task gradients of z.
    """

    def __init__(
        self, representation_model: keras.Model, aggregator: Aggregator, *, log_conflicts: bool = False
    ) -> None:
        super().__init__(aggregator, log_conflicts=log_conflicts)
        self.aggregator: Aggregator = aggregator
        self.representation_model = representation_model

    def forward(self, runner: Runner, x: Any) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
        y_pred, representation = self.representation_model(x, training=True)
        return y_pred, representation

    def targets(self, runner: Runner, state: StepState) -> list[Any]:
        return [state.representation]

    def shared_update(
        self, runner: Runner, tape: tf.GradientTape, state: StepState, rows: list[list[tf.Tensor]]
    ) -> list[tf.Tensor]:
        z = state.representation
        assert z is not None
        local_rows = runner.unscaled([tf.cast(row[0], tf.float32) for row in rows])  # each (batch, ...)
        if self.aggregator.gramian_based:
            direction = self._by_gramian(runner, local_rows)
        elif runner.num_replicas == 1:
            direction = self._one_replica(runner, local_rows)
        else:
            direction = self._all_gathered(runner, local_rows, z)
        return tape.gradient(
            z,
            [v.value for v in runner.shared],
            output_gradients=tf.cast(runner.loss_scaled(direction), z.dtype),
            unconnected_gradients="zero",
        )

    def _by_gramian(self, runner: Runner, rows: list[tf.Tensor]) -> tf.Tensor:
        local = tf.stack(rows)  # (T, batch, ...)
        g = all_reduce_sum(gram_of_blocks([local]))
        if self.log_conflicts:
            runner.metrics.log_conflicts(g)
        return combine_blocks(self.aggregator.row_weights(g), [local])[0]

    def _one_replica(self, runner: Runner, rows: list[tf.Tensor]) -> tf.Tensor:
        if self.log_conflicts:
            runner.metrics.log_conflicts(gram_of_blocks([tf.stack(rows)]))
        return self.aggregator.aggregate_rows([[row] for row in rows])[0]

    def _all_gathered(self, runner: Runner, rows: list[tf.Tensor], z: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(tf.stack(rows), [len(rows), -1])
        jacobian, offset, local_size = all_gather_columns(flat)
        if self.log_conflicts:
            runner.metrics.log_conflicts(gram_of_blocks([jacobian]))
        direction = self.aggregator.aggregate(jacobian)
        return tf.reshape(direction[offset : offset + local_size], tf.shape(z))
