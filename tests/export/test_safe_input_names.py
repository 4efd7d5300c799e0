"""Feature names that are not valid Keras/TF names ('unit price', 'a/b', '1st') train, predict and export."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mtl_keras import builders
from mtl_keras.builders import RawFeatures
from mtl_keras.builders.inputs import safe_input_names
from mtl_keras.export import check_export, export_for_serving
from mtl_keras.export.serving import INPUT_NAMES_FILE, serving_inputs
from mtl_keras.tasks import Task

# Keras warns when a dict input key differs from its tensor's name; here it does on purpose (safe tensor names).
pytestmark = pytest.mark.filterwarnings("ignore:When providing `inputs` as a dict:UserWarning")

NAMES = {"unit price": "numeric", "a/b": "string_categorical", "1st": "integer_categorical", "ok": "numeric"}


def _data(n: int = 64) -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    x = {
        "unit price": rng.normal(size=n).astype("float32"),
        "a/b": rng.choice(["x", "y"], size=n).astype(object),
        "1st": rng.integers(0, 3, size=n),
        "ok": rng.normal(size=n).astype("float32"),
    }
    return x, {"a": (x["unit price"] > 0).astype("float32")}


def test_safe_names_are_valid_distinct_and_keep_valid_names() -> None:
    names = safe_input_names(["unit price", "unit_price", "a/b", "1st", "ok", ""])
    assert names == {
        "unit price": "unit_price_2",
        "unit_price": "unit_price",
        "a/b": "a_b",
        "1st": "f_1st",
        "ok": "ok",
        "": "f_",
    }


def test_unsafe_feature_names_fit_predict_and_export(tmp_path) -> None:
    x, y = _data()
    keras.utils.set_random_seed(0)
    model = builders.hard_sharing([Task("a", "binary")], RawFeatures(NAMES, x), trunk=(4,))
    assert sorted(model._inputs_struct) == sorted(NAMES)  # fit/predict take the user's column names
    model.compile(optimizer="adam")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    predictions = model.predict(x, verbose=0)
    assert np.isfinite(np.asarray(predictions["a"])).all()
    assert {s.key: s.name for s in serving_inputs(model)} == {
        "unit price": "unit_price",
        "a/b": "a_b",
        "1st": "f_1st",
        "ok": "ok",
    }
    base = tmp_path / "export"
    export_for_serving(model, base, request_examples={k: v[:3] for k, v in x.items()})
    mapping = json.loads((base / INPUT_NAMES_FILE).read_text())
    assert mapping == {"unit price": "unit_price", "a/b": "a_b", "1st": "f_1st"}
    request = json.loads((base / "request.json").read_text())
    assert sorted(request["instances"][0]) == ["a_b", "f_1st", "ok", "unit_price"]
    report = check_export(base, model)
    assert report["ok"], report["errors"]
    loaded = keras.saving.load_model(_save(model, tmp_path))
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["a"], predictions["a"], rtol=1e-6)


def _save(model: keras.Model, tmp_path) -> str:
    path = str(tmp_path / "model.keras")
    model.save(path)
    return path
