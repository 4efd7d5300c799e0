"""Per-task losses as masked means: NaN labels and zero per-task sample weights are missing labels.

A task without labels in a batch has loss 0 and no NaN. Under a ``tf.distribute`` strategy every replica
divides by the *global* number of labelled examples of each task, so the replicas' shares add up to the
single-device loss exactly (docs/methods.md, "Distribution").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from mtl_keras._registry import suggest
from mtl_keras.tasks import Task
from mtl_keras.training.replicas import all_reduce_sum

#: (this replica's share of each task loss, T scalars; global task losses (T,); clean labels and masks)
TaskLossValues = tuple[list[tf.Tensor], tf.Tensor, list[tuple[tf.Tensor, tf.Tensor]]]


class TaskLosses:
    """The masked per-task losses of a model's tasks, with one per-example loss function per task."""

    def __init__(self, tasks: Sequence[Task], loss_fns: Sequence[Callable[..., Any]]) -> None:
        self.tasks = list(tasks)
        self.names = [t.name for t in self.tasks]
        self.loss_fns = list(loss_fns)

    def standardize(self, y: Any, sample_weight: Any) -> tuple[list[Any], list[Any]]:
        """Labels and per-task sample weights as lists in task order; errors name the task."""
        names = self.names
        if not isinstance(y, dict):
            if len(names) != 1:
                raise ValueError(
                    f"Expected labels `y` as a dict keyed by the task names {names}. "
                    f"Received: {type(y).__name__}"
                )
            y = {names[0]: y}
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(
                f"Unknown task {unknown[0]!r} in the labels. Expected task names {names}."
                + suggest(str(unknown[0]), names)
            )
        missing = [name for name in names if name not in y]
        if missing:
            raise ValueError(
                f"No labels for task(s) {missing}: every head needs a label entry (use NaN for missing "
                f"labels). Received labels for {sorted(y)}."
            )
        weights = {}
        if isinstance(sample_weight, dict):
            unknown = [k for k in sample_weight if k not in names]
            if unknown:
                raise ValueError(
                    f"Unknown task {unknown[0]!r} in `sample_weight`. Expected task names {names}."
                )
            weights = dict(sample_weight)
        elif sample_weight is not None:
            weights = {name: sample_weight for name in names}
        return [y[name] for name in names], [weights.get(name) for name in names]

    def masked_parts(
        self, index: int, y_true: Any, y_pred: tf.Tensor, sample_weight: Any
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-task (sum of per-example losses over labelled examples, labelled count, clean labels, mask)."""
        task = self.tasks[index]
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        if y_true.shape.rank == 1:
            y_true = tf.expand_dims(y_true, -1)
        if task.kind == "multiclass":
            if y_true.shape.rank != 2 or y_true.shape[-1] not in (1, None):
                raise ValueError(
                    f"Expected integer class labels of shape (batch,) or (batch, 1) for multiclass task "
                    f"{task.name!r}. Received labels of shape {tuple(y_true.shape)}."
                )
        elif y_true.shape[1:].num_elements() != y_pred.shape[1:].num_elements():
            raise ValueError(
                f"Labels of task {task.name!r} have shape {tuple(y_true.shape)}; expected (batch,) + "
                f"{tuple(y_pred.shape[1:])} to match its head."
            )
        labelled = tf.logical_not(tf.math.is_nan(y_true))
        if y_true.shape.rank > 1:
            labelled = tf.reduce_all(labelled, axis=list(range(1, y_true.shape.rank)))
        mask = tf.cast(labelled, tf.float32)
        if sample_weight is not None:
            weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            mask = mask * weight
        clean = tf.where(tf.math.is_nan(y_true), tf.zeros_like(y_true), y_true)
        if task.kind != "multiclass":
            clean = tf.reshape(clean, tf.shape(y_pred))
        per_example = tf.cast(self.loss_fns[index](clean, y_pred), tf.float32)
        if per_example.shape.rank > 1:
            per_example = tf.reduce_mean(per_example, axis=list(range(1, per_example.shape.rank)))
        loss_sum = tf.reduce_sum(tf.where(mask > 0, per_example, tf.zeros_like(per_example)) * mask)
        return loss_sum, tf.reduce_sum(mask), clean, mask

    def __call__(
        self, y: list[Any], y_pred: dict[str, tf.Tensor], sample_weight: list[Any]
    ) -> TaskLossValues:
        """This replica's share of each task loss, the global task losses and the clean labels/masks.

        Each share depends on its own head only, so its gradient never runs through the other heads."""
        sums, counts, extras = [], [], []
        for i, name in enumerate(self.names):
            loss_sum, count, clean, mask = self.masked_parts(i, y[i], y_pred[name], sample_weight[i])
            sums.append(loss_sum)
            counts.append(count)
            extras.append((clean, mask))
        global_counts = tf.unstack(all_reduce_sum(tf.stack(counts)))
        shares = [tf.math.divide_no_nan(s, c) for s, c in zip(sums, global_counts, strict=True)]
        global_losses = all_reduce_sum(tf.stop_gradient(tf.stack(shares)))
        return shares, global_losses, extras
