"""The parameter-level Gramian step: a Gramian-based aggregator's update without keeping the Jacobian.

The stored-Jacobian step (:mod:`mtl_keras.training.param_jacobian`) holds every task's gradient of every
shared variable at once: T × (shared parameters) floats, 1.6 GB for a 10 M-parameter trunk at T = 40. A
Gramian-based aggregator (``Aggregator.gramian_based``) needs only ``G = J Jᵀ`` and returns ``Jᵀ w``, so:

1. the shared variables are split into chunks of at most ``chunk_floats`` Jacobian entries (one variable
   per chunk when a variable alone is larger); for each chunk in turn, every task's gradient of the chunk's
   variables is taken (one backward pass per task, all-reduced over the replicas), its Gram matrix added to
   G, and the chunk's rows dropped before the next chunk starts (control dependencies order the chunks, so
   at most one chunk's rows are alive);
2. the aggregator turns G into row weights w;
3. one more backward pass of ``Σ_i w_i · (task i's term)`` gives the shared update ``Jᵀ w`` directly.

The result equals the stored-Jacobian step's up to float rounding (tests/training/test_gramian_mode.py);
it costs one backward pass per task per chunk (each through the layers above the chunk) plus one: slower
than the stored step whenever there is more than one chunk, and it is chosen for its memory. Aggregators
that need J itself (GradDrop, MoCo's tracked Jacobian, ...) always use the stored step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from mtl_keras.balancers import Aggregator
from mtl_keras.balancers._gramian import gram_of_blocks
from mtl_keras.training.jacobian import JacobianStep
from mtl_keras.training.replicas import all_reduce_sum
from mtl_keras.training.runner import Runner, StepState

#: Default size of a chunk: 2^24 Jacobian entries (64 MiB of float32 rows).
CHUNK_FLOATS = 2**24


def chunks(sizes: Sequence[int], num_tasks: int, chunk_floats: int) -> list[list[int]]:
    """Consecutive variable indices grouped so that T × (sizes in a group) ≤ ``chunk_floats``, with at
    least one variable per group."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, size in enumerate(sizes):
        cost = num_tasks * int(size)
        if current and used + cost > chunk_floats:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += cost
    if current:
        groups.append(current)
    return groups


class GramianJacobianStep(JacobianStep):
    """See the module docstring.

    Args:
        aggregator: a Gramian-based aggregator.
        log_conflicts: log the pairwise cosines of the task gradients from G.
        chunk_floats: the most Jacobian entries alive at once (a chunk of the shared variables).
    """

    def __init__(
        self, aggregator: Aggregator, *, log_conflicts: bool = False, chunk_floats: int = CHUNK_FLOATS
    ) -> None:
        if not aggregator.gramian_based:
            raise ValueError(
                f"The Gramian step needs a Gramian-based aggregator; {type(aggregator).__name__} needs J itself."
            )
        super().__init__(aggregator, log_conflicts=log_conflicts)
        self.aggregator: Aggregator = aggregator
        self.chunk_floats = int(chunk_floats)

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        shared = runner.shared
        shared_values = [v.value for v in shared]
        terms = state.recorded["task_terms"]  # loss-scaled, this replica's
        sizes = [int(v.shape.num_elements()) for v in shared]
        g = tf.zeros([len(terms), len(terms)], tf.float64)
        for group in chunks(sizes, len(terms), self.chunk_floats):
            values = [shared_values[k] for k in group]
            with tf.control_dependencies([g]):
                rows = [
                    [tf.cast(x, tf.float32) for x in tape.gradient(t, values, unconnected_gradients="zero")]
                    for t in terms
                ]
                rows = [runner.unscaled(row) for row in all_reduce_sum(rows)]
                g = g + gram_of_blocks([tf.stack(task_grads) for task_grads in zip(*rows, strict=True)])
        if self.log_conflicts:
            runner.metrics.log_conflicts(g)
        self.aggregator.observe_losses(state.losses)
        weights = tf.stop_gradient(tf.cast(self.aggregator.row_weights(g), tf.float32))
        with tf.control_dependencies([weights]):
            # Σ_i w_i ∇(term i) in one backward pass (the terms were recorded on the tape, w was not): this
            # replica's loss-scaled share of Jᵀw; optimizer.apply sums the replicas and unscales.
            direction = tape.gradient(
                terms,
                shared_values,
                output_gradients=[
                    tf.cast(w, t.dtype) for w, t in zip(tf.unstack(weights), terms, strict=True)
                ],
                unconnected_gradients="zero",
            )
        shared_grads = runner.with_regularization(tape, state, shared_values, direction)
        return runner.split(tape, state, shared_grads)
