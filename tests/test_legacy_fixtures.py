"""Files written by the code of commit 20d24d7 (before the training-step and recipe redesign) still load and
predict what they predicted then (tests/fixtures/legacy_20d24d7/make_fixtures.py wrote them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.export import check_export
from mtl_keras.export.serving import models_config_text

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_20d24d7"
EXPECTED = np.load(FIXTURES / "expected.npz", allow_pickle=False)
STEMS = sorted(p.stem for p in FIXTURES.glob("*.keras") if p.stem != "raw_mmoe")


def _expected(stem: str) -> dict[str, np.ndarray]:
    prefix = f"{stem}/"
    return {k[len(prefix) :]: EXPECTED[k] for k in EXPECTED.files if k.startswith(prefix)}


def _raw_inputs() -> dict[str, np.ndarray]:
    raw = {k[len("raw/") :]: EXPECTED[k] for k in EXPECTED.files if k.startswith("raw/")}
    raw["job"] = raw["job"].astype(object)
    return raw


@pytest.mark.parametrize("stem", STEMS)
def test_legacy_keras_file_loads_and_predicts_the_same(stem: str) -> None:
    model = keras.saving.load_model(FIXTURES / f"{stem}.keras")
    predictions = model.predict(EXPECTED["x_dense"], verbose=0)
    expected = _expected(stem)
    assert sorted(predictions) == sorted(expected)
    for task, value in expected.items():
        np.testing.assert_allclose(np.asarray(predictions[task]), value, rtol=1e-5, atol=1e-6, err_msg=task)
    # The compiled state (optimizer, balancer) came back too: one more training step runs.
    labels = {
        "label_a": np.zeros(4, "float32"),
        "label_b": np.zeros(4, "float32"),
        "label_c": np.zeros(4, "float32"),
    }
    model.train_on_batch(EXPECTED["x_dense"][:4], labels)


def test_legacy_raw_feature_model_and_its_export() -> None:
    model = keras.saving.load_model(FIXTURES / "raw_mmoe.keras")
    raw = _raw_inputs()
    predictions = model.predict(raw, verbose=0)
    for task, value in _expected("raw_mmoe").items():
        np.testing.assert_allclose(np.asarray(predictions[task]), value, rtol=1e-5, atol=1e-6, err_msg=task)
    served = tf.saved_model.load(str(FIXTURES / "export" / "1"))
    request = {
        "age": tf.constant(raw["age"][:2]),
        "hours": tf.constant(raw["hours"][:2]),
        "job": tf.constant(raw["job"][:2].astype(str)),
        "grade": tf.constant(raw["grade"][:2]),
    }
    signature = served.signatures["serving_default"]
    request = {k: tf.cast(v, signature.structured_input_signature[1][k].dtype) for k, v in request.items()}
    outputs = signature(**request)
    for task, value in _expected("raw_mmoe").items():
        np.testing.assert_allclose(outputs[task].numpy(), value[:2], rtol=1e-5, atol=1e-6, err_msg=task)


def test_legacy_export_passes_todays_checker(tmp_path: Path) -> None:
    base = tmp_path / "export"
    shutil.copytree(FIXTURES / "export", base)
    # models.config names the absolute base path, so it is written here rather than committed.
    (base / "models.config").write_text(models_config_text("raw_mmoe", base), encoding="utf-8")
    model = keras.saving.load_model(FIXTURES / "raw_mmoe.keras")
    report = check_export(base, model)
    assert report["ok"], report["errors"]
