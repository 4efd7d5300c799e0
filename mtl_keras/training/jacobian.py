"""What the two Jacobian steps share: one backward pass per task gives its Jacobian row and its gradient of
the task-specific variables; the aggregator turns the rows into the shared update."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from mtl_keras.balancers import Aggregator
from mtl_keras.training.runner import Runner, Step, StepState


class JacobianStep(Step):
    """Base of the parameter- and representation-level Jacobian steps.

    The task-specific variables get the sum over the tasks of their gradients from the per-task passes,
    which is the gradient of the objective without another backward pass; the regularisation's gradient
    is added to every variable. Subclasses say what the rows are taken of (:meth:`targets`) and how they
    become the shared update (:meth:`shared_update`).

    Args:
        aggregator: turns the Jacobian into one update; None sums the rows (``log_conflicts`` alone).
        log_conflicts: log the pairwise cosines of the task gradients from their Gram matrix.
    """

    persistent = True

    def __init__(self, aggregator: Aggregator | None, *, log_conflicts: bool = False) -> None:
        self.aggregator = aggregator
        self.log_conflicts = log_conflicts

    def record(self, runner: Runner, state: StepState) -> None:
        state.recorded["task_terms"] = [runner.loss_scaled(term) for term in state.terms]

    def targets(self, runner: Runner, state: StepState) -> list[Any]:
        raise NotImplementedError

    def shared_update(
        self, runner: Runner, tape: tf.GradientTape, state: StepState, rows: list[list[tf.Tensor]]
    ) -> list[tf.Tensor]:
        """The update of the shared variables (for the optimizer) from ``rows[i]``, task i's gradients of
        the :meth:`targets` (this replica's, loss-scaled)."""
        raise NotImplementedError

    def gradients(self, runner: Runner, tape: tf.GradientTape, state: StepState) -> list[Any]:
        shared = runner.shared
        specific = runner.task_specific(state.variables)
        shared_values = [v.value for v in shared]
        specific_values = [v.value for v in specific]
        targets = self.targets(runner, state)
        rows: list[list[tf.Tensor]] = []
        specific_grads: list[list[tf.Tensor]] = [[] for _ in specific]
        for term in state.recorded["task_terms"]:
            grads = tape.gradient(term, targets + specific_values)
            rows.append([tf.zeros_like(t) if g is None else g for g, t in zip(grads, targets, strict=False)])
            for k, g in enumerate(grads[len(targets) :]):
                if g is not None:
                    specific_grads[k].append(g)
        summed = [
            tf.add_n(parts) if parts else tf.zeros_like(value)
            for parts, value in zip(specific_grads, specific_values, strict=True)
        ]
        if self.aggregator is not None:
            self.aggregator.observe_losses(state.losses)
        shared_grads = self.shared_update(runner, tape, state, rows)
        grads = runner.with_regularization(
            tape, state, shared_values + specific_values, shared_grads + summed
        )
        return runner.assemble(state.variables, grads[: len(shared)], specific, grads[len(shared) :])
