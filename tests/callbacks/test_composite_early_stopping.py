"""CompositeEarlyStopping: the normalised composite score by hand, stopping, restoring the best weights."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from mtl_keras import Task, builders
from mtl_keras.callbacks import CompositeEarlyStopping


def _model() -> Any:
    model = builders.hard_sharing([Task("a", "binary"), Task("b")], 4, trunk=(3,), tower_units=(2,))
    model.compile("adam")
    return model


def _set_all(model: Any, value: float) -> None:
    for variable in model.weights:
        variable.assign(np.full(variable.shape, value, dtype="float32"))


# (val_a_auc, val_b_mse) per epoch.
LOGS = [(0.70, 1.0), (0.77, 0.8), (0.84, 1.1), (0.63, 1.0), (0.9, 0.1)]


def _run(callback: CompositeEarlyStopping, model: Any) -> list[float]:
    callback.set_model(model)
    callback.on_train_begin()
    scores = []
    for epoch, (auc, mse) in enumerate(LOGS):
        if model.stop_training:
            break
        _set_all(model, float(epoch))
        logs = {"val_a_auc": auc, "val_b_mse": mse, "val_a_loss": 1.0, "val_b_loss": 1.0}
        callback.on_epoch_end(epoch, logs)
        scores.append(logs["val_composite"])
    callback.on_train_end()
    return scores


def test_weighted_score_stop_and_restore_by_hand() -> None:
    model = _model()
    callback = CompositeEarlyStopping({"a": "auc", "b": "mse"}, weights={"a": 3, "b": 1}, patience=2)
    scores = _run(callback, model)
    # Relative changes since epoch 0, signed so higher is better (AUC up, MSE down):
    # epoch 1: a +0.1, b +0.2 -> (3*0.1 + 0.2)/4 = 0.125; epoch 2: a +0.2, b -0.1 -> 0.125 (no gain);
    # epoch 3: a -0.1, b 0 -> -0.075: two epochs without improvement -> stop.
    np.testing.assert_allclose(scores, [0.0, 0.125, 0.125, -0.075], atol=1e-12)
    assert callback.best_epoch == 1 and callback.stopped_epoch == 3
    assert model.stop_training
    for variable in model.weights:
        np.testing.assert_array_equal(variable.numpy(), 1.0)


def test_default_metrics_are_each_tasks_first_metric() -> None:
    model = _model()
    callback = CompositeEarlyStopping(patience=5, restore_best_weights=False)
    scores = _run(callback, model)
    assert callback.monitored == {"a": "val_a_auc", "b": "val_b_mse"}
    # Equal weights: epoch 1 (0.1 + 0.2)/2, epoch 2 (0.2 - 0.1)/2, epoch 3 (-0.1 + 0)/2,
    # epoch 4 (0.2/0.7 + 0.9)/2.
    np.testing.assert_allclose(scores, [0.0, 0.15, 0.05, -0.05, (0.2 / 0.7 + 0.9) / 2], atol=1e-12)
    assert callback.best_epoch == 4 and callback.stopped_epoch is None
    for variable in model.weights:
        np.testing.assert_array_equal(variable.numpy(), 4.0)


def test_errors() -> None:
    model = _model()
    callback = CompositeEarlyStopping({"a": "auc"})
    callback.set_model(model)
    callback.on_train_begin()
    with pytest.raises(ValueError, match="validation data"):
        callback.on_epoch_end(0, {"a_auc": 0.5})
    with pytest.raises(ValueError, match="weights"):
        CompositeEarlyStopping(weights={"a": -1.0})
    callback = CompositeEarlyStopping({"z": "auc"})
    callback.set_model(model)
    with pytest.raises(ValueError, match="Unknown task"):
        callback.on_train_begin()


def test_fit_stops_logs_and_restores() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(128, 6)).astype("float32")
    y = {"noise": rng.integers(0, 2, 64).astype("float32")}
    y_val = {"noise": rng.integers(0, 2, 128).astype("float32")}
    model = builders.hard_sharing([Task("noise", "binary")], 6, trunk=(32,), tower_units=(32,))
    model.compile(keras.optimizers.Adam(0.02))
    weights_by_epoch: list[list[np.ndarray]] = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights_by_epoch.append(model.get_weights())
    )
    stopper = CompositeEarlyStopping({"noise": "loss"}, patience=2)
    history = model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=30,
        batch_size=32,
        verbose=0,
        callbacks=[recorder, stopper],
    )
    composite = history.history["val_composite"]
    assert len(composite) < 30 and stopper.stopped_epoch == len(composite) - 1
    assert composite[0] == 0.0
    assert stopper.best_epoch == int(np.argmax(composite))
    for restored, recorded in zip(model.get_weights(), weights_by_epoch[stopper.best_epoch], strict=True):
        np.testing.assert_array_equal(restored, recorded)
