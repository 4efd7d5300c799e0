"""Task metrics of several tasks as one metric with a task axis (issue 16, item 2).

With T tasks each with its own AUC and accuracy objects, a step runs T metric updates of a dozen small ops
each, and reads T results: at T = 32 this costs more than the whole forward and backward pass
(benchmarks/results/task_scaling.md). Tasks whose metric objects have the same class and configuration
(apart from the name) are updated together here: their labels, predictions and masks stacked on a task axis,
one update, one (G,) result whose entry j is task j's value — the same number as the task's own Keras
metric would give (tests/training/test_task_axis_metrics.py), under the same name in the logs.

Grouped: ``AUC`` with the ROC curve and interpolation (Keras's default ``AUC()``), kept by Keras's own
multi-label ``AUC`` state (one confusion matrix per task) with the per-task area computed here;
``BinaryAccuracy``, ``MeanSquaredError``, ``MeanAbsoluteError`` and ``SparseCategoricalAccuracy`` as masked
means over a task axis. Other metrics (and tasks with more than one output unit, except multiclass) keep
their own objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import keras
import tensorflow as tf

from mtl_keras.tasks import Task

#: ``(labels (batch, G, k), predictions (batch, G, units)) -> per-example values (batch, G)``
PerExample = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _binary_accuracy(threshold: float) -> PerExample:
    def fn(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.cast(tf.equal(y, tf.cast(p > threshold, y.dtype)), tf.float32), axis=-1)

    return fn


def _squared_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(y - p), axis=-1)


def _absolute_error(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.abs(y - p), axis=-1)


def _sparse_accuracy(y: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
    predicted = tf.cast(tf.argmax(p, axis=-1), tf.float32)
    return tf.cast(tf.equal(y[..., 0], predicted), tf.float32)


class TaskAxisMetric(keras.metrics.Metric):
    """Base: one metric over the tasks ``indices``; ``result()`` is a (G,) vector, entry j for
    ``indices[j]``, logged under ``names[j]``."""

    indices: list[int]
    names: list[str]

    def update_stacked(self, labels: tf.Tensor, predictions: tf.Tensor, mask: tf.Tensor) -> None:
        """Labels (batch, G, k), predictions (batch, G, units), masks (batch, G) (0 = not labelled)."""
        raise NotImplementedError


class TaskAxisMean(TaskAxisMetric):
    """Per task, the masked mean of a per-example value (accuracy, squared or absolute error)."""

    def __init__(self, fn: PerExample, indices: Sequence[int], names: Sequence[str], name: str) -> None:
        super().__init__(name=name)
        self.fn = fn
        self.indices, self.names = list(indices), list(names)
        self.total = self.add_variable(shape=(len(self.indices),), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(len(self.indices),), initializer="zeros", name="count")

    def update_stacked(self, labels: tf.Tensor, predictions: tf.Tensor, mask: tf.Tensor) -> None:
        values = tf.cast(self.fn(labels, predictions), tf.float32)
        self.total.assign_add(tf.reduce_sum(values * mask, axis=0))
        self.count.assign_add(tf.reduce_sum(mask, axis=0))

    def update_state(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("TaskAxisMean is updated with update_stacked")

    def result(self) -> tf.Tensor:
        return tf.math.divide_no_nan(tf.convert_to_tensor(self.total), tf.convert_to_tensor(self.count))


class TaskAxisAUC(keras.metrics.AUC, TaskAxisMetric):
    """Per task, the ROC AUC (trapezoidal rule over the thresholds), from Keras's multi-label ``AUC`` state
    (one confusion matrix per label) whose label j is task ``indices[j]``."""

    def __init__(self, num_thresholds: int, indices: Sequence[int], names: Sequence[str], name: str) -> None:
        super().__init__(num_thresholds=num_thresholds, multi_label=True, num_labels=len(indices), name=name)
        self.indices, self.names = list(indices), list(names)

    def update_stacked(self, labels: tf.Tensor, predictions: tf.Tensor, mask: tf.Tensor) -> None:
        self.update_state(labels[..., 0], predictions[..., 0], sample_weight=mask)

    def result(self) -> tf.Tensor:
        tp = tf.convert_to_tensor(self.true_positives)  # (thresholds, G)
        fp = tf.convert_to_tensor(self.false_positives)
        tn = tf.convert_to_tensor(self.true_negatives)
        fn = tf.convert_to_tensor(self.false_negatives)
        tpr = tf.math.divide_no_nan(tp, tp + fn)
        fpr = tf.math.divide_no_nan(fp, fp + tn)
        # Thresholds ascend, so both rates descend: the area is Σ_k (fpr_k - fpr_{k+1}) (tpr_k + tpr_{k+1}) / 2.
        return tf.reduce_sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2.0, axis=0)


def _signature(metric: keras.metrics.Metric) -> tuple[Any, ...] | None:
    """What must agree for two tasks' metrics to share a task-axis metric, or None if not supported."""
    config = {k: v for k, v in metric.get_config().items() if k not in ("name", "dtype")}
    if type(metric) is keras.metrics.AUC:
        default = (
            config.get("curve") == "ROC"
            and config.get("summation_method") == "interpolation"
            and not config.get("multi_label")
            and config.get("label_weights") is None
            and not config.get("from_logits")
            and config.get("thresholds") is None
        )
        return ("auc", config["num_thresholds"]) if default else None
    if type(metric) is keras.metrics.BinaryAccuracy:
        return ("binary_accuracy", float(config.get("threshold", 0.5)))
    if type(metric) in (
        keras.metrics.MeanSquaredError,
        keras.metrics.MeanAbsoluteError,
        keras.metrics.SparseCategoricalAccuracy,
    ):
        return (type(metric).__name__,)
    return None


def _make(signature: tuple[Any, ...], indices: list[int], names: list[str]) -> TaskAxisMetric:
    label = "_".join(str(part) for part in signature).lower()
    name = f"task_axis_{label}_{indices[0]}"
    kind = signature[0]
    if kind == "auc":
        return TaskAxisAUC(signature[1], indices, names, name)
    fn: PerExample = {
        "MeanSquaredError": _squared_error,
        "MeanAbsoluteError": _absolute_error,
        "SparseCategoricalAccuracy": _sparse_accuracy,
    }.get(kind) or _binary_accuracy(signature[1])
    return TaskAxisMean(fn, indices, names, name)


#: A task's metric slot: its own metric object, or (task-axis metric, the task's index in it).
Slot: TypeAlias = "keras.metrics.Metric | tuple[TaskAxisMetric, int]"


def group_task_metrics(
    tasks: Sequence[Task], task_metrics: Sequence[Sequence[keras.metrics.Metric]]
) -> tuple[list[list[Slot]], list[TaskAxisMetric]]:
    """Per task its metric slots (in its metrics' order), and the task-axis metrics made for groups of two
    or more tasks of the same kind and output width whose metrics agree (:func:`_signature`)."""
    groups: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    for i, (task, metrics) in enumerate(zip(tasks, task_metrics, strict=True)):
        if task.kind != "multiclass" and task.output_units != 1:
            continue
        for k, metric in enumerate(metrics):
            signature = _signature(metric)
            if signature is not None:
                key = (task.kind, task.output_units, *signature)
                groups.setdefault(key, []).append((i, k))
    slots: list[list[Slot]] = [list(metrics) for metrics in task_metrics]
    axis_metrics: list[TaskAxisMetric] = []
    for key, members in groups.items():
        tasks_in_group = [i for i, _ in members]
        if len(members) < 2 or len(set(tasks_in_group)) != len(tasks_in_group):
            continue
        axis = _make(key[2:], tasks_in_group, [task_metrics[i][k].name for i, k in members])
        axis_metrics.append(axis)
        for j, (i, k) in enumerate(members):
            slots[i][k] = (axis, j)
    return slots, axis_metrics


__all__ = ["TaskAxisAUC", "TaskAxisMean", "TaskAxisMetric", "group_task_metrics"]
