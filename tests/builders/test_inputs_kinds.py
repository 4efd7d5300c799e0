"""RawFeatures built from column statistics: every kind end to end, equal to adapt-built layers, saved,
loaded and exported."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras import builders
from mtl_keras.builders import RawFeatures
from mtl_keras.builders.inputs import make_inputs, trainable_input_layers
from mtl_keras.data.statistics import compute_statistics
from mtl_keras.export import export_for_serving
from mtl_keras.tasks import Task

pytestmark = pytest.mark.filterwarnings("ignore:When providing `inputs` as a dict:UserWarning")

TASKS = [Task("a", "binary"), Task("b", "regression")]
N = 256

FEATURES = {
    "unit price": "numeric",
    "job": "string_categorical",
    "city": {"kind": "categorical", "encoding": "embedding", "embedding_dim": 3},
    "grade": "integer_categorical",
    "user": {"kind": "id", "num_bins": 64, "embedding_dim": 4},
    "item": {"kind": "id", "encoding": "vocabulary", "max_tokens": 20},
    "home": {"kind": "categorical", "encoding": "embedding", "embedding_dim": 2},
    "away": {"kind": "categorical", "encoding": "embedding", "share_embedding": "home"},
    "tags": {"kind": "multi_hot", "embedding_dim": 3},
    "flags": {"kind": "multi_hot", "encoding": "multi_hot"},
    "notes": "skip",
}


def _data(n: int = N, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    price = rng.normal(50.0, 10.0, n)
    price[rng.choice(n, n // 20, replace=False)] = np.nan
    x = {
        "unit price": price.astype("float32"),
        "job": rng.choice(np.array(["a", "b", "c"], dtype=object), n),
        "city": rng.choice(np.array(["x", "y", "z", "w"], dtype=object), n),
        "grade": rng.integers(0, 4, n),
        "user": np.array([f"u{i}" for i in rng.integers(0, 100, n)], dtype=object),
        "item": np.array([f"i{i}" for i in rng.integers(0, 40, n)], dtype=object),
        "home": rng.choice(np.array(["t1", "t2", "t3"], dtype=object), n),
        "away": rng.choice(np.array(["t2", "t3", "t4"], dtype=object), n),
        "tags": rng.choice(np.array(["p|q", "q", "r| p", ""], dtype=object), n),
        "flags": rng.choice(np.array(["f1", "f1|f2", "f3"], dtype=object), n),
        "notes": np.array(["free text"] * n, dtype=object),
    }
    filled = np.nan_to_num(price, nan=50.0)
    y = {
        "a": (filled > 50).astype("float32"),
        "b": ((filled - 50) / 10 + (x["job"] == "a")).astype("float32"),
    }
    return x, y


def _inputs(x: dict) -> dict:
    return {k: v for k, v in x.items() if k != "notes"}


def _model(spec: RawFeatures) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing(TASKS, spec, trunk=(8,), tower_units=(4,))
    model.compile(optimizer="adam")
    return model


def _functional(spec: RawFeatures) -> keras.Model:
    """The raw block under a shared Dense and two heads, without a builder (the builder path is tested below)."""
    keras.utils.set_random_seed(0)
    inputs, features = make_inputs(spec)
    hidden = keras.layers.Dense(8, activation="relu")(features)
    outputs = {
        "a": keras.layers.Dense(1, activation="sigmoid", name="a")(hidden),
        "b": keras.layers.Dense(1, name="b")(hidden),
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={"a": "binary_crossentropy", "b": "mse"})
    return model


def _predict(model: keras.Model, x: dict) -> dict:
    return {k: np.asarray(v) for k, v in model.predict(_inputs(x), verbose=0).items()}


@pytest.fixture(scope="module")
def trained() -> tuple[keras.Model, dict]:
    x, y = _data()
    model = _functional(RawFeatures(FEATURES, x))
    model.fit(_inputs(x), y, epochs=2, batch_size=64, verbose=0)
    return model, x


NOT_EMBEDDED = {k: v for k, v in FEATURES.items() if k in ("unit price", "job", "grade", "flags", "notes")}


def test_hard_sharing_with_the_kinds_that_have_no_embedding() -> None:
    x, y = _data()
    model = _model(RawFeatures(NOT_EMBEDDED, x))
    model.fit({k: x[k] for k in NOT_EMBEDDED if k != "notes"}, y, epochs=1, batch_size=64, verbose=0)
    predictions = model.predict({k: x[k] for k in NOT_EMBEDDED if k != "notes"}, verbose=0)
    assert all(np.isfinite(np.asarray(v)).all() for v in predictions.values())


def test_builders_share_embedding_tables_and_baselines_copy_them() -> None:
    x, y = _data()
    model = _model(RawFeatures(FEATURES, x))
    embedded = {"embed_city", "embed_user", "embed_item", "embed_home", "embed_tags"}
    assert embedded <= set(model.shared_layer_names)
    model.compile(optimizer="adam", balancer="pcgrad")  # an aggregator sees the tables as shared
    model.fit(_inputs(x), y, epochs=1, batch_size=64, verbose=0)
    baseline = builders.single_task(TASKS, RawFeatures(FEATURES, x), trunk=(8,), tower_units=(4,))
    names = {layer.name for layer in baseline.layers}
    columns = [n.removeprefix("embed_") for n in embedded]
    for task in TASKS:
        assert {f"embed_{task.name}__{c}" for c in columns} <= names  # one table per column
    assert not embedded & names
    baseline.compile(optimizer="adam")
    tables_b = [baseline.get_layer(f"embed_b__{c}") for c in columns]
    before = [np.array(layer.get_weights()[0]) for layer in tables_b]
    y_only_a = {"a": y["a"], "b": np.full_like(np.asarray(y["b"], dtype=np.float32), np.nan)}
    baseline.fit(_inputs(x), y_only_a, epochs=1, batch_size=64, verbose=0)
    for layer, weights in zip(tables_b, before, strict=True):  # task a's training leaves b's tables alone
        np.testing.assert_array_equal(layer.get_weights()[0], weights)


def test_every_kind_trains_with_the_documented_input_dtypes(trained) -> None:
    model, x = trained
    dtypes = {name: tensor.dtype for name, tensor in model._inputs_struct.items()}
    assert "notes" not in dtypes  # skip: no input
    embedded = {layer.name for layer in trainable_input_layers(model.get_layer("raw_features").output)}
    assert embedded == {"embed_city", "embed_user", "embed_item", "embed_home", "embed_tags"}
    assert dtypes["unit price"] == "float32" and dtypes["grade"] == "int64"
    assert all(
        dtypes[n] == "string" for n in ("job", "city", "user", "item", "home", "away", "tags", "flags")
    )
    predictions = _predict(model, x)
    assert all(np.isfinite(v).all() for v in predictions.values())
    # Widths: 1 + 1 indicator, job 3 + OOV, city 3, grade 4 + OOV, user 4, item dim(20), home 2, away 2,
    # tags 3, flags 3 tokens + OOV.
    item_dim = model.get_layer("embed_item").output_dim
    assert model.get_layer("raw_features").output.shape[-1] == 2 + 4 + 3 + 5 + 4 + item_dim + 2 + 2 + 3 + 4


def test_share_embedding_uses_one_table_and_one_vocabulary(trained) -> None:
    model, x = trained
    names = [layer.name for layer in model.layers]
    assert "embed_home" in names and "embed_away" not in names and "lookup_away" not in names
    lookup = model.get_layer("lookup_home")
    assert sorted(lookup.get_vocabulary()[1:]) == ["t1", "t2", "t3", "t4"]  # both columns' values
    table = keras.ops.convert_to_numpy(model.get_layer("embed_home").embeddings)
    vocabulary = lookup.get_vocabulary()
    sub_model = keras.Model(model.input, model.get_layer("flatten_away").output)
    away = np.asarray(sub_model.predict(_inputs(x), verbose=0))
    expected = table[[vocabulary.index(v) for v in x["away"]]]
    np.testing.assert_allclose(away, expected, rtol=1e-6)


def test_multi_hot_embedding_is_the_mean_of_its_token_rows(trained) -> None:
    model, x = trained
    vocabulary = model.get_layer("lookup_tags").get_vocabulary()  # ["", "[UNK]", tokens...]
    table = keras.ops.convert_to_numpy(model.get_layer("embed_tags").embeddings)
    sub_model = keras.Model(model.input, model.get_layer("pool_tags").output)
    pooled = np.asarray(sub_model.predict(_inputs(x), verbose=0))
    for row, cell in enumerate(x["tags"][:20]):
        tokens = [t.strip() for t in cell.split("|") if t.strip()]
        expected = (
            table[[vocabulary.index(t) for t in tokens]].mean(0) if tokens else np.zeros(table.shape[1])
        )
        np.testing.assert_allclose(pooled[row], expected, rtol=1e-5, atol=1e-6)
    flags = model.get_layer("lookup_flags")
    assert flags.output_mode == "multi_hot" and sorted(set(flags.get_vocabulary()) - {"", "[UNK]"}) == [
        "f1",
        "f2",
        "f3",
    ]


def test_keras_save_load_and_serving_export_give_the_same_predictions(trained, tmp_path) -> None:
    model, x = trained
    rows = {k: v[:6].copy() for k, v in _inputs(x).items()}
    rows["unit price"][:2] = np.nan
    expected = _predict(model, rows)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for task, value in _predict(loaded, rows).items():
        np.testing.assert_allclose(value, expected[task], rtol=1e-6, atol=1e-6)
    version = export_for_serving(
        model, tmp_path / "export", request_examples={k: v[:3] for k, v in rows.items()}
    )
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    arguments = {
        ("unit_price" if k == "unit price" else k): tf.constant(
            v.astype(str) if v.dtype == object else v, tf.int64 if k == "grade" else None
        )
        for k, v in rows.items()
    }
    outputs = served(**arguments)
    for task, value in expected.items():
        np.testing.assert_allclose(outputs[task].numpy(), value, rtol=1e-5, atol=1e-6)


def test_statistics_built_layers_equal_adapt_built_layers() -> None:
    x, _ = _data(512)
    complete = np.nan_to_num(x["unit price"], nan=1.0)
    spec = RawFeatures(
        {"p": "numeric", "job": "categorical", "grade": "integer_categorical"},
        {"p": complete, "job": x["job"], "grade": x["grade"]},
    )
    inputs, features = make_inputs(spec)
    ours = keras.Model(inputs, features)
    columns = {
        "p": complete.reshape(-1, 1),
        "job": x["job"].reshape(-1, 1),
        "grade": x["grade"].reshape(-1, 1),
    }
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(columns["p"])
    job = keras.layers.StringLookup(output_mode="one_hot")
    job.adapt(columns["job"].astype(str))
    grade = keras.layers.IntegerLookup(output_mode="one_hot")
    grade.adapt(columns["grade"].astype("int64"))
    reference = np.concatenate(
        [
            keras.ops.convert_to_numpy(
                layer(tf.constant(columns[name].astype(str) if name == "job" else columns[name]))
            )
            for name, layer in (("p", norm), ("job", job), ("grade", grade))
        ],
        axis=1,
    )
    got = np.asarray(ours.predict({k: v.ravel() for k, v in columns.items()}, verbose=0))
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)


def test_streamed_text_statistics_build_the_same_layers_as_arrays() -> None:
    x, _ = _data()
    features = {"unit price": "numeric", "job": "categorical", "tags": "multi_hot"}
    text = {
        "unit price": np.array(
            ["" if np.isnan(v) else repr(float(v)) for v in x["unit price"]], dtype=object
        ),
        "job": x["job"],
        "tags": x["tags"],
    }
    chunks = [{k: v[i : i + 50] for k, v in text.items()} for i in range(0, N, 50)]
    streamed = RawFeatures(features, statistics=compute_statistics(chunks))
    from_arrays = RawFeatures(features, {k: x[k] for k in features})
    for name in features:
        a, b = streamed.column_stats[name], from_arrays.column_stats[name]
        assert (a.count, a.missing, a.top, a.tokens) == (b.count, b.missing, b.top, b.tokens), name
    np.testing.assert_allclose(
        streamed.column_stats["unit price"].mean, from_arrays.column_stats["unit price"].mean
    )


def test_nan_column_is_not_dead_where_adapt_gave_a_nan_mean() -> None:
    """Issue 14: 5 % NaN in a numeric column made ``Normalization.adapt`` learn a NaN mean, so the column
    was dead (predictions did not change when it was multiplied by 100)."""
    x, y = _data()
    adapted = keras.layers.Normalization(axis=-1)
    adapted.adapt(x["unit price"].reshape(-1, 1))
    assert np.isnan(keras.ops.convert_to_numpy(adapted.mean)).all()  # the observed failure
    model = _model(RawFeatures({"unit price": "numeric", "job": "categorical"}, x))  # a hard_sharing model
    model.fit({"unit price": x["unit price"], "job": x["job"]}, y, epochs=1, batch_size=64, verbose=0)
    norm = model.get_layer("normalize_unit_price")
    assert np.isfinite(keras.ops.convert_to_numpy(norm.mean)).all()
    base = model.predict({"unit price": x["unit price"], "job": x["job"]}, verbose=0)
    scaled = model.predict({"unit price": x["unit price"] * 100, "job": x["job"]}, verbose=0)
    for task in base:
        assert np.isfinite(np.asarray(base[task])).all()
        assert not np.allclose(base[task], scaled[task]), task


def test_bad_raw_features_are_refused_by_name() -> None:
    x, _ = _data(32)
    with pytest.raises(ValueError, match=r"exactly one of `data`.*and `statistics`"):
        RawFeatures({"job": "categorical"})
    with pytest.raises(ValueError, match=r"column 'job': numeric feature has non-numeric text 'a'|'b'|'c'"):
        RawFeatures({"job": "numeric"}, x)
    with pytest.raises(ValueError, match=r"No adaptation data for raw feature 'jobs'.*Did you mean 'job'"):
        RawFeatures({"jobs": "categorical"}, x)
    with pytest.raises(ValueError, match=r"kind of column 'job'.*Did you mean 'categorical'"):
        RawFeatures({"job": "categorial"}, x)
