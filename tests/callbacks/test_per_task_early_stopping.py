"""PerTaskEarlyStopping: head detection, per-task best epochs, each head restored to its own best epoch."""

from __future__ import annotations

from typing import Any

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import Task, builders
from mtl_keras.callbacks import PerTaskEarlyStopping, VariableSlice, task_head_variables


def _paths(variables: list[Any]) -> set[str]:
    return {v.path for v in variables}


def test_heads_follow_the_graph() -> None:
    tasks = helpers.toy_tasks()
    model = builders.hard_sharing(
        tasks, 12, trunk=(16, 8), sharing_depth=1, tower_units=(4,), fuse_towers=False
    )
    heads, others = task_head_variables(model)
    for name in model.task_names:
        # Independent check by the builder's naming: the task's unshared trunk block and its tower.
        expected = {v.path for v in model.weights if v.path.startswith((f"tower_{name}/", f"{name}_block_"))}
        assert _paths(heads[name]) == expected
    assert _paths(others) == {v.path for v in model.shared_variables}
    # A single-task baseline: every variable belongs to exactly one column.
    single = builders.single_task(tasks, 12, trunk=(8,), tower_units=(4,))
    heads, others = task_head_variables(single)
    assert others == []
    for name in single.task_names:
        assert _paths(heads[name]) == {v.path for v in single.weights if v.path.startswith(f"{name}__")}


@pytest.mark.parametrize("architecture", ["hard_sharing", "mmoe"])
def test_fused_tower_slices_belong_to_their_task(architecture: str) -> None:
    tasks = helpers.toy_tasks()  # a and b (one output unit) are fused, c (3 classes) is a separate tower
    model = builders.get_builder(architecture)(tasks, 12, tower_units=(4,))
    fused = model.get_layer("towers")
    heads, others = task_head_variables(model)
    # Independent oracle: the slices of the fused variables where a task's output has a non-zero gradient.
    x = np.random.default_rng(0).normal(size=(16, 12)).astype("float32")
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(x, training=False)
        totals = {name: tf.reduce_sum(outputs[name]) for name in ("a", "b")}
    for name in ("a", "b"):
        grads = tape.gradient(totals[name], [v.value for v in fused.weights])
        (k,) = {int(i) for g in grads for i in np.flatnonzero(np.abs(g.numpy()).reshape(2, -1).sum(axis=1))}
        slices = [v for v in heads[name] if isinstance(v, VariableSlice)]
        assert {(id(v.variable), v.index) for v in slices} == {(id(w), k) for w in fused.weights}
    assert not [v for v in heads["c"] if isinstance(v, VariableSlice)]
    assert {v.path for v in heads["c"]} >= {v.path for v in model.get_layer("tower_c").weights}
    if architecture == "mmoe":  # the fused layer's zero gradient into b's mixture does not claim a's gate
        for name in model.task_names:
            assert {v.path for v in model.get_layer(f"gate_{name}").weights} <= {v.path for v in heads[name]}
    assert not {id(w) for w in fused.weights} & {id(v) for v in others}


def _set_all(model: Any, value: float) -> None:
    for variable in model.weights:
        variable.assign(np.full(variable.shape, value, dtype="float32"))


def _assert_all(variables: list[Any], value: float) -> None:
    for variable in variables:
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.parametrize("fuse_towers", [True, False])
@pytest.mark.parametrize("shared_weights", ["final", "composite"])
def test_best_epochs_and_restore_by_hand(shared_weights: str, fuse_towers: bool) -> None:
    model = builders.hard_sharing(
        [Task("a", "binary"), Task("b")], 4, trunk=(3,), tower_units=(2,), fuse_towers=fuse_towers
    )
    model.compile("adam")
    callback = PerTaskEarlyStopping(patience=1, shared_weights=shared_weights)
    callback.set_model(model)
    callback.on_train_begin()
    val_a = [1.0, 0.8, 0.9, 0.95, 0.95]  # best at epoch 1, stops at epoch 2
    val_b = [1.0, 0.9, 0.8, 0.7, 0.75]  # best at epoch 3, stops at epoch 4
    for epoch in range(5):
        assert not model.stop_training
        _set_all(model, float(epoch))  # "training": every variable holds the epoch number
        callback.on_epoch_end(epoch, {"val_a_loss": val_a[epoch], "val_b_loss": val_b[epoch], "loss": 1.0})
    assert model.stop_training
    callback.on_train_end()
    assert callback.best_epochs == {"a": 1, "b": 3}
    assert callback.stopped_epochs == {"a": 2, "b": 4}
    assert callback.best_values == {"a": 0.8, "b": 0.7}
    _assert_all(callback.head_variables["a"], 1.0)
    _assert_all(callback.head_variables["b"], 3.0)
    if fuse_towers:  # each task's slice of the one fused kernel holds its own best epoch
        kernel = model.get_layer("towers").weights[0].numpy()
        np.testing.assert_array_equal(kernel[0], 1.0)
        np.testing.assert_array_equal(kernel[1], 3.0)
    # Composite score (mean of the relative loss decreases since epoch 0): 0, .15, .15, .175, .15 -> epoch 3.
    _assert_all(model.shared_variables, 4.0 if shared_weights == "final" else 3.0)


def test_modes_and_monitor_dict() -> None:
    model = builders.hard_sharing([Task("a", "binary"), Task("b")], 4, trunk=(3,), tower_units=(2,))
    model.compile("adam")
    callback = PerTaskEarlyStopping(monitor={"a": "auc"}, patience=3)
    callback.set_model(model)
    callback.on_train_begin()
    assert callback.monitored == {"a": "val_a_auc", "b": "val_b_loss"}
    assert callback.directions == {"a": True, "b": False}
    for epoch, (auc, loss) in enumerate([(0.6, 1.0), (0.7, 1.1), (0.65, 0.9)]):
        callback.on_epoch_end(epoch, {"val_a_auc": auc, "val_b_loss": loss})
    assert callback.best_epochs == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="validation"):
        callback.on_epoch_end(3, {"a_auc": 0.7, "b_loss": 1.0})
    callback = PerTaskEarlyStopping(monitor="val_{task}_score")
    callback.set_model(model)
    with pytest.raises(ValueError, match="give its mode"):
        callback.on_train_begin()
    callback = PerTaskEarlyStopping(monitor="val_{task}_score", mode={"a": "max", "b": "min"})
    callback.set_model(model)
    callback.on_train_begin()
    assert callback.directions == {"a": True, "b": False}
    with pytest.raises(ValueError, match="shared_weights"):
        PerTaskEarlyStopping(shared_weights="best")


def _noise_data(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A learnable regression task and a binary task with random labels (it can only overfit)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, {
        "good": (x[:, 0] - x[:, 1]).astype("float32"),
        "noise": rng.integers(0, 2, n).astype("float32"),
    }


class _Recorder(keras.callbacks.Callback):
    """Every variable's value after each epoch, by path."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict[str, np.ndarray]] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs.append({v.path: np.array(v.numpy()) for v in self.model.weights})


def _recorded(epoch: dict[str, np.ndarray], path: str) -> np.ndarray:
    """A recorded variable by path, or slice ``k`` of one for a ``path[k]`` (a fused tower's slice)."""
    if path.endswith("]"):
        base, index = path[:-1].rsplit("[", 1)
        return epoch[base][int(index)]
    return epoch[path]


@pytest.mark.parametrize("fuse_towers", [True, False])
def test_heads_end_with_their_best_epoch_weights(fuse_towers: bool) -> None:
    keras.utils.set_random_seed(0)
    x, y = _noise_data(64, 0)
    x_val, y_val = _noise_data(128, 1)
    model = builders.hard_sharing(
        [Task("good"), Task("noise", "binary")], 8, trunk=(32,), tower_units=(64,), fuse_towers=fuse_towers
    )
    model.compile(keras.optimizers.Adam(0.01))
    stopper, recorder = PerTaskEarlyStopping(patience=2, min_delta=0.005), _Recorder()
    history = model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=20,
        batch_size=32,
        verbose=0,
        callbacks=[recorder, stopper],
    )
    trained = len(history.history["loss"])
    assert trained < 20  # both tasks stopped
    stopped = {t: e for t, e in stopper.stopped_epochs.items() if e is not None}
    best = {t: e for t, e in stopper.best_epochs.items() if e is not None}
    assert sorted(stopped) == sorted(best) == ["good", "noise"]
    assert max(stopped.values()) == trained - 1
    assert best["noise"] < best["good"]  # the random-label task overfits from the start
    for task in ("good", "noise"):
        losses = history.history[f"val_{task}_loss"][: stopped[task] + 1]
        assert best[task] == int(np.argmin(losses))
        # Its head holds the weights recorded at its best epoch, not the last epoch's.
        snapshot = {
            path: _recorded(recorder.epochs[best[task]], path)
            for path in _paths(stopper.head_variables[task])
        }
        if fuse_towers:  # slice k of every fused variable, k = the task's column (good = 0, noise = 1)
            k = ["good", "noise"].index(task)
            expected = {f"{v.path}[{k}]" for v in model.get_layer("towers").weights}
        else:
            expected = {p for p in recorder.epochs[0] if p.startswith(f"tower_{task}/")}
        assert _paths(stopper.head_variables[task]) == expected
        for variable in stopper.head_variables[task]:
            np.testing.assert_array_equal(variable.numpy(), snapshot[variable.path])
    assert any(
        not np.array_equal(
            _recorded(recorder.epochs[best["noise"]], v.path), _recorded(recorder.epochs[-1], v.path)
        )
        for v in stopper.head_variables["noise"]
    )
    # Shared weights keep their final values.
    for variable in model.shared_variables:
        np.testing.assert_array_equal(variable.numpy(), recorder.epochs[-1][variable.path])
