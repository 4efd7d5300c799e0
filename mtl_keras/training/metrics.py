"""The metrics a multi-task step logs: the total and per-task losses, the task weights, the task metrics
and, with ``log_conflicts``, the pairwise cosines of the task gradients.

A task's logged loss is exact over every labelled example seen since the last reset: each batch adds its
masked mean loss times its number of labelled examples (the sum of its mask, sample weights included) and
the result divides by the total count. A task with no labelled example yet reads NaN, not 0, and so do its
task metrics (AUC, accuracy, ...), whose Keras implementations would read 0.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task


class LabelledMean(keras.metrics.Metric):
    """The mean of a per-example quantity over the labelled examples of all batches seen.

    ``update_state(value, count)`` takes a batch's mean over its ``count`` labelled examples and keeps the
    sums Σ value·count and Σ count, so ``result()`` is the mean over every labelled example, and NaN while
    no example was labelled. Under a ``tf.distribute`` strategy each replica adds the *global* batch mean
    times its *own* count: Keras sums metric variables over replicas when they are read, which gives the
    global sums exactly.
    """

    def __init__(self, name: str, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, value: Any, count: Any) -> None:  # type: ignore[override]
        value = tf.cast(value, self.dtype)
        count = tf.cast(count, self.dtype)
        self.total.assign_add(value * count)
        self.count.assign_add(count)

    def result(self) -> tf.Tensor:
        total = tf.convert_to_tensor(self.total)
        count = tf.convert_to_tensor(self.count)
        mean = tf.math.divide_no_nan(total, count)
        return tf.where(count > 0, mean, tf.constant(float("nan"), mean.dtype))

    def has_labels(self) -> tf.Tensor:
        """Whether any labelled example was seen (a boolean scalar)."""
        return tf.convert_to_tensor(self.count) > 0


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

    ``losses[i]`` is task i's :class:`LabelledMean`; its count also tells whether task i's metrics saw a
    labelled example. ``weights`` is empty when ``log_weights`` is False (static weights: constant, so they
    are not logged). The total loss and the weights are plain means of per-step values, which replicas
    compute identically; Keras sums metric states across replicas, so the mean stays right.
    """

    def __init__(
        self,
        task_names: list[str],
        task_metrics: list[list[Any]],
        *,
        log_conflicts: bool,
        log_weights: bool = True,
    ) -> None:
        self.task_names = list(task_names)
        self.task_metrics = task_metrics
        self.total = keras.metrics.Mean(name="loss")
        self.losses = [LabelledMean(name=f"{name}_loss") for name in task_names]
        self.weights = (
            [keras.metrics.Mean(name=f"{name}_weight") for name in task_names] if log_weights else []
        )
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
            [t.name for t in tasks], task_metrics, log_conflicts=log_conflicts, log_weights=log_weights
        )

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        result: list[keras.metrics.Metric] = [self.total, *self.losses]
        for task_metrics in self.task_metrics:
            result.extend(task_metrics)
        return result + self.weights + self.conflicts

    def update(
        self,
        global_losses: tf.Tensor,
        total: tf.Tensor,
        weights: tf.Tensor,
        y_pred: dict[str, tf.Tensor],
        extras: list[tuple[tf.Tensor, tf.Tensor]],
    ) -> None:
        """Add one step: the global task losses (T,), the total, the weights (T,), and per task this
        replica's predictions, clean labels and mask (the mask's sum is this replica's labelled count)."""
        self.total.update_state(total)
        for i, name in enumerate(self.task_names):
            clean, mask = extras[i]
            self.losses[i].update_state(global_losses[i], tf.reduce_sum(tf.cast(mask, tf.float32)))
            if self.weights:
                self.weights[i].update_state(weights[i])
            for metric in self.task_metrics[i]:
                metric.update_state(clean, tf.cast(y_pred[name], tf.float32), sample_weight=mask)

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
        for tracker in self.losses:
            result[tracker.name] = tracker.result()
        for tracker, task_metrics in zip(self.losses, self.task_metrics, strict=True):
            has_labels = tracker.has_labels()
            for metric in task_metrics:
                value = _missing_if(has_labels, metric.result())
                if isinstance(value, dict):
                    result.update(value)
                else:
                    result[metric.name] = value
        for metric in self.weights + self.conflicts:
            result[metric.name] = metric.result()
        return result
