"""Missing numeric raw features (NaN) are imputed inside the model, with a missing indicator (issue 14)."""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import builders
from mtl_keras.builders import RawFeatures
from mtl_keras.export import export_for_serving
from mtl_keras.layers.imputation import ImputeMissing
from mtl_keras.tasks import Task

TASKS = [Task("a", "binary"), Task("b", "regression")]


def _data(n: int = 400, missing: float = 0.05, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    price = rng.normal(50.0, 10.0, size=n)
    price[rng.choice(n, int(missing * n), replace=False)] = np.nan
    x = {
        "price": price,
        "qty": rng.normal(size=n).astype("float32"),
        "job": rng.choice(["a", "b", "c"], size=n).astype(object),
    }
    filled = np.nan_to_num(price, nan=50.0)
    y = {"a": (filled > 50).astype("float32"), "b": ((filled - 50) / 10 + x["qty"]).astype("float32")}
    return x, y


def _model(x: dict) -> keras.Model:
    spec = RawFeatures({"price": "numeric", "qty": "numeric", "job": "string_categorical"}, x)
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(TASKS, spec, trunk=(8,), tower_units=(4,))
    model.compile(optimizer="adam")
    return model


def _predict(model: keras.Model, x: dict) -> dict:
    return {k: np.asarray(v) for k, v in model.predict(x, verbose=0).items()}


def test_five_percent_nan_column_is_alive_and_statistics_are_finite(caplog) -> None:
    x, y = _data()
    with caplog.at_level(logging.INFO, logger="mtl_keras.builders.inputs"):
        model = _model(x)
    assert "'price': 20 of 400 values missing" in caplog.text
    norm = model.get_layer("normalize_price")
    assert np.isfinite(keras.ops.convert_to_numpy(norm.mean)).all()
    assert np.isfinite(keras.ops.convert_to_numpy(norm.variance)).all()
    present = x["price"][~np.isnan(x["price"])]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(norm.mean).ravel(), [present.mean()], rtol=1e-5)
    impute = model.get_layer("impute_price")
    expected_fill = (np.median(present) - present.mean()) / present.std()
    np.testing.assert_allclose(impute.fill_value, expected_fill, rtol=1e-4, atol=1e-5)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    base = _predict(model, x)
    scaled = dict(x, price=x["price"] * 100)
    changed = _predict(model, scaled)
    for task in base:
        assert np.isfinite(base[task]).all(), task
        assert not np.allclose(base[task], changed[task]), task  # the column is not dead


def test_nan_inputs_give_finite_predictions_and_exports(tmp_path) -> None:
    x, y = _data()
    model = _model(x)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    rows = {k: v[:4].copy() for k, v in x.items()}
    rows["price"][:] = np.nan
    predictions = _predict(model, rows)
    assert all(np.isfinite(v).all() for v in predictions.values())
    path = export_for_serving(model, tmp_path / "export", request_examples={k: v[:3] for k, v in x.items()})
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = served(
        price=tf.constant(rows["price"], tf.float32),
        qty=tf.constant(rows["qty"], tf.float32),
        job=tf.constant(rows["job"].astype(str)),
    )
    for task, value in predictions.items():
        assert np.isfinite(outputs[task].numpy()).all(), task
        np.testing.assert_allclose(outputs[task].numpy(), value, rtol=1e-5, atol=1e-6)


def test_complete_columns_get_no_imputation_layer_and_keep_their_graph() -> None:
    x, _ = _data(missing=0.0)
    model = _model(x)
    assert not [layer for layer in model.layers if isinstance(layer, ImputeMissing)]
    assert model.get_layer("raw_features").output.shape == (None, 6)  # 1 + 1 + (OOV + 3)


def test_missing_column_adds_one_indicator_feature() -> None:
    x, _ = _data()
    model = _model(x)
    assert model.get_layer("raw_features").output.shape == (None, 7)  # + the indicator
    assert model.get_layer("impute_price").indicator


def test_entirely_missing_column_is_refused_by_name() -> None:
    x, _ = _data()
    x["price"] = np.full(400, np.nan)
    with pytest.raises(ValueError, match=r"column 'price' has no values \(all 400 rows missing\)"):
        _model(x)


def test_saved_model_with_imputation_round_trips(tmp_path) -> None:
    x, y = _data()
    model = _model(x)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    rows = {k: v[:8].copy() for k, v in x.items()}
    rows["price"][:3] = np.nan
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("impute_price"), ImputeMissing)
    for task, value in _predict(model, rows).items():
        np.testing.assert_allclose(_predict(loaded, rows)[task], value, rtol=1e-6, atol=1e-6)


def test_impute_missing_layer_config_and_values() -> None:
    layer = ImputeMissing(2.5, indicator=True, name="impute")
    assert ImputeMissing.from_config(layer.get_config()).get_config() == layer.get_config()
    out = keras.ops.convert_to_numpy(layer(np.array([[1.0], [np.nan]], "float32")))
    np.testing.assert_array_equal(out, [[1.0, 0.0], [2.5, 1.0]])
    with pytest.raises(ValueError, match="finite"):
        ImputeMissing(float("nan"))
