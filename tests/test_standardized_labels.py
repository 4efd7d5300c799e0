"""Standardised regression labels: the head maps its Dense output back to the labels' units, the loss is
computed in standardised units, and the standardisation is saved with the model."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from mtl_keras import Task, builders
from mtl_keras.layers.fused_towers import FusedTowers
from mtl_keras.layers.towers import Tower

MEAN, STD = 3000.0, 1100.0


def _price(**kwargs: object) -> Task:
    return Task("price", label_mean=MEAN, label_std=STD, **kwargs)  # type: ignore[arg-type]


# --- Task ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_mean": 1.0}, r"both `label_mean` and `label_std` or neither for task 'y'.*label_std=None"),
        ({"label_std": 2.0}, r"both `label_mean` and `label_std` or neither for task 'y'.*label_mean=None"),
        ({"label_mean": 0.0, "label_std": 0.0}, r"`label_std` > 0 for task 'y'. Received: label_std=0.0"),
        ({"label_mean": 0.0, "label_std": -1.0}, r"`label_std` > 0 for task 'y'. Received: label_std=-1.0"),
        ({"label_mean": float("nan"), "label_std": 1.0}, r"`label_mean` to be a finite number .*nan"),
        ({"label_mean": 0.0, "label_std": float("inf")}, r"`label_std` to be a finite number .*inf"),
        ({"label_mean": "1", "label_std": 1.0}, r"`label_mean` to be a finite number .*'1'"),
        (
            {"kind": "binary", "label_mean": 0.0, "label_std": 1.0},
            r"regression labels only; task 'y' has kind 'binary'",
        ),
    ],
)
def test_task_refuses_bad_standardisation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Task("y", **kwargs)


def test_task_config_keeps_standardisation_and_old_configs_load() -> None:
    task = Task("price", label_mean=np.float32(2.5), label_std=np.float64(4.0))
    assert type(task.label_mean) is float and task.label_mean == 2.5 and task.label_std == 4.0
    config = task.get_config()
    assert config["label_mean"] == 2.5 and config["label_std"] == 4.0
    assert Task.from_config(config) == task and Task.from_config(config).standardized
    old = {k: v for k, v in Task("price").get_config().items() if k not in ("label_mean", "label_std")}
    assert Task.from_config(old) == Task("price") and not Task.from_config(old).standardized


def test_loss_is_computed_in_standardised_units() -> None:
    rng = np.random.default_rng(0)
    y = (MEAN + STD * rng.normal(size=(16, 1))).astype("float32")
    y_pred = (MEAN + STD * rng.normal(size=(16, 1))).astype("float32")
    mse = np.mean((y.astype(np.float64) - y_pred) ** 2, axis=-1)
    mae = np.mean(np.abs(y.astype(np.float64) - y_pred), axis=-1)
    np.testing.assert_allclose(_price().get_loss()(y, y_pred), mse / STD**2, rtol=1e-5)
    np.testing.assert_allclose(_price(loss="mae").get_loss()(y, y_pred), mae / STD, rtol=1e-5)
    # An override (compile's loss={task: ...}) is standardised too; an unstandardised task is unchanged.
    np.testing.assert_allclose(_price().get_loss("mae")(y, y_pred), mae / STD, rtol=1e-5)
    np.testing.assert_allclose(Task("price").get_loss()(y, y_pred), mse, rtol=1e-5)


# --- the head --------------------------------------------------------------------------------------------

NAMES = [n for n in builders.names() if n not in ("esmm", "escm2", "aitm")]  # their tasks are binary only


@pytest.mark.parametrize("name", NAMES)
def test_every_builder_head_outputs_mean_plus_std_times_dense_output(name: str) -> None:
    tasks = [_price(), Task("buy", "binary")]
    options = {"architecture": "mmoe"} if name == "single_task" else {}
    model = builders.get_builder(name)(tasks, 6, **options)
    prefix = "{task}__" if name == "single_task" else ""
    head = model.get_layer(prefix.format(task="price") + "output_price")
    assert isinstance(head, keras.layers.Rescaling) and not head.weights
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    # The tensor the head reads: the price tower's Dense output (its own tower's or its fused column).
    assert isinstance(head.input._keras_history.operation, (Tower, FusedTowers))
    dense = keras.Model(model.input, head.input)
    z = np.asarray(dense(x), np.float64)
    outputs = model(x)
    np.testing.assert_allclose(np.asarray(outputs["price"]), MEAN + STD * z, rtol=1e-6, atol=1e-3)
    # The binary task keeps its sigmoid head.
    assert not isinstance(model.get_layer(prefix.format(task="buy") + "output_buy"), keras.layers.Rescaling)


def test_standardised_head_is_float32_under_mixed_precision(mixed_policy: None) -> None:
    model = builders.mmoe([_price(), Task("buy", "binary")], 6)
    head = model.get_layer("output_price")
    assert head.dtype_policy.name == "float32"
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    assert isinstance(head.input._keras_history.operation, FusedTowers)  # price and buy: one unit each
    z = np.asarray(keras.Model(model.input, head.input)(x), np.float64)
    price = model(x)["price"]
    assert keras.backend.standardize_dtype(price.dtype) == "float32"
    np.testing.assert_allclose(np.asarray(price), MEAN + STD * z, rtol=1e-6, atol=1e-3)


# --- training, evaluation, saving -----------------------------------------------------------------------


def _data(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A price in the thousands (x0, x2) and a binary label the price does not explain (x4, x5, x6)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, {
        "price": (MEAN + 800 * (x[:, 0] - x[:, 2]) + 50 * rng.normal(size=n)).astype("float32"),
        "buy": ((x[:, 4] * x[:, 5] + x[:, 6]) > 0).astype("float32"),
    }


def test_model_loss_is_standardised_and_metrics_in_original_units() -> None:
    keras.utils.set_random_seed(0)
    x, y = _data(64, 3)
    y["price"][::4] = np.nan  # missing labels are masked
    model = builders.hard_sharing([_price(), Task("buy", "binary")], 8, trunk=(8,), tower_units=())
    model.compile(optimizer="adam", metrics={"price": ["mse", "mae"]})
    result = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    prediction = np.asarray(model.predict(x, verbose=0)["price"], np.float64).ravel()
    labelled = ~np.isnan(y["price"])
    error = y["price"][labelled].astype(np.float64) - prediction[labelled]
    np.testing.assert_allclose(result["price_loss"], np.mean(error**2) / STD**2, rtol=1e-4)
    np.testing.assert_allclose(result["price_mse"], np.mean(error**2), rtol=1e-4)
    np.testing.assert_allclose(result["price_mae"], np.mean(np.abs(error)), rtol=1e-4)


def test_compile_loss_override_is_standardised_too() -> None:
    keras.utils.set_random_seed(0)
    x, y = _data(64, 4)
    model = builders.hard_sharing([_price(), Task("buy", "binary")], 8, trunk=(8,), tower_units=())
    model.compile(optimizer="adam", loss={"price": "mean_absolute_error"})
    result = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    prediction = np.asarray(model.predict(x, verbose=0)["price"], np.float64).ravel()
    error = y["price"].astype(np.float64) - prediction
    np.testing.assert_allclose(result["price_loss"], np.mean(np.abs(error)) / STD, rtol=1e-4)


def _fit(standardize: bool) -> dict[str, float]:
    keras.utils.set_random_seed(0)
    x, y = _data(1024, 0)
    x_val, y_val = _data(1024, 1)
    price = _price() if standardize else Task("price")
    model = builders.hard_sharing([price, Task("buy", "binary")], 8, trunk=(32,), tower_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=128, epochs=6, verbose=0)
    return model.evaluate(x_val, y_val, batch_size=1024, verbose=0, return_dict=True)


def test_standardisation_trains_both_tasks_of_a_mixed_scale_model() -> None:
    """Measured (1024 rows, 6 epochs, Adam 1e-2, seed 0, CPU): with standardisation the validation price
    MSE is 2.8e4 (label variance 1.3e6) and the binary AUC 0.987; without it the price MSE is 9.3e6 (the
    output never reaches labels in the thousands) and the binary AUC 0.958."""
    plain, standardized = _fit(False), _fit(True)
    variance = 800.0**2 * 2
    assert standardized["price_mse"] < 0.05 * variance
    assert plain["price_mse"] > 0.3 * variance
    assert standardized["buy_auc"] > 0.97
    assert standardized["buy_auc"] >= plain["buy_auc"] - 0.005


def test_keras_round_trip_keeps_standardisation_and_predictions(tmp_path: object) -> None:
    keras.utils.set_random_seed(0)
    x, y = _data(128, 4)
    model = builders.hard_sharing([_price(), Task("buy", "binary")], 8, trunk=(8,))
    model.compile(optimizer="adam")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    path = os.path.join(str(tmp_path), "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.tasks[0] == _price()
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for task in ("price", "buy"):
        np.testing.assert_allclose(after[task], before[task], rtol=1e-6)
    # The reloaded model still computes its loss in standardised units.
    result = loaded.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    error = y["price"].astype(np.float64) - np.asarray(after["price"], np.float64).ravel()
    np.testing.assert_allclose(result["price_loss"], np.mean(error**2) / STD**2, rtol=1e-4)
