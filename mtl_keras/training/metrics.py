"""The metrics a multi-task step logs: the total and per-task losses, the task weights, the task metrics
and, with ``log_conflicts``, the pairwise cosines of the task gradients."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from mtl_keras.tasks import Task


class StepMetrics:
    """The trackers and task metrics of a compiled model, in the order of ``model.metrics``.

    Replicas compute identical global values; Keras sums metric states across replicas, so updating with
    the same value on each replica keeps the mean right.
    """

    def __init__(self, task_names: list[str], task_metrics: list[list[Any]], *, log_conflicts: bool) -> None:
        self.task_names = list(task_names)
        self.task_metrics = task_metrics
        self.total = keras.metrics.Mean(name="loss")
        self.losses = [keras.metrics.Mean(name=f"{name}_loss") for name in task_names]
        self.weights = [keras.metrics.Mean(name=f"{name}_weight") for name in task_names]
        self.conflicts: list[keras.metrics.Metric] = []
        if log_conflicts:
            for i, a in enumerate(task_names):
                for b in task_names[i + 1 :]:
                    self.conflicts.append(keras.metrics.Mean(name=f"cos_{a}_{b}"))
            self.conflicts.append(keras.metrics.Mean(name="conflict_fraction"))

    @classmethod
    def for_tasks(cls, tasks: list[Task], metric_spec: dict[str, Any], *, log_conflicts: bool) -> StepMetrics:
        """The metrics of ``tasks``, with ``compile``'s ``{task: metrics}`` replacing a task's own."""
        task_metrics = []
        for task in tasks:
            if task.name in metric_spec:
                spec = metric_spec[task.name]
                spec = [spec] if isinstance(spec, (str, keras.metrics.Metric)) else list(spec)
                task = Task(**{**task.get_config(), "metrics": spec})  # validated like Task metrics
            task_metrics.append(task.get_metrics())
        return cls([t.name for t in tasks], task_metrics, log_conflicts=log_conflicts)

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
        self.total.update_state(total)
        for i, name in enumerate(self.task_names):
            self.losses[i].update_state(global_losses[i])
            self.weights[i].update_state(weights[i])
            clean, mask = extras[i]
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
        return {m.name: m.result() for m in self.metrics}
