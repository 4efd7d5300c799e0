"""Numeric encodings of raw features (periodic / PLR, piecewise_linear / PLE-Q) inside the model: quantile bins
from the training data only, NaN imputed with an indicator, `.keras` and serving round trips with raw inputs,
`RawFeatures.with_encodings` and the recipe's `encodings:` section."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import builders
from mtl_keras.builders import RawFeatures
from mtl_keras.data import MultiTaskDataset, Split
from mtl_keras.data.columns import to_spec
from mtl_keras.export import export_for_serving
from mtl_keras.layers.periodic import PeriodicEmbedding
from mtl_keras.layers.piecewise_linear import PiecewiseLinearEncoding
from mtl_keras.recipes import RecipeError, validate
from mtl_keras.tasks import Task

TASKS = [Task("a", "binary"), Task("b", "regression")]


def _columns(n: int, shift: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "price": rng.lognormal(shift, 1.0, n).astype("float32"),
        "age": rng.normal(40 + shift, 10, n).astype("float32"),
        "city": rng.choice(["x", "y", "z"], n).astype(object),
    }


def _labels(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "a": (x["age"] > 40).astype("float32"),
        "b": np.log(x["price"]).astype("float32"),
    }


def _layers(model: keras.Model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def test_quantile_bins_come_from_the_training_split_only() -> None:
    train, test = _columns(500, 0.0, 0), _columns(300, 3.0, 1)  # test values lie far above training's
    dataset = MultiTaskDataset(
        name="shifted",
        tasks=TASKS,
        train=Split(train, _labels(train)),
        validation=Split(test, _labels(test)),
        test=Split(test, _labels(test)),
        features={"price": "numeric", "age": "numeric", "city": "categorical"},
    )
    spec = dataset.input_spec().with_encodings(by_column={"price": {"encoding": "ple", "num_bins": 5}})
    model = builders.hard_sharing(TASKS, spec, trunk=(4,))
    (layer,) = _layers(model, PiecewiseLinearEncoding)
    np.testing.assert_allclose(
        layer.edges, np.quantile(train["price"].astype(np.float64), np.linspace(0, 1, 6)), rtol=1e-6
    )


def test_missing_values_are_imputed_with_the_median_and_flagged() -> None:
    x = _columns(200, 0.0, 0)
    x["age"][::10] = np.nan
    median = float(np.nanmedian(x["age"].astype(np.float64)))
    spec = RawFeatures({"age": {"kind": "numeric", "encoding": "piecewise_linear", "num_bins": 4}}, x)
    model = builders.hard_sharing([Task("a", "binary")], spec, trunk=(3,))
    features = keras.Model(model.inputs, model.get_layer("encode_age").output)
    (layer,) = _layers(model, PiecewiseLinearEncoding)
    out = keras.ops.convert_to_numpy(features(np.array([[np.nan], [median]], "float32")))
    encoded_median = keras.ops.convert_to_numpy(layer(np.array([[median]], "float32")))[0]
    np.testing.assert_allclose(out[0], [*encoded_median, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [*encoded_median, 0.0], rtol=1e-6)

    periodic = RawFeatures({"age": {"kind": "numeric", "encoding": "plr", "embedding_dim": 3}}, x)
    model = builders.hard_sharing([Task("a", "binary")], periodic, trunk=(3,))
    out = keras.ops.convert_to_numpy(
        keras.Model(model.inputs, model.get_layer("encode_age").output)(
            np.array([[np.nan], [median]], "float32")
        )
    )
    assert out.shape == (2, 4) and np.isfinite(out).all()
    np.testing.assert_allclose(out[0, :3], out[1, :3], rtol=1e-5)
    assert out[0, 3] == 1.0 and out[1, 3] == 0.0


def test_models_with_every_numeric_encoding_train_save_and_serve_raw_values(tmp_path) -> None:
    x = _columns(256, 0.0, 0)
    x["price"][::7] = np.nan
    y = _labels(x)
    y["b"] = np.nan_to_num(y["b"])
    spec = RawFeatures(
        {
            "price": {"kind": "numeric", "encoding": "periodic", "embedding_dim": 4, "num_frequencies": 3},
            "age": {"kind": "numeric", "encoding": "piecewise_linear", "num_bins": 6},
            "city": {"kind": "categorical", "encoding": "embedding", "embedding_dim": 2},
        },
        x,
    )
    keras.utils.set_random_seed(0)
    model = builders.mmoe(TASKS, spec, num_experts=2, expert_units=[4], tower_units=[3])
    assert len(_layers(model, PeriodicEmbedding)) == 1 and len(_layers(model, PiecewiseLinearEncoding)) == 1
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    history = model.fit(data, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    predictions = model.predict(data, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for task in ("a", "b"):
        np.testing.assert_allclose(
            loaded.predict(data, verbose=0)[task], predictions[task], rtol=1e-5, atol=1e-6
        )
    rows = {k: v[:5] for k, v in x.items()}  # raw values, one NaN price among them
    version = export_for_serving(model, tmp_path / "export", request_examples=rows)
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    outputs = served(**{k: tf.constant(v.astype(str) if v.dtype == object else v) for k, v in rows.items()})
    for task in ("a", "b"):
        np.testing.assert_allclose(outputs[task].numpy(), predictions[task][:5], rtol=1e-5, atol=1e-6)


def test_with_encodings_by_kind_then_by_column() -> None:
    x = _columns(100, 0.0, 0)
    spec = RawFeatures({"price": "numeric", "age": "numeric", "city": "categorical"}, x)
    changed = spec.with_encodings(
        {"numeric": {"encoding": "periodic", "frequency_scale": 0.5}, "categorical": "embedding"},
        {"age": {"encoding": "piecewise_linear", "num_bins": 8}},
    )
    assert changed.columns["price"] == to_spec(
        "price", {"kind": "numeric", "encoding": "periodic", "frequency_scale": 0.5}
    )
    assert changed.columns["age"] == to_spec(
        "age", {"kind": "numeric", "encoding": "piecewise_linear", "num_bins": 8}
    )
    assert changed.columns["city"].encoding == "embedding"
    assert changed.column_stats is spec.column_stats or changed.column_stats == spec.column_stats
    with pytest.raises(ValueError, match=r"'agee'.*Did you mean 'age'"):
        spec.with_encodings(by_column={"agee": "periodic"})
    with pytest.raises(ValueError, match="kinds among"):
        spec.with_encodings({"numerical": "periodic"})
    with pytest.raises(ValueError, match="encoding of a numeric column to be one of"):
        spec.with_encodings({"numeric": "periodical"})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"encoding": "standardize", "num_frequencies": 4}, "only a numeric column with encoding 'periodic'"),
        ({"encoding": "standardize", "num_bins": 4}, "'piecewise_linear'"),
        ({"encoding": "standardize", "embedding_dim": 4}, "has no embedding"),
        ({"encoding": "periodic", "frequency_scale": -1.0}, "frequency_scale"),
    ],
)
def test_options_of_another_encoding_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_spec("age", {"kind": "numeric", **fields})


def test_recipe_encodings_are_checked_and_applied() -> None:
    from mtl_keras.experiments.preparation import builder_inputs, load_data

    recipe = validate(
        {
            "name": "enc",
            "data": {"name": "census", "max_rows": 300},
            "architecture": {"name": "hard_sharing", "trunk": [4]},
            "encodings": {"numeric": "plr", "columns": {"age": {"encoding": "ple", "num_bins": 4}}},
        }
    )
    inputs = builder_inputs(recipe, load_data(recipe))
    assert inputs.columns["age"].encoding == "piecewise_linear" and inputs.columns["age"].num_bins == 4
    assert inputs.columns["hours_per_week"].encoding == "periodic"
    assert inputs.columns["education"].encoding == "one_hot"
    typo = validate({**recipe.model_dump(), "encodings": {"columns": {"agee": "periodic"}}})
    with pytest.raises(RecipeError, match=r"^encodings: .*'agee'.*Did you mean 'age'"):
        builder_inputs(typo, load_data(typo))
    with pytest.raises(RecipeError, match=r"^encodings\.columns\.age\.kind"):
        validate({**recipe.model_dump(), "encodings": {"columns": {"age": {"kind": "categorical"}}}})
    with pytest.raises(RecipeError, match=r"^encodings\.numerc"):
        validate({**recipe.model_dump(), "encodings": {"numerc": "plr"}})
    vectors = validate(
        {
            "name": "vec",
            "data": {"name": "sincos", "n": 32, "n_validation": 8, "n_test": 8},
            "architecture": {"name": "hard_sharing", "trunk": [4]},
            "encodings": {"numeric": "plr"},
        }
    )
    with pytest.raises(RecipeError, match=r"^encodings: .*not raw tabular columns"):
        builder_inputs(vectors, load_data(vectors))
