"""`LookaheadProbe`: what a lookahead hook may ask about the training batch of the current step.

A lookahead hook (``model.add_lookahead_hook(fn)``, ``fn(probe)``) runs inside the compiled training step,
after the step's gradients and before ``optimizer.apply``. The probe gives it, for the step's own batch:

* each task's gradient of the shared variables (:meth:`LookaheadProbe.local_task_gradients`);
* each task's masked loss at other values of the shared variables (:meth:`LookaheadProbe.local_loss_sums`),
  computed in a ``keras.StatelessScope``: no variable is assigned (the shared variables, a batch
  normalisation's moving statistics, a dropout layer's seed state keep their values), so a lookahead never
  changes the training trajectory.

Both are *this replica's* parts and contain no collective, so that a hook may compute them inside a
``tf.cond`` (only every k steps): ``tf.distribute`` does not allow a collective inside control flow in
replica context. Summing them over the replicas afterwards (:func:`mtl_keras.training.replicas.all_reduce_sum`,
outside the ``tf.cond``) gives the global values exactly: the gradients of the replicas' loss shares add up
to the gradient of the global loss, and a task's global masked mean loss is the sum of the replicas' loss
sums over the sum of their labelled counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

#: A lookahead hook: ``(probe) -> None``, called in every training step before the update.
LookaheadHook = Callable[["LookaheadProbe"], None]


class LookaheadProbe:
    """The current batch, seen from a lookahead hook (see the module docstring).

    Attributes:
        task_names: the tasks, in the model's order.
        shared_variables: the model's shared variables (the θ_s a lookahead moves).
        iterations: the optimizer's step counter before this step's update (0 on the first step).
        learning_rate: the optimizer's current learning rate (a schedule evaluated at this step).
    """

    def __init__(
        self,
        runner: Any,
        tape: tf.GradientTape,
        targets: Sequence[tf.Tensor],
        x: Any,
        labels: Sequence[Any],
        sample_weight: Sequence[Any],
    ) -> None:
        self._runner = runner
        self._tape = tape
        self._targets = list(targets)
        self._x = x
        self._labels = list(labels)
        self._sample_weight = list(sample_weight)
        self.task_names = list(runner.task_losses.names)
        self.shared_variables = list(runner.shared)
        optimizer = runner.model.optimizer
        self.iterations = optimizer.iterations
        self.learning_rate = optimizer.learning_rate

    def local_task_gradients(self) -> list[list[tf.Tensor]]:
        """This replica's part of each task's unweighted, unscaled gradient of the shared variables
        (``[task][variable]``, float32); their sum over the replicas is the global gradient."""
        values = [v.value for v in self.shared_variables]
        grads = [
            [tf.cast(g, tf.float32) for g in self._tape.gradient(t, values, unconnected_gradients="zero")]
            for t in self._targets
        ]
        return [self._runner.unscaled(task) for task in grads]

    def local_loss_sums(
        self, shared_values: Sequence[Any] | None = None, *, training: bool = True
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(loss sums (T,), labelled counts (T,))`` of this replica's examples, with the shared variables
        replaced by ``shared_values`` (None: their current values) and nothing assigned.

        The global masked mean loss of task j is ``Σ_r sums_r[j] / Σ_r counts_r[j]`` (0/0 when no replica
        has a label for j). ``training`` is the mode of the forward pass (dropout, batch statistics).
        """
        mapping: list[tuple[Any, Any]] = []
        if shared_values is not None:
            if len(shared_values) != len(self.shared_variables):
                raise ValueError(
                    f"Expected one value per shared variable ({len(self.shared_variables)}). "
                    f"Received: {len(shared_values)} values."
                )
            mapping = [
                (v, tf.cast(value, v.dtype))
                for v, value in zip(self.shared_variables, shared_values, strict=True)
            ]
        task_losses = self._runner.task_losses
        with keras.StatelessScope(state_mapping=mapping):
            y_pred = self._runner.model(self._x, training=training)
            parts = [
                task_losses.masked_parts(i, self._labels[i], y_pred[name], self._sample_weight[i])
                for i, name in enumerate(task_losses.names)
            ]
        return tf.stack([p[0] for p in parts]), tf.stack([p[1] for p in parts])


__all__ = ["LookaheadHook", "LookaheadProbe"]
