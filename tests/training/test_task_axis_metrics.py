"""Task metrics on a task axis (issue 16, item 2): every task's logged value equals what its own Keras metric
object gives on the same labelled examples and sample weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import Task
from mtl_keras.training import StepMetrics, TaskLosses
from mtl_keras.training.task_axis_metrics import TaskAxisAUC, TaskAxisMean

N = 40


def _tasks() -> list[Task]:
    return [
        Task("b0", "binary"),
        Task("b1", "binary"),
        Task("b2", "binary", metrics=["auc", "precision"]),
        Task("b3", "binary", metrics=[keras.metrics.AUC(curve="PR", name="pr")]),
        Task("r0", "regression", metrics=["mse", "mae"]),
        Task("r1", "regression", metrics=["mse", "mae", "rmse"]),
        Task("m0", "multiclass", num_classes=3),
        Task("m1", "multiclass", num_classes=3),
    ]


def _batch(rng: np.random.Generator, tasks: list[Task]) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    labels, preds = [], {}
    for t in tasks:
        if t.kind == "binary":
            y = (rng.random((N, 1)) < 0.4).astype("float32")
            p = np.clip(0.3 * y + rng.uniform(0, 0.7, (N, 1)), 0, 1).astype("float32")
        elif t.kind == "multiclass":
            y = rng.integers(0, 3, (N, 1)).astype("float32")
            logits = rng.normal(size=(N, 3))
            p = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
        else:
            y = rng.normal(size=(N, 1)).astype("float32")
            p = (y + rng.normal(size=(N, 1))).astype("float32")
        y[rng.random(N) < 0.3] = np.nan
        labels.append(y)
        preds[t.name] = p
    return labels, preds


@pytest.mark.parametrize("vectorized", [True, False])
def test_task_axis_metrics_equal_each_tasks_own_keras_metric(vectorized: bool) -> None:
    tasks = _tasks()
    step_metrics = StepMetrics.for_tasks(tasks, {}, log_conflicts=False)
    kinds = {type(m) for m in step_metrics.axis_metrics}
    assert kinds == {TaskAxisAUC, TaskAxisMean}
    grouped = {name for axis in step_metrics.axis_metrics for name in axis.names}
    # b2's precision, b3's PR-AUC and r1's rmse stay per-task; the rest is grouped
    assert "b2_precision" not in grouped and "b3_pr" not in grouped and "r1_rmse" not in grouped
    assert {"b0_auc", "b1_auc", "b2_auc", "b0_accuracy", "r0_mse", "r1_mae", "m0_accuracy"} <= grouped
    task_losses = TaskLosses(tasks, [t.get_loss() for t in tasks])
    reference = {t.name: t.get_metrics() for t in tasks}
    rng = np.random.default_rng(0)
    for step in range(3):
        labels, preds = _batch(rng, tasks)
        weights: list = [None] * len(tasks)
        weights[1] = rng.uniform(0, 2, N).astype("float32")
        if step == 0:
            labels[0][:] = np.nan  # b0 unlabelled in one batch
        values = task_losses([tf.constant(y) for y in labels], preds, weights, vectorized=vectorized)
        step_metrics.update(values.losses, tf.constant(0.0), tf.ones(len(tasks)), preds, values.extras)
        for i, t in enumerate(tasks):
            y = labels[i]
            mask = (~np.isnan(y[:, 0])).astype("float32")
            if weights[i] is not None:
                mask = mask * weights[i]
            for metric in reference[t.name]:
                metric.update_state(np.nan_to_num(y), preds[t.name], sample_weight=mask)
    logs = step_metrics.logs()
    for t in tasks:
        for metric in reference[t.name]:
            np.testing.assert_allclose(
                float(logs[metric.name]), float(metric.result()), rtol=1e-5, atol=1e-6, err_msg=metric.name
            )
    assert list(logs) == step_metrics.names


def test_a_task_without_labels_reads_nan_on_the_task_axis() -> None:
    tasks = [Task("a", "binary"), Task("b", "binary")]
    step_metrics = StepMetrics.for_tasks(tasks, {}, log_conflicts=False)
    task_losses = TaskLosses(tasks, [t.get_loss() for t in tasks])
    y = [tf.constant(np.full((8, 1), np.nan, "float32")), tf.constant((np.arange(8) % 2)[:, None], "float32")]
    preds = {"a": tf.fill((8, 1), 0.3), "b": tf.linspace(0.0, 1.0, 8)[:, None]}
    values = task_losses(y, preds, [None, None], vectorized=True)
    step_metrics.update(values.losses, tf.constant(0.0), tf.ones(2), preds, values.extras)
    logs = step_metrics.logs()
    assert np.isnan(logs["a_auc"]) and np.isnan(logs["a_accuracy"]) and np.isnan(logs["a_loss"])
    assert float(logs["b_auc"]) == pytest.approx(float(keras.metrics.AUC()(y[1], preds["b"])), abs=1e-6)
    for metric in step_metrics.metrics:
        metric.reset_state()
    assert np.isnan(step_metrics.logs()["b_auc"])
