"""Calibrated outputs and the score-fusion signature in an export: a deliberately over-confident model
(logits scaled by 5) gets a lower validation ECE after temperature scaling, and the SavedModel serves the
calibrated values; the fusion signature equals its formula on the per-task outputs; unsafe formulas are
refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl_keras.evaluation.calibration import expected_calibration_error
from mtl_keras.experiments.calibrating import calibrated_model, fit_calibration
from mtl_keras.export import check_export, export_for_serving
from mtl_keras.export.fusion import check_tasks, parse_formula
from mtl_keras.export.serving import Fusion
from mtl_keras.recipes import RecipeError, validate

W = np.array([[1.5], [-1.0]], dtype="float32")
FORMULA = "ctr * (1 + depth * depth) ** 0.5 / 2 - -ctr"


def _overconfident_model():
    """ctr = sigmoid(5 x·w) while its labels follow sigmoid(x·w); depth a regression head."""
    x = keras.Input((2,), name="features")
    ctr = keras.layers.Dense(1, activation="sigmoid", name="ctr")
    depth = keras.layers.Dense(1, name="depth")
    model = keras.Model(x, {"ctr": ctr(x), "depth": depth(x)}, name="toy")
    ctr.set_weights([5 * W, np.zeros(1, "float32")])
    depth.set_weights([np.array([[0.5], [0.25]], "float32"), np.array([0.1], "float32")])
    return model


def _sample(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype("float32")
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x @ W)[:, 0]))).astype("float64")
    return x, y


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _overconfident_model()
    x_val, y_val = _sample(3000, 0)
    raw_val = np.asarray(model(x_val)["ctr"])
    fitted = fit_calibration("temperature", {"ctr": raw_val}, {"ctr": y_val})
    calibrated = calibrated_model(model, fitted)
    base = tmp_path_factory.mktemp("calibrated")
    x_req, _ = _sample(4, 1)
    version = export_for_serving(
        calibrated, base, request_examples=x_req, fusion=Fusion("rank_score", FORMULA)
    )
    return model, calibrated, fitted, base, version, (x_val, y_val), x_req


def test_temperature_lowers_validation_ece_of_an_overconfident_model(exported):
    model, calibrated, fitted, *_, (x_val, y_val), _ = exported
    temperature = fitted["ctr"]["temperature"]
    assert temperature == pytest.approx(5.0, rel=0.2)
    before = expected_calibration_error(np.asarray(model(x_val)["ctr"]), y_val)
    after = expected_calibration_error(np.asarray(calibrated(x_val)["ctr"]), y_val)
    assert after < before / 2


def test_exported_signatures_serve_calibrated_values(exported):
    model, _, fitted, _, version, _, x_req = exported
    loaded = tf.saved_model.load(str(version))
    raw = np.asarray(model(x_req)["ctr"], dtype=np.float64)
    z = np.log(raw / (1 - raw))
    expected = 1 / (1 + np.exp(-z / fitted["ctr"]["temperature"]))
    for name in ("serving_default", "predict_ctr"):
        served = loaded.signatures[name](features=tf.constant(x_req))["ctr"].numpy()
        np.testing.assert_allclose(served, expected, atol=1e-5)
    depth = loaded.signatures["serving_default"](features=tf.constant(x_req))["depth"].numpy()
    np.testing.assert_allclose(depth, np.asarray(model(x_req)["depth"]), atol=1e-6)  # not calibrated


def test_fusion_signature_equals_its_formula(exported):
    _, _, _, base, version, _, x_req = exported
    loaded = tf.saved_model.load(str(version))
    outputs = loaded.signatures["serving_default"](features=tf.constant(x_req))
    ctr, depth = (outputs[k].numpy().astype(np.float64) for k in ("ctr", "depth"))
    fused = loaded.signatures["rank_score"](features=tf.constant(x_req))["rank_score"].numpy()
    np.testing.assert_allclose(fused, ctr * np.sqrt(1 + depth**2) / 2 + ctr, rtol=1e-6)
    report = check_export(base)
    assert report["ok"], report["errors"]
    assert report["fusion"]["signature"] == "rank_score" and report["fusion"]["ok"]
    assert (version / "assets.extra" / "fusion.json").is_file()


@pytest.mark.parametrize(
    ("formula", "token"),
    [
        ("__import__('os').system('x')", "__import__('os').system('x')"),
        ("ctr.real", "ctr.real"),
        ("ctr if depth else 1", "ctr if depth else 1"),
        ("ctr < depth", "ctr < depth"),
        ("abs(ctr)", "abs(ctr)"),
        ("ctr // 2", "FloorDiv"),
        ("ctr % 2", "Mod"),
        ("ctr[0]", "ctr[0]"),
        ("'ctr'", "'ctr'"),
        ("not ctr", "Not"),
        ("True * ctr", "True"),
    ],
)
def test_unsafe_formulas_are_refused_naming_the_token(formula, token):
    with pytest.raises(ValueError, match="not allowed") as error:
        parse_formula(formula)
    assert repr(token) in str(error.value) and "+ - * / **" in str(error.value)


def test_formula_task_names_are_checked():
    with pytest.raises(ValueError, match="Did you mean 'ctr'"):
        check_tasks("ctrr * cvr", {"ctr": 1, "cvr": 1})
    with pytest.raises(ValueError, match="multiclass"):
        check_tasks("ctr * kind", {"ctr": 1, "kind": 3})
    with pytest.raises(ValueError, match="at least one task"):
        check_tasks("2 ** 3", {"ctr": 1})
    with pytest.raises(ValueError, match="not an expression"):
        parse_formula("ctr *")
    assert check_tasks("ctr * cvr ** 0.5 + 0.1 * ctr", {"ctr": 1, "cvr": 1}) == ["ctr", "cvr"]


def test_export_refuses_a_fusion_over_unknown_tasks(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'depth'"):
        export_for_serving(_overconfident_model(), tmp_path, fusion=Fusion("score", "ctr * deph"))
    with pytest.raises(ValueError, match="fusion signature name"):
        export_for_serving(_overconfident_model(), tmp_path, fusion=Fusion("predict_ctr", "ctr"))
    assert not list(tmp_path.iterdir())


def test_recipe_sections():
    base = {"name": "r", "data": {"name": "census"}, "architecture": {"name": "mmoe"}}
    recipe = validate(
        base | {"export": {"fusion": {"name": "rank_score", "formula": "income * marital ** 0.5"}}}
    )
    assert recipe.export.fusion.formula == "income * marital ** 0.5"
    assert recipe.calibration.method == "none" and recipe.calibration.bins == 15
    with pytest.raises(RecipeError, match="not allowed"):
        validate(base | {"export": {"fusion": {"formula": "open('x')"}}})
    with pytest.raises(RecipeError, match="calibration"):
        validate(base | {"calibration": {"method": "platt"}})


def test_export_check_fails_when_the_fusion_signature_is_not_its_formula(exported, tmp_path):
    import json
    import shutil

    *_, base, version, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    # models.config must point at the copy; the fusion description now disagrees with the graph.
    (copy / "models.config").write_text((base / "models.config").read_text().replace(str(base), str(copy)))
    fusion_file = copy / version.name / "assets.extra" / "fusion.json"
    description = json.loads(fusion_file.read_text())
    fusion_file.write_text(json.dumps(description | {"formula": "ctr * 2"}))
    report = check_export(copy)
    assert not report["ok"] and not report["fusion"]["ok"]
    assert any("rank_score" in e for e in report["errors"])


def test_isotonic_calibration_in_a_model_is_the_fitted_interpolation():
    model = _overconfident_model()
    x_val, y_val = _sample(2000, 4)
    raw = np.asarray(model(x_val)["ctr"])
    fitted = fit_calibration("isotonic", {"ctr": raw}, {"ctr": y_val})
    served = np.asarray(calibrated_model(model, fitted)(x_val)["ctr"])[:, 0]
    np.testing.assert_allclose(
        served, np.interp(raw[:, 0], fitted["ctr"]["x"], fitted["ctr"]["y"]), atol=1e-5
    )
    assert expected_calibration_error(served, y_val) < expected_calibration_error(raw, y_val) / 2
