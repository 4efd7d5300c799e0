"""The vectorised per-task losses (issue 16, item 2): same values and gradients as the per-task path, and
as a NumPy computation of the masked means written here from their definition (docs/methods.md)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import Task
from mtl_keras.builders import hard_sharing
from mtl_keras.training import TaskLosses

N = 24


def _custom_loss(y_true, y_pred):
    return tf.reduce_mean(tf.abs(y_true - y_pred) ** 1.5, axis=-1)


def _tasks() -> list[Task]:
    return [
        Task("b0", "binary"),
        Task("b1", "binary"),
        Task("b2", "binary"),
        Task("r0", "regression"),
        Task("r1", "regression", label_mean=5.0, label_std=2.0),
        Task("m0", "multiclass", num_classes=3),
        Task("m1", "multiclass", num_classes=3),
        Task("m2", "multiclass", num_classes=4),
        Task("c0", "regression", loss=_custom_loss),
        Task("c1", "regression", loss=_custom_loss),
    ]


def _batch(seed: int = 0) -> tuple[list[np.ndarray], dict[str, np.ndarray], list[np.ndarray | None]]:
    rng = np.random.default_rng(seed)
    tasks = _tasks()
    labels, preds, weights = [], {}, []
    for task in tasks:
        if task.kind == "binary":
            y = (rng.random((N, 1)) < 0.4).astype("float32")
            p = rng.uniform(0.05, 0.95, (N, 1)).astype("float32")
        elif task.kind == "multiclass":
            y = rng.integers(0, task.num_classes, N).astype("float32")  # (batch,) labels
            logits = rng.normal(size=(N, task.num_classes))
            p = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype("float32")
        else:
            y = rng.normal(5.0, 2.0, (N, 1)).astype("float32")
            p = rng.normal(5.0, 2.0, (N, 1)).astype("float32")
        y[rng.random(N) < 0.25] = np.nan  # missing labels
        labels.append(y)
        preds[task.name] = p
        weights.append(None)
    weights[1] = rng.uniform(0.0, 2.0, N).astype("float32")  # sample weights on b1
    weights[3] = rng.uniform(0.0, 2.0, (N, 1)).astype("float32")  # and on r0, as a column
    labels[2][:] = np.nan  # b2 has no label in this batch
    return labels, preds, weights


def _numpy_share(task: Task, y: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> tuple[float, float]:
    """(masked mean loss, labelled count) from the definition: Σ_n m_n ℓ_n / Σ_n m_n, m = labelled × weight."""
    y = y.reshape(N, -1).astype("float64")
    p = p.astype("float64")
    labelled = ~np.isnan(y).any(axis=1)
    mask = labelled * (1.0 if w is None else np.asarray(w, "float64").reshape(-1))
    yc = np.where(np.isnan(y), 0.0, y)
    if task.kind == "binary":
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        per = -(yc * np.log(pc) + (1 - yc) * np.log(1 - pc)).mean(axis=1)
    elif task.kind == "multiclass":
        per = -np.log(np.clip(p[np.arange(N), yc[:, 0].astype(int)], 1e-7, 1.0))
    elif task.loss is _custom_loss:
        per = (np.abs(yc - p) ** 1.5).mean(axis=1)
    else:
        mean, std = (task.label_mean, task.label_std) if task.label_mean is not None else (0.0, 1.0)
        per = (((yc - mean) / std - (p - mean) / std) ** 2).mean(axis=1)
    count = mask.sum()
    return (float((per * mask).sum() / count) if count > 0 else 0.0), float(count)


def _losses() -> TaskLosses:
    tasks = _tasks()
    return TaskLosses(tasks, [t.get_loss() for t in tasks])


def test_groups_are_tasks_with_the_same_builtin_loss_and_output_shape() -> None:
    _, preds, _ = _batch()
    groups = _losses().vectorizable_groups({k: tf.constant(v) for k, v in preds.items()})
    names = [t.name for t in _tasks()]
    assert sorted([names[i] for i in g] for g in groups) == [["b0", "b1", "b2"], ["m0", "m1"], ["r0", "r1"]]


def test_vectorised_values_equal_the_per_task_path_and_numpy() -> None:
    labels, preds, weights = _batch()
    task_losses = _losses()
    y_pred = {k: tf.constant(v) for k, v in preds.items()}
    fast = task_losses([tf.constant(y) for y in labels], y_pred, weights, vectorized=True)
    slow = task_losses([tf.constant(y) for y in labels], y_pred, weights, vectorized=False)
    expected = [_numpy_share(t, labels[i], preds[t.name], weights[i]) for i, t in enumerate(_tasks())]
    np.testing.assert_allclose(fast.losses.numpy(), [e[0] for e in expected], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(fast.counts.numpy(), [e[1] for e in expected], rtol=1e-6)
    np.testing.assert_allclose(fast.losses.numpy(), slow.losses.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([s.numpy() for s in fast.shares], [s.numpy() for s in slow.shares], rtol=1e-6)
    assert fast.losses.numpy()[2] == 0.0  # no label: loss 0, not NaN
    for i in range(len(labels)):
        for a, b in zip(fast.extras[i], slow.extras[i], strict=True):
            np.testing.assert_allclose(np.reshape(a.numpy(), -1), np.reshape(b.numpy(), -1))


def test_vectorised_gradients_equal_the_per_task_path() -> None:
    """Through a real model: the gradient of Σ_i λ_i L_i of every variable is the same either way."""
    keras.utils.set_random_seed(0)
    tasks = [Task(f"b{i}", "binary") for i in range(4)] + [Task("r", "regression"), Task("s", "regression")]
    model = hard_sharing(tasks, 5, trunk=(8,), tower_units=(4,))
    task_losses = TaskLosses(tasks, [t.get_loss() for t in tasks])
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(N, 5)).astype("float32"))
    labels = []
    for t in tasks:
        y = (rng.random((N, 1)) < 0.5) if t.kind == "binary" else rng.normal(size=(N, 1))
        y = y.astype("float32")
        y[rng.random(N) < 0.3] = np.nan
        labels.append(tf.constant(y))
    lam = tf.constant(rng.uniform(0.5, 2.0, len(tasks)).astype("float32"))
    grads = []
    for vectorized in (True, False):
        with tf.GradientTape() as tape:
            values = task_losses(labels, model(x, training=True), [None] * len(tasks), vectorized=vectorized)
            objective = tf.reduce_sum(lam * tf.stack(values.shares))
        grads.append(tape.gradient(objective, model.trainable_variables))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_the_summed_step_vectorises_and_jacobian_steps_keep_per_task_losses() -> None:
    tasks = [Task(f"b{i}", "binary") for i in range(3)]
    model = hard_sharing(tasks, 4, trunk=(8,), tower_units=())
    model.compile("adam")
    assert model._runner.vectorized_losses
    model.compile("adam", balancer="pcgrad")
    assert not model._runner.vectorized_losses


@pytest.mark.parametrize("balancer", [None, "uncertainty"])
def test_fit_logs_exact_per_task_losses_and_evaluate_keeps_the_metric_order(balancer: str | None) -> None:
    """Logged losses over an epoch = the masked mean over every labelled example (NumPy), with the per-task
    trackers in one (T,) state; evaluate's list follows ``metrics_names``."""
    keras.utils.set_random_seed(0)
    tasks = [Task("a", "binary"), Task("b", "binary"), Task("r", "regression")]
    model = hard_sharing(tasks, 3, trunk=(4,), tower_units=())
    model.compile(keras.optimizers.SGD(0.0), balancer=balancer)  # lr 0: the weights stay put
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = {
        "a": (rng.random((64, 1)) < 0.5).astype("float32"),
        "b": (rng.random((64, 1)) < 0.5).astype("float32"),
        "r": rng.normal(size=(64, 1)).astype("float32"),
    }
    y["b"][rng.random(64) < 0.9] = np.nan
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    preds = model.predict(x, verbose=0)
    for task in tasks:
        expected, _ = _numpy_share_full(task, y[task.name], preds[task.name])
        np.testing.assert_allclose(history.history[f"{task.name}_loss"][0], expected, rtol=1e-4)
    as_dict = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    as_list = model.evaluate(x, y, batch_size=16, verbose=0)
    assert sorted(as_dict) == sorted(model.metrics_names)
    assert model.metrics_names[:4] == ["loss", "a_loss", "b_loss", "r_loss"]
    np.testing.assert_allclose(as_list, [as_dict[name] for name in model.metrics_names], rtol=1e-6)
    assert "a_auc" in as_dict and ("a_weight" in as_dict) == (balancer is not None)


def _numpy_share_full(task: Task, y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    n = len(y)
    y = y.astype("float64")
    labelled = ~np.isnan(y[:, 0])
    yc = np.where(labelled[:, None], y, 0.0)
    if task.kind == "binary":
        pc = np.clip(p.astype("float64"), 1e-7, 1 - 1e-7)
        per = -(yc * np.log(pc) + (1 - yc) * np.log(1 - pc))[:, 0]
    else:
        per = ((yc - p) ** 2)[:, 0]
    assert n == len(per)
    return float(per[labelled].mean()), float(labelled.sum())
