"""LookaheadAffinity against a NumPy lookahead on the closed-form linear model, on tasks of known
structure, with missing labels, under MirroredStrategy, and without changing the training trajectory."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from training.tiny_model import build, data, weights_of

from mtl_keras import MultiTaskModel, Task, builders
from mtl_keras.analysis import best_grouping
from mtl_keras.callbacks import LookaheadAffinity

LR = 0.1


def numpy_affinity(
    w: dict[str, np.ndarray], x: np.ndarray, y: dict[str, np.ndarray], lr: float
) -> np.ndarray:
    """Z[i, j] = 1 − L_j(W − lr ∇_W L_i, b − lr ∇_b L_i) / L_j(W, b) for the tiny model (masked MSE)."""
    tasks = ("a", "b")
    x = x.astype(np.float64)

    def losses(
        kernel: np.ndarray, bias: np.ndarray
    ) -> tuple[list[float], list[tuple[np.ndarray, np.ndarray]]]:
        z = x @ kernel + bias
        values, grads = [], []
        for t in tasks:
            p = z @ w[f"v_{t}"][:, 0] + w[f"c_{t}"][0]
            m = ~np.isnan(y[t])
            label = np.where(m, y[t], 0.0)
            values.append(float(np.sum(m * (p - label) ** 2) / m.sum()))
            e = 2 * m * (p - label) / m.sum()
            dz = np.outer(e, w[f"v_{t}"][:, 0])
            grads.append((x.T @ dz, dz.sum(0)))
        return values, grads

    base, grads = losses(w["W"], w["b"])
    z = np.zeros((2, 2))
    for i in range(2):
        after, _ = losses(w["W"] - lr * grads[i][0], w["b"] - lr * grads[i][1])
        z[i] = 1.0 - np.asarray(after) / np.asarray(base)
    return z


def test_one_step_matches_a_numpy_lookahead_with_missing_labels():
    model = build()
    x, y = data()  # task b misses a third of its labels
    expected = numpy_affinity(weights_of(model), x, y, LR)
    model.compile(keras.optimizers.SGD(LR))
    callback = LookaheadAffinity()
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    np.testing.assert_allclose(callback.mean_matrix(), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(callback.total_counts(), np.ones((2, 2)))
    assert model._lookahead_hooks == []  # removed at the end of training


def test_a_task_without_labels_is_left_out():
    model = build()
    x, y = data()
    y["b"][:] = np.nan
    model.compile(keras.optimizers.SGD(LR))
    callback = LookaheadAffinity()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
    matrix, counts = callback.mean_matrix(), callback.total_counts()
    np.testing.assert_array_equal(counts, [[1, 0], [0, 0]])
    assert np.isfinite(matrix[0, 0]) and np.isnan(matrix[0, 1]) and np.isnan(matrix[1, 0])


def test_opposed_gradients_give_negative_affinity():
    # one shared unit read by two identical frozen heads: a wants z = x·u, b wants z = −x·u
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    z = keras.layers.Dense(1, name="shared")(inputs)
    heads = {}
    for t in ("a", "b"):
        head = keras.layers.Dense(1, name=t, kernel_initializer="ones", trainable=False)
        heads[t] = head(z)
    model = MultiTaskModel(
        inputs, heads, tasks=[Task("a", "regression"), Task("b", "regression")], shared_layers=["shared"]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    target = x @ np.array([1.0, -1.0, 0.5], "float32")
    model.compile(keras.optimizers.SGD(0.05))
    callback = LookaheadAffinity()
    model.fit(x, {"a": target, "b": -target}, batch_size=16, epochs=2, verbose=0, callbacks=[callback])
    matrix = callback.mean_matrix()
    assert matrix[0, 1] < 0 and matrix[1, 0] < 0
    assert matrix[0, 0] > 0 and matrix[1, 1] > 0


def three_tasks(n: int = 512, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """a = f(x) + noise and b = 2 f(x) + noise share f; c = g(x) + noise is unrelated."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    f = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    g = np.cos(2 * x[:, 5]) - x[:, 6] * x[:, 7]
    noise = 0.1 * rng.normal(size=(3, n))
    y = {"a": f + noise[0], "b": 2 * f + noise[1], "c": g + noise[2]}
    return x, {k: v.astype("float32") for k, v in y.items()}


def test_tasks_from_one_function_have_higher_mutual_affinity_and_are_grouped():
    keras.utils.set_random_seed(0)
    x, y = three_tasks()
    tasks = [Task(t, "regression") for t in ("a", "b", "c")]
    model = builders.hard_sharing(tasks, 8, trunk=(32,), tower_units=())
    model.compile(keras.optimizers.SGD(0.05))
    callback = LookaheadAffinity(every=2)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[callback])
    z = callback.mean_matrix()
    a, b, c = 0, 1, 2
    assert z[a, b] > z[c, b] and z[b, a] > z[c, a]
    assert z[a, b] > z[a, c] and z[b, a] > z[b, c]
    # a and b are served by their own pair; c by another group (alone or with a small helper)
    grouping = best_grouping(z, ["a", "b", "c"], 2)
    served = grouping.served_by
    assert served["a"] == served["b"] != served["c"]
    assert set(grouping.groups[served["a"]].tasks) == {"a", "b"}
    np.testing.assert_array_equal(callback.total_counts(), np.full((3, 3), 3 * 4))  # 8 steps × 3 / 2


def _run(with_callback: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    keras.utils.set_random_seed(0)
    x, y = three_tasks(n=128)
    tasks = [Task(t, "regression") for t in ("a", "b", "c")]
    model = builders.hard_sharing(tasks, 8, trunk=(16,), tower_units=(8,), dropout=0.3)
    model.compile(keras.optimizers.Adam(0.01))
    callbacks = [LookaheadAffinity(every=2)] if with_callback else []
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=callbacks)
    return [v.numpy() for v in model.weights], [v.numpy() for v in model.optimizer.variables]


def test_the_callback_leaves_the_training_trajectory_unchanged():
    weights, optimizer = _run(True)
    weights_plain, optimizer_plain = _run(False)
    for got, want in zip(weights + optimizer, weights_plain + optimizer_plain, strict=True):
        np.testing.assert_array_equal(got, want)


def test_mirrored_strategy_gives_the_single_device_affinity(mirrored_strategy):
    x, y = data(n=16)
    results = []
    for strategy in (None, mirrored_strategy):
        scope = strategy.scope() if strategy is not None else keras.name_scope("plain")
        with scope:
            model = build()
            model.compile(keras.optimizers.SGD(LR))
        callback = LookaheadAffinity()
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
        results.append(callback.mean_matrix())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-7)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="every"):
        LookaheadAffinity(every=0)
    with pytest.raises(ValueError, match="learning_rate"):
        LookaheadAffinity(learning_rate=-1.0)
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    plain.compile("sgd", "mse")
    with pytest.raises(ValueError, match="compiled MultiTaskModel"):
        plain.fit(np.zeros((4, 3)), np.zeros((4, 1)), verbose=0, callbacks=[LookaheadAffinity()])
