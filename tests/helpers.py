"""Shared checks: every layer and every builder goes through the same round trips."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from mtl_keras import MultiTaskModel, Task

TOLERANCE = 1e-6


def _max_abs_diff(a: Any, b: Any) -> float:
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        return max(_max_abs_diff(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return max(_max_abs_diff(u, v) for u, v in zip(a, b, strict=True))
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def check_layer(layer: keras.layers.Layer, inputs: Any, tmp_path: Any) -> None:
    """Build, call, config round trip (get_config holds the constructor arguments), .keras save → load."""
    outputs = layer(inputs)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone_outputs = clone(inputs)
    assert keras.tree.map_structure(lambda t: tuple(t.shape), clone_outputs) == keras.tree.map_structure(
        lambda t: tuple(t.shape), outputs
    )

    # Save inside a functional model, reload, same outputs.
    def _input(t: Any) -> Any:
        return keras.Input(shape=tuple(t.shape[1:]), dtype=t.dtype)

    symbolic = keras.tree.map_structure(_input, inputs)
    model = keras.Model(symbolic, layer(symbolic))
    path = os.path.join(str(tmp_path), f"{layer.name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert _max_abs_diff(model(inputs), loaded(inputs)) <= TOLERANCE


def tower_values(model: keras.Model, task: str) -> list[np.ndarray]:
    """Copies of the weights of ``task``'s tower: its ``tower_<task>`` layer's, or its column's slices of the
    fused ``towers`` layer (found from the tensor its ``output_<task>`` layer reads)."""
    from mtl_keras.layers.fused_towers import FusedTowers

    history = model.get_layer(f"output_{task}").input._keras_history
    if isinstance(history.operation, FusedTowers):
        return [np.array(w, copy=True) for w in history.operation.tower_weights(history.tensor_index)]
    return [np.array(w, copy=True) for w in model.get_layer(f"tower_{task}").get_weights()]


def toy_tasks() -> list[Task]:
    return [Task("a", "binary"), Task("b", "regression"), Task("c", "multiclass", num_classes=3)]


def toy_data(n: int = 256, dim: int = 12, seed: int = 0, image: bool = False) -> tuple[Any, dict[str, Any]]:
    """Learnable toy labels for `toy_tasks()` from dense (n, dim) or image (n, 8, 8, 1) inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 64 if image else dim)).astype("float32")
    y = {
        "a": (x[:, 0] + x[:, 1] > 0).astype("float32"),
        "b": (x[:, 1] - 0.5 * x[:, 2]).astype("float32"),
        "c": np.digitize(x[:, 3], [-0.5, 0.5]).astype("float32"),
    }
    if image:
        x = x.reshape(n, 8, 8, 1)
    return x, y


def check_builder(model: MultiTaskModel, x: Any, y: dict[str, Any], tmp_path: Any, epochs: int = 3) -> None:
    """Outputs keyed by task; 3 epochs of fit lower every task's loss; .keras round trip is exact."""
    assert isinstance(model, MultiTaskModel)
    predictions = model.predict(x, verbose=0)
    assert sorted(predictions) == sorted(model.task_names)
    model.compile(keras.optimizers.Adam(0.01))
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    for name in model.task_names:
        if np.all(np.isnan(np.asarray(y[name], dtype=np.float64))):
            # A head trained without labels (ESMM's CVR) has no loss to report: NaN, never 0.
            assert np.isnan(before[f"{name}_loss"]) and np.isnan(after[f"{name}_loss"])
        else:
            assert after[f"{name}_loss"] < before[f"{name}_loss"], (name, before, after)
    path = os.path.join(str(tmp_path), f"{model.name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MultiTaskModel)
    assert loaded.task_names == model.task_names
    assert loaded.shared_layer_names == model.shared_layer_names
    assert loaded.representation_name == model.representation_name
    assert _max_abs_diff(model.predict(x, verbose=0), loaded.predict(x, verbose=0)) <= TOLERANCE


def shared_by_task_gradients(
    model: MultiTaskModel, variables: list[Any], task_grads: list[list[Any]]
) -> set[str]:
    """Paths of the variables with a non-zero gradient from two or more tasks (``task_grads[i]``: task i's
    gradients of ``variables``). A fused tower layer's variables hold one slice per task (first axis): one
    of them counts when two tasks' gradients are non-zero in the same slice, not merely somewhere in it."""
    from mtl_keras.layers.fused_towers import FusedTowers

    sliced = {id(v) for layer in model.layers if isinstance(layer, FusedTowers) for v in layer.weights}
    found = set()
    for k, v in enumerate(variables):
        used = [np.abs(np.asarray(grads[k])) > 0 for grads in task_grads if grads[k] is not None]
        if id(v) in sliced:
            per_slice = sum(u.reshape(u.shape[0], -1).any(axis=1).astype(int) for u in used)
            if len(used) > 1 and per_slice.max() > 1:
                found.add(v.path)
        elif sum(bool(u.any()) for u in used) > 1:
            found.add(v.path)
    return found


def check_sharing(model: MultiTaskModel, x: Any, y: dict[str, Any]) -> None:
    """The declared shared variables are exactly those that more than one task's loss depends on, and the
    declared representation carries every shared gradient (an independent check of each builder's record)."""
    import tensorflow as tf

    if not getattr(model, "_mtl_compiled", False):
        model.compile("adam")
    targets, weights = model._standardize_targets(y, None)
    variables = model.trainable_variables
    users = {id(v): 0 for v in variables}
    with tf.GradientTape(persistent=True) as tape:
        if model.representation_name is not None:
            predictions, representation = model._representation_model()(x, training=False)
        else:
            predictions = model(x, training=False)
        share = tf.stack(model._task_losses_for(targets, predictions, weights).shares)
        terms = tf.unstack(share)
        total = tf.reduce_sum(share)
    task_grads = [tape.gradient(terms[i], [v.value for v in variables]) for i in range(len(model.tasks))]
    # An embedding table's gradient is IndexedSlices (a text backbone's token table): made dense here.
    task_grads = [[None if g is None else tf.convert_to_tensor(g) for g in grads] for grads in task_grads]
    for grads in task_grads:
        for v, g in zip(variables, grads, strict=True):
            if g is not None and float(tf.reduce_max(tf.abs(g))) > 0:
                users[id(v)] += 1
    shared_found = shared_by_task_gradients(model, variables, task_grads)
    declared = {v.path for v in model.shared_variables}
    assert shared_found <= declared, f"undeclared shared variables: {sorted(shared_found - declared)}"
    # Declared variables must at least be used by some task (a declared-but-unused layer is a bug too).
    assert all(users[id(v)] >= 1 for v in model.shared_variables)
    if model.representation_name is not None:
        direct = tape.gradient(total, [v.value for v in model.shared_variables])
        upstream = tape.gradient(total, representation)
        through = tape.gradient(
            representation, [v.value for v in model.shared_variables], output_gradients=upstream
        )
        for d, t in zip(direct, through, strict=True):
            np.testing.assert_allclose(
                np.asarray(tf.convert_to_tensor(d)), np.asarray(tf.convert_to_tensor(t)), rtol=1e-4, atol=1e-6
            )
    del tape
