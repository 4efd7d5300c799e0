"""The metrics a multi-task step logs: the total and per-task losses, the task weights, the task metrics
and, with ``log_conflicts``, the pairwise cosines of the task gradients.

A task's logged loss is exact over every labelled example seen since the last reset: each batch adds its
masked mean loss times its number of labelled examples (the sum of its mask, sample weights included) and
the result divides by the total count. A task with no labelled example yet reads NaN, not 0, and so do its
task metrics (AUC, accuracy, ...), whose Keras implementations would read 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task
from mtl_keras.training.task_axis_metrics import Slot, TaskAxisMetric, group_task_metrics


class LabelledMeans(keras.metrics.Metric):
    """Per task, the mean of a per-example quantity over the labelled examples of all batches seen.

    ``update_state(values, counts)`` takes the tasks' batch means (T,) over their ``counts`` (T,) labelled
    examples and keeps the sums Σ value·count and Σ count per task in two (T,) variables (a fixed number of
    ops whatever T), so ``result()`` is every task's mean over its labelled examples, NaN for a task with no
    labelled example yet. Under a ``tf.distribute`` strategy each replica adds the *global* batch means times
    its *own* counts: Keras sums metric variables over replicas when they are read, which gives the global
    sums exactly.
    """

    def __init__(self, num_tasks: int, name: str = "task_losses", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.num_tasks = int(num_tasks)
        self.total = self.add_variable(shape=(self.num_tasks,), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(self.num_tasks,), initializer="zeros", name="count")

    def update_state(self, values: Any, counts: Any) -> None:  # type: ignore[override]
        values = tf.cast(values, self.dtype)
        counts = tf.cast(counts, self.dtype)
        self.total.assign_add(values * counts)
        self.count.assign_add(counts)

    def result(self) -> tf.Tensor:
        total = tf.convert_to_tensor(self.total)
        count = tf.convert_to_tensor(self.count)
        mean = tf.math.divide_no_nan(total, count)
        return tf.where(count > 0, mean, tf.constant(float("nan"), mean.dtype))

    def has_labels(self) -> tf.Tensor:
        """Per task, whether any labelled example was seen (a boolean (T,) vector)."""
        return tf.convert_to_tensor(self.count) > 0


class VectorMean(keras.metrics.Metric):
    """The element-wise mean of a (T,) vector over the steps seen (the logged task weights)."""

    def __init__(self, num_tasks: int, name: str = "task_weights", dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(int(num_tasks),), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values: Any) -> None:  # type: ignore[override]
        self.total.assign_add(tf.cast(values, self.dtype))
        self.count.assign_add(tf.constant(1.0, self.dtype))

    def result(self) -> tf.Tensor:
        return tf.math.divide_no_nan(tf.convert_to_tensor(self.total), tf.convert_to_tensor(self.count))


def _missing_if(has_labels: tf.Tensor, value: Any) -> Any:
    """``value`` (a tensor or a dict of them), NaN where ``has_labels`` is False."""
    if isinstance(value, dict):
        return {k: _missing_if(has_labels, v) for k, v in value.items()}
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
        value = tf.cast(value, tf.float32)
    return tf.where(has_labels, value, tf.constant(float("nan"), value.dtype))


class StepMetrics:
    """The trackers and task metrics of a compiled model, in the order of ``model.metrics``.

    ``losses`` holds every task's loss (:class:`LabelledMeans`, one (T,) state); its counts also tell
    whether task i's metrics saw a labelled example. ``weights`` (a :class:`VectorMean`) is None when
    ``log_weights`` is False (static weights: constant, so they are not logged). The total loss and the
    weights are plain means of per-step values, which replicas compute identically; Keras sums metric states
    across replicas, so the mean stays right. The logs name every task's entries as before
    (``<task>_loss``, ``<task>_weight``).
    """

    def __init__(
        self,
        task_names: list[str],
        task_metrics: list[list[Any]],
        *,
        log_conflicts: bool,
        log_weights: bool = True,
        tasks: Sequence[Task] | None = None,
    ) -> None:
        self.task_names = list(task_names)
        self.task_metrics = task_metrics
        # With the tasks known, same-kind tasks' equal metrics share one task-axis metric (one update).
        self.slots: list[list[Slot]]
        self.axis_metrics: list[TaskAxisMetric]
        if tasks is not None:
            self.slots, self.axis_metrics = group_task_metrics(tasks, task_metrics)
        else:
            self.slots, self.axis_metrics = [list(m) for m in task_metrics], []
        self._widths = [1 if t.kind == "multiclass" else t.output_units for t in tasks] if tasks else []
        self.total = keras.metrics.Mean(name="loss")
        self.losses = LabelledMeans(len(self.task_names))
        self.weights = VectorMean(len(self.task_names)) if log_weights else None
        self.conflicts: list[keras.metrics.Metric] = []
        if log_conflicts:
            for i, a in enumerate(task_names):
                for b in task_names[i + 1 :]:
                    self.conflicts.append(keras.metrics.Mean(name=f"cos_{a}_{b}"))
            self.conflicts.append(keras.metrics.Mean(name="conflict_fraction"))

    @classmethod
    def for_tasks(
        cls,
        tasks: list[Task],
        metric_spec: dict[str, Any],
        *,
        log_conflicts: bool,
        log_weights: bool = True,
    ) -> StepMetrics:
        """The metrics of ``tasks``, with ``compile``'s ``{task: metrics}`` replacing a task's own."""
        task_metrics = []
        for task in tasks:
            if task.name in metric_spec:
                spec = metric_spec[task.name]
                spec = [spec] if isinstance(spec, (str, keras.metrics.Metric)) else list(spec)
                task = Task(**{**task.get_config(), "metrics": spec})  # validated like Task metrics
            task_metrics.append(task.get_metrics())
        return cls(
            [t.name for t in tasks],
            task_metrics,
            log_conflicts=log_conflicts,
            log_weights=log_weights,
            tasks=tasks,
        )

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        result: list[keras.metrics.Metric] = [self.total, self.losses]
        for slots in self.slots:
            result.extend(slot for slot in slots if isinstance(slot, keras.metrics.Metric))
        result.extend(self.axis_metrics)
        if self.weights is not None:
            result.append(self.weights)
        return result + self.conflicts

    @property
    def names(self) -> list[str]:
        """The names of :meth:`logs`'s entries, in its order (a dict-valued metric under its own name)."""
        result = [self.total.name, *[f"{name}_loss" for name in self.task_names]]
        result += [self._slot_name(slot) for slots in self.slots for slot in slots]
        if self.weights is not None:
            result += [f"{name}_weight" for name in self.task_names]
        return result + [metric.name for metric in self.conflicts]

    def update(
        self,
        global_losses: tf.Tensor,
        total: tf.Tensor,
        weights: tf.Tensor,
        y_pred: dict[str, tf.Tensor],
        extras: Sequence[tuple[tf.Tensor, tf.Tensor]],
        counts: tf.Tensor | None = None,
    ) -> None:
        """Add one step: the global task losses (T,), the total, the weights (T,), per task this replica's
        predictions, clean labels and mask, and this replica's labelled counts (T,) (the masks' sums; taken
        from the masks when None)."""
        self.total.update_state(total)
        if counts is None:
            counts = tf.stack([tf.reduce_sum(tf.cast(extras[i][1], tf.float32)) for i in range(len(extras))])
        self.losses.update_state(global_losses, counts)
        if self.weights is not None:
            self.weights.update_state(weights)
        for axis in self.axis_metrics:
            width = self._widths[axis.indices[0]]
            clean, mask = extras.stacked(axis.indices, width)  # type: ignore[attr-defined]
            names = [self.task_names[i] for i in axis.indices]
            predictions = tf.stack([tf.cast(y_pred[name], tf.float32) for name in names], axis=1)
            axis.update_stacked(clean, predictions, mask)
        for i, name in enumerate(self.task_names):
            own = [slot for slot in self.slots[i] if isinstance(slot, keras.metrics.Metric)]
            if not own:
                continue
            clean, mask = extras[i]
            for metric in own:
                metric.update_state(clean, tf.cast(y_pred[name], tf.float32), sample_weight=mask)

    @staticmethod
    def _slot_name(slot: Slot) -> str:
        return slot.name if isinstance(slot, keras.metrics.Metric) else slot[0].names[slot[1]]

    def log_conflicts(self, gram_matrix: tf.Tensor) -> None:
        """Pairwise cosines of the task gradients and the fraction of conflicting pairs, from J Jᵀ."""
        norms = tf.sqrt(tf.linalg.diag_part(gram_matrix))
        cosine = tf.math.divide_no_nan(gram_matrix, norms[:, None] * norms[None, :])
        conflicts = []
        k = 0
        num_tasks = len(self.task_names)
        for i in range(num_tasks):
            for j in range(i + 1, num_tasks):
                self.conflicts[k].update_state(tf.cast(cosine[i, j], tf.float32))
                conflicts.append(tf.cast(cosine[i, j] < 0, tf.float32))
                k += 1
        self.conflicts[-1].update_state(tf.reduce_mean(tf.stack(conflicts)) if conflicts else 0.0)

    def logs(self) -> dict[str, tf.Tensor]:
        """``{metric name: result}`` in the order of :attr:`metrics` (dict results flattened, as Keras
        does); a task's metrics read NaN while the task has no labelled example.

        Inside a replica (the per-step logs of ``fit``) the counts are this replica's; read outside any
        replica (``model.get_metrics_result()``: epoch logs, ``evaluate``) they are summed over replicas.
        """
        result: dict[str, tf.Tensor] = {self.total.name: self.total.result()}
        losses = tf.unstack(self.losses.result())
        for name, loss in zip(self.task_names, losses, strict=True):
            result[f"{name}_loss"] = loss
        has_labels = self.losses.has_labels()
        axis_results = {id(axis): tf.unstack(axis.result()) for axis in self.axis_metrics}
        for i, slots in enumerate(self.slots):
            for slot in slots:
                if isinstance(slot, keras.metrics.Metric):
                    value = _missing_if(has_labels[i], slot.result())
                    if isinstance(value, dict):
                        result.update(value)
                    else:
                        result[slot.name] = value
                else:
                    axis, j = slot
                    result[axis.names[j]] = _missing_if(has_labels[i], axis_results[id(axis)][j])
        if self.weights is not None:
            for name, weight in zip(self.task_names, tf.unstack(self.weights.result()), strict=True):
                result[f"{name}_weight"] = weight
        for metric in self.conflicts:
            result[metric.name] = metric.result()
        return result
